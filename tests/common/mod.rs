//! What the test binaries share (each loads this tree with
//! `#[path = "../common/mod.rs"] mod common;` and uses part of it): a real
//! hyper server (with or without `DrainBodyLayer`), a raw HTTP/1 client over a
//! `TcpStream` that writes exact bytes and parses responses itself, and the
//! TLS pieces (`tls`).
//!
//! Set `LINGER_TEST_WITHOUT_LAYER=1` to build every server *without* the
//! layer (plain hyper / plain axum); the tests that document "fails on plain
//! hyper" must then fail.
#![allow(dead_code)]

pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use linger::{DrainBody, DrainBodyLayer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceBuilder;

/// Upper bound for any single client step; nothing in the suite may hang.
pub const STEP: Duration = Duration::from_secs(5);

/// Whether servers are built with the layer (default) or as plain hyper.
pub fn layer_enabled() -> bool {
    std::env::var_os("LINGER_TEST_WITHOUT_LAYER").is_none()
}

/// `tokio::time::timeout` with a panic naming the step.
pub async fn step<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(STEP, fut).await {
        Ok(out) => out,
        Err(_) => panic!("step timed out after {STEP:?}: {what}"),
    }
}

/// A connected pair of real sockets on 127.0.0.1: (server side, client side).
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (accepted.unwrap().0, client.unwrap())
}

/// What a client uploading a large body saw.
pub struct Upload {
    /// The raw response up to EOF, or the read error.
    pub read: io::Result<Vec<u8>>,
    /// Whether the whole body and the client's FIN went out.
    pub sent: io::Result<()>,
}

impl Upload {
    /// Whether the client saw the connection reset, on reading or on sending.
    pub fn reset_seen(&self) -> bool {
        let reset = |e: &io::Error| {
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            )
        };
        self.read.as_ref().err().is_some_and(reset) || self.sent.as_ref().err().is_some_and(reset)
    }

    /// The response, which must have ended in a clean EOF after the whole body was sent
    /// (the server kept reading it).
    pub fn clean(self) -> Vec<u8> {
        self.sent.expect("whole body sent: the server kept reading");
        self.read.expect("clean EOF")
    }
}

/// Writes `head` and `body_len` bytes of body, then FIN, on `stream`, while reading the
/// response to the end.
pub async fn upload_over<S>(stream: S, head: Vec<u8>, body_len: usize) -> Upload
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        wr.write_all(&head).await?;
        let chunk = vec![b'u'; 64 * 1024];
        let mut left = body_len;
        while left > 0 {
            let n = left.min(chunk.len());
            wr.write_all(&chunk[..n]).await?;
            left -= n;
        }
        wr.shutdown().await
    });
    let mut raw = Vec::new();
    let read = step("read to EOF", rd.read_to_end(&mut raw))
        .await
        .map(|_| raw);
    let sent = step("send the upload", writer).await.unwrap();
    Upload { read, sent }
}

// ---------------------------------------------------------------- server --

/// What the handler sees: the layer's `DrainBody<Incoming>` (or plain
/// `Incoming` without the layer), boxed so one handler serves both.
pub type TestBody = UnsyncBoxBody<Bytes, hyper::Error>;
pub type TestRequest = Request<TestBody>;
pub type TestResponse = Response<Full<Bytes>>;

type Handler =
    Arc<dyn Fn(TestRequest) -> Pin<Box<dyn Future<Output = TestResponse> + Send>> + Send + Sync>;

/// A running test server. Dropping it does not stop it; the runtime ends
/// with the test.
#[derive(Clone)]
pub struct Server {
    pub addr: SocketAddr,
    /// `"METHOD /path"` of every request handed to the handler, in order.
    served: Arc<Mutex<Vec<String>>>,
    /// Bytes the server has read from all its sockets.
    bytes_read: Arc<AtomicU64>,
    /// The `Connection` header of every response as it leaves the layer
    /// (before hyper sees it; hyper's HTTP/2 encoder would strip it).
    connection_headers: Arc<Mutex<Vec<Option<String>>>>,
}

