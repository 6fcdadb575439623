//! tower-http layers in front of a handler, with `DrainBodyLayer` and `LingeringIo`, on a
//! real hyper HTTP/1 server over `LingeringListener` and a raw TCP client.
//!
//! What works: `DrainBodyLayer` **outermost** (first in `ServiceBuilder`), above
//! `RequestBodyLimitLayer`, `TimeoutLayer`, `RequestDecompressionLayer` and `TraceLayer`.
//! Layers that answer without calling the handler (413 on `Content-Length`, 415 on an
//! unknown encoding) or that answer while the handler is still running (408) only leave
//! the body behind where an outer `DrainBodyLayer` can see it. Tests named `*_inside_*`
//! pin down what goes wrong in the other order.
//!
//! "Fails without the crate": plain hyper closes after any early answer whose body has
//! not fully arrived (the `*_is_drained_*` tests would see EOF instead of the second
//! response), and on Linux a close with the upload still arriving resets it (asserted in
//! `body_limit_413_to_a_large_upload_arrives_whole` against a plain `TcpListener`).

use std::convert::Infallible;
use std::future::{pending, Future};
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use linger::{DrainBodyLayer, LingerGroup, LingeringListener};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tower::{Service, ServiceBuilder};
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::common::{get, http1, post_head, step, upload_over, Client, Closed, Parsed, Upload};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `RequestBodyLimitLayer`'s limit in these tests.
const BODY_LIMIT: usize = 1024;
/// `TimeoutLayer`'s timeout: short, the handlers that hit it never finish.
const HANDLER_TIMEOUT: Duration = Duration::from_millis(200);
/// A large upload: far beyond the drain limit, so only lingering can save the response.
const LARGE_UPLOAD: usize = 16 * 1024 * 1024;

fn drain() -> DrainBodyLayer {
    DrainBodyLayer::default().timeout(Duration::from_secs(3))
}

/// The handler, generic over the body type so that it works below any layer order.
///
/// - `/read` reads the whole body: `read <n>`, or 413 when the body fails (a `Limited`
///   body over its limit);
/// - `/hang` drops the body and never answers;
/// - `/hold` reads one frame, then keeps the body and never answers;
/// - `/next` answers `next`;
/// - anything else drops the body and answers `ignored`.
#[derive(Clone, Copy)]
struct App;

impl<B> Service<Request<B>> for App
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        // Pinned: not every body type the layers produce is `Unpin`.
        let mut body = Box::pin(request.into_body());
        Box::pin(async move {
            let response = match path.as_str() {
                "/read" => match body.collect().await {
                    Ok(all) => text(StatusCode::OK, format!("read {}", all.to_bytes().len())),
                    Err(_) => text(StatusCode::PAYLOAD_TOO_LARGE, "too large".to_owned()),
                },
                "/hang" => {
                    drop(body);
                    pending().await
                }
                "/hold" => {
                    let _ = body.frame().await;
                    // `body` lives until the future is dropped.
                    pending().await
                }
                "/next" => text(StatusCode::OK, "next".to_owned()),
                _ => {
                    drop(body);
                    text(StatusCode::OK, "ignored".to_owned())
                }
            };
            Ok(response)
        })
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// Serves `service` over HTTP/1 on 127.0.0.1:0, accepting through a `LingeringListener`
/// (`lingering`) or a plain `TcpListener`.
async fn serve<S, B>(service: S, lingering: bool) -> (SocketAddr, LingerGroup)
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let group = LingerGroup::default();
    if lingering {
        let listener = LingeringListener::with_group(tcp, group.clone());
        tokio::spawn(async move {
            while let Ok((io, _)) = listener.accept().await {
                spawn_connection(io, service.clone());
            }
        });
    } else {
        tokio::spawn(async move {
            while let Ok((io, _)) = tcp.accept().await {
                spawn_connection(io, service.clone());
            }
        });
    }
    (addr, group)
}

fn spawn_connection<I, S, B>(io: I, service: S)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let connection = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    // Resets and early closes are part of the scenarios.
    tokio::spawn(async move {
        let _ = connection.await;
    });
}

