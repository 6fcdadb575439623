//! HTTP/1.0, HTTP/2, upgrades and a real client (curl).
//!
//! "Fails on plain hyper" was checked with `LINGER_TEST_WITHOUT_LAYER=1`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::Output;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use linger::DrainBodyLayer;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::common::*;

const KIB: usize = 1024;

/// HTTP/1.0 without keep-alive, 64 KiB body the handler ignores, 1 MiB
/// response read only after a 200 ms pause: an `HTTP/1.0 200` that is not
/// keep-alive, all of the body, then a clean EOF (the layer drained the
/// request body, within the limit, before hyper closed).
/// Plain hyper: closes with the request body unread → RST discards the
/// unsent tail of the response — fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_ignored_body_then_clean_close() {
    let server = serve(DrainBodyLayer::default(), ignore_or_consume).await;
    let mut client = Client::connect(server.addr).await;

    let head = format!(
        "POST /big HTTP/1.0\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
        64 * KIB
    );
    let res = big_response_then_clean_eof(&mut client, &head).await;
    assert_eq!(res.version, "HTTP/1.0");
    assert!(
        !res.header("connection")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("keep-alive")),
        "{res:?}"
    );
}

/// HTTP/1.0 with `Connection: keep-alive`, body sent after the response:
/// the response says `keep-alive`, the layer drains the body and a second
/// HTTP/1.0 request is answered on the same connection.
/// Plain hyper: closes after the first response — fails.
#[tokio::test]
async fn http10_keep_alive_ignored_body_is_drained() {
    let server = serve(DrainBodyLayer::default(), ignore_or_consume).await;
    let mut client = Client::connect(server.addr).await;
    let head = |path: &str, len: usize| {
        format!(
            "POST {path} HTTP/1.0\r\nHost: test\r\nConnection: keep-alive\r\n\
             Content-Length: {len}\r\n\r\n"
        )
    };

    client.send(head("/ignore", 5000)).await;
    let res = client.response().await;
    assert_ok(&res, "ignored");
    assert_eq!(res.version, "HTTP/1.0");
    assert_eq!(res.header("connection"), ["keep-alive"], "{res:?}");
    client.send([b'x'; 5000]).await;
    client.send(head("/consume", 7) + "a=b&x=y").await;
    let res = client.response().await;
    assert_ok(&res, "consumed 7");
    assert_eq!(res.header("connection"), ["keep-alive"], "{res:?}");
}

type H2Body = UnsyncBoxBody<Bytes, Infallible>;

/// A request body fed through a channel; it ends when the sender is dropped.
struct ChannelBody(mpsc::UnboundedReceiver<Bytes>);

fn channel_body() -> (mpsc::UnboundedSender<Bytes>, ChannelBody) {
    let (tx, rx) = mpsc::unbounded_channel();
    (tx, ChannelBody(rx))
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|data| data.map(|d| Ok(http_body::Frame::data(d))))
    }
}

/// HTTP/2 (prior knowledge, real hyper client), waiting mode with a 2 s
/// deadline: a request whose body never ends is answered at once (the layer
/// leaves HTTP/2 alone: nothing to wait for), the layer adds no
/// `Connection` header (checked as the response leaves the layer, since
/// hyper's HTTP/2 encoder would strip it), and the next request on the same
/// HTTP/2 connection works.
/// Plain hyper behaves the same: guards against the layer treating HTTP/2
/// like HTTP/1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_left_alone() {
    let layer = DrainBodyLayer::new(1024)
        .timeout(Duration::from_secs(2))
        .wait_for_drain(true);
    let server = serve_with(Proto::Http2, layer, ignore_or_consume).await;
    let tcp = step("connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    let (mut send, conn) = step(
        "h2 handshake",
        hyper::client::conn::http2::handshake::<_, _, H2Body>(
            TokioExecutor::new(),
            TokioIo::new(tcp),
        ),
    )
    .await
    .unwrap();
    tokio::spawn(conn);

    // A body far above the limit that never ends (the sender stays alive).
    let (body_tx, body) = channel_body();
    body_tx.send(Bytes::from(vec![b'x'; 4 * KIB])).unwrap();
    let req = Request::post(format!("http://{}/ignore", server.addr))
        .header(header::CONTENT_LENGTH, 1024 * KIB)
        .body(body.boxed_unsync())
        .unwrap();
    let start = Instant::now();
    let res = step("h2 first request", send.send_request(req))
        .await
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get(header::CONNECTION).is_none());
    let bytes = step("h2 body", res.into_body().collect()).await.unwrap();
    assert_eq!(bytes.to_bytes(), "ignored");

    step("h2 ready", send.ready()).await.unwrap();
    let req = Request::post(format!("http://{}/consume", server.addr))
        .body(Full::new(Bytes::from_static(b"a=b&x=y")).boxed_unsync())
        .unwrap();
    let res = step("h2 second request", send.send_request(req))
        .await
        .unwrap();
    let bytes = step("h2 body", res.into_body().collect()).await.unwrap();
    assert_eq!(bytes.to_bytes(), "consumed 7");

    assert_eq!(server.connection_headers(), [None, None]);
    drop(body_tx);
}

