//! Staged close of connections (RFC 9112 §9.6).
//!
//! When a server closes a TCP socket whose receive queue holds unread bytes, or bytes
//! arrive after the close, Linux answers with a reset (RST) instead of a normal end (FIN),
//! and throws away the unsent part of the response: the client sees "connection reset by
//! peer" instead of the early 413, the error page, or the tail of a large
//! `Connection: close` response. hyper closes with a plain `poll_shutdown` and drops the IO.
//!
//! [`LingeringIo`] closes in stages instead. Connections made from one [`LingerGroup`] (or
//! one [`LingeringListener`]) share a cap on how many linger at once, and counters
//! ([`LingerStats`]). All the items are at the crate root: `linger::LingeringIo`,
//! `linger::LingerGroup`, and so on.
//!
//! # The staged close
//!
//! `LingeringIo<T>` wraps any tokio `AsyncRead + AsyncWrite` (a `TcpStream`, a
//! `UnixStream`, or the stream under a TLS layer). Reads and writes go straight through
//! (vectored writes included); its `poll_shutdown`, which hyper calls when it closes a
//! connection, closes in stages:
//!
//! 1. flush, then half-close (FIN): the client sees the end of the response;
//! 2. read and discard until the client's own FIN, an idle timeout between reads, a total
//!    time cap or a byte cap ([`LingerConfig`]; a peer that already closed costs no wait);
//! 3. only then let the socket close: no unread input left, so no reset.
//!
//! hyper's `poll_shutdown` returns after step 1; steps 2 and 3 run in a background task once
//! hyper drops the connection, so hyper's buffers are freed while the client is still
//! sending: a lingering connection costs its socket and about 1 KB of memory. When hyper
//! drops the IO without closing it (handler error, body error, header timeout, a handler
//! that panics, every HTTP/2 connection), the whole staged close runs in that task: a client
//! whose upload meets a panicking handler sees a FIN, not a reset. An IO still used after
//! its FIN (a `CONNECT` tunnel whose `copy_bidirectional` half-closed one way and forwards
//! the other) is not lingering: its slot, timers and total timeout start when it is dropped.
//! On Linux, `TcpStream`s are discarded with `recv(MSG_TRUNC)`, which copies nothing; other
//! IO reads through one 16 KiB window per thread. Beyond
//! [`max_lingering`](LingerConfig::max_lingering) connections lingering at once in a group,
//! a connection closes at once and is counted as `skipped`.
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
//! | setting | default | nginx | Apache httpd | Go net/http | builder |
//! |---|---|---|---|---|---|
//! | time without data | 2 s | 5 s (`lingering_timeout`) | 2 s | — (a blind 500 ms sleep, no reading) | [`idle_timeout`](LingerConfig::idle_timeout) |
//! | total time | 30 s | 30 s (`lingering_time`) | 30 s | — | [`total_timeout`](LingerConfig::total_timeout) |
//! | bytes discarded | 64 MiB | no cap | no cap | — | [`max_bytes`](LingerConfig::max_bytes) |
//! | connections lingering at once | 1024 per group | — | — | — | [`max_lingering`](LingerConfig::max_lingering) |
//!
//! ```
//! use std::time::Duration;
//! use linger::{LingerConfig, LingerGroup};
//!
//! let group = LingerGroup::new(
//!     LingerConfig::new()
//!         .idle_timeout(Duration::from_secs(2))
//!         .total_timeout(Duration::from_secs(10))
//!         .max_bytes(64 * 1024 * 1024)
//!         .max_lingering(1024),
//! );
//! assert_eq!(group.config().get_total_timeout(), Duration::from_secs(10));
//! let stats = group.stats(); // peer_eof, idle_timeout, ..., aborted, released; gauges lingering, background
//! assert_eq!(stats.lingering, 0);
//! assert_eq!(stats.closes(), 0); // the outcomes add up to the closes
//! ```
//!
//! ## Runtimes without timers, and `panic = "abort"`
//!
//! Outside a tokio runtime, or in one built without timers, nothing lingers: connections
//! close plainly and count as `skipped`. tokio cannot be asked whether a runtime has timers,
//! so the crate tries one under `catch_unwind`, once per runtime, when it wraps the first
//! IO: a runtime without timers shows tokio's "timers are disabled" panic message to the
//! panic hook that one time. **With `panic = "abort"` this cannot be asked: build the
//! runtime with timers** (`enable_all()` or `enable_time()`; `#[tokio::main]` does), or the
//! first lingering close or background drain aborts the process.
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
//! [`LingeringListener::accept`] does the wrapping for a `TcpListener` (and, with the `axum`
//! feature, for any `axum::serve::Listener`, Unix sockets included).
//!
//! ## Upgrades: downcasting hyper's `Upgraded`
//!
//! hyper's `Upgraded` (after a `101` or a `CONNECT`) keeps the IO it was served with, so
//! code that gets the socket back with `Upgraded::downcast` must name the wrapper:
//! `TokioIo<LingeringIo<TcpStream>>`, not `TokioIo<TcpStream>`, which now fails. The
//! `LingeringIo` is still a plain stream to use, and [`LingeringIo::into_inner`] unwraps it:
//!
//! ```no_run
//! use hyper::upgrade::Upgraded;
//! use hyper_util::rt::TokioIo;
//! use linger::LingeringIo;
//! use tokio::net::TcpStream;
//!
//! fn socket_of(upgraded: Upgraded) -> Option<TcpStream> {
//!     let parts = upgraded.downcast::<TokioIo<LingeringIo<TcpStream>>>().ok()?;
//!     // `parts.read_buf` holds bytes hyper had read past the upgrade: use them first.
//!     Some(parts.io.into_inner().into_inner())
//! }
//! # let _ = socket_of;
//! ```
//!
//! # With axum (feature `axum`)
//!
//! `axum::serve(LingeringListener::new(tcp), app)`. For `ConnectInfo<SocketAddr>` with
//! axum 0.8, tap the listener (`.tap_io(|_| {})`) or use `linger::PeerAddr`;
//! its documentation says why.
//!
//! ## Graceful shutdown
//!
//! A graceful shutdown (axum's `with_graceful_shutdown`, hyper-util's `GracefulShutdown`)
//! ends when hyper's connections have sent their FIN, before their lingering closes have
//! ended. Wait for those too, with [`LingerGroup::wait_idle`], before the runtime shuts down
//! (which would cut them short, counted as `aborted`). `wait_idle` resolves once no IO of
//! the group is open, none lingering and no background close runs; bound it, as a safety
//! net for IO the server did not close (such as upgraded tunnels), by the total timeout and
//! a second for the server's connections to be dropped:
//!
//! ```no_run
//! # #[cfg(feature = "axum")]
//! # async fn run() -> std::io::Result<()> {
//! use std::time::Duration;
//!
//! use axum::{routing::post, Router};
//! use linger::{LingerConfig, LingeringListener};
//!
//! let app = Router::new().route("/upload", post(|| async { "too large" }));
//! let tcp = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let config = LingerConfig::new().total_timeout(Duration::from_secs(10));
//! let listener = LingeringListener::with_config(tcp, config);
//! let group = listener.group().clone();
//! axum::serve(listener, app)
//!     .with_graceful_shutdown(async { tokio::signal::ctrl_c().await.unwrap_or(()) })
//!     .await?;
//! // The connections are closed; let their lingering closes end too, within a bound.
//! let bound = config.get_total_timeout() + Duration::from_secs(1);
//! let _ = tokio::time::timeout(bound, group.wait_idle()).await;
//! # Ok(())
//! # }
//! ```
//!
//! With hyper-util: `graceful.shutdown()`, then the same bounded `wait_idle`.
//!
//! What to choose: Kubernetes sends SIGTERM, then SIGKILL after
//! `terminationGracePeriodSeconds`, 30 s by default. Plan for the whole shutdown to end
//! before that:
//!
//! - up to 15 s for the server's own graceful shutdown (requests in flight). Neither axum nor
//!   hyper-util bound it: wrap hyper-util's `graceful.shutdown()` in `tokio::time::timeout`,
//!   and bound handlers with tower-http's `TimeoutLayer`; `examples/axum.rs` also puts a
//!   deadline on axum's;
//! - then up to 11 s for `wait_idle`, with `total_timeout` at 10 s, so that a close that
//!   starts at the end of the server's shutdown can finish. The client has its whole
//!   response by then; the linger only waits for its FIN. A close cut short by the deadline
//!   is counted as `aborted`, and at worst a client still sending seconds after its response
//!   sees a reset;
//! - 4 s left for the process to exit.
//!
//! Listen for SIGTERM, not only Ctrl-C: `examples/axum.rs` shows both.
//!
//! # TLS, axum-server, Unix sockets
//!
//! Under TLS, wrap the TCP stream and give the `LingeringIo` to the TLS acceptor
//! (`tls_acceptor.accept(group.wrap(tcp_stream))` with tokio-rustls), so that the TLS
//! close (`close_notify`) goes out before the linger, and the raw bytes after it are
//! discarded without being decrypted. `examples/hyper_auto_tls.rs` is a whole server. HTTP/2
//! connections linger in the background without `close_notify`.
//!
//! With axum-server and rustls, the acceptor is small enough that the crate does not depend
//! on axum-server for it: `RustlsAcceptor::new(config).acceptor(LingeringAcceptor(group))`.
//! Tested: a 4 MiB response to a request with an ignored body arrives whole over TLS, then
//! `close_notify` (a reset without the acceptor).
//!
//! ```no_run
//! use std::{future::Ready, io};
//! use axum_server::accept::Accept;
//! use linger::{LingerGroup, LingeringIo};
//! use tokio::io::{AsyncRead, AsyncWrite};
//!
//! /// Wraps each TCP stream in `LingeringIo` before rustls sees it.
//! #[derive(Clone)]
//! struct LingeringAcceptor(LingerGroup);
//!
//! impl<I, S> Accept<I, S> for LingeringAcceptor
//! where
//!     I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
//! {
//!     type Stream = LingeringIo<I>;
//!     type Service = S;
//!     type Future = Ready<io::Result<(LingeringIo<I>, S)>>;
//!
//!     fn accept(&self, stream: I, service: S) -> Self::Future {
//!         std::future::ready(Ok((self.0.wrap(stream), service)))
//!     }
//! }
//!
//! // let acceptor = RustlsAcceptor::new(tls_config).acceptor(LingeringAcceptor(group.clone()));
//! // axum_server::bind(addr).acceptor(acceptor).serve(app.into_make_service()).await?;
//! // then the bounded `group.wait_idle()` of the graceful shutdown above.
//! ```
//!
//! Unix sockets: `axum::serve(LingeringListener::new(UnixListener::bind(path)?), app)`
//! (feature `axum`), or `group.wrap(unix_stream)` in a hyper loop. Tested: the early 413 to
//! a 16 MiB upload arrives and the upload completes, then a clean EOF (a broken pipe or a
//! reset without).
//!
//! # Observing it
//!
//! Each close ends with a `debug` tracing event, "linger finished", carrying `outcome`
//! (`peer_eof`: the client's FIN; `idle_timeout`, `total_timeout`, `byte_cap`: a bound;
//! `error`; `skipped`: no linger, as beyond `max_lingering` or without timers; `aborted`:
//! the runtime ended first; `stalled_write`: the client neither read nor stopped sending;
//! `released`: the IO was unwrapped), `bytes_discarded`,
//! `elapsed_ms` and `drop_path` (`true` when the close ran in the background task after
//! hyper dropped the connection). The FIN makes a `trace` event. With a span per connection
//! (as in `examples/hyper.rs`), a 1 MB upload rejected unread logs:
//!
//! ```text
//! TRACE conn{peer=127.0.0.1:46108}: linger::lingering::close: half-closed, lingering
//! DEBUG conn{peer=127.0.0.1:46108}: linger::lingering::close: linger finished outcome="peer_eof" bytes_discarded=991867 elapsed_ms=0 drop_path=true
//! ```
//!
//! A close that fails logs "staged close failed" (`error`, `stage`), and a read that fails
//! while lingering "read failed while lingering" (`error`), both at `debug`; errors end the
//! linger quietly. The events carry no peer address of their own: run each connection in a
//! span that has it. `axum::serve` runs connections in no span, so with axum the close
//! events come without one.
//!
//! [`LingerGroup::stats`] counts the same outcomes; [`LingerStats::metrics`] lists them
//! Prometheus-style, as `linger_closes_total{outcome="..."}`,
//! `linger_discarded_bytes_total`, `linger_lingering_connections` and
//! `linger_lingering_background_connections`. After the upload above:
//!
//! ```text
//! linger_closes_total{outcome="peer_eof"} 1
//! linger_discarded_bytes_total 991867
//! linger_lingering_connections 0
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
