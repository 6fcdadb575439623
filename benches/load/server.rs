//! The servers, written as the README writes them.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as AutoBuilder;
use hyper_util::service::TowerToHyperService;
use linger::{DrainBody, DrainBodyLayer, LingeringListener};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tower::ServiceBuilder;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// hyper's HTTP/1 accept loop, no `linger`: closes with RST when a body is unread.
    Plain,
    /// `DrainBodyLayer` only.
    Drain,
    /// `LingeringListener` only.
    Linger,
    /// Both: the README's hyper quick start.
    Both,
    /// The README's other axum form (its quick start before issue 22):
    /// `router.layer(DrainBodyLayer::new(..))`.
    Axum,
    /// The same axum router, without `linger`.
    AxumBare,
    /// The README's axum quick start with `DrainBodyLayer::axum()` on the
    /// router: `router.layer(DrainBodyLayer::new(..).axum())`.
    AxumAxumLayer,
    /// The README's axum quick start: the layer around the whole router,
    /// `DrainBodyLayer::new(..).axum().layer(router)` (here `with_state(())` and
    /// `into_make_service()`, which cost the same per request and also build
    /// on revisions before `axum::serve` took the wrapped router as it is).
    AxumAround,
    /// No `linger`: the router with a layer that does nothing
    /// (`router.layer(tower::layer::util::Identity::new())`), for what
    /// `Router::layer` itself costs.
    AxumIdentity,
    /// The README's hyper form for HTTP/1 and HTTP/2 on one port:
    /// `LingeringListener` + `DrainBodyLayer`, hyper-util's `auto` builder.
    Auto,
    /// The same `auto` loop without `linger`.
    AutoBare,
}

impl Server {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "plain" => Self::Plain,
            "drain" => Self::Drain,
            "linger" => Self::Linger,
            "both" => Self::Both,
            "axum" => Self::Axum,
            "axum-bare" => Self::AxumBare,
            "axum-axumlayer" => Self::AxumAxumLayer,
            "axum-around" => Self::AxumAround,
            "axum-identity" => Self::AxumIdentity,
            "auto" => Self::Auto,
            "auto-bare" => Self::AutoBare,
            _ => return None,
        })
    }

    fn is_axum(self) -> bool {
        matches!(
            self,
            Self::Axum
                | Self::AxumBare
                | Self::AxumAxumLayer
                | Self::AxumAround
                | Self::AxumIdentity
        )
    }
}

/// Parses `name`, saying why not on stderr.
pub fn parse_server(name: &str) -> Option<Server> {
    let Some(server) = Server::from_name(name) else {
        eprintln!("load: unknown server {name:?} (plain, drain, linger, both, axum, axum-bare, axum-axumlayer, axum-around, axum-identity, auto, auto-bare)");
        return None;
    };
    if server.is_axum() && !cfg!(feature = "axum") {
        eprintln!("load: server {name:?} needs `--features axum`");
        return None;
    }
    Some(server)
}

/// The runtime of `#[tokio::main]`: multi-threaded, one worker per CPU the
/// process may use (so one under `taskset -c 0`), or `TOKIO_WORKER_THREADS`.
/// `on_start` runs on every thread the runtime starts.
pub fn runtime(workers: Option<usize>, on_start: fn()) -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().on_thread_start(on_start);
    if let Some(workers) = workers {
        builder.worker_threads(workers);
    }
    builder.build().expect("tokio runtime")
}

pub fn serve_main(name: &str, addr: &str) -> ExitCode {
    // `NAME+nodelay`: the server NAME with `TCP_NODELAY`, to run beside NAME.
    let name = match name.strip_suffix("+nodelay") {
        Some(name) => {
            NODELAY.store(true, std::sync::atomic::Ordering::Relaxed);
            name
        }
        None => name,
    };
    let Some(server) = parse_server(name) else {
        return ExitCode::from(2);
    };
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        eprintln!("load: bad address {addr:?}");
        return ExitCode::from(2);
    };
    let tls = tls();
    if tls && !matches!(server, Server::Auto | Server::AutoBare) {
        eprintln!("load: LOAD_TLS=1 serves only `auto` and `auto-bare` (axum::serve has no TLS)");
        return ExitCode::from(2);
    }
    let runtime = runtime(None, || {});
    runtime.block_on(async {
        let tcp = match TcpListener::bind(addr).await {
            Ok(tcp) => tcp,
            Err(e) => {
                eprintln!("load: cannot bind {addr}: {e}");
                return ExitCode::from(1);
            }
        };
        if tls {
            serve_auto_tls(tcp, server == Server::Auto).await;
        } else {
            serve(server, tcp).await;
        }
        ExitCode::SUCCESS
    })
}

