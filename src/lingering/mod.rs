//! Staged close of connections (RFC 9112 §9.6).
//!
//! When a server closes a TCP socket whose receive queue holds unread bytes, or bytes
//! arrive after the close, Linux answers with RST and throws away the unsent part of the
//! response: the client sees "connection reset by peer" instead of the early 413, the
//! error page, or the tail of a large `Connection: close` response. hyper closes with a
//! plain `poll_shutdown` and drops the IO.
//!
//! [`LingeringIo`] closes in stages instead: flush, half-close (FIN), read and throw away
//! until the client's EOF or a bound ([`LingerConfig`]), then close. Connections made from
//! one [`LingerGroup`] (or one [`LingeringListener`]) share a cap on how many linger at
//! once, and counters ([`LingerStats`]). Each close ends with a `debug` tracing event
//! carrying `outcome` (`peer_eof`, `idle_timeout`, `total_timeout`, `byte_cap`, `error`,
//! `skipped`, `aborted`, `stalled_write` or `released`), `bytes_discarded`, `elapsed_ms`
//! and `drop_path`.
//!
//! Under a [`DrainBodyLayer`](crate::DrainBodyLayer), a `LingeringIo` also takes over
//! when the layer stops reading a request body before its end (a response that ends the
//! connection, a drain that gives up): hyper is shown the end of the input, and the IO
//! throws away what the client sends while the response is written (so that a client
//! which sends its whole body before reading is not deadlocked), and after the FIN.
//! Should the client neither read nor stop sending past [`LingerConfig::max_bytes`] or
//! [`LingerConfig::total_timeout`], the stalled write fails at the total timeout
//! (`stalled_write`) instead of waiting on the client forever. The layer finds the IO
//! through the tokio task serving the connection, so this needs one connection per task
//! (as `axum::serve` and `tokio::spawn` per connection give); where a task serves
//! several, the layer does without the IO (see the [`drain`](crate::drain) guide).
//!
//! hyper's part of a close ends with the FIN; the linger itself runs in a background task
//! after hyper has dropped the connection and its buffers. For a graceful shutdown, wait
//! for the server first and then for [`LingerGroup::wait_idle`], before the runtime
//! ends.
//!
//! # With hyper
//!
//! Wrap the stream before `TokioIo`, or before the TLS acceptor when there is one:
//!
//! ```no_run
//! use hyper::{server::conn::http1, service::service_fn, Response};
//! use hyper_util::rt::TokioIo;
//! use linger::{LingerConfig, LingerGroup};
//!
//! # async fn run() -> std::io::Result<()> {
//! let group = LingerGroup::new(LingerConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     let io = TokioIo::new(group.wrap(stream));
//!     tokio::spawn(async move {
//!         let service = service_fn(|_req| async {
//!             Ok::<_, std::convert::Infallible>(Response::new(String::from("hello")))
//!         });
//!         let _ = http1::Builder::new().serve_connection(io, service).await;
//!     });
//! }
//! # }
//! ```
//!
//! # With axum (feature `axum`)
//!
//! ```no_run
//! # #[cfg(feature = "axum")]
//! # async fn run() -> std::io::Result<()> {
//! use axum::{routing::post, Router};
//! use linger::LingeringListener;
//!
//! let app = Router::new().route("/upload", post(|| async { "too large" }));
//! let tcp = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let listener = LingeringListener::new(tcp);
//! let group = listener.group().clone();
//! axum::serve(listener, app)
//!     .with_graceful_shutdown(async { tokio::signal::ctrl_c().await.unwrap_or(()) })
//!     .await?;
//! // The connections are closed; let their lingering closes end too.
//! group.wait_idle().await;
//! # Ok(())
//! # }
//! ```

// Each item has one public path, at the crate root; this module is the guide above.
#[cfg(doc)]
use crate::{LingerConfig, LingerGroup, LingerStats, LingeringIo, LingeringListener};
mod close;
pub(crate) mod config;
#[cfg(feature = "axum")]
pub(crate) mod connect_info;
mod discard;
pub(crate) mod group;
pub(crate) mod io;
pub(crate) mod listener;
mod mode;
pub(crate) mod stats;
mod wrap;
