//! Keep-alive survives request bodies the handler ignores.
//!
//! Every test below that says "fails on plain hyper" was checked by running
//! it with `LINGER_TEST_WITHOUT_LAYER=1` (servers built without the layer).

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use linger::DrainBodyLayer;
use tokio::sync::mpsc;

use crate::common::*;

const KIB: usize = 1024;

/// Asserts a keep-alive `200` with `body` and no `Connection: close`.
fn assert_kept(res: &Parsed, body: &str) {
    assert_ok(res, body);
    assert!(!res.has_close(), "unexpected Connection: close: {res:?}");
}

/// The seed report, sent the way curl sends it (head and short body in one
/// write): `POST /ignore` with `foo=bar`, then `POST /consume` with `a=b&x=y`
/// on the same connection. Plain hyper also passes: its single non-blocking
/// read after the handler drops the body finds the 7 bytes already buffered.
#[tokio::test]
async fn seed_scenario_one_write_per_request() {
    let server = serve(DrainBodyLayer::default(), ignore_or_consume).await;
    let mut client = Client::connect(server.addr).await;

    client.send(post("/ignore", b"foo=bar")).await;
    assert_kept(&client.response().await, "ignored");
    client.send(post("/consume", b"a=b&x=y")).await;
    assert_kept(&client.response().await, "consumed 7");

    assert_eq!(server.served(), ["POST /ignore", "POST /consume"]);
}

/// The seed report when the body is not already there when the handler
/// answers (client sends the head, reads the early response, then the
/// body). The layer drains `foo=bar` after the response and the second
/// request is answered on the same connection.
/// Plain hyper: finds nothing to read, closes after the first response, the
/// second request gets EOF/reset — fails.
#[tokio::test]
async fn seed_scenario_body_after_response() {
    let server = serve(DrainBodyLayer::default(), ignore_or_consume).await;
    let mut client = Client::connect(server.addr).await;

    client.send(post_head("/ignore", 7)).await;
    assert_kept(&client.response().await, "ignored");
    client.send("foo=bar").await;
    client.send(post("/consume", b"a=b&x=y")).await;
    assert_kept(&client.response().await, "consumed 7");

    assert_eq!(server.served(), ["POST /ignore", "POST /consume"]);
}

/// 64 KiB ignored body (Content-Length), written concurrently with reading
/// the response: the response has no `Connection: close` and the next
/// request is served on the same socket.
/// Plain hyper: reads at most one buffer of the rest and closes — fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_64k_content_length_keeps_connection() {
    let server = serve(DrainBodyLayer::default(), ignore_or_consume).await;
    let mut client = Client::connect(server.addr).await;

    let writer = client.send_in_background(post("/ignore", &[b'x'; 64 * KIB]));
    assert_kept(&client.response().await, "ignored");
    step("body write", writer).await.unwrap().unwrap();
    client.send(post("/consume", b"a=b&x=y")).await;
    assert_kept(&client.response().await, "consumed 7");
    assert_eq!(server.served(), ["POST /ignore", "POST /consume"]);
}

/// Same with a chunked 64 KiB body (4 KiB chunks).
/// Plain hyper: closes after the response — fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_64k_chunked_keeps_connection() {
    let server = serve(DrainBodyLayer::default(), ignore_or_consume).await;
    let mut client = Client::connect(server.addr).await;

    let mut req = chunked_head("/ignore").into_bytes();
    req.extend(chunked(&[b'x'; 64 * KIB], 4 * KIB));
    let writer = client.send_in_background(req);
    assert_kept(&client.response().await, "ignored");
    step("body write", writer).await.unwrap().unwrap();
    client.send(post("/consume", b"a=b&x=y")).await;
    assert_kept(&client.response().await, "consumed 7");
    assert_eq!(server.served(), ["POST /ignore", "POST /consume"]);
}

/// The handler reads one 10-byte frame, then drops the body and answers.
/// The rest (sent after the response) is drained; the connection is reused.
/// Plain hyper: nothing more buffered when the body is dropped → closes —
/// fails.
#[tokio::test]
async fn partly_read_body_is_drained() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = serve(DrainBodyLayer::default(), move |req| {
        let tx = tx.clone();
        async move {
            if req.uri().path() != "/read10" {
                return ignore_or_consume(req).await;
            }
            let mut body = req.into_body();
            let frame = body.frame().await.unwrap().unwrap();
            tx.send(frame.into_data().unwrap().len()).unwrap();
            drop(body);
            text("read some")
        }
    })
    .await;
    let mut client = Client::connect(server.addr).await;

    let mut first = post_head("/read10", 20_000).into_bytes();
    first.extend_from_slice(&[b'a'; 10]);
    client.send(first).await;
    assert_kept(&client.response().await, "read some");
    assert_eq!(step("handler report", rx.recv()).await, Some(10));

    client.send([b'b'; 20_000 - 10]).await;
    client.send(post("/consume", b"a=b&x=y")).await;
    assert_kept(&client.response().await, "consumed 7");
    assert_eq!(server.served(), ["POST /read10", "POST /consume"]);
}

