//! Several connections served from one task, and a response future polled on another
//! task than its service call: the layer cannot tell there which `LingeringIo` serves a
//! request, so it does without one, as a stack without `LingeringIo` would, and never
//! signals another connection's IO.
//!
//! Before (af856a0), the layer found "its" IO through the first IO the task had read:
//! with A and B driven by one task, B's refused upload switched on discarding beneath
//! hyper on A. A's next `Expect: 100-continue` upload was then thrown away under the
//! handler reading it (no answer: the step's time-out), and an ignored body on A was
//! partly discarded beneath hyper, so the drain swallowed the keep-alive `GET` after it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use linger::{DrainBody, DrainBodyLayer, DrainCounters, LingeringIo, LingeringListener};
use tokio::net::{TcpListener, TcpStream};
use tower::{Layer, Service, ServiceBuilder};

use crate::common::client::{assert_ok, chunked, chunked_head, get, post, post_head, Client};
use crate::common::step_within;

const STEP: Duration = Duration::from_secs(5);

/// `/refuse` answers 413 unread, `/read` reads the body and answers its length,
/// `/ignore` answers unread, anything else answers `hello`.
async fn handle(
    request: Request<DrainBody<Incoming>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let (status, text) = match parts.uri.path() {
        "/refuse" => (StatusCode::PAYLOAD_TOO_LARGE, "too large".to_owned()),
        "/read" => match body.collect().await {
            Ok(all) => (StatusCode::OK, all.to_bytes().len().to_string()),
            Err(_) => (StatusCode::BAD_REQUEST, "body failed".to_owned()),
        },
        "/ignore" => (StatusCode::OK, "ignored".to_owned()),
        _ => (StatusCode::OK, "hello".to_owned()),
    };
    let mut response = Response::new(Full::from(text));
    *response.status_mut() = status;
    Ok(response)
}

/// One connection with the README hyper service.
async fn serve(stream: LingeringIo<TcpStream>, counters: DrainCounters) {
    let service = ServiceBuilder::new()
        .layer(DrainBodyLayer::new(256 * 1024).counters(counters))
        .service_fn(handle);
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
        .await;
}

/// Accepts `n` connections, then serves them all from this one task.
async fn serve_in_one_task(listener: LingeringListener, n: usize, counters: DrainCounters) {
    let mut connections = FuturesUnordered::new();
    for _ in 0..n {
        let (stream, _) = listener.accept().await.unwrap();
        connections.push(serve(stream, counters.clone()));
    }
    while connections.next().await.is_some() {}
}

async fn listener() -> (LingeringListener, SocketAddr) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    (LingeringListener::new(tcp), addr)
}

/// A GET answered: the server task has read this connection's IO.
async fn hello(client: &mut Client) {
    client.send(get("/")).await;
    assert_ok(&client.response().await, "hello");
}

/// A 10 MB declared upload, refused unread: 413, the connection's last.
async fn refused(mut client: Client) {
    let mut request = post_head("/refuse", 10_000_000).into_bytes();
    request.extend_from_slice(&[b'b'; 64 * 1024]);
    client.send(request).await;
    let response = client.response().await;
    assert_eq!(response.status, 413, "{response:?}");
    assert!(response.has_close(), "{response:?}");
}

/// An `Expect: 100-continue` upload of 300 000 bytes that the handler reads whole.
async fn expect_upload_read(client: &mut Client) {
    client
        .send("POST /read HTTP/1.1\r\nHost: test\r\nContent-Length: 300000\r\nExpect: 100-continue\r\n\r\n")
        .await;
    let go_on = client.response().await;
    assert_eq!(go_on.status, 100, "{go_on:?}");
    client.send(vec![b'a'; 300_000]).await;
    assert_ok(&client.response().await, "300000");
}

/// An ignored body within the limit, then a keep-alive GET on the same connection.
async fn ignored_then_get(client: &mut Client, chunked_body: bool) {
    let body = vec![b'i'; 100 * 1024];
    let mut request = if chunked_body {
        let mut request = chunked_head("/ignore").into_bytes();
        request.extend(chunked(&body, 16 * 1024));
        request
    } else {
        post("/ignore", &body)
    };
    request.extend_from_slice(get("/").as_bytes());
    client.send(request).await;
    assert_ok(&client.response().await, "ignored");
    assert_ok(&client.response().await, "hello");
}

