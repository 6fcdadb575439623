//! The servers under test: the README set-ups with short bounds, each with its
//! `LingerGroup`, its `DrainCounters` and a record of every request line its handler
//! saw.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use linger::{
    DrainBody, DrainBodyLayer, DrainCounters, LingerConfig, LingerGroup, LingeringListener,
};
use tokio::net::TcpListener;
use tower::ServiceBuilder;

use crate::wire::PATTERN;

/// The drain layer's limit and deadline: short, so that misbehaving peers cost little time.
pub const LIMIT: u64 = 256 * 1024;
pub const DRAIN_TIMEOUT: Duration = Duration::from_millis(1500);

fn linger_config() -> LingerConfig {
    LingerConfig::new()
        .idle_timeout(Duration::from_millis(500))
        .total_timeout(Duration::from_secs(2))
        .max_bytes(8 * 1024 * 1024)
}

fn drain_layer(counters: &DrainCounters) -> DrainBodyLayer {
    DrainBodyLayer::new(usize::try_from(LIMIT).expect("limit fits usize"))
        .timeout(DRAIN_TIMEOUT)
        .counters(counters.clone())
}

// ------------------------------------------------------------------ server --

/// Every request line the handlers saw, in order.
#[derive(Default)]
pub struct Seen {
    pub lines: Mutex<Vec<String>>,
    /// Requests that reached the layer with a body that had not ended
    /// (counted by a layer just outside it): each must land in exactly one
    /// outcome of the layer's `DrainCounters`.
    pub with_body: AtomicU64,
}

impl Seen {
    fn record(&self, method: &Method, path: &str) {
        self.lines.lock().unwrap().push(format!("{method} {path}"));
    }

    /// For a `map_request` just outside the drain layer: it runs in the same
    /// `call`, so a request the handler never got to poll counts too.
    fn count_body<B: Body>(seen: &Arc<Self>) -> impl Fn(Request<B>) -> Request<B> + Clone {
        let seen = seen.clone();
        move |request: Request<B>| {
            if !request.body().is_end_stream() {
                seen.with_body.fetch_add(1, Ordering::Relaxed);
            }
            request
        }
    }
}

/// The one handler of both set-ups; the first path segment says what to do:
/// `ignore`, `consume` (answers the length read), `partial/{k}` (reads at
/// least k bytes), `big/{n}` (n bytes of `PATTERN`), `reject` (413), `slow/{ms}`.
async fn serve_request<B>(seen: &Seen, method: Method, uri: Uri, body: B) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Display,
{
    let path = uri.path().to_owned();
    let line = format!("{method} {path}");
    seen.record(&method, &path);
    let mut segments = path.split('/').skip(1);
    let kind = segments.next().unwrap_or_default();
    let arg: usize = segments
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(0);
    let text = |status: StatusCode, text: String| {
        let mut response = Response::new(Full::new(Bytes::from(text)));
        *response.status_mut() = status;
        response
    };
    match kind {
        "ignore" => text(StatusCode::OK, line),
        "consume" => match body.collect().await {
            Ok(body) => text(StatusCode::OK, format!("{line} {}", body.to_bytes().len())),
            Err(e) => text(StatusCode::BAD_REQUEST, format!("body error: {e}")),
        },
        "partial" => {
            let mut body = body;
            let mut read = 0;
            while read < arg {
                match body.frame().await {
                    Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                    _ => break,
                }
            }
            text(StatusCode::OK, line)
        }
        "big" => {
            let pattern: &'static [u8] = &PATTERN;
            Response::new(Full::new(Bytes::from_static(&pattern[..arg])))
        }
        "reject" => text(StatusCode::PAYLOAD_TOO_LARGE, line),
        "slow" => {
            // The handler's own work, part of the scenario.
            tokio::time::sleep(Duration::from_millis(arg as u64)).await;
            text(StatusCode::OK, line)
        }
        _ => text(StatusCode::NOT_FOUND, line),
    }
}

/// A server under test: its address, its linger counters and what it saw.
pub struct Fleet {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub group: LingerGroup,
    pub counters: DrainCounters,
    pub seen: Arc<Seen>,
}

/// README "Quick start: hyper", with short bounds.
pub async fn start_hyper() -> Fleet {
    start_hyper_with("hyper", false).await
}

/// The same service, with every connection driven from the accept loop's one task
/// (`FuturesUnordered` in a `select!` loop, as single-task and embedded servers do): the
/// layer cannot tell there which `LingeringIo` serves a request, and must do without.
pub async fn start_hyper_one_task() -> Fleet {
    start_hyper_with("hyper-one-task", true).await
}

async fn start_hyper_with(name: &'static str, one_task: bool) -> Fleet {
    use futures_util::stream::{FuturesUnordered, StreamExt};

    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let group = LingerGroup::new(linger_config());
    let listener = LingeringListener::with_group(tcp, group.clone());
    let seen = Arc::new(Seen::default());
    let record = seen.clone();
    let counters = DrainCounters::new();
    let layer = drain_layer(&counters);
    tokio::spawn(async move {
        let mut connections = FuturesUnordered::new();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                Some(()) = connections.next(), if !connections.is_empty() => continue,
            };
            let Ok((stream, _peer)) = accepted else {
                // Out of descriptors, say: the clients' failures will tell.
                tokio::task::yield_now().await;
                continue;
            };
            let seen = record.clone();
            let service = ServiceBuilder::new()
                .map_request(Seen::count_body::<Incoming>(&record))
                .layer(layer.clone())
                .service_fn(move |request: Request<DrainBody<Incoming>>| {
                    let seen = seen.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        if parts.uri.path().starts_with("/fail/") {
                            // A failing service: hyper drops the connection
                            // without closing it, the lingering drop path.
                            seen.record(&parts.method, parts.uri.path());
                            return Err(std::io::Error::other("handler failed"));
                        }
                        let response = serve_request(&seen, parts.method, parts.uri, body).await;
                        Ok(response)
                    }
                });
            let connection = async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                    .await;
            };
            if one_task {
                connections.push(connection);
            } else {
                tokio::spawn(connection);
            }
        }
    });
    Fleet {
        name,
        addr,
        group,
        counters,
        seen,
    }
}

/// README "Quick start: axum", with short bounds; `own_body` uses the
/// layer's axum flavour (`DrainBodyLayer::axum()`, axum's own `Body`).
#[cfg(feature = "axum")]
pub async fn start_axum(own_body: bool) -> Fleet {
    use axum::routing::any;
    use axum::Router;

    let seen = Arc::new(Seen::default());
    let record = seen.clone();
    let counters = DrainCounters::new();
    let routes = Router::new().route(
        "/{*rest}",
        any(move |request: axum::extract::Request| {
            let seen = record.clone();
            async move {
                let (parts, body) = request.into_parts();
                serve_request(&seen, parts.method, parts.uri, body).await
            }
        }),
    );
    let app = if own_body {
        routes.layer(drain_layer(&counters).axum())
    } else {
        routes.layer(drain_layer(&counters))
    };
    let app = app.layer(tower::util::MapRequestLayer::new(Seen::count_body::<
        axum::body::Body,
    >(&seen)));
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let group = LingerGroup::new(linger_config());
    let listener = LingeringListener::with_group(tcp, group.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Fleet {
        name: if own_body { "axum-own-body" } else { "axum" },
        addr,
        group,
        counters,
        seen,
    }
}
