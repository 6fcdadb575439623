//! HTTP/2: a request body the handler leaves unread is drained within the
//! layer's HTTP/2 limit, so that its stream ends cleanly instead of with
//! `RST_STREAM(NO_ERROR)`, which curl 7.88 turns into
//! `curl: (92) Stream error in the HTTP/2 framing layer`, losing the response.
//!
//! Real servers (hyper-util's `auto` builder, as in `examples/hyper_auto_tls.rs`),
//! over h2c with prior knowledge and over TLS with ALPN h2; real clients (curl,
//! hyper's HTTP/2 client). The server's side of each connection goes through
//! [`Sniffed`], which parses the frames hyper writes, so a test sees every
//! `RST_STREAM` the server sent: none means no client could have seen one.
//!
//! `LINGER_TEST_WITHOUT_LAYER=1` builds the servers without the layer (plain
//! hyper); the tests that quote plain hyper's counts then fail with them.
//! The others describe what the layer leaves as hyper does it (beyond the
//! limit, `CONNECT`, a body the handler still streams) and pass either way.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use linger::{DrainBody, DrainBodyLayer, DrainCounters, DrainStats, LingerGroup};
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName,
};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tower::ServiceBuilder;

const KIB: usize = 1024;
/// The bodies of issue 15: 64 KiB, 250 KB and 1 MiB.
const SIZES: [usize; 3] = [64 * KIB, 250_000, 1024 * KIB];
/// Requests per client, size and transport.
const RUNS: usize = 20;
/// Upper bound for any single step; nothing here may hang.
const STEP: Duration = Duration::from_secs(10);

/// HTTP/2 frame types and the error code we look for.
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const END_STREAM: u8 = 0x1;
const NO_ERROR: u32 = 0x0;

async fn step<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(STEP, fut).await {
        Ok(out) => out,
        Err(_) => panic!("step timed out after {STEP:?}: {what}"),
    }
}

fn layer_enabled() -> bool {
    std::env::var_os("LINGER_TEST_WITHOUT_LAYER").is_none()
}

/// The README's setup: 256 KiB for HTTP/1, the default 1 MiB for HTTP/2.
fn readme_layer() -> DrainBodyLayer {
    DrainBodyLayer::new(256 * 1024)
}

fn counted(layer: DrainBodyLayer) -> (DrainBodyLayer, DrainCounters) {
    let counters = DrainCounters::new();
    (layer.counters(counters.clone()), counters)
}

