//! hyper-util's `GracefulShutdown` over `LingeringIo`: `graceful.shutdown().await` ends
//! when hyper's connections have sent their FIN, while their lingering closes go on in
//! background tasks; `LingerGroup::wait_idle()` is what waits for those.
//!
//! The recipe the tests follow (bounded as in the README in `graceful_recipe`, which
//! runs it against both README setups):
//!
//! ```text
//! graceful.shutdown().await;   // every connection answered, FIN sent
//! group.wait_idle().await;     // every IO dropped, every lingering close ended
//! // now the runtime may end
//! ```
//!
//! A server may report a connection done a moment before it drops the IO, which starts
//! the linger: the tests wait for `open` to reach 0 before they look at `lingering`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use linger::{LingerConfig, LingerGroup};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use crate::common::http1;

use crate::common::step_within;

const STEP: Duration = Duration::from_secs(10);
const RESPONSE_LEN: usize = 4 * 1024 * 1024;
/// Body bytes sent before the shutdown; hyper reads at most a few KiB of them.
const HEAD_START: usize = 32 * 1024;
/// Body bytes sent only once the graceful shutdown has returned.
const LATE: usize = 8 * 1024 * 1024;

/// Bounds far above the test's run time: every close here ends at the client's FIN, or
/// not at all when the runtime is cut short.
fn group() -> LingerGroup {
    LingerGroup::new(
        LingerConfig::new()
            .idle_timeout(Duration::from_secs(20))
            .total_timeout(Duration::from_secs(30)),
    )
}

/// A server whose handler ignores the body and answers `RESPONSE_LEN` bytes; it notifies
/// `called` when a request arrives. On `stop` it stops accepting, runs
/// `graceful.shutdown()` and returns.
fn run_server(
    listener: TcpListener,
    group: LingerGroup,
    called: Arc<Notify>,
    stop: oneshot::Receiver<()>,
) -> impl Future<Output = ()> + Send + 'static {
    let body = Bytes::from(vec![b'r'; RESPONSE_LEN]);
    async move {
        let graceful = GracefulShutdown::new();
        let mut stop = std::pin::pin!(stop);
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => accepted.unwrap(),
                _ = &mut stop => break,
            };
            let (body, called) = (body.clone(), called.clone());
            let service = service_fn(move |_request: Request<Incoming>| {
                called.notify_one();
                let body = body.clone();
                async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(group.wrap(stream)), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                let _ = connection.await;
            });
        }
        graceful.shutdown().await;
    }
}

/// A client that sends a head and `HEAD_START` bytes of an ignored body, reads the
/// response to the end, and sends the rest of the body (`LATE` bytes) and its FIN only
/// when `go` fires.
struct StillSending {
    reader: JoinHandle<std::io::Result<Vec<u8>>>,
    writer: JoinHandle<std::io::Result<()>>,
    go: oneshot::Sender<()>,
}

async fn still_sending(addr: SocketAddr) -> StillSending {
    let socket = TcpSocket::new_v4().unwrap();
    // Small, so that the response cannot sit whole in the client's kernel buffer.
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let stream = step_within(STEP, "connect", socket.connect(addr))
        .await
        .unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let (go, went) = oneshot::channel::<()>();
    let writer = tokio::spawn(async move {
        let head = format!(
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            HEAD_START + LATE
        );
        wr.write_all(head.as_bytes()).await?;
        wr.write_all(&vec![b'a'; HEAD_START]).await?;
        let _ = went.await;
        let chunk = vec![b'b'; 64 * 1024];
        for _ in 0..LATE / chunk.len() {
            wr.write_all(&chunk).await?;
        }
        wr.shutdown().await
    });
    let reader = tokio::spawn(async move {
        let mut raw = Vec::new();
        rd.read_to_end(&mut raw).await.map(|_| raw)
    });
    StillSending { reader, writer, go }
}

fn body_len(raw: &[u8]) -> usize {
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        &raw[..raw.len().min(64)]
    );
    let head_end = http1::head_end(raw).unwrap();
    raw.len() - head_end
}

/// What is left of a [`still_sending`] client once the handler was called, the server
/// shut down gracefully (`stop`, then `server` ended), and the whole response arrived
/// with a clean EOF: the rest of its upload, sent on `go`.
struct Answered {
    writer: JoinHandle<std::io::Result<()>>,
    go: oneshot::Sender<()>,
}

async fn answered_through_graceful_shutdown(
    addr: SocketAddr,
    called: &Notify,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
) -> Answered {
    let client = still_sending(addr).await;
    step_within(STEP, "request reaches the handler", called.notified()).await;
    stop.send(()).unwrap();
    step_within(STEP, "graceful shutdown", server)
        .await
        .unwrap();
    let raw = step_within(STEP, "read to EOF", client.reader)
        .await
        .unwrap()
        .expect("clean EOF");
    assert_eq!(body_len(&raw), RESPONSE_LEN);
    Answered {
        writer: client.writer,
        go: client.go,
    }
}

