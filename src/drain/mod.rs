//! Draining of request bodies that the handler left unread.
//!
//! HTTP/1.1 sends the next request on the same byte stream, right after the
//! body of the previous one. When a handler answers without reading the whole
//! body (a rejected upload, an ignored form, a 404), hyper 1.x makes a single
//! non-blocking read attempt, then quietly drops keep-alive and closes the
//! connection, often with a TCP reset (RST) that destroys the response.
//! [`DrainBodyLayer`] reads and discards the rest instead, bounded in bytes and
//! time, as Go, nginx and Apache do.
//!
//! HTTP/2 keeps the connection, but hyper ends the stream with
//! `RST_STREAM(NO_ERROR)`, and clients such as curl and httpx then discard
//! the response they already have; the layer drains those bodies too (see
//! [HTTP/2 and later](#http2-and-later)).
//!
//! All the items are at the crate root: `linger::DrainBodyLayer`,
//! `linger::DrainCounters`, and so on.
//!
//! # What happens to a request
//!
//! Requests without a body, and HTTP/2 `CONNECT` streams (extended `CONNECT`
//! included), pass through at the cost of a check (with [`DrainCounters`], a
//! `CONNECT` stream with a body is also counted). For the others, once the
//! inner service has produced its response, the first step that applies
//! decides. The last column is the `outcome` of the tracing event and the
//! counter of [`DrainStats`].
//!
//! | # | the body, when the response is ready | what the layer does | HTTP/1: the connection | HTTP/2: the stream | counted as |
//! |---|---|---|---|---|---|
//! | 1 | any body, and the answer is `101 Switching Protocols`, or a `2xx` to `CONNECT` | leaves it alone: the connection is handed over | handed over | — | `passed_through` |
//! | 2 | read to its end | nothing | reused | ends cleanly | `read` |
//! | 3 | still held by the service (moved into a task) | releases the response; steps 2, 3a, 4, 5, 7 and 8 run when the service drops the body, with the deadline counted from the response | — | — | when dropped |
//! | 3a | HTTP/1 only: the connection closes after the response anyway (`Connection: close` in the request or the response, HTTP/1.0 without keep-alive) and a [`LingeringIo`] is beneath | reads nothing: the `LingeringIo` throws the rest away without copying, while the response is written and after the FIN | closed after the response | — | `left_to_linger` |
//! | 4 | failed; or `Expect: 100-continue` and never polled (HTTP/1.1); or the limit is 0 | reads nothing; on HTTP/1 adds `Connection: close` | closed after the response | reset after the response | `body_error`, `expect_continue`, `over_limit` |
//! | 5 | the declared remainder (`Content-Length` minus what arrived) is above the limit | reads nothing; on HTTP/1 adds `Connection: close` | closed after the response | reset after the response | `over_limit` |
//! | 6 | the rest has already arrived | takes it at once, without waiting: within the limit the response goes out unchanged; past it, or on a body error, on HTTP/1 adds `Connection: close` | reused at no cost, or closed after the response | ends cleanly, or reset after the response | `drained_inline`, `over_limit`, `body_error` |
//! | 7 | more to come, no tokio runtime with timers | on HTTP/1 adds `Connection: close` | closed after the response | reset after the response | `no_timers` |
//! | 8 | more to come | releases the response at once and drains the rest in a task, within the limit and the [`timeout`](DrainBodyLayer::timeout) | reused if the drain reaches the end, else closed after the response | ends cleanly if the drain reaches the end, else reset | `drained`, `over_limit`, `deadline`, `body_error` |
//!
//! With [`wait_for_drain`](DrainBodyLayer::wait_for_drain), step 8 holds an
//! HTTP/1 response back until the drain ends instead, and a drain that gives
//! up adds `Connection: close` (RFC 9110 §10.1.1: a server that answers before
//! reading all the content says whether it will close). A body the service held
//! past its response (step 3) can no longer change the response: when its drain
//! gives up or cannot start, hyper closes the connection after the response
//! (HTTP/1) or resets the stream (HTTP/2). A body held forever is never waited
//! for. A response future dropped before it finished, or a service error,
//! counts as `abandoned`.
//!
//! Step 4 does not read a body whose request says `Expect: 100-continue` when
//! the handler never polled it: reading would make hyper send `100 Continue`
//! and invite an upload that would only be thrown away.
//!
//! Step 1 is decided by the answer: other answers to requests that offer
//! `Upgrade` (`curl --http2` sends `Upgrade: h2c`) or to an HTTP/1
//! `CONNECT` are ordinary responses, and their bodies go through the other
//! steps, as hyper treats them. HTTP/1.0 has no upgrades.
//!
//! `Connection: close` is added to the tokens already there (`upgrade` on a
//! `426`, say), dropping only a contradicting `keep-alive`.
//!
//! Without a `LingeringIo` beneath, requests that say `Connection: close` are
//! still drained within the limit: the connection will not be reused, but
//! closing it with unread input would make the kernel reset it and destroy
//! the response.
//!
//! Whenever the layer stops reading a body before its end (it adds
//! `Connection: close`, step 3a, or a drain running alongside the response
//! gives up), the `LingeringIo` beneath, if any, takes the client's input over:
//! hyper sees its end, so it never parses a byte that came after those thrown
//! away, and the IO reads and discards what the client still sends while the
//! response is written and after the FIN. So a client which sends its whole
//! body before it reads (Python's `requests`, Java's `HttpURLConnection`,
//! `curl -T -`), with a `Content-Length` or chunked, gets its response instead
//! of a deadlock, under the defaults, without the response waiting for
//! anything. A body the layer gives up on therefore always ends its
//! connection after the response, even when hyper still held its end in its
//! buffer. Within the limit nothing changes: the drain reaches the end, and a
//! request pipelined after the body is served, none of its bytes discarded.
//!
//! The layer finds that IO through the tokio task that called it: hyper serves
//! an HTTP/1 connection from one task, which reads the request head, calls the
//! service and polls the response future. Where that tie does not hold, the
//! layer does without the IO, as if there were none beneath, rather than risk
//! telling another connection's IO: a task that has read two
//! `LingeringIo`s (several connections driven from one task with
//! `tokio::join!`, `FuturesUnordered` or a `select!` loop) has none until all
//! of them are gone, and a response future polled on another task than the one
//! that called the service finds none. A `debug` event says so each time. Serve
//! each connection from a task of its own (`tokio::spawn`, as `axum::serve`
//! and the examples do) to keep the zero-copy discard and the send-first fix.
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
//! # Clients that send the whole body first
//!
//! Python's `http.client` and `requests`, and Java's `HttpURLConnection` in
//! fixed-length mode, send the whole body before they read. Against a server
//! that stops reading an ignored upload while it writes a response larger than
//! the socket buffers, each side waits for the other until a timeout (plain
//! hyper and Go alike). With both halves of `linger`, whenever the layer stops
//! reading a body before its end (it added `Connection: close`, step 3a, or a
//! drain gave up), the `LingeringIo` beneath reads and discards what the client
//! sends while the response is written, within
//! [`LingerConfig::max_bytes`](crate::LingerConfig::max_bytes) (64 MiB) and
//! `total_timeout` (30 s), then closes in stages as usual: a 32 MiB upload
//! answered with 8 MiB arrives whole, as from nginx. The bytes count in
//! [`LingerStats::bytes_discarded`](crate::LingerStats::bytes_discarded). The
//! layer alone, or the IO alone, cannot do this: the layer does not own the
//! socket, and the IO does not know when the body stops mattering. The layer
//! finds the `LingeringIo` of its own connection through the connection's tokio
//! task, and only where that task serves one connection (see above).
//!
//! A **chunked** upload sent first is covered too, under the defaults: its
//! size is unknown until the drain passes the limit, by which time the response
//! is on its way without `Connection: close`; the drain then gives up, and the
//! `LingeringIo` takes the input over as above (no response waits for it).
//!
//! # Settings
//!
//! | setting | default | Go net/http | nginx | builder | getter |
//! |---|---|---|---|---|---|
//! | bytes drained per HTTP/1 body | 256 KiB | 256 KiB | no cap | [`DrainBodyLayer::new(limit)`](DrainBodyLayer::new) | `get_limit()` |
//! | drain deadline | 5 s | the server's read timeout | 5 s per read, 30 s in all | [`.timeout(d)`](DrainBodyLayer::timeout) | `get_timeout()` |
//! | response waits for the drain | no | yes | no | [`.wait_for_drain(true)`](DrainBodyLayer::wait_for_drain) | `get_wait_for_drain()` |
//! | bytes drained per HTTP/2 body | 1 MiB | — | — | [`.http2_limit(n)`](DrainBodyLayer::http2_limit) | `get_http2_limit()` |
//! | counters | off | — | — | [`.counters(DrainCounters::new())`](DrainBodyLayer::counters) | `get_counters()` |
//!
//! The limit is a `usize`, as in tower-http's `RequestBodyLimitLayer::new`, so
//! one constant can serve both. How the defaults compare with other servers:
//!
//! | | linger | Go net/http | nginx | Apache httpd | plain hyper 1.x |
//! |---|---|---|---|---|---|
//! | unread body after the response | drained, ≤ 256 KiB, ≤ 5 s, response not delayed | drained before the response, ≤ 256 KiB | drained after the response, no byte cap, ≤ 30 s | drained, ≤ `LimitRequestBody` | one non-blocking read, then close |
//! | remainder above the limit | not read, `Connection: close` | not read, `Connection: close` | read | read (close on error statuses) | close, no header |
//! | `Expect: 100-continue`, body never read | no 100, `Connection: close` | no 100, `Connection: close` | no 100 | keep-alive refused | no 100, close |
//!
//! # Where to put the layer
//!
//! Outermost: first in a `ServiceBuilder`, or the last `.layer()` call on an
//! axum `Router` (axum's `.layer()` wraps outwards), or at least outside the
//! layers that limit bodies or time. Each row is a real-socket test in
//! `tests/stack/`.
//!
//! | layer | set-up | what happens | with the drain inside instead |
//! |---|---|---|---|
//! | tower-http `RequestBodyLimitLayer` | `ServiceBuilder::new().layer(DrainBodyLayer::default()).layer(RequestBodyLimitLayer::new(n))`; axum: `.layer(RequestBodyLimitLayer::new(n)).layer(DrainBodyLayer::default())` | the 413 to a 16 MiB upload arrives whole, then a clean EOF (a reset without the listener); a small or chunked overflow is drained and the connection reused | 413s to a `Content-Length` body are not drained (the connection closes); a chunked overflow gets `Connection: close` |
//! | axum `DefaultBodyLimit` | `.layer(DrainBodyLayer::default())`, either side of `DefaultBodyLimit::max(n)` | as above | — |
//! | tower-http `TimeoutLayer` | drain outside `TimeoutLayer` | a body dropped by a hung handler is drained after the 408, connection reused | nothing drained; a body still held when the 408 fires is drained when the handler is dropped, if within the limit |
//! | tower-http `TraceLayer` | any position | drain unaffected | — |
//! | tower-http `RequestDecompressionLayer` | drain outside | an ignored gzip body is drained as compressed bytes; 415s drained | it inflates what it discards, and the limit counts inflated bytes |
//!
//! tower-http 0.6 and 0.7 both work with it.
//!
//! With axum, `DrainBodyLayer::new(limit).axum()` is the same layer handing axum
//! its own `Body` (`AxumDrainBodyLayer`, feature `axum`). Around the whole router
//! (`DrainBodyLayer::new(limit).axum().layer(router)`, which `axum::serve` takes
//! as it takes a `Router`) a request without a body costs no allocation, and one
//! with a body the one of axum's `Body::new`; through `Router::layer` any layer
//! costs two more, axum's wrapping of each route, and `DrainBodyLayer` without
//! `.axum()` one more again, axum boxing the body it is handed (`BENCHMARKS.md`,
//! sections 10 and 11).
//!
//! # HTTP/2 and later
//!
//! An HTTP/2 stream whose body the server stops reading does not block the
//! connection, but it has to end somehow: h2 resets it with
//! `RST_STREAM(NO_ERROR)` when the last handle to it goes away, that is when
//! hyper has sent the response and the body is dropped. RFC 9113 §8.1 allows
//! this and tells clients to keep the response; curl 7.x (Debian 12, Ubuntu
//! 22.04) fails the transfer (`curl: (92) Stream error in the HTTP/2 framing
//! layer`) and httpx raises, so the response is lost; nginx and plain hyper
//! cause the same. The layer therefore drains HTTP/2 bodies by the same
//! steps, with these differences:
//!
//! - the limit is [`http2_limit`](DrainBodyLayer::http2_limit), 1 MiB by
//!   default (hyper's initial stream window), whatever limit `new` was given,
//!   since only bandwidth is at stake, not the connection;
//! - reading the body lets hyper hand its flow-control window back, so the
//!   client can send the rest; once the body reaches its end, dropping it
//!   resets nothing;
//! - giving up (past the limit or the deadline, no timers) drops the body:
//!   hyper resets the stream after the response, as without the layer, and
//!   the connection goes on (curl shows `(92)` again: raise `http2_limit` for
//!   larger rejected uploads, each then costing up to that much bandwidth, or
//!   read them); a body that failed (the client reset its stream, or the
//!   connection is gone) is just dropped;
//! - the response is never held back ([`wait_for_drain`](DrainBodyLayer::wait_for_drain)
//!   is for HTTP/1) and never gets a `Connection` header;
//! - `CONNECT` streams are left alone whatever the answer: the method alone
//!   identifies extended `CONNECT` too, since h2 refuses `:protocol` on
//!   any other (hyper exposes it as an extension of its own type, which this
//!   crate does not depend on). hyper hands a `CONNECT` handler an empty
//!   body anyway.
//!
//! Over HTTP/1.1 (`curl --http1.1`) an upload above the limit gets its 413 whole.
//!
//! HTTP/3 requests, which no hyper server produces, are treated as HTTP/2:
//! one stream each, and the same reason to read a body to its end (RFC 9114
//! §4.1 has servers stop a request stream with `H3_NO_ERROR`).
//!
//! # Observing it
//!
//! Every body that reaches an outcome makes one `tracing` debug event,
//! "request body settled", with `outcome` (the counter's name, from the table
//! above), `bytes_drained` and `elapsed_ms`. A drain that starts in the
//! background makes one more first, with `outcome = "draining"`, `bytes_read`
//! (what the handler had read), `bytes_drained` (taken at the response) and
//! `timeout_ms`; a body the service still holds makes one with
//! `outcome = "held"`. The targets are under `linger::drain`, so
//! `RUST_LOG=linger=debug` shows them. With a span per connection (as in
//! `examples/hyper.rs`), an ignored 7-byte form, then a 20 000-byte body whose
//! rest came after the response, log:
//!
//! ```text
//! DEBUG conn{peer=127.0.0.1:46110}: linger::drain::counters: request body settled outcome="drained_inline" bytes_drained=7 elapsed_ms=0
//! DEBUG conn{peer=127.0.0.1:46110}: linger::drain::decision: draining the rest of the request body in the background outcome="draining" bytes_read=0 bytes_drained=0 timeout_ms=5000
//! DEBUG conn{peer=127.0.0.1:46110}: linger::drain::counters: request body settled outcome="drained" bytes_drained=20000 elapsed_ms=0
//! ```
//!
//! `axum::serve` runs connections in no span of its own; a span per request
//! that records the peer, such as tower-http's `TraceLayer` outside the drain,
//! gives the layer's events one:
//!
//! ```
//! use std::net::SocketAddr;
//!
//! use axum::extract::{ConnectInfo, Request};
//! use axum::Router;
//! use linger::DrainBodyLayer;
//! use tower_http::trace::TraceLayer;
//!
//! /// The drain, then a span per request with the peer address (from
//! /// `ConnectInfo`, set up as in the README's axum quick start).
//! fn layers(routes: Router) -> Router {
//!     routes
//!         .layer(DrainBodyLayer::new(256 * 1024))
//!         .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
//!             let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0);
//!             tracing::info_span!("request", ?peer, uri = %request.uri())
//!         }))
//! }
//! # let _ = layers(Router::new());
//! ```
//!
//! For numbers, give the layer [`DrainCounters`] ([`DrainBodyLayer::counters`]):
//! each request with a body then lands in exactly one outcome of [`DrainStats`],
//! and `draining` shows the drains in flight. They cost nothing when absent.
//! [`DrainStats::metrics`] lists them Prometheus-style, as
//! `linger_drain_bodies_total{outcome="..."}`, `linger_drained_bytes_total` and
//! `linger_drains_in_progress`; after the two bodies above and a 1 MB upload
//! rejected unread, an exporter shows among others:
//!
//! ```text
//! linger_drain_bodies_total{outcome="drained_inline"} 1
//! linger_drain_bodies_total{outcome="drained"} 1
//! linger_drain_bodies_total{outcome="over_limit"} 1
//! linger_drained_bytes_total 20007
//! ```
//!
//! ```
//! use linger::{DrainBodyLayer, DrainCounters};
//!
//! let counters = DrainCounters::new();
//! let _layer = DrainBodyLayer::new(256 * 1024).counters(counters.clone());
//! let stats = counters.snapshot(); // read, drained_inline, drained, over_limit, deadline, ...
//! assert_eq!(stats.draining, 0); // background drains in flight now
//! assert_eq!(stats.settled(), 0); // the outcomes add up to the bodies seen
//! ```
//!
//! # Example: axum
//!
//! ```
//! # #[cfg(feature = "axum")]
//! # fn example() {
//! use axum::{routing::post, Router};
//! use linger::DrainBodyLayer;
//! use tower::Layer as _;
//!
//! let routes = Router::new().route("/ignore", post(|| async { "body ignored" }));
//! // Around the whole router, the README's form: `axum::serve(listener, app)`.
//! let app = DrainBodyLayer::new(256 * 1024).axum().layer(routes.clone());
//! // Or on it, as the last `.layer` call so that it is outermost.
//! let app_too: Router = routes.layer(DrainBodyLayer::new(256 * 1024));
//! # let _ = (app, app_too);
//! # }
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

// Each item has one public path, at the crate root; this module is the guide above.
#[cfg(doc)]
use crate::{DrainBody, DrainBodyLayer, DrainBodyService, DrainCounters, DrainStats, LingeringIo};
#[cfg(feature = "axum")]
pub(crate) mod axum;
pub(crate) mod body;
mod close_header;
pub(crate) mod counters;
mod decision;
mod drainer;
pub(crate) mod future;
pub(crate) mod layer;
pub(crate) mod service;