/// Waits until `bodies` bodies have an outcome and no drain is running.
async fn settled(counters: &DrainCounters, bodies: u64) -> DrainStats {
    step("counters settle", async {
        loop {
            let stats = counters.snapshot();
            if stats.settled() >= bodies && stats.draining == 0 {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

fn curl_available() -> bool {
    let found = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        eprintln!("curl not found on PATH: skipping");
    }
    found
}

// ------------------------------------------------------------ the wire --

/// A frame the server wrote: its type, flags and stream, and for
/// `RST_STREAM` the error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    kind: u8,
    flags: u8,
    stream: u32,
    code: Option<u32>,
}

/// What the server wrote on one connection, and whether it has ended.
#[derive(Clone, Debug, Default)]
struct Wire {
    frames: Vec<Seen>,
    ended: bool,
}

impl Wire {
    /// `(stream, error code)` of every `RST_STREAM` the server sent.
    fn resets(&self) -> Vec<(u32, u32)> {
        self.frames
            .iter()
            .filter(|f| f.kind == RST_STREAM)
            .map(|f| (f.stream, f.code.unwrap_or(u32::MAX)))
            .collect()
    }

    /// Whether the server ended `stream`'s response (`END_STREAM` on a
    /// `HEADERS` or `DATA` frame) before any reset of it.
    fn response_ended_before_reset(&self, stream: u32) -> bool {
        let of_stream = || self.frames.iter().filter(|f| f.stream == stream);
        let end = of_stream()
            .position(|f| (f.kind == DATA || f.kind == HEADERS) && f.flags & END_STREAM != 0);
        let reset = of_stream().position(|f| f.kind == RST_STREAM);
        match (end, reset) {
            (Some(end), Some(reset)) => end < reset,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// Incremental parser of the frames in a server's output (which, unlike the
/// client's, starts with a frame: there is no preface).
#[derive(Default)]
struct FrameParser {
    head: Vec<u8>,
    payload_left: usize,
    /// The first 4 payload bytes of a `RST_STREAM`.
    code: Vec<u8>,
    current: Option<Seen>,
}

impl FrameParser {
    fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Seen>) {
        while !bytes.is_empty() {
            if let Some(mut seen) = self.current {
                let n = bytes.len().min(self.payload_left);
                if seen.kind == RST_STREAM {
                    let want = 4usize.saturating_sub(self.code.len()).min(n);
                    self.code.extend_from_slice(&bytes[..want]);
                }
                bytes = &bytes[n..];
                self.payload_left -= n;
                if self.payload_left == 0 {
                    if seen.kind == RST_STREAM && self.code.len() == 4 {
                        seen.code = Some(u32::from_be_bytes(self.code[..4].try_into().unwrap()));
                    }
                    out.push(seen);
                    self.current = None;
                    self.code.clear();
                }
                continue;
            }
            let want = (9 - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..want]);
            bytes = &bytes[want..];
            if self.head.len() < 9 {
                continue;
            }
            let h = std::mem::take(&mut self.head);
            let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
            let seen = Seen {
                kind: h[3],
                flags: h[4],
                stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
                code: None,
            };
            if len == 0 {
                out.push(seen);
            } else {
                self.payload_left = len;
                self.current = Some(seen);
            }
        }
    }
}

/// The server's side of a connection, under hyper (above TLS): what hyper
/// writes is parsed into frames and published.
struct Sniffed<T> {
    inner: T,
    parser: FrameParser,
    wire: watch::Sender<Wire>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Sniffed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Sniffed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            let mut frames = Vec::new();
            this.parser.feed(&buf[..n], &mut frames);
            if !frames.is_empty() {
                this.wire.send_modify(|wire| wire.frames.extend(frames));
            }
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One server connection, watched from the test.
struct Conn(watch::Receiver<Wire>);

impl Conn {
    /// What the server wrote, once the connection has ended.
    async fn ended(&mut self) -> Wire {
        step("server connection ends", self.0.wait_for(|wire| wire.ended))
            .await
            .expect("wire")
            .clone()
    }

    /// What the server wrote, once `what` holds.
    async fn until(&mut self, what: &str, pred: impl FnMut(&Wire) -> bool) -> Wire {
        step(what, self.0.wait_for(pred))
            .await
            .expect("wire")
            .clone()
    }
}

// ----------------------------------------------------------------- TLS --

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    /// Cleartext HTTP/2 with prior knowledge.
    H2c,
    /// TLS with ALPN `h2` (and `http/1.1`), as in `examples/hyper_auto_tls.rs`.
    Tls,
}

/// A self-signed certificate for `localhost`: the server's configuration
/// (ALPN h2 and http/1.1), a client connector (ALPN h2) and the PEM for curl.
fn self_signed() -> (Arc<ServerConfig>, TlsConnector, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    (
        Arc::new(server),
        TlsConnector::from(Arc::new(client)),
        certified.cert.pem(),
    )
}

/// A file removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!("linger-http2-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// -------------------------------------------------------------- server --

/// What the handler sees: the layer's `DrainBody<Incoming>` (or `Incoming`
/// without the layer), boxed so one handler serves both.
type TestBody = UnsyncBoxBody<Bytes, hyper::Error>;
type TestRequest = Request<TestBody>;
type TestResponse = Response<Full<Bytes>>;
type Handler =
    Arc<dyn Fn(TestRequest) -> Pin<Box<dyn Future<Output = TestResponse> + Send>> + Send + Sync>;

/// A running server: hyper-util's `auto` builder on 127.0.0.1:0 with
/// `ServiceBuilder::new().layer(layer).service_fn(handler)`. It stops with
/// the test's runtime.
struct Server {
    addr: SocketAddr,
    transport: Transport,
    connector: TlsConnector,
    /// The certificate, for `curl --cacert`.
    ca: TempFile,
    conns: tokio::sync::Mutex<mpsc::UnboundedReceiver<Conn>>,
}

/// Options of a server beyond its layer and handler.
#[derive(Clone, Copy, Default)]
struct Options {
    /// Accept extended `CONNECT` (RFC 8441).
    connect_protocol: bool,
    /// Serve over a `LingeringIo` (under TLS, if any), as the example does.
    lingering: bool,
}

async fn serve<F, Fut>(transport: Transport, layer: DrainBodyLayer, handler: F) -> Server
where
    F: Fn(TestRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = TestResponse> + Send + 'static,
{
    serve_with(transport, layer, Options::default(), handler).await
}

async fn serve_with<F, Fut>(
    transport: Transport,
    layer: DrainBodyLayer,
    options: Options,
    handler: F,
) -> Server
where
    F: Fn(TestRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = TestResponse> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (server_tls, connector, pem) = self_signed();
    let ca = TempFile::new(&format!("{}.pem", addr.port()), pem.as_bytes());
    let acceptor = TlsAcceptor::from(server_tls);
    let handler: Handler = Arc::new(move |req| Box::pin(handler(req)));
    let (conns_tx, conns) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (wire, watched) = watch::channel(Wire::default());
            let _ = conns_tx.send(Conn(watched));
            let (handler, layer, acceptor) = (handler.clone(), layer.clone(), acceptor.clone());
            let group = LingerGroup::default();
            tokio::spawn(async move {
                match (transport, options.lingering) {
                    (Transport::H2c, false) => {
                        serve_conn(tcp, wire, layer, options, handler).await;
                    }
                    (Transport::H2c, true) => {
                        let io = group.wrap(tcp);
                        serve_conn(io, wire, layer, options, handler).await;
                    }
                    (Transport::Tls, false) => {
                        serve_tls(&acceptor, tcp, wire, layer, options, handler).await;
                    }
                    (Transport::Tls, true) => {
                        let io = group.wrap(tcp);
                        serve_tls(&acceptor, io, wire, layer, options, handler).await;
                    }
                }
            });
        }
    });
    Server {
        addr,
        transport,
        connector,
        ca,
        conns: tokio::sync::Mutex::new(conns),
    }
}

async fn serve_tls<T>(
    acceptor: &TlsAcceptor,
    io: T,
    wire: watch::Sender<Wire>,
    layer: DrainBodyLayer,
    options: Options,
    handler: Handler,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if let Ok(tls) = acceptor.accept(io).await {
        serve_conn(tls, wire, layer, options, handler).await;
    } else {
        wire.send_modify(|wire| wire.ended = true);
    }
}

async fn serve_conn<T>(
    io: T,
    wire: watch::Sender<Wire>,
    layer: DrainBodyLayer,
    options: Options,
    handler: Handler,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(Sniffed {
        inner: io,
        parser: FrameParser::default(),
        wire: wire.clone(),
    });
    let inner = tower::service_fn(move |req: TestRequest| {
        let fut = handler(req);
        async move { Ok::<_, Infallible>(fut.await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if options.connect_protocol {
        builder.http2().enable_connect_protocol();
    }
    // Errors (resets, a client gone) are part of several scenarios.
    let _ = if layer_enabled() {
        let service = ServiceBuilder::new()
            .layer(layer)
            .map_request(|req: Request<DrainBody<Incoming>>| req.map(BodyExt::boxed_unsync))
            .service(inner);
        builder
            .serve_connection_with_upgrades(io, TowerToHyperService::new(service))
            .await
    } else {
        let service = ServiceBuilder::new()
            .map_request(|req: Request<Incoming>| req.map(BodyExt::boxed_unsync))
            .service(inner);
        builder
            .serve_connection_with_upgrades(io, TowerToHyperService::new(service))
            .await
    };
    wire.send_modify(|wire| wire.ended = true);
}

impl Server {
    /// The server's side of the next connection it accepts.
    async fn next_conn(&self) -> Conn {
        step("server accepts", async {
            self.conns.lock().await.recv().await
        })
        .await
        .unwrap()
    }

    fn url(&self, path: &str) -> String {
        match self.transport {
            Transport::H2c => format!("http://{}{path}", self.addr),
            Transport::Tls => format!("https://localhost:{}{path}", self.addr.port()),
        }
    }

    /// A hyper HTTP/2 client connection; its task is spawned.
    async fn h2_client<B>(&self) -> (hyper::client::conn::http2::SendRequest<B>, ClientConn)
    where
        B: Body<Data = Bytes> + Unpin + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let tcp = step("connect", TcpStream::connect(self.addr))
            .await
            .unwrap();
        let builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        match self.transport {
            Transport::H2c => {
                let (send, conn) = step("h2 handshake", builder.handshake(TokioIo::new(tcp)))
                    .await
                    .unwrap();
                (
                    send,
                    ClientConn(tokio::spawn(async move { conn.await.is_ok() })),
                )
            }
            Transport::Tls => {
                let name = ServerName::try_from("localhost").unwrap();
                let tls = step("TLS handshake", self.connector.connect(name, tcp))
                    .await
                    .unwrap();
                assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
                let (send, conn) = step("h2 handshake", builder.handshake(TokioIo::new(tls)))
                    .await
                    .unwrap();
                (
                    send,
                    ClientConn(tokio::spawn(async move { conn.await.is_ok() })),
                )
            }
        }
    }

    /// `curl` posting `body` to `path`, one connection, HTTP/2 only
    /// (`--http2-prior-knowledge` over h2c, `--http2` over TLS).
    async fn curl_post(&self, path: &str, body: &Path) -> std::process::Output {
        let mut command = tokio::process::Command::new("curl");
        command.args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code} %{http_version}",
        ]);
        match self.transport {
            Transport::H2c => command.arg("--http2-prior-knowledge"),
            Transport::Tls => command
                .arg("--http2")
                .arg("--cacert")
                .arg(self.ca.path())
                .arg("--resolve")
                .arg(format!("localhost:{}:127.0.0.1", self.addr.port())),
        };
        command
            .arg("--data-binary")
            .arg(format!("@{}", body.display()))
            .arg(self.url(path))
            .kill_on_drop(true);
        step("curl", command.output()).await.unwrap()
    }
}

/// A hyper client connection's task: `true` if it ended without error.
struct ClientConn(tokio::task::JoinHandle<bool>);

impl ClientConn {
    async fn closed(self) -> bool {
        step("client connection ends", self.0).await.unwrap()
    }
}

/// `/upload` rejects the body unread with `413`, `/consume` reads it,
/// `/` answers `hello`, anything else ignores the body and answers `ignored`.
async fn ignore_or_consume(req: TestRequest) -> TestResponse {
    match req.uri().path() {
        "/upload" => {
            let mut res = Response::new(Full::new(Bytes::from_static(b"upload too large\n")));
            *res.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            res
        }
        "/consume" => {
            let body = req.into_body().collect().await.expect("body").to_bytes();
            Response::new(Full::new(Bytes::from(format!("consumed {}", body.len()))))
        }
        "/" => Response::new(Full::new(Bytes::from_static(b"hello"))),
        _ => Response::new(Full::new(Bytes::from_static(b"ignored"))),
    }
}

// --------------------------------------------------------- measurements --

/// What `RUNS` requests, each on a connection of its own, came to.
#[derive(Debug, Default)]
struct Measured {
    /// Whole responses: exit code 0 (curl), the right status and body.
    whole: usize,
    /// Connections on which the server sent `RST_STREAM(NO_ERROR)`: what
    /// hyper sends when a body is dropped unfinished, and curl fails on.
    reset_no_error: usize,
    /// Connections on which the server sent another `RST_STREAM`.
    reset_other: usize,
    /// What went wrong, for the first few failures.
    failures: Vec<String>,
}

impl Measured {
    fn record(&mut self, whole: Result<(), String>, wire: &Wire) {
        match whole {
            Ok(()) => self.whole += 1,
            Err(why) if self.failures.len() < 3 => self.failures.push(why),
            Err(_) => {}
        }
        let resets = wire.resets();
        if resets.iter().any(|&(_, code)| code == NO_ERROR) {
            self.reset_no_error += 1;
        }
        if resets.iter().any(|&(_, code)| code != NO_ERROR) {
            self.reset_other += 1;
        }
    }

    /// 20/20 whole, and no reset at all (`other_resets` false) or none with
    /// `NO_ERROR`.
    fn assert_clean(&self, what: &str, other_resets: bool) {
        let other = if other_resets { 0 } else { self.reset_other };
        assert_eq!(
            (self.whole, self.reset_no_error, other),
            (RUNS, 0, 0),
            "{what}: {}/{RUNS} whole, reset with NO_ERROR on {}, otherwise on {}: {:?}",
            self.whole,
            self.reset_no_error,
            self.reset_other,
            self.failures
        );
    }
}

/// curl posts `size` bytes to `path` `RUNS` times and expects `status` and
/// `body` back, whole.
async fn curl_runs(server: &Server, path: &str, size: usize, status: u16, body: &str) -> Measured {
    let file = TempFile::new(
        &format!("{}-{size}.bin", server.addr.port()),
        &vec![b'c'; size],
    );
    let expected = format!("{body}\n{status} 2");
    let mut measured = Measured::default();
    for _ in 0..RUNS {
        let (out, mut conn) = tokio::join!(server.curl_post(path, file.path()), server.next_conn());
        let wire = conn.ended().await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let whole = if out.status.success() && stdout == expected {
            Ok(())
        } else {
            Err(format!(
                "{:?} {stdout:?} {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        };
        measured.record(whole, &wire);
    }
    measured
}

/// hyper's HTTP/2 client posts `size` bytes to `/ignore` `RUNS` times, each
/// on a new connection, and expects `ignored` back, whole.
async fn hyper_runs(server: &Server, size: usize, counters: &DrainCounters) -> Measured {
    let payload = Bytes::from(vec![b'h'; size]);
    let mut measured = Measured::default();
    let before = counters.snapshot().settled();
    for run in 0..RUNS {
        let (mut send, client_conn) = server.h2_client::<Full<Bytes>>().await;
        let mut conn = server.next_conn().await;
        let req = Request::post(server.url("/ignore"))
            .body(Full::new(payload.clone()))
            .unwrap();
        let whole = async {
            let res = step("response", send.send_request(req))
                .await
                .map_err(|e| format!("request: {e}"))?;
            let status = res.status();
            let body = step("response body", res.into_body().collect())
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            if status == StatusCode::OK && body == "ignored" {
                Ok(())
            } else {
                Err(format!("{status} {body:?}"))
            }
        }
        .await;
        // hyper's client abandons data it has queued when it closes, so it
        // closes once the server has the whole upload (the drain ended);
        // the server then ends the connection, and its frames are all in.
        if layer_enabled() {
            settled(counters, before + u64::try_from(run).unwrap() + 1).await;
        }
        drop(send);
        client_conn.closed().await;
        let wire = conn.ended().await;
        measured.record(whole, &wire);
    }
    measured
}

// ----------------------------------------------------------------- curl --

/// curl 7.88 (`--http2-prior-knowledge`) posts 64 KiB, 250 KB and 1 MiB to a
/// handler that ignores the body, 20 times each, each on a connection of its
/// own, with the README's `DrainBodyLayer::new(256 * 1024)`: 20/20 whole
/// responses, and the server never sends `RST_STREAM`.
///
/// Plain hyper (`LINGER_TEST_WITHOUT_LAYER=1`), three runs here: 64 KiB
/// 13 to 19/20, 250 KB 12 to 16/20, 1 MiB 1 to 2/20 whole, the server
/// resetting the stream on 19 or 20 connections of 20; curl fails with
/// `curl: (92) Stream error in the HTTP/2 framing layer` when the
/// `RST_STREAM(NO_ERROR)` comes while it is still uploading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_h2c_gets_every_response() {
    curl_gets_every_response(Transport::H2c).await;
}

/// The same over TLS with ALPN h2 (`curl --http2`), as with
/// `examples/hyper_auto_tls.rs`, plus its "1 MB rejected unread with 413"
/// command (1,000,000 bytes to `/upload`).
///
/// Plain hyper, three runs here: 64 KiB 3 to 14/20, 250 KB 5 to 9/20,
/// 1 MiB 0 to 2/20 whole, and the example's 413 1 to 2/20.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_tls_gets_every_response() {
    curl_gets_every_response(Transport::Tls).await;
}

async fn curl_gets_every_response(transport: Transport) {
    if !curl_available() {
        return;
    }
    let (layer, counters) = counted(readme_layer());
    let server = serve(transport, layer, ignore_or_consume).await;
    let mut report = Vec::new();
    for size in SIZES {
        let measured = curl_runs(&server, "/ignore", size, 200, "ignored").await;
        report.push(("/ignore", size, measured));
    }
    if transport == Transport::Tls {
        let measured = curl_runs(&server, "/upload", 1_000_000, 413, "upload too large\n").await;
        report.push(("/upload", 1_000_000, measured));
    }
    eprintln!("curl {transport:?}: {report:?}");
    for (path, size, measured) in &report {
        // On a `413` curl stops its upload with an empty `END_STREAM`, short
        // of its `content-length`, once it has the response; h2 answers that
        // with `RST_STREAM(PROTOCOL_ERROR)`, which curl does not mind.
        let other_resets = *path == "/upload";
        measured.assert_clean(
            &format!("curl {transport:?}, {size} bytes to {path}"),
            other_resets,
        );
    }
    if layer_enabled() {
        let bodies = u64::try_from(report.len() * RUNS).unwrap();
        let stats = settled(&counters, bodies).await;
        // `body_error`: curl, having its whole response, cut its own upload
        // short (it closes the connection, or ends the stream early on a 4xx).
        assert_eq!(
            stats.drained + stats.drained_inline + stats.body_error,
            bodies,
            "{stats:?}"
        );
        assert_eq!(stats.settled(), bodies, "{stats:?}");
    }
}

// ---------------------------------------------------------------- hyper --

/// hyper's HTTP/2 client, the same three sizes 20 times each, over h2c:
/// 20/20 whole and no `RST_STREAM` from the server.
///
/// Plain hyper, two runs here: hyper's client keeps the response (it reads
/// `RST_STREAM(NO_ERROR)` as "stop sending", as RFC 9113 §8.1 asks), so
/// 20/20 whole, but the server reset the stream on 17 to 20 connections of
/// 20 for each size: what curl and httpx fail on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_client_h2c_sees_no_reset() {
    hyper_client_sees_no_reset(Transport::H2c).await;
}

/// The same over TLS with ALPN h2.
///
/// Plain hyper, two runs here: 20/20 whole, resets on 18 to 20 connections
/// of 20 for each size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_client_tls_sees_no_reset() {
    hyper_client_sees_no_reset(Transport::Tls).await;
}

async fn hyper_client_sees_no_reset(transport: Transport) {
    let (layer, counters) = counted(readme_layer());
    let server = serve(transport, layer, ignore_or_consume).await;
    let mut report = Vec::new();
    for size in SIZES {
        report.push((size, hyper_runs(&server, size, &counters).await));
    }
    eprintln!("hyper client {transport:?}: {report:?}");
    for (size, measured) in &report {
        measured.assert_clean(&format!("hyper client {transport:?}, {size} bytes"), false);
    }
    if layer_enabled() {
        let bodies = u64::try_from(SIZES.len() * RUNS).unwrap();
        let stats = settled(&counters, bodies).await;
        assert_eq!(stats.drained + stats.drained_inline, bodies, "{stats:?}");
        let total: usize = SIZES.iter().sum::<usize>() * RUNS;
        assert_eq!(stats.bytes_drained, u64::try_from(total).unwrap());
    }
}

// ----------------------------------------------------- beyond the limit --

/// Above the HTTP/2 limit (64 KiB here, for a 2 MiB upload with its
/// `content-length`), the documented behaviour: nothing is read, the `413`
/// is released whole, then the server resets the stream with
/// `RST_STREAM(NO_ERROR)`; hyper's client keeps the response, and the
/// connection serves the next request. Counted as `over_limit`. The same as
/// plain hyper, by design. (Larger than hyper's 1 MiB stream window, so that
/// the client cannot finish before the reset.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_the_limit_the_response_goes_then_the_stream_is_reset() {
    for transport in [Transport::H2c, Transport::Tls] {
        let (layer, counters) = counted(readme_layer().http2_limit(64 * KIB));
        let server = serve(transport, layer, ignore_or_consume).await;
        let (mut send, _client_conn) = server.h2_client::<Full<Bytes>>().await;
        let mut conn = server.next_conn().await;

        let req = Request::post(server.url("/upload"))
            .body(Full::new(Bytes::from(vec![b'u'; 2048 * KIB])))
            .unwrap();
        let res = step("413", send.send_request(req)).await.unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = step("413 body", res.into_body().collect()).await.unwrap();
        assert_eq!(body.to_bytes(), "upload too large\n");

        let wire = conn.until("reset", |wire| !wire.resets().is_empty()).await;
        assert_eq!(wire.resets(), [(1, NO_ERROR)], "{transport:?}");
        assert!(wire.response_ended_before_reset(1), "{wire:?}");

        step("ready", send.ready()).await.unwrap();
        let res = step(
            "GET",
            send.send_request(Request::get(server.url("/")).body(Full::default()).unwrap()),
        )
        .await
        .unwrap();
        let body = step("GET body", res.into_body().collect()).await.unwrap();
        assert_eq!(body.to_bytes(), "hello");
        if layer_enabled() {
            let stats = settled(&counters, 1).await;
            assert_eq!(
                (stats.over_limit, stats.settled(), stats.bytes_drained),
                (1, 1, 0)
            );
        }
    }
}

