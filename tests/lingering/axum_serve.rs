//! `axum::serve` over a `LingeringListener` (needs `--features axum`).

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use linger::{LingerConfig, LingeringListener, PeerAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::common::http1::{Framing, Reader};
use crate::common::step_within;

const STEP: Duration = Duration::from_secs(10);

fn app() -> Router {
    Router::new()
        .route("/upload", post(|| async { (StatusCode::PAYLOAD_TOO_LARGE, "too large") }))
        .route(
            "/peer",
            get(|ConnectInfo(PeerAddr(addr)): ConnectInfo<PeerAddr>| async move {
                addr.to_string()
            }),
        )
}

/// Reads a response with a `content-length` body, leaving the connection open; bytes
/// that came after it count as body.
async fn read_response(stream: &mut TcpStream) -> (String, String) {
    let mut reader = Reader::new(stream);
    let response = step_within(STEP, "read", reader.whole_response())
        .await
        .expect("a whole response");
    let head = response.raw_head.trim_end().to_owned();
    let framing = response.head.framing();
    assert!(
        matches!(framing, Ok(Framing::Length(_))),
        "content-length: {head}"
    );
    let mut body = response.body;
    body.extend_from_slice(reader.buffered());
    (head, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_serve_lingers_and_shuts_down_gracefully() {
    let idle = Duration::from_millis(300);
    let config = LingerConfig::new()
        .idle_timeout(idle)
        .total_timeout(Duration::from_secs(2));
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = LingeringListener::with_config(tcp, config);
    let addr: SocketAddr = listener.local_addr().unwrap();
    let group = listener.group().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(
            listener,
            app().into_make_service_with_connect_info::<PeerAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .into_future(),
    );

    // An early 413 to a 4 MiB upload reaches the client, which then sends the whole body
    // and reads a clean EOF. Without the listener, hyper would close with the body unread
    // and the upload would be reset (see hyper_servers.rs for that side).
    let mut upload = step_within(STEP, "connect", TcpStream::connect(addr))
        .await
        .unwrap();
    let body_len = 4 * 1024 * 1024;
    let head = format!("POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: {body_len}\r\n\r\n");
    step_within(STEP, "head", upload.write_all(head.as_bytes()))
        .await
        .unwrap();
    let (mut rd, mut wr) = upload.into_split();
    let writer = tokio::spawn(async move {
        wr.write_all(&vec![b'a'; body_len]).await?;
        wr.shutdown().await
    });
    let mut raw = Vec::new();
    step_within(STEP, "read 413", rd.read_to_end(&mut raw))
        .await
        .expect("clean EOF");
    assert!(
        raw.starts_with(b"HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    step_within(STEP, "writer", writer)
        .await
        .unwrap()
        .expect("whole body sent");

    // ConnectInfo through PeerAddr, on a keep-alive connection left open afterwards.
    let mut idle_client = step_within(STEP, "connect", TcpStream::connect(addr))
        .await
        .unwrap();
    let local = idle_client.local_addr().unwrap();
    step_within(
        STEP,
        "request",
        idle_client.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\n\r\n"),
    )
    .await
    .unwrap();
    let (head, body) = read_response(&mut idle_client).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, local.to_string());

    // Graceful shutdown closes the idle connection in stages: hyper's part ends with the
    // FIN, the linger goes on in the background and `wait_idle` waits for it. The client
    // never closes, so the linger ends at the idle timeout, within the bounds.
    let start = Instant::now();
    stop.send(()).unwrap();
    step_within(STEP, "graceful shutdown", server)
        .await
        .unwrap()
        .unwrap();
    step_within(STEP, "lingering closes", group.wait_idle()).await;
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    let mut rest = Vec::new();
    step_within(
        STEP,
        "idle client sees FIN",
        idle_client.read_to_end(&mut rest),
    )
    .await
    .unwrap();
    let stats = group.stats();
    assert_eq!(stats.idle_timeout, 1, "{stats:?}");
    assert_eq!(stats.lingering, 0, "{stats:?}");
}