/// Slow drip: the response is read before the first body byte is sent
/// (so it does not wait for the body), then 20 bytes are sent one every
/// 50 ms (pacing is the scenario, not synchronisation), well within the 3 s
/// deadline; the next request is served on the same connection.
/// Plain hyper: closes right after the response — fails.
#[tokio::test]
async fn slow_drip_body_is_drained_within_deadline() {
    let layer = DrainBodyLayer::default().timeout(Duration::from_secs(3));
    let server = serve(layer, ignore_or_consume).await;
    let mut client = Client::connect(server.addr).await;

    let start = Instant::now();
    client.send(post_head("/ignore", 20)).await;
    assert_kept(&client.response().await, "ignored");
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        client.send("z").await;
    }
    client.send(post("/consume", b"a=b&x=y")).await;
    assert_kept(&client.response().await, "consumed 7");
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(server.served(), ["POST /ignore", "POST /consume"]);
}

/// Two pipelined requests in one write, the first with a 100 KiB body the
/// handler ignores: both are answered, in order, on the one connection.
/// Plain hyper: the first body is not all buffered when dropped, so it
/// closes after the first response and never answers `/second` — fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_answered_in_order() {
    let server = serve(DrainBodyLayer::default(), |req| async move {
        match req.uri().path() {
            "/second" => text("second"),
            _ => text("first"),
        }
    })
    .await;
    let mut client = Client::connect(server.addr).await;

    let mut bytes = post("/first", &[b'p'; 100 * KIB]);
    bytes.extend(get("/second").as_bytes());
    let writer = client.send_in_background(bytes);
    assert_kept(&client.response().await, "first");
    assert_kept(&client.response().await, "second");
    step("write", writer).await.unwrap().unwrap();
    assert_eq!(server.served(), ["POST /first", "GET /second"]);
}

/// The handler moves the body into a task and answers at once. In both
/// modes (waiting mode included, with a 2 s deadline) the response is not
/// held back (arrives before the body's tail is even sent), the task still
/// reads the whole body, and the connection is reused.
/// Plain hyper behaves the same (hyper keeps feeding a body someone holds):
/// this guards against the layer stealing or waiting for a held body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_moved_into_task_is_left_to_it() {
    for wait in [false, true] {
        let layer = DrainBodyLayer::default()
            .timeout(Duration::from_secs(2))
            .wait_for_drain(wait);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let server = serve(layer, move |req| {
            let tx = tx.clone();
            async move {
                if req.uri().path() != "/spawn" {
                    return ignore_or_consume(req).await;
                }
                let body = req.into_body();
                tokio::spawn(async move { tx.send(read_all(body).await.len()).unwrap() });
                text("spawned")
            }
        })
        .await;
        let mut client = Client::connect(server.addr).await;

        let start = Instant::now();
        let mut first = post_head("/spawn", 10_000).into_bytes();
        first.extend_from_slice(&[b'a'; 100]);
        client.send(first).await;
        assert_kept(&client.response().await, "spawned");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "response delayed ({:?}, wait_for_drain={wait})",
            start.elapsed()
        );
        client.send([b'b'; 10_000 - 100]).await;
        // hyper keeps a Content-Length body's sender open after its last byte
        // until the next request head arrives (or the connection ends), so
        // `collect()` in the task only completes once the next request is in.
        client.send(post("/consume", b"a=b&x=y")).await;
        assert_kept(&client.response().await, "consumed 7");
        assert_eq!(step("task report", rx.recv()).await, Some(10_000));
    }
}

/// A `Connection: close` request with a 64 KiB body the handler ignores and
/// a 1 MiB response. The client sends the whole request, waits 200 ms
/// (pacing: the server answers and would close meanwhile), then reads: it
/// gets the whole response and a clean EOF, because the layer drains the
/// body (within the limit) before hyper closes.
/// Plain hyper: drops the socket with most of the body unread → the kernel
/// sends RST and discards the unsent tail of the response — fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_request_gets_whole_response() {
    let server = serve(DrainBodyLayer::default(), ignore_or_consume).await;
    let mut client = Client::connect(server.addr).await;
    let head = format!(
        "POST /big HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        64 * KIB
    );
    let res = big_response_then_clean_eof(&mut client, &head).await;
    assert!(res.has_close(), "{:?}", res.headers);
}