/// A request body fed through a channel; it ends when the sender is
/// dropped, and declares `declared` bytes.
struct ChannelBody {
    rx: mpsc::UnboundedReceiver<Result<Bytes, io::Error>>,
    declared: u64,
    /// Says it is over before it is polled: hyper's client then ends the
    /// stream with its headers.
    empty: bool,
}

fn channel_body(declared: u64) -> (mpsc::UnboundedSender<Result<Bytes, io::Error>>, ChannelBody) {
    let (tx, rx) = mpsc::unbounded_channel();
    let body = ChannelBody {
        rx,
        declared,
        empty: false,
    };
    (tx, body)
}

/// A body that ends with the request's headers.
fn no_body() -> ChannelBody {
    let (_, mut body) = channel_body(0);
    body.empty = true;
    body
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|data| data.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.empty
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.declared)
    }
}

/// A client that stalls within the limit: the response is released at
/// once, the drain gives up at the deadline (300 ms here) and the server
/// resets the stream with `RST_STREAM(NO_ERROR)`; counted as `deadline`.
/// The connection goes on. (The layer's response never waits, even with
/// `wait_for_drain(true)`: that is for HTTP/1.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_reset_at_the_deadline_after_an_immediate_response() {
    let layer = readme_layer()
        .timeout(Duration::from_millis(300))
        .wait_for_drain(true);
    let (layer, counters) = counted(layer);
    let server = serve(Transport::H2c, layer, ignore_or_consume).await;
    let (mut send, _client_conn) = server.h2_client::<ChannelBody>().await;
    let mut conn = server.next_conn().await;

    let (body_tx, body) = channel_body(100 * 1024);
    body_tx.send(Ok(Bytes::from(vec![b's'; 16 * KIB]))).unwrap();
    let req = Request::post(server.url("/ignore")).body(body).unwrap();
    let start = Instant::now();
    let res = step("response", send.send_request(req)).await.unwrap();
    let body = step("body", res.into_body().collect()).await.unwrap();
    assert_eq!(body.to_bytes(), "ignored");
    assert!(
        start.elapsed() < Duration::from_millis(300),
        "the response waited: {:?}",
        start.elapsed()
    );
    let wire = conn
        .until("reset at the deadline", |wire| !wire.resets().is_empty())
        .await;
    assert_eq!(wire.resets(), [(1, NO_ERROR)]);
    if layer_enabled() {
        // Before the deadline the stream was still being drained, not reset.
        assert!(start.elapsed() >= Duration::from_millis(300));
        let stats = settled(&counters, 1).await;
        assert_eq!(
            (stats.deadline, stats.bytes_drained),
            (1, 16 * 1024),
            "{stats:?}"
        );
    }

    step("ready", send.ready()).await.unwrap();
    let res = step(
        "GET",
        send.send_request(Request::get(server.url("/")).body(no_body()).unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    drop(body_tx);
}

// --------------------------------------------------- connection health --

/// Many ignored streams on one connection (50 concurrent uploads: 40 of
/// 64 KiB, 10 of 300 KiB, above the HTTP/1 limit of the README's
/// `new(256 * 1024)` but within the HTTP/2 default), then a GET on the same
/// connection, answered at once. No `RST_STREAM`; every body drained.
///
/// Plain hyper: the GET is answered as well (the connection was never at
/// stake), but every upload stream is reset (50/50 here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_ignored_streams_then_a_get_answered_at_once() {
    for transport in [Transport::H2c, Transport::Tls] {
        let (layer, counters) = counted(readme_layer());
        let server = serve(transport, layer, ignore_or_consume).await;
        let (send, client_conn) = server.h2_client::<Full<Bytes>>().await;
        let mut conn = server.next_conn().await;

        let sizes: Vec<usize> = (0..50)
            .map(|i| if i % 5 == 4 { 300 * KIB } else { 64 * KIB })
            .collect();
        let mut uploads = tokio::task::JoinSet::new();
        for &size in &sizes {
            let mut send = send.clone();
            let req = Request::post(server.url("/ignore"))
                .body(Full::new(Bytes::from(vec![b'm'; size])))
                .unwrap();
            uploads.spawn(async move {
                send.ready().await.unwrap();
                let res = send.send_request(req).await.unwrap();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(body, "ignored");
            });
        }
        step("50 uploads", uploads.join_all()).await;

        let mut get = send.clone();
        let start = Instant::now();
        step("ready", get.ready()).await.unwrap();
        let res = step(
            "GET",
            get.send_request(Request::get(server.url("/")).body(Full::default()).unwrap()),
        )
        .await
        .unwrap();
        let body = step("GET body", res.into_body().collect()).await.unwrap();
        assert_eq!(body.to_bytes(), "hello");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );

        if layer_enabled() {
            // Before the client closes: it would abandon what it has queued.
            let stats = settled(&counters, 50).await;
            assert_eq!(stats.drained + stats.drained_inline, 50, "{stats:?}");
            let total: usize = sizes.iter().sum();
            assert_eq!(stats.bytes_drained, u64::try_from(total).unwrap());
        }
        drop((send, get));
        assert!(
            client_conn.closed().await,
            "{transport:?}: client connection failed"
        );
        let wire = conn.ended().await;
        assert_eq!(wire.resets(), [], "{transport:?}");
    }
}