impl Server {
    pub fn served(&self) -> Vec<String> {
        self.served.lock().unwrap().clone()
    }

    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::SeqCst)
    }

    pub fn connection_headers(&self) -> Vec<Option<String>> {
        self.connection_headers.lock().unwrap().clone()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Proto {
    Http1,
    /// hyper `http2::Builder`, prior knowledge only.
    Http2,
}

/// `serve_with(Proto::Http1, layer, handler)`.
pub async fn serve<F, Fut>(layer: DrainBodyLayer, handler: F) -> Server
where
    F: Fn(TestRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = TestResponse> + Send + 'static,
{
    serve_with(Proto::Http1, layer, handler).await
}

/// Starts a hyper server on 127.0.0.1:0:
/// `ServiceBuilder::new().layer(layer).service_fn(handler)`.
pub async fn serve_with<F, Fut>(proto: Proto, layer: DrainBodyLayer, handler: F) -> Server
where
    F: Fn(TestRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = TestResponse> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server {
        addr: listener.local_addr().unwrap(),
        served: Arc::default(),
        bytes_read: Arc::default(),
        connection_headers: Arc::default(),
    };
    let handler: Handler = Arc::new(move |req| Box::pin(handler(req)));
    let with_layer = layer_enabled();
    let srv = server.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let io = TokioIo::new(Counting {
                inner: tcp,
                count: srv.bytes_read.clone(),
            });
            let (handler, served) = (handler.clone(), srv.served.clone());
            let conn_log = srv.connection_headers.clone();
            let layer = layer.clone();
            let log_connection = move |res: TestResponse| {
                let value = res.headers().get(http::header::CONNECTION);
                let value = value.map(|v| v.to_str().unwrap().to_owned());
                conn_log.lock().unwrap().push(value);
                res
            };
            let inner = tower::service_fn(move |req: TestRequest| {
                served
                    .lock()
                    .unwrap()
                    .push(format!("{} {}", req.method(), req.uri().path()));
                let fut = handler(req);
                async move { Ok::<_, Infallible>(fut.await) }
            });
            tokio::spawn(async move {
                if with_layer {
                    let svc = ServiceBuilder::new()
                        .map_response(log_connection)
                        .layer(layer)
                        .map_request(|req: Request<DrainBody<Incoming>>| {
                            req.map(BodyExt::boxed_unsync)
                        })
                        .service(inner);
                    serve_conn(proto, io, TowerToHyperService::new(svc)).await;
                } else {
                    let svc = ServiceBuilder::new()
                        .map_response(log_connection)
                        .map_request(|req: Request<Incoming>| req.map(BodyExt::boxed_unsync))
                        .service(inner);
                    serve_conn(proto, io, TowerToHyperService::new(svc)).await;
                }
            });
        }
    });
    server
}

/// Keeps a [`serve_without_timers`] runtime alive; dropping it stops the
/// runtime (and its server).
pub struct RuntimeGuard {
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// `serve(layer, handler)` on a current-thread runtime built with
/// `enable_io()` only, as some embedders do: no tokio timers. It runs in its
/// own std thread until the guard is dropped.
pub async fn serve_without_timers<F, Fut>(
    layer: DrainBodyLayer,
    handler: F,
) -> (Server, RuntimeGuard)
where
    F: Fn(TestRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = TestResponse> + Send + 'static,
{
    let (server_tx, server_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let _ = server_tx.send(serve(layer, handler).await);
            let _ = stop_rx.await;
        });
    });
    let server = step("start the runtime without timers", server_rx)
        .await
        .unwrap();
    (server, RuntimeGuard { _stop: stop_tx })
}

async fn serve_conn<S>(proto: Proto, io: TokioIo<Counting>, svc: S)
where
    S: hyper::service::Service<Request<Incoming>, Response = TestResponse, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    // Connection errors (resets, bad requests) are part of several scenarios.
    let _ = match proto {
        Proto::Http1 => {
            hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .with_upgrades()
                .await
        }
        Proto::Http2 => {
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(io, svc)
                .await
        }
    };
}

