//! Both fixes in a raw hyper HTTP/1 accept loop: a [`LingeringListener`]
//! hands out connections that close in stages, and a [`DrainBodyLayer`]
//! around a `service_fn` drains request bodies the handler leaves unread.
//!
//! Run it (the address defaults to `127.0.0.1:3001`; pass another as the first
//! argument or in `LINGER_ADDR`, and set `RUST_LOG` to change the logging):
//!
//! ```text
//! cargo run --example hyper
//! cargo run --example hyper -- 127.0.0.1:8080
//! ```
//!
//! Then try, in another terminal:
//!
//! ```text
//! # An ignored 100 KB body, then a second request on the same connection:
//! # `-w` prints how many new connections each needed; `1 0` means reused.
//! head -c 100000 /dev/zero | curl -s -H 'Expect:' --data-binary @- \
//!     -w ' %{num_connects}\n' http://127.0.0.1:3001/ignore \
//!     --next -s -w ' %{num_connects}\n' http://127.0.0.1:3001/stats
//!
//! # 1 MB rejected unread with 413: too much to drain, so the connection is
//! # closed, in stages, and the 413 still arrives whole.
//! head -c 1000000 /dev/zero | curl -si -H 'Expect:' --data-binary @- http://127.0.0.1:3001/upload
//!
//! # A handler that reads the body, and the listener's counters so far.
//! curl -s --data-binary hello http://127.0.0.1:3001/echo
//! curl -s http://127.0.0.1:3001/stats
//! ```
//!
//! The events of a connection, its lingering close included, carry the
//! connection's span with the peer address:
//!
//! ```text
//! DEBUG conn{peer=127.0.0.1:51234}: linger::lingering::close: linger finished outcome="peer_eof" ...
//! ```
//!
//! Ctrl-C stops accepting, lets open connections finish (hyper-util's
//! `GracefulShutdown`, at most 15 s), waits for their lingering closes
//! (`LingerGroup::wait_idle`, at most their 10 s `total_timeout` plus a 1 s
//! margin) and prints the counters: 26 s in all, within Kubernetes' default
//! 30 s grace period.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use linger::{DrainBody, DrainBodyLayer, LingerConfig, LingerGroup, LingeringListener};
use tower::ServiceBuilder;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

/// After Ctrl-C, how long open connections may take to finish.
const SERVER_GRACE: Duration = Duration::from_secs(15);
/// Each close's `total_timeout`: how long a lingering close may take.
const LINGER_GRACE: Duration = Duration::from_secs(10);
/// The wait for the lingering closes is bounded by their `total_timeout` plus
/// this. A close's `total_timeout` counts from the drop of its IO, which comes
/// around the time hyper-util counts the connection done: `wait_idle` waits
/// for that drop and ends with the last close, and the margin covers the gap
/// (and the timers' millisecond). It is spent only on an IO that stays open.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // `linger=debug` shows what happened to each unread body and each close;
    // `info` the rest, spans and warnings included.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,linger=debug")),
        )
        .init();

    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("LINGER_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:3001".to_owned());

    // Default bounds (2 s idle, 64 MiB, 1024 lingering at once) but 10 s in
    // all instead of 30 s, so that the shutdown fits in 30 s.
    let listener = LingeringListener::with_config(
        tokio::net::TcpListener::bind(&addr).await?,
        LingerConfig::new().total_timeout(LINGER_GRACE),
    );
    let local = listener.local_addr()?;
    println!("listening on http://{local}");
    println!(
        "try: curl -s --data-binary hello http://{local}/echo && curl -s http://{local}/stats"
    );

    // The group is shared by every connection of the listener; a clone lets
    // the handler report its counters.
    let group = listener.group().clone();
    let stats_group = group.clone();
    let service = ServiceBuilder::new()
        .layer(DrainBodyLayer::new(256 * 1024))
        .service_fn(move |req| handle(req, stats_group.clone()));

    let graceful = GracefulShutdown::new();
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Usually out of file descriptors: pause rather than spin.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut ctrl_c => break,
        };
        // hyper wants its own `Service` trait; this adapts the tower stack.
        let service = TowerToHyperService::new(service.clone());
        let watcher = graceful.watcher();
        // The span goes with the connection's events: the layer's decisions,
        // and the lingering close, which keeps it in its background task.
        let span = tracing::info_span!("conn", %peer);
        tokio::spawn(
            async move {
                // `io` is a `LingeringIo<TcpStream>`: when hyper shuts the
                // connection down (or drops it on an error), it closes in stages.
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(io), service);
                let conn = watcher.watch(conn);
                if let Err(err) = conn.await {
                    tracing::info!(%err, "connection ended with an error");
                }
            }
            .instrument(span),
        );
    }

    // Open connections finish their current request and close (their FIN goes
    // out); then their lingering closes end, before the runtime does.
    drop(listener);
    if tokio::time::timeout(SERVER_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {SERVER_GRACE:?}; stopping anyway");
    }
    // `wait_idle` ends with the last close; the bound only matters for an IO
    // that stays open (connections cut off above, an upgraded connection).
    let bound = group.config().get_total_timeout() + SHUTDOWN_MARGIN;
    if tokio::time::timeout(bound, group.wait_idle())
        .await
        .is_err()
    {
        tracing::warn!(
            stats = ?group.stats(),
            "connections still open or lingering after {bound:?}; stopping anyway"
        );
    }
    println!("stopped; {:?}", group.stats());
    Ok(())
}

/// `/upload` rejects the body unread, `/echo` reads it, `/stats` shows the
/// listener's counters, anything else ignores the body.
async fn handle(
    req: Request<DrainBody<Incoming>>,
    group: LingerGroup,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match req.uri().path() {
        "/upload" => reply(StatusCode::PAYLOAD_TOO_LARGE, "upload too large\n"),
        "/echo" => match req.into_body().collect().await {
            Ok(body) => reply(StatusCode::OK, body.to_bytes()),
            Err(err) => reply(StatusCode::BAD_REQUEST, format!("bad body: {err}\n")),
        },
        "/stats" => reply(StatusCode::OK, format!("{:#?}\n", group.stats())),
        _ => reply(StatusCode::OK, "body ignored\n"),
    })
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}