// ---------------------------------------------- what the layer leaves --

/// A body the handler is still streaming when its response goes out (moved
/// into a task that reads it to the end, slowly) is untouched: the task
/// reads all of it, counted as `read`, and nothing is reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_still_streamed_by_the_handler_is_left_to_it() {
    let (read_tx, mut read_rx) = mpsc::unbounded_channel();
    let (layer, counters) = counted(readme_layer());
    let server = serve(Transport::H2c, layer, move |req: TestRequest| {
        let read_tx = read_tx.clone();
        async move {
            let mut body = req.into_body();
            tokio::spawn(async move {
                let mut read = 0;
                while let Some(frame) = body.frame().await {
                    read += frame.unwrap().data_ref().map_or(0, Bytes::len);
                }
                let _ = read_tx.send(read);
            });
            Response::new(Full::new(Bytes::from_static(b"streaming")))
        }
    })
    .await;
    let (mut send, client_conn) = server.h2_client::<ChannelBody>().await;
    let mut conn = server.next_conn().await;

    let (body_tx, body) = channel_body(3 * 64 * 1024);
    body_tx.send(Ok(Bytes::from(vec![b'a'; 64 * KIB]))).unwrap();
    let res = step(
        "response",
        send.send_request(Request::post(server.url("/stream")).body(body).unwrap()),
    )
    .await
    .unwrap();
    let body = step("body", res.into_body().collect()).await.unwrap();
    assert_eq!(body.to_bytes(), "streaming");
    // The rest comes after the response.
    body_tx.send(Ok(Bytes::from(vec![b'b'; 64 * KIB]))).unwrap();
    body_tx.send(Ok(Bytes::from(vec![b'c'; 64 * KIB]))).unwrap();
    drop(body_tx);
    assert_eq!(step("task read", read_rx.recv()).await, Some(3 * 64 * KIB));
    if layer_enabled() {
        let stats = settled(&counters, 1).await;
        assert_eq!(
            (stats.read, stats.settled(), stats.bytes_drained),
            (1, 1, 0)
        );
    }
    drop(send);
    client_conn.closed().await;
    let wire = conn.ended().await;
    assert!(wire.response_ended_before_reset(1), "{wire:?}");
    assert_eq!(wire.resets(), []);
}