/// Handler that accepts `Upgrade: echo` (101) and `CONNECT` (200) and echoes
/// the upgraded stream. It needs the request's extensions (hyper's
/// `OnUpgrade`), which the layer must keep.
async fn echo_upgrade(mut req: TestRequest) -> TestResponse {
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = on_upgrade.await.expect("upgrade");
        let (mut rd, mut wr) = tokio::io::split(TokioIo::new(upgraded));
        let _ = tokio::io::copy(&mut rd, &mut wr).await;
    });
    if req.method() == http::Method::CONNECT {
        return Response::new(Full::default());
    }
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "echo")
        .body(Full::default())
        .unwrap()
}

/// Sends `request` through the layer (waiting mode, to catch any waiting on
/// the body), expects `status`, then checks that the taken-over stream echoes.
async fn assert_tunnel_echoes(request: &str, status: u16) {
    let layer = DrainBodyLayer::default()
        .timeout(Duration::from_secs(2))
        .wait_for_drain(true);
    let server = serve(layer, echo_upgrade).await;
    let mut client = Client::connect(server.addr).await;

    client.send(request).await;
    let res = client.response_head().await;
    assert_eq!(res.status, status, "{res:?}");
    assert!(!res.has_close(), "{res:?}");
    client.send("bytes over the taken-over stream").await;
    assert_eq!(
        client.read_exact_raw(32).await,
        b"bytes over the taken-over stream"
    );
}

/// `Upgrade` request answered with 101 passes through the layer and the
/// upgraded stream echoes. Plain hyper: same (guard).
#[tokio::test]
async fn upgrade_101_passes_through() {
    assert_tunnel_echoes(
        "GET /up HTTP/1.1\r\nHost: test\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n",
        101,
    )
    .await;
}

/// `CONNECT` answered with 200 passes through and the tunnel echoes.
/// Plain hyper: same (guard).
#[tokio::test]
async fn connect_tunnel_passes_through() {
    assert_tunnel_echoes(
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        200,
    )
    .await;
}

/// The same two hand-overs for requests that carry a (small, already sent)
/// body, which the layer now watches: the `101` and the `200` to `CONNECT`
/// still pass straight through in waiting mode, and the tunnels echo.
/// On main: same (those requests were skipped for their `Upgrade` header or
/// method); guards the decision taken after the response.
#[tokio::test]
async fn hand_overs_with_a_body_pass_through() {
    assert_tunnel_echoes(
        "POST /up HTTP/1.1\r\nHost: test\r\nConnection: upgrade\r\nUpgrade: echo\r\n\
         Content-Length: 5\r\n\r\nhello",
        101,
    )
    .await;
    assert_tunnel_echoes(
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\
         Content-Length: 5\r\n\r\nhello",
        200,
    )
    .await;
}

