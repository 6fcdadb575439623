//! axum's `DefaultBodyLimit` with `DrainBodyLayer` and `axum::serve(LingeringListener)`
//! (needs `--features axum`).
//!
//! `DefaultBodyLimit` only tells the body extractors their limit: `String`, `Bytes`,
//! `Json`, `Form` read up to it, then reject with 413 and drop the rest of the body. The
//! drain then takes over: within its own limit the connection is reused; beyond it the
//! 413 says `Connection: close` and the listener's staged close keeps the upload from
//! being reset. `DrainBodyLayer` may come before or after `DefaultBodyLimit` in
//! `Router::layer` calls; with tower-http's `RequestBodyLimitLayer` it must be added
//! after it (axum's `.layer()` wraps outwards).

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::Router;
use linger::{DrainBodyLayer, LingerGroup, LingeringListener};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{get, post_head, step, upload_over, Client, Closed, Upload};

const BODY_LIMIT: usize = 1024;
const LARGE_UPLOAD: usize = 16 * 1024 * 1024;

fn drain() -> DrainBodyLayer {
    DrainBodyLayer::default().timeout(Duration::from_secs(3))
}

/// `/upload` reads the body as a `String` (so the limit applies), `/next` answers `next`.
fn routes() -> Router {
    Router::new()
        .route(
            "/upload",
            post(|body: String| async move { format!("read {}", body.len()) }),
        )
        .route("/next", axum::routing::get(|| async { "next" }))
}

/// The limit outside the drain (`DefaultBodyLimit` added last).
fn drain_then_limit() -> Router {
    routes()
        .layer(drain())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

/// The drain outside the limit.
fn limit_then_drain() -> Router {
    routes()
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(drain())
}

async fn serve(app: Router, lingering: bool) -> (SocketAddr, LingerGroup) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let group = LingerGroup::default();
    if lingering {
        let listener = LingeringListener::with_group(tcp, group.clone());
        tokio::spawn(axum::serve(listener, app).into_future());
    } else {
        tokio::spawn(axum::serve(tcp, app).into_future());
    }
    (addr, group)
}

/// Writes a 16 MiB upload to `/upload`, then FIN, while reading the response to the end.
async fn upload(addr: SocketAddr) -> Upload {
    let stream = step("connect", TcpStream::connect(addr)).await.unwrap();
    let head = post_head("/upload", LARGE_UPLOAD).into_bytes();
    upload_over(stream, head, LARGE_UPLOAD).await
}

/// A 16 MiB upload against a 1 KiB `DefaultBodyLimit`: the extractor's 413 (marked
/// `Connection: close` by the drain, which will not read 16 MiB) arrives whole, the
/// client sends everything and reads a clean EOF. Plain `axum::serve(TcpListener, ..)`
/// (control run) closes with the upload arriving: reset or broken pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_body_limit_413_to_a_large_upload_arrives_whole() {
    let (plain, _) = serve(drain_then_limit(), false).await;
    let plain = upload(plain).await;
    assert!(plain.reset_seen(), "plain TCP: expected a reset");

    let (addr, group) = serve(drain_then_limit(), true).await;
    let Upload { read, sent } = upload(addr).await;
    sent.expect("whole upload sent: the server kept reading");
    let raw = read.expect("clean EOF");
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 413"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    step("linger ends at the client's FIN", group.wait_idle()).await;
    assert_eq!(group.stats().peer_eof, 1, "{:?}", group.stats());
}

/// 4 KiB against the 1 KiB limit, half of it sent after the 413: the drain reads the rest
/// and the next request is answered on the same connection, in either layer order.
/// Plain axum closes after the 413 (the second response never comes).
#[tokio::test]
async fn default_body_limit_overflow_is_drained_and_the_connection_reused() {
    for app in [drain_then_limit(), limit_then_drain()] {
        let (addr, _) = serve(app, true).await;
        let mut client = Client::connect(addr).await;
        let mut first = post_head("/upload", 4096).into_bytes();
        first.extend_from_slice(&[b'x'; 2048]);
        client.send(first).await;
        let early = client.response().await;
        assert_eq!(early.status, 413, "{early:?}");
        assert!(!early.has_close(), "{early:?}");
        client.send([b'x'; 2048]).await;
        client.send(get("/next")).await;
        let next = client.response().await;
        assert_eq!(next.status, 200, "{next:?}");
        assert_eq!(next.body_str(), "next");
    }
}

/// tower-http's `RequestBodyLimitLayer` on a `Router`: axum's `.layer()` calls wrap
/// outwards, so the drain must be added *after* the limit to sit outside it and see the
/// 413 the limit answers to a `Content-Length` above it. Added before, it never sees that
/// request, and hyper closes after the 413.
#[tokio::test]
async fn request_body_limit_layer_on_a_router_needs_the_drain_added_last() {
    use tower_http::limit::RequestBodyLimitLayer;

    let drain_last = routes()
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(drain());
    let (addr, _) = serve(drain_last, true).await;
    let mut client = Client::connect(addr).await;
    client.send(post_head("/upload", 4096)).await;
    let early = client.response().await;
    assert_eq!(early.status, 413, "{early:?}");
    assert!(!early.has_close(), "{early:?}");
    client.send([b'x'; 4096]).await;
    client.send(get("/next")).await;
    assert_eq!(client.response().await.body_str(), "next");

    let drain_first = routes()
        .layer(drain())
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT));
    let (addr, _) = serve(drain_first, true).await;
    let mut client = Client::connect(addr).await;
    client.send(post_head("/upload", 4096)).await;
    let early = client.response().await;
    assert_eq!(early.status, 413, "{early:?}");
    assert_eq!(client.closed().await, Closed::Eof);
}