/// Over a `LingeringIo` (as in `examples/hyper_auto_tls.rs`), a handler that
/// ignores the body and says `Connection: close` on its HTTP/2 response: the
/// connection does not close (hyper strips the header), so the body is
/// drained as any other, not left to the `LingeringIo` (which would throw
/// away the other streams' bytes), and the next request on the connection
/// is answered. (hyper serves each stream from a task of its own, where the
/// layer cannot find the connection's `LingeringIo` anyway; the layer does
/// not even look for HTTP/2.) Plain hyper: the stream is reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_close_from_the_handler_changes_nothing_on_http2() {
    for transport in [Transport::H2c, Transport::Tls] {
        let (layer, counters) = counted(readme_layer());
        let options = Options {
            lingering: true,
            ..Options::default()
        };
        let server = serve_with(transport, layer, options, |req: TestRequest| async move {
            let mut res = ignore_or_consume(req).await;
            res.headers_mut()
                .insert(header::CONNECTION, "close".parse().unwrap());
            res
        })
        .await;
        let (mut send, client_conn) = server.h2_client::<Full<Bytes>>().await;
        let mut conn = server.next_conn().await;

        let req = Request::post(server.url("/ignore"))
            .body(Full::new(Bytes::from(vec![b'l'; 250_000])))
            .unwrap();
        let res = step("response", send.send_request(req)).await.unwrap();
        assert!(res.headers().get(header::CONNECTION).is_none());
        let body = step("body", res.into_body().collect()).await.unwrap();
        assert_eq!(body.to_bytes(), "ignored");
        if layer_enabled() {
            let stats = settled(&counters, 1).await;
            assert_eq!(
                (stats.drained + stats.drained_inline, stats.left_to_linger),
                (1, 0),
                "{stats:?}"
            );
        }
        step("ready", send.ready()).await.unwrap();
        let req = Request::post(server.url("/consume"))
            .body(Full::new(Bytes::from_static(b"a=b&x=y")))
            .unwrap();
        let res = step("next", send.send_request(req)).await.unwrap();
        let body = step("next body", res.into_body().collect()).await.unwrap();
        assert_eq!(body.to_bytes(), "consumed 7");

        drop(send);
        assert!(client_conn.closed().await, "{transport:?}");
        let wire = conn.ended().await;
        assert_eq!(wire.resets(), [], "{transport:?}");
    }
}