/// The two sequences of the report, on A, while B (served from the same task, by
/// `tokio::join!`) is refused and closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connections_joined_in_one_task_keep_to_themselves() {
    let (listener, addr) = listener().await;
    let group = listener.group().clone();
    let counters = DrainCounters::new();
    let server_counters = counters.clone();
    tokio::spawn(async move {
        let (a, _) = listener.accept().await.unwrap();
        let (b, _) = listener.accept().await.unwrap();
        tokio::join!(serve(a, server_counters.clone()), serve(b, server_counters));
    });
    let mut a = Client::connect(addr).await;
    let mut b = Client::connect(addr).await;
    hello(&mut a).await;
    hello(&mut b).await;
    refused(b).await;
    step_within(STEP, "A's Expect upload", expect_upload_read(&mut a)).await;
    step_within(
        STEP,
        "A's ignored body, then GET",
        ignored_then_get(&mut a, false),
    )
    .await;
    let drains = counters.snapshot();
    // B's body was refused by the layer itself: no IO was told to take it.
    assert_eq!(drains.left_to_linger, 0, "{drains:?}");
    assert_eq!(drains.over_limit, 1, "{drains:?}");
    assert_eq!(drains.read, 1, "{drains:?}");
    assert_eq!(drains.drained + drains.drained_inline, 1, "{drains:?}");
    assert_eq!(group.stats().stalled_write, 0);
}

/// Eight connections in one `FuturesUnordered`, each with its own mix of refused,
/// read and ignored bodies: every answer arrives, every kept connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_connections_in_one_task_keep_to_themselves() {
    let (listener, addr) = listener().await;
    let counters = DrainCounters::new();
    tokio::spawn(serve_in_one_task(listener, 8, counters.clone()));
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(Client::connect(addr).await);
    }
    // The server task has read every connection's IO before any body arrives.
    for client in &mut clients {
        hello(client).await;
    }
    // The refusals first, so that a signal sent astray would meet the others' uploads.
    let mut kept = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        if i % 4 == 2 {
            step_within(STEP, "refused", refused(client)).await;
        } else {
            kept.push((i, client));
        }
    }
    let mut runs = tokio::task::JoinSet::new();
    for (i, mut client) in kept {
        runs.spawn(async move {
            match i % 4 {
                0 => {
                    expect_upload_read(&mut client).await;
                    hello(&mut client).await;
                }
                1 => ignored_then_get(&mut client, false).await,
                _ => {
                    ignored_then_get(&mut client, true).await;
                    expect_upload_read(&mut client).await;
                }
            }
        });
    }
    step_within(Duration::from_secs(10), "eight clients", async {
        while let Some(run) = runs.join_next().await {
            run.unwrap();
        }
    })
    .await;
    let drains = counters.snapshot();
    assert_eq!(drains.left_to_linger, 0, "{drains:?}");
    assert_eq!(drains.over_limit, 2, "{drains:?}");
    assert_eq!(drains.read, 4, "{drains:?}");
    assert_eq!(drains.drained + drains.drained_inline, 4, "{drains:?}");
}

/// A service whose response future is polled on another task than the one that called
/// it (spawned, as some middleware does): the layer cannot know that task's IO, so a
/// closing request's ignored body is drained by the layer, not left to a `LingeringIo`.
/// The answer arrives whole, then a clean EOF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_future_on_another_task_does_without_the_io() {
    let (listener, addr) = listener().await;
    let group = listener.group().clone();
    let counters = DrainCounters::new();
    let layer = DrainBodyLayer::new(256 * 1024).counters(counters.clone());
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = hyper::service::service_fn(move |request| {
            let mut inner = layer.layer(tower::service_fn(handle));
            // Called here, on the connection's task; polled on a task of its own.
            let response = inner.call(request);
            async move { tokio::spawn(response).await.unwrap() }
        });
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
    let mut client = Client::connect(addr).await;
    let mut request =
        "POST /ignore HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 65536\r\n\r\n"
            .as_bytes()
            .to_vec();
    request.extend_from_slice(&[b'c'; 64 * 1024]);
    client.send(request).await;
    assert_ok(&client.response().await, "ignored");
    assert_eq!(client.closed().await, crate::common::client::Closed::Eof);
    drop(client);
    let drains = crate::common::counters::settled(&counters, 1).await;
    assert_eq!(drains.left_to_linger, 0, "{drains:?}");
    assert_eq!(drains.drained + drains.drained_inline, 1, "{drains:?}");
    step_within(STEP, "close counted", group.wait_idle()).await;
}