/// Serves `server` on `tcp` until the runtime goes away.
pub async fn serve(server: Server, tcp: TcpListener) {
    match server {
        Server::Plain => serve_plain(tcp, false).await,
        Server::Drain => serve_plain(tcp, true).await,
        Server::Linger => serve_lingering(tcp, false).await,
        Server::Both => serve_lingering(tcp, true).await,
        Server::Auto => serve_auto(tcp, true).await,
        Server::AutoBare => serve_auto(tcp, false).await,
        #[cfg(feature = "axum")]
        Server::Axum
        | Server::AxumBare
        | Server::AxumAxumLayer
        | Server::AxumAround
        | Server::AxumIdentity => {
            axum_app::serve(server, tcp).await;
        }
        #[cfg(not(feature = "axum"))]
        Server::Axum
        | Server::AxumBare
        | Server::AxumAxumLayer
        | Server::AxumAround
        | Server::AxumIdentity => {
            unreachable!("parse_server refuses axum")
        }
    }
}

/// Set for a server named `NAME+nodelay`.
static NODELAY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether `TCP_NODELAY` is set on every accepted connection: for a server
/// named `NAME+nodelay`, or every server under `LOAD_NODELAY=1`; off by
/// default (axum's `serve` does not set it either).
fn nodelay() -> bool {
    NODELAY.load(std::sync::atomic::Ordering::Relaxed)
        || std::env::var_os("LOAD_NODELAY").is_some_and(|v| v == "1")
}

/// Whether `LOAD_TLS=1` asks for the `auto` servers over TLS (`h2.sh`'s
/// `TLS=1`); off by default.
fn tls() -> bool {
    std::env::var_os("LOAD_TLS").is_some_and(|v| v == "1")
}

/// A number from the environment (`LOAD_H2_*`), for the HTTP/2 settings of
/// the `auto` servers that `h2.sh` tries; `None` keeps hyper's default.
fn env_u32(name: &str) -> Option<u32> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The size of the answer to `POST /big`: far more than the socket buffers
/// hold, so that the server is still writing it while a client that sends its
/// whole body first is still sending (issue 11, item 2).
const BIG_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// The answer to `POST /big`, made once and shared (a clone is a reference
/// count), so that a request costs no 8 MiB allocation.
fn big_body() -> Bytes {
    static BIG: OnceLock<Bytes> = OnceLock::new();
    BIG.get_or_init(|| Bytes::from(vec![b'x'; BIG_RESPONSE_BYTES]))
        .clone()
}

