//! `ConnectInfo` for axum apps served through a [`LingeringListener`].

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};

use super::listener::LingeringListener;

/// The peer address of a connection accepted by a [`LingeringListener`], for axum's
/// `ConnectInfo` extractor, without `tap_io`.
///
/// This is for axum 0.8. axum's main branch already implements `ConnectInfo<SocketAddr>`
/// for any listener whose address is a `SocketAddr`; from the release that brings it,
/// `ConnectInfo<SocketAddr>` works on a `LingeringListener` as it is, and neither
/// `tap_io` nor `PeerAddr` is needed.
///
/// With axum 0.8, most apps do not need `PeerAddr` either: pass the listener through
/// axum's `ListenerExt::tap_io(|_| {})` and keep `ConnectInfo<SocketAddr>`, which
/// middleware such as rate limiters expect:
///
/// ```no_run
/// use std::net::SocketAddr;
/// use std::time::Duration;
///
/// use axum::{extract::ConnectInfo, routing::get, serve::ListenerExt, Router};
/// use linger::LingeringListener;
///
/// # async fn run() -> std::io::Result<()> {
/// let app = Router::new().route(
///     "/",
///     get(|ConnectInfo(addr): ConnectInfo<SocketAddr>| async move { format!("hello {addr}") }),
/// );
/// let listener = LingeringListener::new(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
/// let group = listener.group().clone(); // for `wait_idle` and stats: `TapIo` hides it
/// axum::serve(
///     listener.tap_io(|_| {}), // outside the LingeringListener, not inside
///     app.into_make_service_with_connect_info::<SocketAddr>(),
/// )
/// .await?;
/// // Let the last closes end, bounded (see the `lingering` module: graceful shutdown).
/// let bound = group.config().get_total_timeout() + Duration::from_secs(1);
/// let _ = tokio::time::timeout(bound, group.wait_idle()).await;
/// # Ok(())
/// # }
/// ```
///
/// Why: axum 0.8 implements `Connected` for `SocketAddr` only on the `IncomingStream` of
/// its own `TcpListener` and of `TapIo` (for any listener's address), and the orphan rule
/// forbids this crate adding `LingeringListener` to the list. Without `tap_io`, the
/// `axum::serve` call fails with E0277, "`SocketAddr: Connected<IncomingStream<'a,
/// LingeringListener>>` is not satisfied", then "`Serve<..>` is not a future":
///
/// ```compile_fail,E0277
/// # use std::net::SocketAddr;
/// # use axum::Router;
/// # use linger::LingeringListener;
/// # async fn run(app: Router, tcp: tokio::net::TcpListener) -> std::io::Result<()> {
/// axum::serve(
///     LingeringListener::new(tcp),
///     app.into_make_service_with_connect_info::<SocketAddr>(),
/// )
/// .await
/// # }
/// ```
///
/// `tap_io` inside (`LingeringListener::new(tcp.tap_io(..))`) does not help either: the
/// outermost listener is what counts. `PeerAddr` is `Connected` for the
/// `LingeringListener` itself, so it needs no `tap_io`, at the price of handlers
/// extracting `ConnectInfo<PeerAddr>`.
///
/// # Example
///
/// A whole server, with the graceful shutdown's wait for the last closes bounded:
///
/// ```no_run
/// use std::time::Duration;
///
/// use axum::{extract::ConnectInfo, routing::get, Router};
/// use linger::{LingeringListener, PeerAddr};
///
/// #[tokio::main]
/// async fn main() -> std::io::Result<()> {
///     let app = Router::new().route(
///         "/",
///         get(|ConnectInfo(PeerAddr(addr)): ConnectInfo<PeerAddr>| async move {
///             format!("hello {addr}")
///         }),
///     );
///     let listener = LingeringListener::new(tokio::net::TcpListener::bind("127.0.0.1:3000").await?);
///     let group = listener.group().clone();
///     axum::serve(listener, app.into_make_service_with_connect_info::<PeerAddr>())
///         .with_graceful_shutdown(async { tokio::signal::ctrl_c().await.unwrap_or(()) })
///         .await?;
///     let bound = group.config().get_total_timeout() + Duration::from_secs(1);
///     let _ = tokio::time::timeout(bound, group.wait_idle()).await;
///     Ok(())
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerAddr<A = std::net::SocketAddr>(pub A);

impl<L> Connected<IncomingStream<'_, LingeringListener<L>>> for PeerAddr<L::Addr>
where
    L: Listener,
    L::Addr: Clone + Sync + 'static,
{
    fn connect_info(stream: IncomingStream<'_, LingeringListener<L>>) -> Self {
        PeerAddr(stream.remote_addr().clone())
    }
}
