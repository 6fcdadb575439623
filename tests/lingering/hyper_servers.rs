//! hyper servers over plain `TcpStream` and over `LingeringIo`, with raw clients that
//! control every byte. Each failure scenario is asserted both ways: it fails on plain TCP
//! (Linux resets a socket closed with unread input and drops the unsent response) and
//! passes with `LingeringIo`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use linger::{LingerConfig, LingerGroup};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;

use crate::common::step_within;
use crate::common::{http1, Upload};

const STEP: Duration = Duration::from_secs(10);
/// Body bytes the client has written before the handler may answer, so that the server
/// holds unread input when it closes (hyper reads at most a few KiB of it).
const HEAD_START: usize = 32 * 1024;

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    step_within(STEP, what, async {
        while !cond() {
            tokio::task::yield_now().await;
        }
    })
    .await
}

type Handler = Arc<
    dyn Fn(Request<Incoming>) -> futures_like::BoxFuture<Result<Response<Full<Bytes>>, String>>
        + Send
        + Sync,
>;

mod futures_like {
    pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
}

/// Serves HTTP/1 on 127.0.0.1:0, wrapping accepted streams with `group` if given.
async fn serve_http1(group: Option<LingerGroup>, handler: Handler) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            let svc = service_fn(move |req| handler(req));
            match &group {
                Some(group) => {
                    let io = TokioIo::new(group.wrap(stream));
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new().serve_connection(io, svc),
                    );
                }
                None => {
                    let io = TokioIo::new(stream);
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new().serve_connection(io, svc),
                    );
                }
            }
        }
    });
    addr
}

/// A client socket with a small receive buffer, so that a server cannot push a large
/// response into it before closing: the tail must still be in the server's send queue.
async fn connect_small_rcvbuf(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    step_within(STEP, "connect", socket.connect(addr))
        .await
        .unwrap()
}

/// Splits a raw HTTP/1.1 response into status code and body length.
fn parse_response(raw: &[u8]) -> (u16, usize) {
    let head_end = http1::head_end(raw).expect("complete response head");
    let status = std::str::from_utf8(&raw[9..12]).unwrap().parse().unwrap();
    (status, raw.len() - head_end)
}

/// When the client starts reading the response.
#[derive(Clone, Copy)]
enum ReadWhen {
    /// This long after the body started, while it is still being sent.
    After(Duration),
    /// Once the whole body is sent (or sending failed), as a plain upload client does.
    BodySent,
}

/// Sends `head` plus a `body_len` body the handler ignores (the first `HEAD_START` bytes
/// before `ready` is notified, the rest in a task), then reads to the end.
async fn upload_and_read<S>(
    stream: S,
    head: String,
    body_len: usize,
    ready: Arc<Notify>,
    when: ReadWhen,
) -> Upload
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut first = head.into_bytes();
    first.extend(std::iter::repeat_n(b'a', HEAD_START));
    step_within(
        STEP,
        "client sends head and body start",
        wr.write_all(&first),
    )
    .await
    .unwrap();
    ready.notify_one();
    let mut writer = tokio::spawn(async move {
        let chunk = vec![b'a'; 64 * 1024];
        let mut left = body_len - HEAD_START;
        while left > 0 {
            let n = left.min(chunk.len());
            wr.write_all(&chunk[..n]).await?;
            left -= n;
        }
        // Our EOF is what ends the server's linger at once.
        wr.shutdown().await
    });
    let mut sent = None;
    match when {
        // Part of the scenario (the Django report): a client that reads a little later.
        ReadWhen::After(pause) => tokio::time::sleep(pause).await,
        ReadWhen::BodySent => {
            sent = Some(
                step_within(STEP, "client sends body", &mut writer)
                    .await
                    .unwrap(),
            )
        }
    }
    let mut got = Vec::new();
    let read = step_within(STEP, "client reads response", rd.read_to_end(&mut got))
        .await
        .map(|_| got);
    let sent = match sent {
        Some(sent) => sent,
        None if read.is_ok() => step_within(STEP, "client sends body", writer)
            .await
            .unwrap(),
        None => {
            writer.abort();
            Err(std::io::ErrorKind::Other.into())
        }
    };
    Upload { read, sent }
}

const RESPONSE_LEN: usize = 8 * 1024 * 1024;

fn big_response_handler(ready: Arc<Notify>) -> Handler {
    let body = Bytes::from(vec![b'r'; RESPONSE_LEN]);
    Arc::new(move |_req| {
        let ready = ready.clone();
        let body = body.clone();
        Box::pin(async move {
            ready.notified().await;
            Ok(Response::new(Full::new(body)))
        })
    })
}

