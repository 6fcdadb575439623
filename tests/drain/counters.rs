//! `DrainCounters`: every request with a body lands in exactly one outcome
//! counter, the `draining` gauge goes back to 0, requests without a body
//! cost nothing and are not counted.
//!
//! The counters are new with issue 7: none of this compiles on main.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use linger::{DrainBodyLayer, DrainStats};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::common::*;

const KIB: usize = 1024;

/// The outcome counters that are not zero, by name.
fn outcomes(stats: &DrainStats) -> Vec<(&'static str, u64)> {
    [
        ("read", stats.read),
        ("drained_inline", stats.drained_inline),
        ("drained", stats.drained),
        ("over_limit", stats.over_limit),
        ("deadline", stats.deadline),
        ("body_error", stats.body_error),
        ("expect_continue", stats.expect_continue),
        ("no_timers", stats.no_timers),
        ("passed_through", stats.passed_through),
        ("abandoned", stats.abandoned),
    ]
    .into_iter()
    .filter(|&(_, n)| n > 0)
    .collect()
}

/// A `GET` (no body) is not counted; a body the handler reads is `read`;
/// a 7-byte body sent with its head and ignored is `drained_inline`, with 7
/// bytes drained.
#[tokio::test]
async fn read_and_inline_bodies() {
    let (layer, counters) = counted(DrainBodyLayer::default());
    let server = serve(layer, ignore_or_consume).await;
    let mut client = Client::connect(server.addr).await;

    client.send(get("/ignore")).await;
    assert_ok(&client.response().await, "ignored");
    assert_eq!(counters.snapshot(), DrainStats::default());

    client.send(post("/consume", b"a=b&x=y")).await;
    assert_ok(&client.response().await, "consumed 7");
    client.send(post("/ignore", b"foo=bar")).await;
    assert_ok(&client.response().await, "ignored");

    let stats = settled(&counters, 2).await;
    assert_eq!(outcomes(&stats), [("read", 1), ("drained_inline", 1)]);
    assert_eq!(stats.bytes_drained, 7);
}

/// A body that arrives after the response is drained in the background:
/// `draining` is 1 while it waits for the rest, then the body counts as
/// `drained` and the gauge is back to 0.
#[tokio::test]
async fn background_drain_and_gauge() {
    let (layer, counters) = counted(DrainBodyLayer::default());
    let server = serve(layer, ignore_or_consume).await;
    let mut client = Client::connect(server.addr).await;

    client.send(post_head("/ignore", 5000)).await;
    assert_ok(&client.response().await, "ignored");
    // The drain started before the response was released.
    assert_eq!(counters.snapshot().draining, 1);
    client.send([b'x'; 5000]).await;
    client.send(post("/consume", b"a=b&x=y")).await;
    assert_ok(&client.response().await, "consumed 7");

    let stats = settled(&counters, 2).await;
    assert_eq!(outcomes(&stats), [("read", 1), ("drained", 1)]);
    assert_eq!(stats.bytes_drained, 5000);
}

/// Waiting mode, stalled body, 300 ms deadline: `draining` is 1 while the
/// response is held, then `deadline`, gauge 0.
#[tokio::test]
async fn waiting_drain_and_gauge() {
    let layer = DrainBodyLayer::default()
        .timeout(Duration::from_millis(300))
        .wait_for_drain(true);
    let (layer, counters) = counted(layer);
    let (answered_tx, mut answered) = mpsc::unbounded_channel();
    let server = serve(layer, move |req| {
        let answered_tx = answered_tx.clone();
        async move {
            let _ = answered_tx.send(());
            ignore_or_consume(req).await
        }
    })
    .await;
    let mut client = Client::connect(server.addr).await;

    let mut req = post_head("/ignore", 1000).into_bytes();
    req.extend_from_slice(&[b'x'; 100]);
    client.send(req).await;
    step("handler answered", answered.recv()).await.unwrap();
    // Single-threaded runtime: the layer settled the response in the same
    // poll as the handler's answer, before this task runs again.
    assert_eq!(counters.snapshot().draining, 1);
    let res = client.response().await;
    assert!(res.has_close(), "{res:?}");

    let stats = settled(&counters, 1).await;
    assert_eq!(outcomes(&stats), [("deadline", 1)]);
    assert_eq!(stats.bytes_drained, 100);
}