/// After `graceful.shutdown()` returns, the connection is still lingering: the client goes
/// on sending 8 MiB of body, which the background close reads and throws away, and
/// `wait_idle()` returns once the client's FIN ends it. The client got the whole 4 MiB
/// response and a clean EOF, and its upload went through. Without `LingeringIo` (plain
/// `TcpStream` for `group.wrap(stream)`), hyper's close with the body unread resets the
/// connection and the client's read fails with "connection reset by peer".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_idle_after_graceful_shutdown_waits_for_the_lingering_close() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let group = group();
    let called = Arc::new(Notify::new());
    let (stop, stopped) = oneshot::channel();
    let server = tokio::spawn(run_server(listener, group.clone(), called.clone(), stopped));

    let client = answered_through_graceful_shutdown(addr, &called, stop, server).await;
    // The response is out and the FIN with it; the close is not over.
    let stats = io_dropped(&group).await;
    assert_eq!(stats.lingering, 1, "{stats:?}");
    assert_eq!(stats.closes(), 0, "{stats:?}");

    let mut idle = std::pin::pin!(group.wait_idle());
    assert!(
        futures_poll_once(idle.as_mut()).await.is_pending(),
        "wait_idle returned while the client was still sending"
    );
    client.go.send(()).unwrap();
    step_within(STEP, "wait_idle", idle).await;
    step_within(STEP, "upload", client.writer)
        .await
        .unwrap()
        .expect("the whole upload went through");

    let stats = group.stats();
    assert_eq!(stats.peer_eof, 1, "{stats:?}");
    assert_eq!(stats.closes(), 1, "{stats:?}");
    assert_eq!((stats.lingering, stats.background), (0, 0), "{stats:?}");
    assert!(stats.bytes_discarded >= LATE as u64, "{stats:?}");
}

/// The same shutdown without `wait_idle()`: the server's runtime ends right after
/// `graceful.shutdown()`, which cuts the background close short (counted as `aborted`);
/// the rest of the client's upload then meets a closed socket and is reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_exit_without_wait_idle_cuts_the_lingering_close_short() {
    let mut server_runtime = ServerRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap(),
    ));
    let listener = {
        let _enter = server_runtime.handle().enter();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        TcpListener::from_std(std_listener).unwrap()
    };
    let addr = listener.local_addr().unwrap();
    let group = group();
    let called = Arc::new(Notify::new());
    let (stop, stopped) = oneshot::channel();
    let server =
        server_runtime
            .handle()
            .spawn(run_server(listener, group.clone(), called.clone(), stopped));

    let client = answered_through_graceful_shutdown(addr, &called, stop, server).await;
    let stats = io_dropped(&group).await;
    assert_eq!(stats.lingering, 1, "{stats:?}");

    server_runtime.end();
    step_within(STEP, "the background close is dropped", async {
        while group.stats().aborted != 1 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    client.go.send(()).unwrap();
    let sent = step_within(STEP, "upload", client.writer).await.unwrap();
    let error = sent.expect_err("the upload should meet a closed socket");
    assert!(
        matches!(
            error.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
        "{error}"
    );
    assert_eq!(group.stats().peer_eof, 0, "{:?}", group.stats());
}

/// Waits until the server has dropped every IO of `group` (axum drops the connection's
/// IO just after it reports the connection done), then returns the stats.
async fn io_dropped(group: &LingerGroup) -> linger::LingerStats {
    step_within(STEP, "the server drops the IO", async {
        loop {
            let stats = group.stats();
            if stats.open == 0 {
                return stats;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
}

/// Polls `fut` once, without waiting.
async fn futures_poll_once<F: Future + Unpin>(mut fut: F) -> std::task::Poll<F::Output> {
    std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut fut).poll(cx))).await
}

/// A runtime of its own for the server, so that the test can end it; dropping a runtime
/// inside another one must not block, hence `shutdown_background`.
struct ServerRuntime(Option<tokio::runtime::Runtime>);

impl ServerRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("runtime running").handle()
    }

    /// Ends the runtime: its tasks are dropped, as at the end of `main`.
    fn end(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for ServerRuntime {
    fn drop(&mut self) {
        self.end();
    }
}

/// The same with axum: `axum::serve(..).with_graceful_shutdown(..)` returns once its
/// connections sent their FIN; `wait_idle()` then waits for the client that is still
/// sending, which gets the whole response (needs `--features axum`).
#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_with_graceful_shutdown_then_wait_idle() {
    use std::future::IntoFuture;

    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = linger::LingeringListener::with_group(tcp, group());
    let group = listener.group().clone();
    let called = Arc::new(Notify::new());
    let body = Bytes::from(vec![b'r'; RESPONSE_LEN]);
    let handler = {
        let called = called.clone();
        move || {
            called.notify_one();
            let body = body.clone();
            async move { body }
        }
    };
    let app = axum::Router::new().route("/", axum::routing::post(handler));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .into_future(),
    );

    let client = still_sending(addr).await;
    step_within(STEP, "request reaches the handler", called.notified()).await;
    stop.send(()).unwrap();
    step_within(STEP, "graceful shutdown", server)
        .await
        .unwrap()
        .unwrap();
    let raw = step_within(STEP, "read to EOF", client.reader)
        .await
        .unwrap()
        .expect("clean EOF");
    assert_eq!(body_len(&raw), RESPONSE_LEN);
    let stats = io_dropped(&group).await;
    assert_eq!(stats.lingering, 1, "{stats:?}");

    client.go.send(()).unwrap();
    step_within(STEP, "wait_idle", group.wait_idle()).await;
    step_within(STEP, "upload", client.writer)
        .await
        .unwrap()
        .expect("the whole upload went through");
    let stats = group.stats();
    assert_eq!((stats.peer_eof, stats.closes()), (1, 1), "{stats:?}");
}
