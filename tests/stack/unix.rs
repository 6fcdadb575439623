//! `axum::serve(LingeringListener::new(tokio::net::UnixListener), app)` with a raw
//! `UnixStream` client (needs `--features axum`).
//!
//! On Linux, closing a Unix stream socket with unread input makes the peer's next read
//! fail with "connection reset by peer" once it has read what was queued, and its writes
//! fail with a broken pipe: an upload cut off, and no clean end of the response. The
//! staged close fixes that on Unix sockets as on TCP.

use std::future::IntoFuture;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use linger::{DrainBodyLayer, LingerGroup, LingeringListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::{UnixListener, UnixStream};

use crate::common::http1::{Framing, Reader};
use crate::common::step_within;
use crate::common::{upload_over, Upload};

const STEP: Duration = Duration::from_secs(10);
const LARGE_UPLOAD: usize = 16 * 1024 * 1024;

/// A directory of its own under the system temp dir for one socket; removed on drop.
struct SocketDir(PathBuf);

impl SocketDir {
    fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "linger-stack-unix-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).unwrap();
        Self(dir)
    }

    fn socket(&self) -> PathBuf {
        self.0.join("http.sock")
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `/upload` rejects without reading the body; `/next` answers `next`.
fn app() -> Router {
    Router::new()
        .route(
            "/upload",
            post(|| async { (StatusCode::PAYLOAD_TOO_LARGE, "too large") }),
        )
        .route("/next", post(|| async { "next" }))
        .layer(DrainBodyLayer::default().timeout(Duration::from_secs(3)))
}

/// Serves `app()` on a fresh Unix socket, through a `LingeringListener` when `lingering`.
async fn serve(lingering: bool) -> (SocketDir, LingerGroup) {
    let dir = SocketDir::new();
    let unix = UnixListener::bind(dir.socket()).unwrap();
    let group = LingerGroup::default();
    if lingering {
        let listener = LingeringListener::with_group(unix, group.clone());
        tokio::spawn(axum::serve(listener, app()).into_future());
    } else {
        tokio::spawn(axum::serve(unix, app()).into_future());
    }
    (dir, group)
}

/// Reads one response with a `content-length` body; returns its head (lowercased) and
/// body.
async fn read_response(reader: &mut Reader<OwnedReadHalf>) -> (String, Vec<u8>) {
    step_within(STEP, "read a response", async {
        let response = reader.whole_response().await.expect("a whole response");
        let head = response.raw_head.trim_end().to_ascii_lowercase();
        let framing = response.head.framing();
        assert!(
            matches!(framing, Ok(Framing::Length(_))),
            "content-length: {head}"
        );
        (head, response.body)
    })
    .await
}

/// An early 413 to a 16 MiB upload over a Unix socket: with the listener the client sends
/// its whole body and reads the 413 and a clean EOF, and the linger ends at its
/// shutdown. Plain `axum::serve(unix_listener, ..)` (control run) cuts the upload off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_413_to_a_large_upload_over_a_unix_socket() {
    let (plain_dir, _) = serve(false).await;
    let plain = upload(&plain_dir).await;
    assert!(
        plain.reset_seen(),
        "plain Unix socket: expected a reset or a broken pipe"
    );

    let (dir, group) = serve(true).await;
    let Upload { read, sent } = upload(&dir).await;
    sent.expect("whole upload sent: the server kept reading");
    let raw = read.expect("clean EOF");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert!(text.ends_with("too large"), "{text}");
    step_within(
        STEP,
        "linger ends at the client's shutdown",
        group.wait_idle(),
    )
    .await;
    let stats = group.stats();
    assert_eq!(stats.peer_eof, 1, "{stats:?}");
    assert!(stats.bytes_discarded > 0, "{stats:?}");
}

/// Sends a 16 MiB upload to `/upload` and its shutdown while reading to the end.
async fn upload(dir: &SocketDir) -> Upload {
    let stream = step_within(STEP, "connect", UnixStream::connect(dir.socket()))
        .await
        .unwrap();
    let head =
        format!("POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: {LARGE_UPLOAD}\r\n\r\n");
    upload_over(stream, head.into_bytes(), LARGE_UPLOAD).await
}

/// `DrainBodyLayer` over a Unix socket: a body sent only after the early 413 is drained
/// and the next request is answered on the same connection (plain axum closes after the
/// 413), then the client's shutdown ends the linger at once.
#[tokio::test]
async fn ignored_body_is_drained_and_the_unix_connection_reused() {
    let (dir, group) = serve(true).await;
    let stream = step_within(STEP, "connect", UnixStream::connect(dir.socket()))
        .await
        .unwrap();
    let (rd, mut wr) = stream.into_split();
    let mut reader = Reader::new(rd);

    let head = "POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\n";
    step_within(STEP, "head", wr.write_all(head.as_bytes()))
        .await
        .unwrap();
    let (head, body) = read_response(&mut reader).await;
    assert!(head.starts_with("http/1.1 413"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    assert_eq!(body, b"too large");
    step_within(STEP, "body", wr.write_all(&[b'x'; 5000]))
        .await
        .unwrap();

    let next = "POST /next HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n";
    step_within(STEP, "next", wr.write_all(next.as_bytes()))
        .await
        .unwrap();
    let (head, body) = read_response(&mut reader).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"next");

    step_within(STEP, "client shutdown", wr.shutdown())
        .await
        .unwrap();
    let mut rest = Vec::new();
    step_within(
        STEP,
        "server closes",
        reader.get_mut().read_to_end(&mut rest),
    )
    .await
    .expect("clean EOF");
    assert!(rest.is_empty() && reader.buffered().is_empty());
    step_within(STEP, "linger ends", group.wait_idle()).await;
    assert_eq!(group.stats().closes(), 1, "{:?}", group.stats());
}
