//! Both fixes in an axum app: [`DrainBodyLayer`] drains request bodies that a
//! handler leaves unread, so the connection stays usable, and
//! [`LingeringListener`] closes every connection in stages, so the client gets
//! the whole response instead of a reset.
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
//! # Your address, through ConnectInfo<PeerAddr>.
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
//! Ctrl-C stops accepting, waits for open connections to finish and then
//! for their lingering closes (`LingerGroup::wait_idle`).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use linger::{
    DrainBodyLayer, DrainCounters, LingerConfig, LingerGroup, LingeringListener, PeerAddr,
};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // `linger=debug` shows one event per connection close, with its outcome
    // (`peer_eof`, `idle_timeout`, ...) and the bytes it threw away.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("linger=debug")),
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
            .total_timeout(Duration::from_secs(10))
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
        // Up to 256 KiB of what a handler leaves unread is drained so the
        // connection can serve the next request; larger leftovers get
        // `Connection: close` instead of being read. Each body's outcome is
        // counted in `counters`.
        .layer(DrainBodyLayer::new(256 * 1024).counters(counters));

    let local = listener.local_addr()?;
    println!("listening on http://{local}");
    println!("try: curl -s http://{local}/ && curl -s --data-binary hello http://{local}/echo");

    // `PeerAddr` rather than `SocketAddr`: axum only implements `Connected`
    // for `SocketAddr` on its own listener types.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<PeerAddr>(),
    )
    .with_graceful_shutdown(async {
        tokio::signal::ctrl_c().await.ok();
    })
    .await?;
    // hyper's connections have sent their FIN; let their lingering closes end
    // (at most `total_timeout`) before the runtime does.
    shutdown_group.wait_idle().await;
    println!("stopped; {:?}", shutdown_group.stats());
    Ok(())
}

/// Greets the client with its own address.
async fn hello(ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>) -> String {
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