/// Every handler: answers by method and path; reads the body only for
/// `POST /read`, whole, before it answers.
async fn handle<B>(request: Request<B>) -> Result<Response<Full<Bytes>>, Infallible>
where
    B: Body,
{
    let (status, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => (StatusCode::OK, Bytes::from_static(b"hello\n")),
        (&Method::POST, "/read") => match request.into_body().collect().await {
            Ok(_) => (StatusCode::OK, Bytes::from_static(b"read\n")),
            Err(_) => (StatusCode::BAD_REQUEST, Bytes::from_static(b"bad body\n")),
        },
        (&Method::POST, "/ignore") => (StatusCode::OK, Bytes::from_static(b"ignored\n")),
        (&Method::POST, "/reject") => (
            StatusCode::PAYLOAD_TOO_LARGE,
            Bytes::from_static(b"rejected\n"),
        ),
        (&Method::POST, "/big") => (StatusCode::OK, big_body()),
        _ => (StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    Ok(response)
}

/// Serves one connection as the README does.
fn spawn_connection<I>(io: I, layered: bool)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let builder = hyper::server::conn::http1::Builder::new();
    if layered {
        let service = ServiceBuilder::new()
            .layer(DrainBodyLayer::new(256 * 1024))
            .service_fn(handle::<DrainBody<Incoming>>);
        tokio::spawn(async move {
            let _ = builder
                .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
                .await;
        });
    } else {
        let service = ServiceBuilder::new().service_fn(handle::<Incoming>);
        tokio::spawn(async move {
            let _ = builder
                .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
                .await;
        });
    }
}

/// The accept loop without `LingeringListener`.
async fn serve_plain(tcp: TcpListener, layered: bool) {
    let nodelay = nodelay();
    loop {
        let (stream, _peer) = next_stream(|| tcp.accept()).await;
        if nodelay {
            let _ = stream.set_nodelay(true);
        }
        spawn_connection(stream, layered);
    }
}

/// The README's accept loop: `LingeringListener::accept`.
async fn serve_lingering(tcp: TcpListener, layered: bool) {
    let nodelay = nodelay();
    let listener = LingeringListener::new(tcp);
    loop {
        let (stream, _peer) = next_stream(|| listener.accept()).await;
        if nodelay {
            let _ = stream.get_ref().set_nodelay(true);
        }
        spawn_connection(stream, layered);
    }
}

/// hyper-util's `auto` builder of the `auto` servers: hyper's defaults, unless
/// `LOAD_H2_WINDOW` (initial stream and connection windows, bytes),
/// `LOAD_H2_FRAME` (max frame size) or `LOAD_H2_ADAPTIVE=1` say otherwise.
fn auto_builder() -> AutoBuilder<TokioExecutor> {
    let mut builder = AutoBuilder::new(TokioExecutor::new());
    {
        let mut h2 = builder.http2();
        if let Some(window) = env_u32("LOAD_H2_WINDOW") {
            h2.initial_stream_window_size(window)
                .initial_connection_window_size(window);
        }
        if let Some(frame) = env_u32("LOAD_H2_FRAME") {
            h2.max_frame_size(frame);
        }
        if std::env::var_os("LOAD_H2_ADAPTIVE").is_some_and(|v| v == "1") {
            h2.adaptive_window(true);
        }
    }
    builder
}

/// The README's hyper form for HTTP/1 and HTTP/2 on one port (`auto`), with
/// `linger` (`layered`) or without it at all; HTTP/2 settings from
/// [`auto_builder`] (unset, hyper's defaults, as in the README).
async fn serve_auto(tcp: TcpListener, layered: bool) {
    let nodelay = nodelay();
    let builder = auto_builder();
    if layered {
        let listener = LingeringListener::new(tcp);
        loop {
            let (stream, _peer) = next_stream(|| listener.accept()).await;
            if nodelay {
                let _ = stream.get_ref().set_nodelay(true);
            }
            tokio::spawn(serve_auto_connection(builder.clone(), stream, true));
        }
    } else {
        loop {
            let (stream, _peer) = next_stream(|| tcp.accept()).await;
            if nodelay {
                let _ = stream.set_nodelay(true);
            }
            tokio::spawn(serve_auto_connection(builder.clone(), stream, false));
        }
    }
}

/// Serves one connection with hyper-util's `auto` builder, with
/// `DrainBodyLayer` in front of the handler when `layered`.
async fn serve_auto_connection<I>(builder: AutoBuilder<TokioExecutor>, io: I, layered: bool)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let _ = if layered {
        let service = ServiceBuilder::new()
            .layer(DrainBodyLayer::new(256 * 1024))
            .service_fn(handle::<DrainBody<Incoming>>);
        builder
            .serve_connection(io, TowerToHyperService::new(service))
            .await
    } else {
        let service = ServiceBuilder::new().service_fn(handle::<Incoming>);
        builder
            .serve_connection(io, TowerToHyperService::new(service))
            .await
    };
}

/// How long a client may take to finish the TLS handshake, as in
/// `examples/hyper_auto_tls.rs`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS acceptor with a fresh self-signed certificate for `localhost` and
/// `127.0.0.1` (rcgen's default key, ECDSA P-256) and ALPN `h2` and
/// `http/1.1`, as `examples/hyper_auto_tls.rs` makes it.
fn tls_acceptor() -> io::Result<TlsAcceptor> {
    // Only `ring` is compiled in; installing it explicitly keeps
    // `ServerConfig::builder` working if another crate enables a second
    // provider. An error just means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(names).map_err(io::Error::other)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(signing_key.serialize_der()));
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .map_err(io::Error::other)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Resolves at SIGTERM (the harness's `kill`), so that the TLS servers can
/// say how their connections closed; never elsewhere.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            term.recv().await;
            return;
        }
    }
    std::future::pending::<()>().await
}

/// Serves one TLS connection in a task of its own: the handshake, within
/// `HANDSHAKE_TIMEOUT`, then [`serve_auto_connection`].
fn spawn_tls_connection<I>(
    acceptor: &TlsAcceptor,
    builder: &AutoBuilder<TokioExecutor>,
    stream: I,
    layered: bool,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let acceptor = acceptor.clone();
    let builder = builder.clone();
    tokio::spawn(async move {
        if let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
        {
            serve_auto_connection(builder, tls, layered).await;
        }
    });
}