/// Bodies the layer refuses to read: a declared remainder above the limit
/// (`over_limit`), an unpolled `Expect: 100-continue` (`expect_continue`),
/// broken chunked framing met by the drain (`body_error`). One connection
/// each.
#[tokio::test]
async fn refused_and_failed_bodies() {
    let (layer, counters) = counted(DrainBodyLayer::new(1024).timeout(Duration::from_secs(2)));
    let server = serve(layer, ignore_or_consume).await;

    let mut client = Client::connect(server.addr).await;
    client.send(post_head("/ignore", 64 * KIB)).await;
    assert!(client.response().await.has_close());
    assert_eq!(client.closed().await, Closed::Eof);

    let mut client = Client::connect(server.addr).await;
    client
        .send(
            "POST /ignore HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\n\
             Content-Length: 500\r\n\r\n",
        )
        .await;
    assert!(client.response().await.has_close());
    assert_eq!(client.closed().await, Closed::Eof);

    let mut client = Client::connect(server.addr).await;
    client.send(chunked_head("/ignore")).await;
    assert_ok(&client.response().await, "ignored");
    let _ = client
        .send_in_background(&b"5\r\nhello\r\nzz\r\n"[..])
        .await;
    client.closed().await;

    let stats = settled(&counters, 3).await;
    assert_eq!(
        outcomes(&stats),
        [("over_limit", 1), ("body_error", 1), ("expect_continue", 1)]
    );
}

/// A handler that moves the body into a task which reads it all: `read`,
/// once the task has read it (not when the response went out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_body_read_by_its_task() {
    let (layer, counters) = counted(DrainBodyLayer::default());
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let server = serve(layer, move |req| {
        let done_tx = done_tx.clone();
        async move {
            if req.uri().path() != "/spawn" {
                return text("next");
            }
            let body = req.into_body();
            tokio::spawn(async move { done_tx.send(read_all(body).await.len()).unwrap() });
            text("spawned")
        }
    })
    .await;
    let mut client = Client::connect(server.addr).await;

    client.send(post_head("/spawn", 5000)).await;
    assert_ok(&client.response().await, "spawned");
    client.send([b'x'; 5000]).await;
    // hyper ends a Content-Length body once the next request head is in.
    client.send(get("/next")).await;
    assert_ok(&client.response().await, "next");
    assert_eq!(step("task read", done.recv()).await, Some(5000));

    let stats = settled(&counters, 1).await;
    assert_eq!(outcomes(&stats), [("read", 1)]);
}

/// HTTP/2 (prior knowledge, hyper's client): an ignored body is drained
/// (at once if it is all there, else alongside the response), one without a
/// body is not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_bodies_are_drained() {
    let (layer, counters) = counted(DrainBodyLayer::default());
    let server = serve_with(Proto::Http2, layer, ignore_or_consume).await;
    let tcp = step("connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    let (mut send, conn) = step(
        "h2 handshake",
        hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
            TokioExecutor::new(),
            TokioIo::new(tcp),
        ),
    )
    .await
    .unwrap();
    tokio::spawn(conn);

    for body in [&b"a=b&x=y"[..], b""] {
        step("h2 ready", send.ready()).await.unwrap();
        let req = Request::post(format!("http://{}/ignore", server.addr))
            .body(Full::new(Bytes::from_static(body)))
            .unwrap();
        let res = step("h2 request", send.send_request(req)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let bytes = step("h2 body", res.into_body().collect()).await.unwrap();
        assert_eq!(bytes.to_bytes(), "ignored");
    }
    let stats = settled(&counters, 1).await;
    assert_eq!(stats.drained_inline + stats.drained, 1, "{stats:?}");
    assert_eq!((stats.settled(), stats.bytes_drained), (1, 7), "{stats:?}");
}

/// A handler that panics never answers: its body counts as `abandoned`
/// (and the connection ends without a response).
#[tokio::test]
async fn panicking_handler_is_abandoned() {
    let (layer, counters) = counted(DrainBodyLayer::default());
    let server = serve(layer, |req: TestRequest| async move {
        if req.uri().path() == "/panic" {
            panic!("handler panics on purpose");
        }
        text("fine")
    })
    .await;
    let mut client = Client::connect(server.addr).await;
    client.send(post("/panic", b"foo=bar")).await;
    client.closed().await;

    let stats = settled(&counters, 1).await;
    assert_eq!(outcomes(&stats), [("abandoned", 1)]);
}
