//! Both fixes in an axum app: [`DrainBodyLayer`] drains request bodies that a
//! handler leaves unread, so the connection stays usable, and
//! [`LingeringListener`] closes every connection in stages, so the client gets
//! the whole response instead of a reset. With `ConnectInfo<SocketAddr>`, a
//! request timeout and a graceful shutdown that fits in Kubernetes' default
//! 30 s grace period.
//!
//! Run it (the address defaults to `127.0.0.1:3000`; pass another as the first
//! argument or in `LINGER_ADDR`, and set `RUST_LOG` to change the logging):
//!
//! ```text
//! cargo run --example axum --features axum
//! cargo run --example axum --features axum -- 127.0.0.1:8080
//! ```
//!
//! Then try, in another terminal:
//!
//! ```text
//! # Your address, through ConnectInfo<SocketAddr>.
//! curl -s http://127.0.0.1:3000/
//!
//! # An ignored 100 KB form, then a second request: `-w` prints how many new
//! # connections each one needed. `1 0` means the drained connection was reused.
//! head -c 100000 /dev/zero | curl -s -H 'Expect:' --data-binary @- \
//!     -w ' %{num_connects}\n' http://127.0.0.1:3000/ignore \
//!     --next -s -w ' %{num_connects}\n' http://127.0.0.1:3000/
//!
//! # 1 MB rejected unread with 413: above the drain limit, so the answer says
//! # `Connection: close`, and the staged close makes sure it arrives intact
//! # (the log shows the `linger` close with its outcome).
//! head -c 1000000 /dev/zero | curl -si -H 'Expect:' --data-binary @- http://127.0.0.1:3000/upload
//!
//! # A handler that reads the body.
//! curl -s --data-binary 'hello' http://127.0.0.1:3000/echo
//!
//! # What became of every request body (`DrainStats`) and of every close
//! # (`LingerStats`) so far.
//! curl -s http://127.0.0.1:3000/stats
//! ```
//!
//! Ctrl-C or SIGTERM stops accepting, waits for requests in flight (at most
//! 15 s) and then for the lingering closes (`LingerGroup::wait_idle`, at most
//! their 10 s `total_timeout` plus a 1 s margin): the process is gone within
//! 26 s, before Kubernetes' SIGKILL at 30 s.

use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use linger::{DrainBodyLayer, DrainCounters, LingerConfig, LingerGroup, LingeringListener};
use tower_http::timeout::TimeoutLayer;
use tracing_subscriber::EnvFilter;

/// After the signal, how long requests in flight may take to finish.
const SERVER_GRACE: Duration = Duration::from_secs(15);
/// Each close's `total_timeout`: how long a lingering close may take.
const LINGER_GRACE: Duration = Duration::from_secs(10);
/// The wait for the lingering closes is bounded by their `total_timeout` plus
/// this. A close's `total_timeout` counts from the drop of its IO, which axum
/// does a moment after it reports the connection done: `wait_idle` waits for
/// that drop and ends with the last close, and the margin covers the gap (and
/// the timers' millisecond). It is spent only on an IO that stays open.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // `linger=debug` shows one event per connection close, with its outcome
    // (`peer_eof`, `idle_timeout`, ...) and the bytes it threw away, and one
    // per unfinished request body; `info` the rest, warnings included.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,linger=debug")),
        )
        .init();

    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("LINGER_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned());

    let tcp = tokio::net::TcpListener::bind(&addr).await?;
    // Every accepted connection closes in stages: FIN, then read and discard
    // until the client's FIN, at most 2 s of silence, 10 s in all or 16 MiB.
    let listener = LingeringListener::with_config(
        tcp,
        LingerConfig::default()
            .idle_timeout(Duration::from_secs(2))
            .total_timeout(LINGER_GRACE)
            .max_bytes(16 * 1024 * 1024),
    );
    // Kept for `/stats` (the group holds the listener's close counters) and
    // for the end of the graceful shutdown.
    let group = listener.group().clone();
    let shutdown_group = group.clone();
    let counters = DrainCounters::new();

    let app = Router::new()
        .route("/", get(hello))
        .route("/upload", post(upload))
        .route("/ignore", post(ignore))
        .route("/echo", post(echo))
        .route(
            "/stats",
            get({
                let counters = counters.clone();
                move || std::future::ready(stats(&counters, &group))
            }),
        )
        // A handler that hangs gets a 408, so that the graceful shutdown
        // does not wait for it forever.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(10),
        ))
        // Outermost (axum's `.layer()` wraps outwards): up to 256 KiB of what a
        // handler leaves unread is drained so the connection can serve the
        // next request; larger leftovers get `Connection: close` instead of
        // being read. Each body's outcome is counted in `counters`.
        .layer(DrainBodyLayer::new(256 * 1024).counters(counters));

    let local = listener.local_addr()?;
    println!("listening on http://{local}");
    println!("try: curl -s http://{local}/ && curl -s --data-binary hello http://{local}/echo");

    // `tap_io(|_| {})`, outside the `LingeringListener`: axum implements
    // `Connected` for `SocketAddr` on its `TapIo` and on its own listeners only.
    let (signalled, mut stopping) = tokio::sync::oneshot::channel();
    let server = axum::serve(
        listener.tap_io(|_| {}),
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        let _ = signalled.send(());
    })
    .into_future();
    // axum's graceful shutdown waits for every request in flight, without a
    // limit of its own: give it `SERVER_GRACE` once the signal has come.
    let mut server = std::pin::pin!(server);
    tokio::select! {
        served = &mut server => served?,
        Ok(()) = &mut stopping => match tokio::time::timeout(SERVER_GRACE, server).await {
            Ok(served) => served?,
            Err(_) => tracing::warn!("requests still running {SERVER_GRACE:?} after the signal"),
        },
    }
    // hyper's connections have sent their FIN; let their lingering closes end
    // before the runtime does (which would cut them short, as `aborted`).
    // `wait_idle` ends with the last close; the bound only matters for an IO
    // that stays open (requests cut off above, an upgraded connection).
    let bound = shutdown_group.config().get_total_timeout() + SHUTDOWN_MARGIN;
    if tokio::time::timeout(bound, shutdown_group.wait_idle())
        .await
        .is_err()
    {
        tracing::warn!(
            stats = ?shutdown_group.stats(),
            "connections still open or lingering {bound:?} later; stopping"
        );
    }
    println!("stopped; {:?}", shutdown_group.stats());
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix (what Kubernetes, Docker and systemd send).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Greets the client with its own address.
async fn hello(ConnectInfo(peer): ConnectInfo<SocketAddr>) -> String {
    format!("hello {peer}\n")
}

/// Rejects every upload without reading it: the layer and the listener make
/// sure the 413 reaches the client.
async fn upload() -> (StatusCode, &'static str) {
    (StatusCode::PAYLOAD_TOO_LARGE, "upload too large\n")
}

/// Answers a form post without looking at the form.
async fn ignore() -> &'static str {
    "form ignored\n"
}

/// What the drain layer did with request bodies, and how connections closed.
fn stats(drain: &DrainCounters, linger: &LingerGroup) -> String {
    format!("{:#?}\n{:#?}\n", drain.snapshot(), linger.stats())
}

/// Reads the whole body (axum's default limit, 2 MB, applies) and sends it back.
async fn echo(body: Bytes) -> Bytes {
    body
}
