//! The README's axum set-up (`Router::layer(DrainBodyLayer)` served through
//! `LingeringListener`) under concurrent load, replaying both seeds at once:
//!
//! - seed 000: an ignored body, then a second request on the same connection;
//! - seed 003: `Connection: close`, an ignored body, a large response read by
//!   a client that first sends everything and pauses.
//!
//! Plain axum fails both. Without the layer, seed 000 loses the connection
//! (the second request finds it closed); without `LingeringListener`, seed 003
//! ends in a reset that truncates the response. Both were checked by removing
//! each piece from `start`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use linger::{DrainBodyLayer, LingeringListener};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::common::http1::{End, Framing, Reader};

const CLIENTS: usize = 16;
const BIG: usize = 4 * 1024 * 1024;
const STEP: Duration = Duration::from_secs(20);

async fn start() -> SocketAddr {
    let big = Bytes::from(vec![b'x'; BIG]);
    let app = Router::new()
        .route("/ignore", post(|| async { "ignored" }))
        .route(
            "/consume",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .route("/big", post(move || async move { big.clone() }))
        .layer(DrainBodyLayer::new(256 * 1024));
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(LingeringListener::new(tcp), app).await });
    addr
}

/// Reads one response with a Content-Length body; returns (status, body length).
async fn read_response(stream: &mut Reader<TcpStream>) -> std::io::Result<(u16, usize)> {
    let head = stream.head().await?;
    let Framing::Length(length) = head.framing()? else {
        panic!("no content-length: {head:?}");
    };
    stream.body(Framing::Length(length), |_| Ok(())).await?;
    Ok((head.status, length))
}

/// Seed 000 with a 64 KiB body: the handler answers before it has arrived.
async fn ignored_body_then_reuse(addr: SocketAddr) {
    let mut stream = Reader::new(TcpStream::connect(addr).await.unwrap());
    let body = vec![b'a'; 64 * 1024];
    let head = format!(
        "POST /ignore HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.get_mut().write_all(head.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut stream).await.unwrap(), (200, 7));
    stream.get_mut().write_all(&body).await.unwrap();
    let next = b"POST /consume HTTP/1.1\r\nhost: x\r\ncontent-length: 7\r\n\r\na=b&x=y";
    stream.get_mut().write_all(next).await.unwrap();
    assert_eq!(read_response(&mut stream).await.unwrap(), (200, 1));
}

/// Seed 003: the whole response and a clean EOF, never a reset.
async fn close_with_ignored_body(addr: SocketAddr) {
    // A small receive window keeps most of the response unsent when the
    // server closes, as on a real network.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let mut stream = Reader::new(socket.connect(addr).await.unwrap());
    let body = vec![b'b'; 1024 * 1024];
    let head = format!(
        "POST /big HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.get_mut().write_all(head.as_bytes()).await.unwrap();
    stream.get_mut().write_all(&body).await.unwrap();
    // Part of the scenario (the client is busy), not synchronisation.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(read_response(&mut stream).await.unwrap(), (200, BIG));
    assert_eq!(stream.end().await, End::Eof, "clean EOF");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_seeds_concurrently() {
    let addr = start().await;
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        clients.spawn(ignored_body_then_reuse(addr));
        clients.spawn(close_with_ignored_body(addr));
    }
    let all = async {
        while let Some(client) = clients.join_next().await {
            client.unwrap();
        }
    };
    tokio::time::timeout(STEP, all)
        .await
        .expect("clients finish");
}
