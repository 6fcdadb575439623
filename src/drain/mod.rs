//! Draining of request bodies that the handler left unread.
//!
//! HTTP/1.1 sends the next request on the same byte stream, right after the
//! body of the previous one. When a handler answers without reading the whole
//! body (a rejected upload, an ignored form, a 404), hyper 1.x makes a single
//! non-blocking read attempt, then quietly drops keep-alive and closes the
//! connection, often with a TCP reset that destroys the response.
//! [`DrainBodyLayer`] reads and discards the rest instead, bounded in bytes and
//! time, as Go, nginx and Apache do.
//!
//! # What happens to a request
//!
//! Requests without a body, and HTTP/2 and later (where a stream ends
//! without touching the connection), pass through at the cost of a check
//! (with [`DrainCounters`], an HTTP/2 body is also counted). For the others,
//! once the inner service has produced its response:
//!
//! 1. `101 Switching Protocols`, and a `2xx` answer to `CONNECT`, hand the
//!    connection over: the body is left alone. Other answers to requests
//!    that offer `Upgrade` (`curl --http2` sends `Upgrade: h2c`) or to
//!    `CONNECT` are ordinary responses, and their bodies are treated like any
//!    other, as hyper does. HTTP/1.0 has no upgrades.
//! 2. A body read to its end needs nothing.
//! 3. `Expect: 100-continue` with a body the service never polled, a body
//!    that already failed, a declared remainder above the limit, and any
//!    unfinished body with a limit of 0, are not read at all: the response
//!    gets `Connection: close`.
//! 4. Otherwise, what has already arrived is taken without waiting. If that
//!    reaches the end, the response goes out unchanged and the connection is
//!    reused at no cost.
//! 5. If more is still to come, the response is released at once and the rest
//!    is drained alongside in a tokio task, within the limit and the
//!    [`timeout`](DrainBodyLayer::timeout). When it reaches the end, hyper
//!    serves the next request on the connection; when it gives up, hyper
//!    closes the connection after the response. With
//!    [`wait_for_drain`](DrainBodyLayer::wait_for_drain) the response waits
//!    for the drain instead, and giving up adds `Connection: close`. Without
//!    a tokio runtime, or in one built without timers, the drain could not be
//!    bounded in time: the response gets `Connection: close` instead.
//!
//! `Connection: close` is added to the tokens already there (`upgrade` on a
//! `426`, say), dropping only a contradicting `keep-alive`.
//!
//! Requests that say `Connection: close` are still drained within the limit:
//! the connection will not be reused, but closing it with unread input would
//! make the kernel reset it and destroy the response. To close such
//! connections in stages as well, see [`LingeringIo`](crate::LingeringIo).
//!
//! The request body type must be `Unpin + Send + 'static`, as hyper's
//! `Incoming` and axum's `Body` are. Each request with a body costs one small
//! allocation; requests without a body cost none.
//!
//! # Bodies the service holds
//!
//! A service may move the body into a task and answer before that task is
//! done with it. The response never waits for such a body. If the task
//! reads it to the end, nothing is left to do; if it drops the body before
//! the end, the rest is drained from there, in a background task, with the
//! same limit and by the same deadline, counted from the response. The
//! response is gone by then, so no `Connection: close` can be added: when
//! that drain gives up, or cannot start (no timers, `Expect: 100-continue`
//! never polled, limit 0), hyper closes the connection. A body held forever
//! is never waited for.
//!
//! # Observing it
//!
//! Every decision is a `tracing` debug event with `outcome`, `bytes_drained`
//! and `elapsed_ms`. For numbers, give the layer [`DrainCounters`]
//! ([`DrainBodyLayer::counters`]): each request with a body then lands in
//! exactly one outcome of [`DrainStats`], and `draining` shows the drains in
//! flight.
//!
//! # Example: axum
//!
//! ```
//! use axum::{routing::post, Router};
//! use linger::DrainBodyLayer;
//!
//! let app: Router = Router::new()
//!     .route("/ignore", post(|| async { "body ignored" }))
//!     .layer(DrainBodyLayer::new(256 * 1024));
//! # let _ = app;
//! ```
//!
//! # Example: hyper
//!
//! ```no_run
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use hyper::body::Incoming;
//! use hyper_util::rt::TokioIo;
//! use hyper_util::service::TowerToHyperService;
//! use linger::{DrainBody, DrainBodyLayer};
//! use tower::ServiceBuilder;
//!
//! async fn handle(_req: Request<DrainBody<Incoming>>) -> Result<Response<String>, Infallible> {
//!     Ok(Response::new("body ignored".to_owned()))
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     let service = ServiceBuilder::new()
//!         .layer(DrainBodyLayer::new(256 * 1024))
//!         .service_fn(handle);
//!     tokio::spawn(async move {
//!         let _ = hyper::server::conn::http1::Builder::new()
//!             .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
//!             .with_upgrades()
//!             .await;
//!     });
//! }
//! # }
//! ```

mod background;
mod body;
mod connection;
mod counters;
mod drainer;
mod future;
mod held;
mod layer;
mod service;

pub use body::DrainBody;
pub use counters::{DrainCounters, DrainStats};
pub use future::ResponseFuture;
#[cfg(feature = "axum")]
pub use layer::AxumDrainBodyLayer;
pub use layer::DrainBodyLayer;
#[cfg(feature = "axum")]
pub use service::AxumDrainBodyService;
pub use service::DrainBodyService;