/// The Django report (seed 003): `Connection: close`, a 4 MiB body the handler ignores and
/// an 8 MiB response; the client sends the body, waits 200 ms, then reads.
async fn seed_scenario(group: Option<LingerGroup>) -> Upload {
    let ready = Arc::new(Notify::new());
    let addr = serve_http1(group, big_response_handler(ready.clone())).await;
    let stream = connect_small_rcvbuf(addr).await;
    let body_len = 4 * 1024 * 1024;
    let head = format!(
        "POST /upload HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {body_len}\r\n\r\n"
    );
    upload_and_read(
        stream,
        head,
        body_len,
        ready,
        ReadWhen::After(Duration::from_millis(200)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_large_response_connection_close() {
    // Plain TCP: the close with the body unread resets the connection and the tail of the
    // response is lost.
    match seed_scenario(None).await.read {
        Ok(raw) => assert_ne!(
            parse_response(&raw).1,
            RESPONSE_LEN,
            "plain TCP unexpectedly delivered the whole response"
        ),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }

    // LingeringIo: all 8 MiB, then a clean EOF.
    let group = LingerGroup::default();
    let raw = seed_scenario(Some(group.clone())).await.clean();
    assert_eq!(parse_response(&raw), (200, RESPONSE_LEN));
    wait_until("linger ends at the client's EOF", || {
        let s = group.stats();
        s.peer_eof == 1 && s.lingering == 0
    })
    .await;
    assert!(group.stats().bytes_discarded > 0);
}

/// Uploads `body_len` bytes to a server whose handler, once the client has sent
/// everything, answers with `answer` without reading the body.
async fn upload_to_gated_handler(
    group: Option<LingerGroup>,
    body_len: usize,
    answer: fn() -> Result<Response<Full<Bytes>>, String>,
) -> Upload {
    let ready = Arc::new(Notify::new());
    let handler: Handler = {
        let ready = ready.clone();
        Arc::new(move |_req| {
            let ready = ready.clone();
            Box::pin(async move {
                ready.notified().await;
                answer()
            })
        })
    };
    let addr = serve_http1(group, handler).await;
    let stream = step_within(STEP, "connect", TcpStream::connect(addr))
        .await
        .unwrap();
    let head = format!("POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: {body_len}\r\n\r\n");
    upload_and_read(stream, head, body_len, ready, ReadWhen::BodySent).await
}

/// An early 413 to a 16 MiB upload the handler never reads.
async fn early_413(group: Option<LingerGroup>) -> Upload {
    upload_to_gated_handler(group, 16 * 1024 * 1024, || {
        let mut res = Response::new(Full::new(Bytes::from_static(b"too large")));
        *res.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        Ok(res)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_413_reaches_uploading_client() {
    // Plain TCP: hyper half-closes and drops the socket with the upload unread, and the
    // kernel resets the upload. (On loopback the tiny 413 and the FIN reach the client
    // before the RST, so its read still succeeds; over a real network the RST also erases
    // a response still in flight, see the seed scenario.)
    let plain = early_413(None).await;
    assert!(
        plain.reset_seen(),
        "plain TCP: no reset, sent {:?}",
        plain.sent
    );

    let group = LingerGroup::default();
    let raw = early_413(Some(group.clone())).await.clean();
    assert_eq!(parse_response(&raw), (413, 9));
    wait_until("linger ends at the client's EOF", || {
        group.stats().peer_eof == 1
    })
    .await;
}

/// The service fails with the body unread: hyper drops the IO without `poll_shutdown`.
async fn service_error(group: Option<LingerGroup>) -> Upload {
    upload_to_gated_handler(group, 1024 * 1024, || Err(String::from("handler failed"))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_path_lingers_in_background() {
    // Plain TCP: hyper drops the socket with unread input, without even a FIN: the client
    // sees a reset instead of an EOF.
    let plain = service_error(None).await;
    assert!(
        plain.reset_seen(),
        "plain TCP: no reset, read {:?}",
        plain.read
    );

    let group = LingerGroup::default();
    let raw = service_error(Some(group.clone())).await.clean();
    assert!(raw.is_empty(), "hyper writes nothing on a service error");
    wait_until("background linger finishes", || {
        let s = group.stats();
        s.peer_eof == 1 && s.background == 0 && s.lingering == 0
    })
    .await;
    // hyper had read at most a few KiB of the body; the background task threw away the rest.
    assert!(group.stats().bytes_discarded as usize > 1024 * 1024 - HEAD_START);
}

/// hyper-util's auto builder (HTTP/1 and HTTP/2 on one port) over `LingeringIo`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_builder_serves_http1_and_h2() {
    let group = LingerGroup::new(LingerConfig::new().idle_timeout(Duration::from_secs(30)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_group = group.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let io = TokioIo::new(server_group.wrap(stream));
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let version = format!("{:?}", req.version());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(version))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });

    // HTTP/1.1
    let stream = step_within(STEP, "connect", TcpStream::connect(addr))
        .await
        .unwrap();
    let (mut sender, conn) = step_within(
        STEP,
        "h1 handshake",
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    .unwrap();
    let conn1 = tokio::spawn(conn);
    let req = Request::get("/")
        .header("host", "x")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = step_within(STEP, "h1 request", sender.send_request(req))
        .await
        .unwrap();
    let body = step_within(STEP, "h1 body", res.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, "HTTP/1.1");
    drop(sender);
    step_within(STEP, "h1 client closes", conn1)
        .await
        .unwrap()
        .unwrap();

    // HTTP/2 with prior knowledge.
    let stream = step_within(STEP, "connect", TcpStream::connect(addr))
        .await
        .unwrap();
    let (mut sender, conn) = step_within(
        STEP,
        "h2 handshake",
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)),
    )
    .await
    .unwrap();
    let conn2 = tokio::spawn(conn);
    let req = Request::get("http://x/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = step_within(STEP, "h2 request", sender.send_request(req))
        .await
        .unwrap();
    let body = step_within(STEP, "h2 body", res.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, "HTTP/2.0");
    drop(sender);
    step_within(STEP, "h2 client closes", conn2)
        .await
        .unwrap()
        .unwrap();

    // Both connections end at the clients' EOF, with nothing left lingering.
    wait_until("both closes end at peer EOF", || {
        let s = group.stats();
        s.peer_eof == 2 && s.lingering == 0 && s.background == 0
    })
    .await;
}
