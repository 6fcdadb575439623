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
//! Once the inner service has produced its response:
//!
//! 1. HTTP/2 and later, `CONNECT`, requests with `Upgrade`, `101` responses,
//!    bodies that already reached their end, and bodies the service still
//!    holds (moved into a task) pass through untouched. The layer never waits
//!    for a body someone else holds.
//! 2. `Expect: 100-continue` with a body the service never polled, and a
//!    declared remainder above the limit, are not read at all: the response
//!    gets `Connection: close`.
//! 3. Otherwise, what has already arrived is taken without waiting. If that
//!    reaches the end, the response goes out unchanged and the connection is
//!    reused at no cost.
//! 4. If more is still to come, the response is released at once and the rest
//!    is drained alongside in a tokio task, within the limit and the
//!    [`timeout`](DrainBodyLayer::timeout). When it reaches the end, hyper
//!    serves the next request on the connection; when it gives up, hyper
//!    closes the connection after the response. With
//!    [`wait_for_drain`](DrainBodyLayer::wait_for_drain) the response waits
//!    for the drain instead, and giving up adds `Connection: close`.
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
pub use layer::DrainBodyLayer;
pub use service::DrainBodyService;