/// Runs curl with two transfers on `per_transfer` options: a 64 KiB POST to `/ignore`,
/// then, with `--next`, a small POST to `/consume`; returns its successful output.
async fn curl_ignore_then_consume(addr: SocketAddr, per_transfer: &[&str]) -> Output {
    let body = std::env::temp_dir().join(format!("linger-curl-{}.bin", addr.port()));
    std::fs::write(&body, vec![b'c'; 64 * KIB]).unwrap();
    let base = format!("http://{addr}");
    let out = step(
        "curl",
        tokio::process::Command::new("curl")
            .args(per_transfer)
            .arg("--data-binary")
            .arg(format!("@{}", body.display()))
            .arg(format!("{base}/ignore"))
            .arg("--next")
            .args(per_transfer)
            .args(["--data-binary", "a=b&x=y"])
            .arg(format!("{base}/consume"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    let _ = std::fs::remove_file(&body);
    assert!(out.status.success(), "curl failed: {out:?}");
    out
}

/// Real client: curl sends two POSTs with `--next` (the first a 64 KiB body
/// the handler ignores); the second transfer reuses the connection
/// (`num_connects` 1 then 0). Skipped if curl is not on PATH.
/// Plain hyper: closes after the first response, curl reconnects — fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reuses_connection() {
    if !curl_available() {
        return;
    }
    let server = serve(DrainBodyLayer::default(), ignore_or_consume).await;
    let out = curl_ignore_then_consume(
        server.addr,
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{num_connects}\n",
            "-H",
            "Expect:",
        ],
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n0\n");
    assert_eq!(server.served(), ["POST /ignore", "POST /consume"]);
}

/// What `curl --http2 http://…` sends with a request: an offer to switch to
/// HTTP/2 that the server may ignore.
const H2C_OFFER: &str = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
                         HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n";

/// A POST offering `Upgrade: h2c` with a 64 KiB body the handler ignores and
/// answers with 200 (hyper switches only on 101), and a pipelined `GET`
/// after it, all in one background write: both are answered, in order, on
/// the one connection; the answer to the first does not say close.
/// On main: the layer skipped every request with `Upgrade`, hyper closed
/// after the first response and `/second` was never answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_offer_answered_without_101_is_drained() {
    let server = serve(DrainBodyLayer::default(), |req| async move {
        match req.uri().path() {
            "/second" => text("second"),
            _ => text("first"),
        }
    })
    .await;
    let mut client = Client::connect(server.addr).await;

    let mut bytes = format!(
        "POST /first HTTP/1.1\r\nHost: test\r\n{H2C_OFFER}Content-Length: {}\r\n\r\n",
        64 * KIB
    )
    .into_bytes();
    bytes.extend_from_slice(&[b'u'; 64 * KIB]);
    bytes.extend(get("/second").as_bytes());
    let writer = client.send_in_background(bytes);
    let res = client.response().await;
    assert_ok(&res, "first");
    assert!(!res.has_close(), "{res:?}");
    assert_ok(&client.response().await, "second");
    step("write", writer).await.unwrap().unwrap();
    assert_eq!(server.served(), ["POST /first", "GET /second"]);
}

/// HTTP/1.0 has no upgrades (hyper ignores `Upgrade` there): a keep-alive
/// HTTP/1.0 POST with `Upgrade: h2c` and a body sent after the response is
/// drained like any other, and the next HTTP/1.0 request is answered on the
/// same connection.
/// On main: skipped for its `Upgrade` header; hyper closed after the first
/// response.
#[tokio::test]
async fn http10_upgrade_header_is_an_ordinary_request() {
    let server = serve(DrainBodyLayer::default(), ignore_or_consume).await;
    let mut client = Client::connect(server.addr).await;

    client
        .send(
            "POST /ignore HTTP/1.0\r\nHost: test\r\nConnection: keep-alive, Upgrade\r\n\
             Upgrade: h2c\r\nContent-Length: 5000\r\n\r\n",
        )
        .await;
    let res = client.response().await;
    assert_ok(&res, "ignored");
    assert_eq!(res.header("connection"), ["keep-alive"], "{res:?}");
    client.send([b'x'; 5000]).await;
    client
        .send(
            "POST /consume HTTP/1.0\r\nHost: test\r\nConnection: keep-alive\r\n\
             Content-Length: 7\r\n\r\na=b&x=y",
        )
        .await;
    assert_ok(&client.response().await, "consumed 7");
}

/// `CONNECT` refused with 403 (no tunnel) while its 5000-byte body arrives
/// after the answer: hyper treats the body as any other, so the layer drains
/// it and the next request is answered on the same connection.
/// On main: the layer skipped every `CONNECT`, hyper closed after the 403.
#[tokio::test]
async fn connect_refused_body_is_drained() {
    let server = serve(DrainBodyLayer::default(), |req| async move {
        if req.method() == http::Method::CONNECT {
            let mut res = text("no tunnel");
            *res.status_mut() = StatusCode::FORBIDDEN;
            return res;
        }
        ignore_or_consume(req).await
    })
    .await;
    let mut client = Client::connect(server.addr).await;

    client
        .send(
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\
             Content-Length: 5000\r\n\r\n",
        )
        .await;
    let res = client.response().await;
    assert_eq!(res.status, 403, "{res:?}");
    assert_eq!(res.body_str(), "no tunnel");
    assert!(!res.has_close(), "{res:?}");
    client.send([b'x'; 5000]).await;
    client.send(post("/consume", b"a=b&x=y")).await;
    assert_ok(&client.response().await, "consumed 7");
}

/// Real client: `curl --http2` over cleartext offers `Upgrade: h2c` with
/// each request; a POST of 64 KiB to a handler that ignores it, then a
/// second POST with `--next`: the server answers HTTP/1.1 (hyper's HTTP/1
/// server never takes the offer) and curl reuses the connection
/// (`num_connects` 1 then 0). Skipped if curl is not on PATH.
/// On main: the layer skipped the request for its `Upgrade` header, hyper
/// closed, and curl connected again (`1 1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_http2_upgrade_offer_reuses_connection() {
    if !curl_available() {
        return;
    }
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let server = serve(DrainBodyLayer::default(), move |req| {
        let seen_tx = seen_tx.clone();
        async move {
            let _ = seen_tx.send(req.headers().get(header::UPGRADE).cloned());
            ignore_or_consume(req).await
        }
    })
    .await;
    let out = curl_ignore_then_consume(
        server.addr,
        &[
            "--http2",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{num_connects} %{http_version}\n",
            "-H",
            "Expect:",
        ],
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1 1.1\n0 1.1\n");
    assert_eq!(server.served(), ["POST /ignore", "POST /consume"]);
    // The scenario needs curl to have made the offer.
    let first_upgrade = step("first request seen", seen.recv()).await.unwrap();
    assert_eq!(
        first_upgrade.as_ref().map(|v| v.as_bytes()),
        Some(&b"h2c"[..])
    );
}