/// Sends `head`, reads the early response, then sends the rest of the body and a
/// `GET /next`, and expects `next` on the same connection: the drain read the body.
async fn early_answer_then_reuse(
    addr: SocketAddr,
    head: &str,
    rest: &[u8],
    status: StatusCode,
) -> Parsed {
    let mut client = Client::connect(addr).await;
    client.send(head).await;
    let early = client.response().await;
    assert_eq!(early.status, status.as_u16(), "{early:?}");
    assert!(!early.has_close(), "{early:?}");
    client.send(rest).await;
    client.send(get("/next")).await;
    let next = client.response().await;
    assert_eq!(next.status, 200, "{next:?}");
    assert_eq!(next.body_str(), "next");
    early
}

/// Writes `head` and `body_len` bytes of body, then FIN, while reading the response to
/// the end.
async fn upload(addr: SocketAddr, head: String, body_len: usize) -> Upload {
    let stream = step("connect", TcpStream::connect(addr)).await.unwrap();
    upload_over(stream, head.into_bytes(), body_len).await
}

fn head_of(raw: &[u8]) -> String {
    let end = http1::find(raw, b"\r\n\r\n").expect("a whole response head");
    String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase()
}

async fn wait_for_peer_eof(group: &LingerGroup) {
    step("linger ends at the client's FIN", async {
        while group.stats().peer_eof == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

// ------------------------------------------------------------ RequestBodyLimitLayer --

/// 16 MiB announced to a 1 KiB `RequestBodyLimitLayer`: the 413 (with `Connection: close`,
/// from the drain's over-limit check) arrives whole, the client sends its whole upload
/// and reads a clean EOF. Without `LingeringIo` hyper closes with the upload still
/// arriving and Linux resets the connection: the control run sees the reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limit_413_to_a_large_upload_arrives_whole() {
    let stack = || {
        ServiceBuilder::new()
            .layer(drain())
            .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
            .service(App)
    };
    let head = post_head("/read", LARGE_UPLOAD);

    let (plain, _) = serve(stack(), false).await;
    let seen = upload(plain, head.clone(), LARGE_UPLOAD).await;
    assert!(seen.reset_seen(), "plain TCP: expected a reset");

    let (addr, group) = serve(stack(), true).await;
    let raw = upload(addr, head, LARGE_UPLOAD).await.clean();
    let response_head = head_of(&raw);
    assert!(response_head.starts_with("http/1.1 413"), "{response_head}");
    assert!(
        response_head.contains("connection: close"),
        "{response_head}"
    );
    wait_for_peer_eof(&group).await;
    assert!(group.stats().bytes_discarded > 0, "{:?}", group.stats());
}

/// A 4 KiB body announced to the 1 KiB limit, sent only after the 413: the drain reads
/// it and the connection serves the next request. Plain hyper closes after the 413.
#[tokio::test]
async fn body_limit_413_small_body_is_drained_and_the_connection_reused() {
    let stack = ServiceBuilder::new()
        .layer(drain())
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .service(App);
    let (addr, _) = serve(stack, true).await;
    let early = early_answer_then_reuse(
        addr,
        &post_head("/read", 4096),
        &[b'x'; 4096],
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert_eq!(early.body_str(), "length limit exceeded");
}

/// `DrainBodyLayer` inside `RequestBodyLimitLayer`: the 413 for a `Content-Length` above
/// the limit never reaches the drain, so hyper closes after it (cleanly, thanks to the
/// listener) and the client must reconnect.
#[tokio::test]
async fn drain_inside_body_limit_does_not_see_the_413() {
    let stack = ServiceBuilder::new()
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(drain())
        .service(App);
    let (addr, _) = serve(stack, true).await;
    let mut client = Client::connect(addr).await;
    client.send(post_head("/read", 4096)).await;
    let early = client.response().await;
    assert_eq!(early.status, 413, "{early:?}");
    assert_eq!(client.closed().await, Closed::Eof);
}

/// A chunked upload (no `Content-Length`) over the limit: the handler's read fails inside
/// `Limited`, it answers 413, and the outer drain reads the rest of the chunks, so the
/// connection is reused. Plain hyper closes after the 413.
#[tokio::test]
async fn body_limit_chunked_overflow_is_drained_when_the_drain_is_outermost() {
    let stack = ServiceBuilder::new()
        .layer(drain())
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .service(App);
    let (addr, _) = serve(stack, true).await;
    let (first, rest) = chunked_halves();
    let early = early_answer_then_reuse(addr, &first, &rest, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(early.body_str(), "too large");
}

/// The same upload with the drain inside the limit: the handler's body (`DrainBody`
/// around `Limited`) failed, which the drain refuses to read past; the 413 says
/// `Connection: close` and the connection ends.
#[tokio::test]
async fn drain_inside_body_limit_closes_after_a_chunked_overflow() {
    let stack = ServiceBuilder::new()
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(drain())
        .service(App);
    let (addr, _) = serve(stack, true).await;
    let (first, _rest) = chunked_halves();
    let mut client = Client::connect(addr).await;
    client.send(first).await;
    let early = client.response().await;
    assert_eq!(early.status, 413, "{early:?}");
    assert!(early.has_close(), "{early:?}");
    assert_eq!(client.closed().await, Closed::Eof);
}

/// A chunked `POST /read`: head plus a first 2 KiB chunk (over the 1 KiB limit), and the
/// rest: a second chunk and the last chunk.
fn chunked_halves() -> (String, Vec<u8>) {
    let chunk = "y".repeat(2048);
    let first = format!(
        "POST /read HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n{chunk}\r\n"
    );
    let rest = format!("800\r\n{chunk}\r\n0\r\n\r\n").into_bytes();
    (first, rest)
}

// --------------------------------------------------------------------- TimeoutLayer --

fn timeout_layer() -> TimeoutLayer {
    TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, HANDLER_TIMEOUT)
}

/// The handler dropped the body and hangs; `TimeoutLayer` answers 408. The body sent
/// after the 408 is drained and the connection reused. Plain hyper closes after the 408.
#[tokio::test]
async fn timeout_408_body_is_drained_and_the_connection_reused() {
    let stack = ServiceBuilder::new()
        .layer(drain())
        .layer(timeout_layer())
        .service(App);
    let (addr, _) = serve(stack, true).await;
    early_answer_then_reuse(
        addr,
        &post_head("/hang", 2048),
        &[b'x'; 2048],
        StatusCode::REQUEST_TIMEOUT,
    )
    .await;
}

/// `DrainBodyLayer` inside `TimeoutLayer`: the timeout abandons the drain's response
/// future along with the handler, so nothing drains and hyper closes after the 408.
#[tokio::test]
async fn drain_inside_timeout_is_abandoned_with_the_handler() {
    let stack = ServiceBuilder::new()
        .layer(timeout_layer())
        .layer(drain())
        .service(App);
    let (addr, _) = serve(stack, true).await;
    let mut client = Client::connect(addr).await;
    client.send(post_head("/hang", 2048)).await;
    let early = client.response().await;
    assert_eq!(early.status, 408, "{early:?}");
    assert_eq!(client.closed().await, Closed::Eof);
}

/// The handler is still holding the body (mid-upload) when `TimeoutLayer` answers: tower-
/// http's `Timeout` returns the 408 before it drops the handler, so the drain sees a body
/// someone still holds. When the handler is dropped, the 16 MiB left is above the drain
/// limit, so it is not drained and hyper closes with the upload arriving; `LingeringIo` is
/// what keeps that close from resetting the 408. (A remainder within the limit would be
/// drained from that drop: see tests/drain/edges.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_while_the_handler_holds_the_body_closes_cleanly() {
    let stack = ServiceBuilder::new()
        .layer(drain())
        .layer(timeout_layer())
        .service(App);
    let (addr, group) = serve(stack, true).await;
    let raw = upload(addr, post_head("/hold", LARGE_UPLOAD), LARGE_UPLOAD)
        .await
        .clean();
    let response_head = head_of(&raw);
    assert!(response_head.starts_with("http/1.1 408"), "{response_head}");
    wait_for_peer_eof(&group).await;
}

// ----------------------------------------------------------------------- TraceLayer --

/// `TraceLayer` passes the request body through unchanged: in either position the body
/// the handler ignored is drained and the connection reused.
#[tokio::test]
async fn trace_layer_in_either_position_keeps_the_drain() {
    let outside = ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        .layer(drain())
        .service(App);
    let inside = ServiceBuilder::new()
        .layer(drain())
        .layer(TraceLayer::new_for_http())
        .service(App);
    let (outside, _) = serve(outside, true).await;
    let (inside, _) = serve(inside, true).await;
    for addr in [outside, inside] {
        let early = early_answer_then_reuse(
            addr,
            &post_head("/ignore", 5000),
            &[b'x'; 5000],
            StatusCode::OK,
        )
        .await;
        assert_eq!(early.body_str(), "ignored");
    }
}

// -------------------------------------------------------- RequestDecompressionLayer --

/// 4 MiB of zeros, gzipped (a few KiB): a small upload that inflates far beyond the
/// drain limit.
fn gzip_bomb() -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&vec![0u8; 4 * 1024 * 1024]).unwrap();
    encoder.finish().unwrap()
}

