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
//! once the inner service has produced its response, the first step that
//! applies decides:
//!
//! | # | the body, when the response is ready | what the layer does | the connection | counted as |
//! |---|---|---|---|---|
//! | 1 | any body, and the answer is `101 Switching Protocols`, or a `2xx` to `CONNECT` | leaves it alone: the connection is handed over | handed over | `passed_through` |
//! | 2 | read to its end | nothing | reused | `read` |
//! | 3 | still held by the service (moved into a task) | releases the response; steps 2, 3a, 4, 5, 7 and 8 run when the service drops the body, with the deadline counted from the response | — | when dropped |
//! | 3a | the connection closes after the response anyway (`Connection: close` in the request or the response, HTTP/1.0 without keep-alive) and a [`LingeringIo`](crate::LingeringIo) is beneath | reads nothing: the `LingeringIo` throws the rest away without copying, while the response is written and after the FIN | closed after the response | `left_to_linger` |
//! | 4 | failed; or `Expect: 100-continue` and never polled; or the limit is 0 | reads nothing, adds `Connection: close` | closed after the response | `body_error`, `expect_continue`, `over_limit` |
//! | 5 | the declared remainder (`Content-Length`) is above the limit | reads nothing, adds `Connection: close` | closed after the response | `over_limit` |
//! | 6 | the rest has already arrived | takes it at once, without waiting: within the limit the response goes out unchanged; past it, or on a body error, adds `Connection: close` | reused at no cost, or closed after the response | `drained_inline`, `over_limit`, `body_error` |
//! | 7 | more to come, no tokio runtime with timers | adds `Connection: close` | closed after the response | `no_timers` |
//! | 8 | more to come | releases the response at once and drains the rest in a task, within the limit and the [`timeout`](DrainBodyLayer::timeout) | reused if the drain reaches the end, else closed after the response | `drained`, `over_limit`, `deadline`, `body_error` |
//!
//! With [`wait_for_drain`](DrainBodyLayer::wait_for_drain), step 8 holds the
//! response back until the drain ends instead, and a drain that gives up
//! adds `Connection: close`. A body the service held past its response
//! (step 3) can no longer change the response: when its drain gives up or
//! cannot start, hyper closes the connection after the response. A body held
//! forever is never waited for. A response future dropped before it
//! finished, or a service error, counts as `abandoned`.
//!
//! Step 1 is decided by the answer: other answers to requests that offer
//! `Upgrade` (`curl --http2` sends `Upgrade: h2c`) or to `CONNECT` are
//! ordinary responses, and their bodies go through the other steps, as hyper
//! treats them. HTTP/1.0 has no upgrades.
//!
//! `Connection: close` is added to the tokens already there (`upgrade` on a
//! `426`, say), dropping only a contradicting `keep-alive`.
//!
//! Without a `LingeringIo` beneath, requests that say `Connection: close` are
//! still drained within the limit: the connection will not be reused, but
//! closing it with unread input would make the kernel reset it and destroy
//! the response.
//!
//! Whenever the response ends the connection with the body unfinished (the
//! layer adds `Connection: close`, or step 3a), the `LingeringIo` beneath, if
//! any, reads and discards what the client still sends while the response is
//! written, so that a client which sends its whole body before it reads
//! (Python's `requests`, Java's `HttpURLConnection`) gets its response instead
//! of a deadlock. The layer finds it through the connection's tokio task, which
//! both read the request head and poll the response future.
//!
//! The bounds use tokio timers. A runtime built without timers is detected
//! once (tokio's "timers are disabled" message reaches the panic hook that
//! once); under `panic = "abort"` it cannot be, and the runtime must have
//! timers (`enable_all()`, as `#[tokio::main]` builds it).
//!
//! The request body type must be `Unpin + Send + 'static`, as hyper's
//! `Incoming` and axum's `Body` are. Each request with a body costs one small
//! allocation; requests without a body cost none.
//!
//! # Observing it
//!
//! Every body that reaches an outcome makes one `tracing` debug event,
//! "request body settled", with `outcome` (the counter's name),
//! `bytes_drained` and `elapsed_ms`; a drain that starts in the background
//! makes one more, with `outcome = "draining"`. For numbers, give the layer [`DrainCounters`]
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

#[cfg(feature = "axum")]
mod axum;
mod body;
mod close_header;
mod counters;
mod decision;
mod drainer;
mod future;
mod layer;
mod service;

#[cfg(feature = "axum")]
pub use self::axum::{AxumDrainBodyLayer, AxumDrainBodyService};
pub use body::DrainBody;
pub use counters::{DrainCounters, DrainStats};
pub use future::ResponseFuture;
pub use layer::DrainBodyLayer;
pub use service::DrainBodyService;