/// `CONNECT` and extended `CONNECT` (RFC 8441: `:protocol`, which h2 allows
/// only with `CONNECT`) through the layer: hyper hands the handler an
/// empty body, the layer lets it and the tunnel be (nothing counted), the
/// `:protocol` reaches the handler (hyper's `Protocol` extension), and the
/// upgraded stream echoes both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_streams_are_left_alone() {
    let (layer, counters) = counted(readme_layer());
    let options = Options {
        connect_protocol: true,
        ..Options::default()
    };
    let server = serve_with(
        Transport::H2c,
        layer,
        options,
        |mut req: TestRequest| async move {
            assert_eq!(req.method(), Method::CONNECT);
            let protocol = req
                .extensions()
                .get::<hyper::ext::Protocol>()
                .map(|p| p.as_str().to_owned());
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let mut io = TokioIo::new(on_upgrade.await.expect("upgrade"));
                let mut buf = [0; 4];
                io.read_exact(&mut buf).await.unwrap();
                io.write_all(&buf).await.unwrap();
                io.shutdown().await.unwrap();
            });
            let mut res = Response::new(Full::default());
            if let Some(protocol) = protocol {
                res.headers_mut()
                    .insert("x-protocol", protocol.parse().unwrap());
            }
            res
        },
    )
    .await;
    let (mut send, _client_conn) = server.h2_client::<Full<Bytes>>().await;
    let _conn = server.next_conn().await;

    for extended in [false, true] {
        step("ready", send.ready()).await.unwrap();
        let mut req = if extended {
            Request::builder()
                .method(Method::CONNECT)
                .uri(server.url("/chat"))
                .extension(hyper::ext::Protocol::from_static("websocket"))
        } else {
            Request::builder()
                .method(Method::CONNECT)
                .uri(server.addr.to_string())
        }
        .body(Full::default())
        .unwrap();
        req.headers_mut().remove(header::CONTENT_LENGTH);
        let mut res = step("CONNECT", send.send_request(req)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let protocol = res.headers().get("x-protocol").cloned();
        assert_eq!(protocol.is_some(), extended, "{:?}", res.headers());
        let upgraded = step("upgrade", hyper::upgrade::on(&mut res)).await.unwrap();
        let mut io = TokioIo::new(upgraded);
        step("write", io.write_all(b"ping")).await.unwrap();
        let mut echo = Vec::new();
        step("echo", io.read_to_end(&mut echo)).await.unwrap();
        assert_eq!(echo, b"ping");
    }
    assert_eq!(counters.snapshot(), DrainStats::default());
}

