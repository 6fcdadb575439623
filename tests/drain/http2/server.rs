//! The server of the HTTP/2 tests: hyper-util's `auto` builder behind the layer,
//! over h2c or TLS (ALPN h2 and http/1.1), each connection's output sniffed; and
//! the clients that talk to it (hyper's HTTP/2 client, curl).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use linger::{DrainBody, DrainBodyLayer, LingerGroup};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tower::ServiceBuilder;

use super::wire::{Conn, Sniffed, Wire};
use super::STEP;
use crate::common::step_within;
use crate::common::tls::SelfSigned;
use crate::common::{self, layer_enabled, text, Handler, TestRequest, TestResponse};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Cleartext HTTP/2 with prior knowledge.
    H2c,
    /// TLS with ALPN `h2` (and `http/1.1`), as in `examples/hyper_auto_tls.rs`.
    Tls,
}

/// A self-signed certificate for `localhost`: the server's configuration
/// (ALPN h2 and http/1.1), a client connector (ALPN h2) and the PEM for curl.
fn self_signed() -> (Arc<ServerConfig>, TlsConnector, String) {
    let SelfSigned {
        mut server,
        mut client,
        pem,
    } = SelfSigned::new();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    client.alpn_protocols = vec![b"h2".to_vec()];
    (Arc::new(server), TlsConnector::from(Arc::new(client)), pem)
}

/// A file removed when dropped.
pub struct TempFile(PathBuf);

impl TempFile {
    pub fn new(name: &str, contents: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!("linger-http2-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A running server: hyper-util's `auto` builder on 127.0.0.1:0 with
/// `ServiceBuilder::new().layer(layer).service_fn(handler)`. It stops with
/// the test's runtime.
pub struct Server {
    pub addr: SocketAddr,
    transport: Transport,
    connector: TlsConnector,
    /// The certificate, for `curl --cacert`.
    ca: TempFile,
    conns: tokio::sync::Mutex<mpsc::UnboundedReceiver<Conn>>,
}

/// Options of a server beyond its layer and handler.
#[derive(Clone, Copy, Default)]
pub struct Options {
    /// Accept extended `CONNECT` (RFC 8441).
    pub connect_protocol: bool,
    /// Serve over a `LingeringIo` (under TLS, if any), as the example does.
    pub lingering: bool,
}

pub async fn serve<F, Fut>(transport: Transport, layer: DrainBodyLayer, handler: F) -> Server
where
    F: Fn(TestRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = TestResponse> + Send + 'static,
{
    serve_with(transport, layer, Options::default(), handler).await
}

pub async fn serve_with<F, Fut>(
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
    let io = TokioIo::new(Sniffed::new(io, wire.clone()));
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
    pub async fn next_conn(&self) -> Conn {
        step_within(STEP, "server accepts", async {
            self.conns.lock().await.recv().await
        })
        .await
        .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        match self.transport {
            Transport::H2c => format!("http://{}{path}", self.addr),
            Transport::Tls => format!("https://localhost:{}{path}", self.addr.port()),
        }
    }

    /// A hyper HTTP/2 client connection; its task is spawned.
    pub async fn h2_client<B>(&self) -> (hyper::client::conn::http2::SendRequest<B>, ClientConn)
    where
        B: Body<Data = Bytes> + Unpin + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let tcp = step_within(STEP, "connect", TcpStream::connect(self.addr))
            .await
            .unwrap();
        let builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        match self.transport {
            Transport::H2c => {
                let (send, conn) =
                    step_within(STEP, "h2 handshake", builder.handshake(TokioIo::new(tcp)))
                        .await
                        .unwrap();
                (
                    send,
                    ClientConn(tokio::spawn(async move { conn.await.is_ok() })),
                )
            }
            Transport::Tls => {
                let name = ServerName::try_from("localhost").unwrap();
                let tls = step_within(STEP, "TLS handshake", self.connector.connect(name, tcp))
                    .await
                    .unwrap();
                assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
                let (send, conn) =
                    step_within(STEP, "h2 handshake", builder.handshake(TokioIo::new(tls)))
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
    pub async fn curl_post(&self, path: &str, body: &Path) -> std::process::Output {
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
        step_within(STEP, "curl", command.output()).await.unwrap()
    }
}

/// A hyper client connection's task: `true` if it ended without error.
pub struct ClientConn(tokio::task::JoinHandle<bool>);

impl ClientConn {
    pub async fn closed(self) -> bool {
        step_within(STEP, "client connection ends", self.0)
            .await
            .unwrap()
    }
}

/// `/upload` rejects the body unread with `413`, `/` answers `hello`, other
/// paths as [`common::ignore_or_consume`](crate::common::ignore_or_consume):
/// `/consume` reads the body, anything else ignores it and answers `ignored`.
pub async fn ignore_or_consume(req: TestRequest) -> TestResponse {
    match req.uri().path() {
        "/upload" => {
            let mut res = Response::new(Full::new(Bytes::from_static(b"upload too large\n")));
            *res.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            res
        }
        "/" => text("hello"),
        _ => common::ignore_or_consume(req).await,
    }
}