/// The `auto` servers over TLS (`LOAD_TLS=1`, `h2.sh`'s `TLS=1`), as the
/// README advises and `examples/hyper_auto_tls.rs` does: with `linger`
/// (`layered`), `LingeringListener::accept` wraps the TCP stream *under* the
/// TLS stream (so rustls's `close_notify` goes out before the staged close),
/// and the handshake runs in the connection's task, within
/// `HANDSHAKE_TIMEOUT`; `DrainBodyLayer` as in `serve_auto`. Without
/// `layered`, the same loop without `linger`. At SIGTERM the loop stops and
/// the lingering one prints `LingeringListener::stats()` on stderr (the
/// server's log), then the process ends with its connections.
async fn serve_auto_tls(tcp: TcpListener, layered: bool) {
    let acceptor = match tls_acceptor() {
        Ok(acceptor) => acceptor,
        Err(e) => {
            eprintln!("load: cannot make the TLS certificate: {e}");
            return;
        }
    };
    let nodelay = nodelay();
    let builder = auto_builder();
    let mut terminated = std::pin::pin!(terminated());
    if layered {
        let listener = LingeringListener::new(tcp);
        loop {
            let (stream, _peer) = tokio::select! {
                accepted = next_stream(|| listener.accept()) => accepted,
                () = &mut terminated => break,
            };
            if nodelay {
                let _ = stream.get_ref().set_nodelay(true);
            }
            // `stream` is a `LingeringIo<TcpStream>`: TLS goes on top of it.
            spawn_tls_connection(&acceptor, &builder, stream, true);
        }
        eprintln!("load: stopped; {:?}", listener.stats());
    } else {
        loop {
            let (stream, _peer) = tokio::select! {
                accepted = next_stream(|| tcp.accept()) => accepted,
                () = &mut terminated => break,
            };
            if nodelay {
                let _ = stream.set_nodelay(true);
            }
            spawn_tls_connection(&acceptor, &builder, stream, false);
        }
        eprintln!("load: stopped");
    }
}

/// The next stream `accept` gives, after a pause on each error.
async fn next_stream<S, Accept>(mut accept: impl FnMut() -> Accept) -> S
where
    Accept: std::future::Future<Output = io::Result<S>>,
{
    loop {
        match accept().await {
            Ok(stream) => return stream,
            Err(_) => accept_backoff().await,
        }
    }
}

/// After a failed accept (out of descriptors, say), wait a little rather than
/// spin; the README's `?` would end the server instead.
async fn accept_backoff() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

#[cfg(feature = "axum")]
mod axum_app {
    use super::Server;
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use axum::Router;
    use linger::{DrainBodyLayer, LingeringListener};
    use tokio::net::TcpListener;

    fn router() -> Router {
        Router::new()
            .route("/", get(|| async { "hello\n" }))
            .route("/ignore", post(|| async { "ignored\n" }))
            .route("/read", post(|_body: axum::body::Bytes| async { "read\n" }))
            .route(
                "/reject",
                post(|| async { (StatusCode::PAYLOAD_TOO_LARGE, "rejected\n") }),
            )
            .route("/big", post(|| async { super::big_body() }))
    }

    /// The README's axum quick start (`Server::Axum`), its variants, or the
    /// same router served without `linger`. `LOAD_NODELAY=1` sets
    /// `TCP_NODELAY` through axum's `tap_io` (not in the README). Built with
    /// axum's `http2` feature (`h2.sh`), `serve` speaks HTTP/2 too.
    pub(super) async fn serve(server: Server, tcp: TcpListener) {
        use axum::serve::ListenerExt as _;

        if super::nodelay() {
            let set_nodelay = |stream: &mut tokio::net::TcpStream| {
                let _ = stream.set_nodelay(true);
            };
            serve_on(server, tcp.tap_io(set_nodelay)).await;
        } else {
            serve_on(server, tcp).await;
        }
    }

    async fn serve_on<L>(server: Server, tcp: L)
    where
        L: axum::serve::Listener,
        L::Addr: std::fmt::Debug,
    {
        // `into_make_service` below is axum's `ServiceExt` for revisions
        // before `AxumDrainBodyService<Router>` had its own.
        #[allow(unused_imports)]
        use axum::ServiceExt as _;
        use tower::Layer as _;

        let layer = DrainBodyLayer::new(256 * 1024);
        let _ = match server {
            Server::Axum => axum::serve(LingeringListener::new(tcp), router().layer(layer)).await,
            Server::AxumAxumLayer => {
                let app = router().layer(layer.axum());
                axum::serve(LingeringListener::new(tcp), app).await
            }
            Server::AxumAround => {
                let app = layer.axum().layer(router().with_state(()));
                axum::serve(LingeringListener::new(tcp), app.into_make_service()).await
            }
            Server::AxumIdentity => {
                let app = router().layer(tower::layer::util::Identity::new());
                axum::serve(tcp, app).await
            }
            _ => axum::serve(tcp, router()).await,
        };
    }
}