fn gzip_head(path: &str, len: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Encoding: gzip\r\nContent-Length: {len}\r\n\r\n"
    )
}

/// The drain outside `RequestDecompressionLayer` reads the raw, compressed bytes of a
/// gzip body the handler ignores: nothing is inflated, the limit counts what is on the
/// wire, and the connection is reused.
#[tokio::test]
async fn gzip_body_the_handler_ignores_is_drained_compressed() {
    let stack = ServiceBuilder::new()
        .layer(drain())
        .layer(RequestDecompressionLayer::new())
        .service(App);
    let (addr, _) = serve(stack, true).await;
    let gzip = gzip_bomb();
    assert!(gzip.len() < 64 * 1024, "{}", gzip.len());
    let early = early_answer_then_reuse(
        addr,
        &gzip_head("/ignore", gzip.len()),
        &gzip,
        StatusCode::OK,
    )
    .await;
    assert_eq!(early.body_str(), "ignored");
}

/// The drain inside `RequestDecompressionLayer` gets the inflated body (the layer also
/// removes `Content-Length`): it inflates what it throws away and gives up past its
/// 256 KiB limit, so hyper closes the connection. Part of the gzip stream is held back
/// so that the give-up, not the end of the raw body, decides.
#[tokio::test]
async fn drain_inside_decompression_inflates_and_gives_up() {
    let stack = ServiceBuilder::new()
        .layer(RequestDecompressionLayer::new())
        .layer(drain())
        .service(App);
    let (addr, _) = serve(stack, true).await;
    let gzip = gzip_bomb();
    let mut client = Client::connect(addr).await;
    client.send(gzip_head("/ignore", gzip.len())).await;
    let early = client.response().await;
    assert_eq!(early.status, 200, "{early:?}");
    client.send(&gzip[..gzip.len() * 3 / 4]).await;
    assert_eq!(client.closed().await, Closed::Eof);
}

/// `RequestDecompressionLayer` answers 415 to an encoding it does not know without
/// calling the handler; the outer drain reads the body and the connection is reused.
#[tokio::test]
async fn unsupported_encoding_415_is_drained() {
    let stack = ServiceBuilder::new()
        .layer(drain())
        .layer(RequestDecompressionLayer::new())
        .service(App);
    let (addr, _) = serve(stack, true).await;
    let head =
        "POST /ignore HTTP/1.1\r\nHost: test\r\nContent-Encoding: x-unknown\r\nContent-Length: 3000\r\n\r\n";
    early_answer_then_reuse(
        addr,
        head,
        &[b'z'; 3000],
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
}