// ------------------------------------------------ counters, as a property --

/// What the handler does with the body.
#[derive(Clone, Copy, Debug)]
enum Handling {
    Ignore,
    /// Reads at least `n` bytes (or to the end), then drops the body.
    Read(usize),
    /// Moves the body into a task that reads at least `n` bytes, then drops it.
    Hold(usize),
    ReadAll,
}

/// How the client sends the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sending {
    Complete,
    /// Sends half, then nothing more, the stream left open.
    Stall,
    /// Sends half, then fails the body: hyper's client resets the stream.
    Abort,
}

#[derive(Clone, Debug)]
struct Exchange {
    size: usize,
    handling: Handling,
    sending: Sending,
}

impl Exchange {
    /// Bytes the client sends before it ends, stalls or aborts.
    fn sent(&self) -> usize {
        match self.sending {
            Sending::Complete => self.size,
            Sending::Stall | Sending::Abort => self.size / 2,
        }
    }

    /// Whether the request has a body the layer sees (hyper's client sends
    /// an empty one that ends at once with the headers).
    fn counted(&self) -> bool {
        !(self.size == 0 && self.sending == Sending::Complete)
    }
}

fn exchange() -> impl Strategy<Value = Exchange> {
    let size = prop_oneof![
        1 => Just(0usize),
        3 => 1..16 * KIB,
        3 => 16 * KIB..256 * KIB,
        2 => 256 * KIB..1536 * KIB,
    ];
    let reads = prop_oneof![Just(1usize), 1..64 * KIB, 64 * KIB..1024 * KIB];
    let handling = prop_oneof![
        3 => Just(Handling::Ignore),
        2 => reads.clone().prop_map(Handling::Read),
        2 => reads.prop_map(Handling::Hold),
        1 => Just(Handling::ReadAll),
    ];
    let sending = prop_oneof![
        6 => Just(Sending::Complete),
        2 => Just(Sending::Stall),
        1 => Just(Sending::Abort),
    ];
    (size, handling, sending).prop_map(|(size, handling, sending)| {
        // A handler never waits for more than the client sends.
        let cap = |n: usize| n.min(exchange_sent(size, sending));
        let handling = match handling {
            Handling::Read(n) => Handling::Read(cap(n)),
            Handling::Hold(n) => Handling::Hold(cap(n)),
            Handling::ReadAll if sending != Sending::Complete => {
                Handling::Read(exchange_sent(size, sending))
            }
            other => other,
        };
        Exchange {
            size,
            handling,
            sending,
        }
    })
}

fn exchange_sent(size: usize, sending: Sending) -> usize {
    Exchange {
        size,
        handling: Handling::Ignore,
        sending,
    }
    .sent()
}

/// The handler of the property: the `x-exchange` header says what to do;
/// it reports the bytes it read.
async fn scripted(
    req: TestRequest,
    script: Arc<Vec<Exchange>>,
    read: Arc<Mutex<Vec<u64>>>,
) -> TestResponse {
    let i: usize = req.headers()["x-exchange"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut body = req.into_body();
    let report = move |n: usize| read.lock().unwrap()[i] = u64::try_from(n).unwrap();
    async fn read_at_least(body: &mut TestBody, want: usize, all: bool) -> usize {
        let mut n = 0;
        while all || n < want {
            match body.frame().await {
                Some(Ok(frame)) => n += frame.data_ref().map_or(0, Bytes::len),
                Some(Err(_)) | None => break,
            }
        }
        n
    }
    match script[i].handling {
        Handling::Ignore => report(0),
        Handling::Read(want) => report(read_at_least(&mut body, want, false).await),
        Handling::ReadAll => report(read_at_least(&mut body, 0, true).await),
        Handling::Hold(want) => {
            tokio::spawn(async move { report(read_at_least(&mut body, want, false).await) });
        }
    }
    Response::new(Full::new(Bytes::from_static(b"done")))
}

/// The outcomes a body may land in, given its story.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Read,
    Drained,
    OverLimit,
    Deadline,
    BodyError,
}

fn count(stats: &DrainStats, outcome: Outcome) -> u64 {
    match outcome {
        Outcome::Read => stats.read,
        Outcome::Drained => stats.drained + stats.drained_inline,
        Outcome::OverLimit => stats.over_limit,
        Outcome::Deadline => stats.deadline,
        Outcome::BodyError => stats.body_error,
    }
}