/// A `TcpStream` that counts the bytes the server reads.
struct Counting {
    inner: TcpStream,
    count: Arc<AtomicU64>,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.count.fetch_add(n as u64, Ordering::SeqCst);
        res
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// `200 OK` with `body`.
pub fn text(body: &'static str) -> TestResponse {
    Response::new(Full::new(Bytes::from_static(body.as_bytes())))
}

/// Reads the whole request body, returns it.
pub async fn read_all(body: TestBody) -> Bytes {
    body.collect().await.expect("request body").to_bytes()
}

/// Size of the `/big` response.
pub const BIG: usize = 1024 * 1024;

/// The handler used by most tests:
/// `/consume` reads the body and answers `consumed <n>`,
/// `/big` ignores the body and answers [`BIG`] bytes of `r`,
/// anything else ignores the body and answers `ignored`.
pub async fn ignore_or_consume(req: TestRequest) -> TestResponse {
    match req.uri().path() {
        "/consume" => {
            let body = read_all(req.into_body()).await;
            Response::new(Full::new(Bytes::from(format!("consumed {}", body.len()))))
        }
        "/big" => Response::new(Full::new(Bytes::from(vec![b'r'; BIG]))),
        _ => text("ignored"),
    }
}

/// Sends `head` + 64 KiB of body at once, waits 200 ms (pacing: the server
/// answers and would close meanwhile), then reads the `/big` response:
/// expects all of it and a clean EOF.
pub async fn big_response_then_clean_eof(client: &mut Client, head: &str) -> Parsed {
    let mut req = head.as_bytes().to_vec();
    req.extend_from_slice(&[b'x'; 64 * 1024]);
    client.send(req).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let res = client.response().await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(res.body.len(), BIG);
    assert!(res.body.iter().all(|&b| b == b'r'));
    assert_eq!(client.closed().await, Closed::Eof);
    res
}

// ---------------------------------------------------------------- client --

/// A parsed HTTP/1 response.
#[derive(Debug)]
pub struct Parsed {
    pub version: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Parsed {
    /// All values of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether a `Connection` header lists `close`.
    pub fn has_close(&self) -> bool {
        self.header("connection")
            .iter()
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }

    pub fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }
}

/// How the server ended the connection, as the client sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// `read` returned 0: FIN after all data.
    Eof,
    /// `read` failed with `ConnectionReset`.
    Reset,
}

