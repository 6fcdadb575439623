//! axum: the layer on a `Router` (route layer) and around the whole `Router`.
//!
//! "Fails on plain axum" was checked with `LINGER_TEST_WITHOUT_LAYER=1`.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use axum::routing;
use axum::Router;
use linger::DrainBodyLayer;
use tokio::net::TcpListener;
use tower::Layer;

use crate::common::*;

fn router() -> Router {
    Router::new()
        // No body extractor: axum never touches the body.
        .route("/ignore", routing::post(|| async { "ignored" }))
        .route(
            "/consume",
            routing::post(|body: String| async move { format!("consumed {}", body.len()) }),
        )
}

fn layer() -> DrainBodyLayer {
    DrainBodyLayer::default().timeout(Duration::from_secs(2))
}

/// On one connection: `POST /ignore` (handler without extractor) and
/// `POST /missing` (404), each with a body sent only after the response,
/// then `POST /consume`: all answered on the same socket.
/// Plain axum: closes after the first early response — fails.
async fn ignored_bodies_keep_connection(addr: SocketAddr) {
    let mut client = Client::connect(addr).await;

    client.send(post_head("/ignore", 5000)).await;
    let res = client.response().await;
    assert_ok(&res, "ignored");
    assert!(!res.has_close(), "{res:?}");
    client.send([b'x'; 5000]).await;

    client.send(post_head("/missing", 5000)).await;
    let res = client.response().await;
    assert_eq!(res.status, 404, "{res:?}");
    assert!(!res.has_close(), "{res:?}");
    client.send([b'y'; 5000]).await;

    client.send(post("/consume", b"a=b&x=y")).await;
    assert_ok(&client.response().await, "consumed 7");
}

async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// `Router::layer(DrainBodyLayer)`, served by `axum::serve(listener, app)`.
#[tokio::test]
async fn router_layer() {
    let app = if layer_enabled() {
        router().layer(layer())
    } else {
        router()
    };
    let (listener, addr) = bind().await;
    tokio::spawn(axum::serve(listener, app).into_future());
    ignored_bodies_keep_connection(addr).await;
}

/// The layer wrapped around the whole `Router`:
/// `axum::serve(listener, ServiceExt::into_make_service(layer.layer(router)))`.
#[tokio::test]
async fn layer_around_router() {
    let (listener, addr) = bind().await;
    if layer_enabled() {
        let app = layer().layer(router());
        let make = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
        tokio::spawn(axum::serve(listener, make).into_future());
    } else {
        tokio::spawn(axum::serve(listener, router()).into_future());
    }
    ignored_bodies_keep_connection(addr).await;
}

/// `Router::layer(DrainBodyLayer::axum())`: the axum flavour, same behaviour.
#[cfg(feature = "axum")]
#[tokio::test]
async fn router_layer_axum_flavour() {
    let app = if layer_enabled() {
        router().layer(layer().axum())
    } else {
        router()
    };
    let (listener, addr) = bind().await;
    tokio::spawn(axum::serve(listener, app).into_future());
    ignored_bodies_keep_connection(addr).await;
}

/// `DrainBodyLayer::axum()` around `router.with_state(())`.
#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_flavour_around_router() {
    let (listener, addr) = bind().await;
    if layer_enabled() {
        let app = layer().axum().layer(router().with_state(()));
        let make = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
        tokio::spawn(axum::serve(listener, make).into_future());
    } else {
        tokio::spawn(axum::serve(listener, router()).into_future());
    }
    ignored_bodies_keep_connection(addr).await;
}

/// `DrainBodyLayer::axum()` around the router, handed to `axum::serve` as it
/// is (no `into_make_service`, no `with_state`), on a `LingeringListener`:
/// served as the bare router is, and the ignored bodies drained.
#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_flavour_around_router_served_directly() {
    let (listener, addr) = bind().await;
    let counters = linger::DrainCounters::new();
    if layer_enabled() {
        let app = layer().counters(counters.clone()).axum().layer(router());
        let listener = linger::LingeringListener::new(listener);
        tokio::spawn(axum::serve(listener, app).into_future());
    } else {
        tokio::spawn(axum::serve(listener, router()).into_future());
    }
    ignored_bodies_keep_connection(addr).await;
    let stats = counters.snapshot();
    assert_eq!((stats.read, stats.settled()), (1, 3), "{stats:?}");
    assert_eq!(stats.bytes_drained, 10_000, "{stats:?}");
}

/// The same, served with `ConnectInfo` on a tapped `LingeringListener`: the
/// handler sees the client's address.
#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_flavour_around_router_with_connect_info() {
    use axum::extract::ConnectInfo;

    let (listener, addr) = bind().await;
    let routes = router().route(
        "/peer",
        routing::get(
            |ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() },
        ),
    );
    let app = layer().axum().layer(routes);
    // As the README writes it for axum 0.8: the listener tapped.
    use axum::serve::ListenerExt as _;
    let listener = linger::LingeringListener::new(listener).tap_io(|_| {});
    tokio::spawn(
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .into_future(),
    );
    ignored_bodies_keep_connection(addr).await;
    let mut client = Client::connect(addr).await;
    client
        .send(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n".to_vec())
        .await;
    assert_ok(&client.response().await, "127.0.0.1");
}