/// Where a body of `exchange` may land, the handler having read `read`
/// bytes of it.
fn allowed(exchange: &Exchange, read: u64, limit: u64) -> Vec<Outcome> {
    use Outcome::*;
    let remainder = exchange.size as u64 - read;
    match exchange.sending {
        // The client resets its stream after the response: the drain fails,
        // unless it was refused first or ran out of time.
        Sending::Abort => vec![BodyError, OverLimit, Deadline],
        Sending::Stall if limit == 0 || remainder > limit => vec![OverLimit],
        Sending::Stall => vec![Deadline],
        Sending::Complete if matches!(exchange.handling, Handling::ReadAll) => vec![Read],
        // All the data read, the end of the stream maybe not seen yet: the
        // layer waits for it (a drain of 0 bytes), except with a limit of 0.
        Sending::Complete if remainder == 0 && limit == 0 => vec![Read, OverLimit],
        Sending::Complete if remainder == 0 => vec![Read, Drained],
        Sending::Complete if limit == 0 || remainder > limit => vec![OverLimit],
        Sending::Complete => vec![Drained],
    }
}

/// Runs the exchanges concurrently on one HTTP/2 connection and checks that
/// every body the layer saw landed in exactly one outcome, one its story
/// allows, that the bytes drained add up, and which streams the server
/// reset.
fn run_property(limit: usize, script: Vec<Exchange>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let layer = DrainBodyLayer::new(0)
            .http2_limit(limit)
            .timeout(Duration::from_millis(400));
        let (layer, counters) = counted(layer);
        let script = Arc::new(script);
        let read = Arc::new(Mutex::new(vec![0u64; script.len()]));
        let server = {
            let (script, read) = (script.clone(), read.clone());
            serve(Transport::H2c, layer, move |req| {
                scripted(req, script.clone(), read.clone())
            })
            .await
        };
        let (send, client_conn) = server.h2_client::<ChannelBody>().await;
        let mut conn = server.next_conn().await;

        let mut stalled = Vec::new();
        let mut responses = Vec::new();
        for (i, exchange) in script.iter().enumerate() {
            let (tx, mut body) = channel_body(u64::try_from(exchange.size).unwrap());
            if !exchange.counted() {
                body = no_body();
            }
            let mut left = exchange.sent();
            while left > 0 {
                let n = left.min(16 * KIB);
                tx.send(Ok(Bytes::from(vec![b'p'; n]))).unwrap();
                left -= n;
            }
            let sending = exchange.sending;
            // A complete body ends here; an aborted one fails once the
            // handler has answered, so that hyper hands it the request.
            let abort = match sending {
                Sending::Complete => None,
                Sending::Stall => {
                    stalled.push(tx);
                    None
                }
                Sending::Abort => Some(tx),
            };
            let mut send = send.clone();
            step("ready", send.ready()).await.unwrap();
            // Sent in order: exchange `i` is stream `2 i + 1`.
            let res = send.send_request(
                Request::post(server.url("/script"))
                    .header("x-exchange", i)
                    .body(body)
                    .unwrap(),
            );
            responses.push(tokio::spawn(async move {
                let res = res.await.map_err(|e| e.to_string());
                if let Some(tx) = abort {
                    let _ = tx.send(Err(io::Error::other("client gives up")));
                }
                let body = res?
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(body.to_bytes())
            }));
        }
        for (exchange, res) in script.iter().zip(responses) {
            let res = step("response", res).await.unwrap();
            prop_assert_eq!(res, Ok(Bytes::from_static(b"done")), "{:?}", exchange);
        }
        let bodies = script.iter().filter(|e| e.counted()).count() as u64;
        let stats = settled(&counters, bodies).await;
        drop((send, stalled));
        client_conn.closed().await;
        let wire = conn.ended().await;

        let read = read.lock().unwrap().clone();
        let limit = limit as u64;
        let (mut least, mut most) = (Vec::new(), Vec::new());
        let mut drained_at_most = 0u64;
        for (i, exchange) in script.iter().enumerate() {
            if !exchange.counted() {
                continue;
            }
            let allowed = allowed(exchange, read[i], limit);
            if allowed.len() == 1 {
                least.push(allowed[0]);
            }
            most.extend(allowed.iter().copied());
            let remainder = exchange.size as u64 - read[i];
            // A drain stops within a frame (16 KiB) past the limit.
            drained_at_most += remainder.min(limit + 16 * KIB as u64);
            let stream = 2 * i as u32 + 1;
            let resets: Vec<u32> = wire
                .resets()
                .iter()
                .filter(|&&(s, _)| s == stream)
                .map(|&(_, code)| code)
                .collect();
            if exchange.sending == Sending::Stall {
                prop_assert_eq!(&resets, &[NO_ERROR], "stalled: {:?}", exchange);
            }
            if allowed == [Outcome::Drained] || allowed == [Outcome::Read] {
                prop_assert_eq!(&resets, &[] as &[u32], "drained, yet reset: {:?}", exchange);
            }
        }
        prop_assert_eq!(stats.settled(), bodies, "one outcome per body: {:?}", stats);
        prop_assert_eq!(stats.draining, 0);
        for outcome in [
            Outcome::Read,
            Outcome::Drained,
            Outcome::OverLimit,
            Outcome::Deadline,
            Outcome::BodyError,
        ] {
            let counted = count(&stats, outcome);
            let least = least.iter().filter(|&&o| o == outcome).count() as u64;
            let most = most.iter().filter(|&&o| o == outcome).count() as u64;
            prop_assert!(
                (least..=most).contains(&counted),
                "{:?}: {} not in {}..={}: {:?}",
                outcome,
                counted,
                least,
                most,
                stats
            );
        }
        prop_assert!(stats.bytes_drained <= drained_at_most, "{:?}", stats);
        Ok(())
    })
}

fn property_cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: property_cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Real HTTP/2 connections, random uploads, handlers and clients: each
    /// body lands in exactly one `DrainStats` outcome, the one its story
    /// calls for.
    #[test]
    fn each_http2_body_lands_in_exactly_one_outcome(
        limit in prop_oneof![Just(0usize), Just(16 * KIB), Just(1024 * KIB)],
        script in prop::collection::vec(exchange(), 1..6),
    ) {
        if layer_enabled() {
            run_property(limit, script)?;
        }
    }
}