/// A raw HTTP/1 client: exact bytes out, hand-parsed responses in.
pub struct Client {
    rd: OwnedReadHalf,
    wr: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    buf: Vec<u8>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        let tcp = step("connect", TcpStream::connect(addr)).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let (rd, wr) = tcp.into_split();
        Self {
            rd,
            wr: Arc::new(tokio::sync::Mutex::new(wr)),
            buf: Vec::new(),
        }
    }

    /// Writes all of `bytes` (panics on error or timeout).
    pub async fn send(&self, bytes: impl AsRef<[u8]>) {
        let bytes = bytes.as_ref();
        step("send", async {
            let mut wr = self.wr.lock().await;
            wr.write_all(bytes).await?;
            wr.flush().await
        })
        .await
        .expect("send");
    }

    /// Writes `bytes` in a background task, so the client can read while the
    /// server is still receiving; the task yields the write result.
    pub fn send_in_background(
        &self,
        bytes: impl Into<Vec<u8>>,
    ) -> tokio::task::JoinHandle<io::Result<()>> {
        let wr = self.wr.clone();
        let bytes = bytes.into();
        tokio::spawn(async move {
            let mut wr = wr.lock().await;
            wr.write_all(&bytes).await?;
            wr.flush().await
        })
    }

    /// Reads some more bytes into the buffer; returns how many (0 at EOF).
    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.rd.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    async fn fill_or_panic(&mut self, what: &str) {
        match self.fill().await {
            Ok(0) => panic!(
                "EOF while reading {what}; got so far: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Ok(_) => {}
            Err(e) => panic!("error while reading {what}: {e}"),
        }
    }

    /// Reads exactly `n` raw bytes.
    pub async fn read_exact_raw(&mut self, n: usize) -> Vec<u8> {
        step("read raw bytes", async {
            while self.buf.len() < n {
                self.fill_or_panic("raw bytes").await;
            }
            self.buf.drain(..n).collect()
        })
        .await
    }

    /// Reads one response (1xx included), for a request that was not `HEAD`.
    pub async fn response(&mut self) -> Parsed {
        step("read response", self.response_inner()).await
    }

    /// Reads one response like [`response`](Self::response), and returns its
    /// head as it was on the wire too (status line and header lines, up to
    /// and including the blank line).
    pub async fn response_with_raw_head(&mut self) -> (String, Parsed) {
        step("read response", async {
            let head_end = loop {
                if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                    break pos;
                }
                self.fill_or_panic("response head").await;
            };
            let raw = String::from_utf8(self.buf[..head_end + 4].to_vec()).unwrap();
            (raw, self.response_inner().await)
        })
        .await
    }

    /// Reads only a response head (for a `2xx` answer to `CONNECT`, which
    /// has no body framing).
    pub async fn response_head(&mut self) -> Parsed {
        step("read response head", self.head()).await
    }

    async fn response_inner(&mut self) -> Parsed {
        let mut parsed = self.head().await;
        let status = parsed.status;
        if (100..200).contains(&status) || status == 204 || status == 304 {
            return parsed;
        }
        if parsed
            .header("transfer-encoding")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("chunked"))
        {
            parsed.body = self.read_chunked().await;
        } else if let Some(len) = parsed.header("content-length").first() {
            let len: usize = len.parse().unwrap();
            while self.buf.len() < len {
                self.fill_or_panic("response body").await;
            }
            parsed.body = self.buf.drain(..len).collect();
        } else {
            // Close-delimited.
            while self.fill().await.expect("close-delimited body") > 0 {}
            parsed.body = std::mem::take(&mut self.buf);
        }
        parsed
    }

    async fn head(&mut self) -> Parsed {
        let head_end = loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                break pos;
            }
            self.fill_or_panic("response head").await;
        };
        let head = String::from_utf8(self.buf.drain(..head_end + 4).collect()).unwrap();
        let mut lines = head.trim_end().split("\r\n");
        let status_line = lines.next().unwrap();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap().to_owned();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').expect("header line");
                (n.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        Parsed {
            version,
            status,
            headers,
            body: Vec::new(),
        }
    }

    async fn read_chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(pos) = find(&self.buf, b"\r\n") {
                    break pos;
                }
                self.fill_or_panic("chunk size").await;
            };
            let line = String::from_utf8(self.buf.drain(..line_end + 2).collect()).unwrap();
            let size_hex = line.trim_end().split(';').next().unwrap();
            let size = usize::from_str_radix(size_hex, 16).expect("chunk size");
            if size == 0 {
                // No trailers expected: just the final CRLF.
                while self.buf.len() < 2 {
                    self.fill_or_panic("last chunk").await;
                }
                assert_eq!(&self.buf[..2], b"\r\n", "trailers not expected");
                self.buf.drain(..2);
                return body;
            }
            while self.buf.len() < size + 2 {
                self.fill_or_panic("chunk data").await;
            }
            body.extend(self.buf.drain(..size));
            assert_eq!(self.buf.drain(..2).collect::<Vec<_>>(), b"\r\n");
        }
    }

    /// Expects the server to end the connection with nothing more sent:
    /// returns whether it was a clean EOF or a reset.
    pub async fn closed(&mut self) -> Closed {
        assert!(
            self.buf.is_empty(),
            "unexpected bytes before close: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        step("wait for close", async {
            match self.fill().await {
                Ok(0) => Closed::Eof,
                Ok(_) => panic!(
                    "expected the connection to end, got bytes: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Closed::Reset,
                Err(e) => panic!("expected EOF or reset, got {e}"),
            }
        })
        .await
    }

    /// Asserts nothing arrives (and the connection stays open) for `dur`.
    pub async fn assert_quiet_for(&mut self, dur: Duration) {
        if let Ok(res) = tokio::time::timeout(dur, self.fill()).await {
            panic!(
                "expected silence, got {res:?} (buffer {:?})",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A `Content-Length` request head.
pub fn post_head(path: &str, content_length: usize) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {content_length}\r\n\r\n")
}

/// A complete `Content-Length` request.
pub fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut req = post_head(path, body.len()).into_bytes();
    req.extend_from_slice(body);
    req
}

/// A chunked request head.
pub fn chunked_head(path: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n")
}

/// `body` encoded as chunks of at most `chunk` bytes, with the last chunk.
pub fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in body.chunks(chunk) {
        out.extend(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend(part);
        out.extend(b"\r\n");
    }
    out.extend(b"0\r\n\r\n");
    out
}

pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

/// Asserts a plain `200 ignored` keep-alive response.
pub fn assert_ok(res: &Parsed, body: &str) {
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(res.body_str(), body, "{res:?}");
}
