//! A real hyper server on 127.0.0.1:0, with `DrainBodyLayer` (or without it, when
//! `LINGER_TEST_WITHOUT_LAYER` is set), that records what it served and read, and the
//! handlers most drain tests use.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use linger::{DrainBody, DrainBodyLayer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceBuilder;

use super::{layer_enabled, step};

/// What the handler sees: the layer's `DrainBody<Incoming>` (or plain
/// `Incoming` without the layer), boxed so one handler serves both.
pub type TestBody = UnsyncBoxBody<Bytes, hyper::Error>;
pub type TestRequest = Request<TestBody>;
pub type TestResponse = Response<Full<Bytes>>;

/// A handler of tests, boxed so that one server type serves them all.
pub type Handler =
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
