//! `ConnectInfo` for axum apps served through a [`LingeringListener`].

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};

use super::LingeringListener;

/// The peer address of a connection accepted by a [`LingeringListener`], for axum's
/// `ConnectInfo` extractor.
///
/// axum 0.8 implements `Connected` for `SocketAddr` only for the `IncomingStream` of its
/// own listener types, and the orphan rules forbid this crate doing the same for
/// `LingeringListener`. Use `ConnectInfo<PeerAddr>` instead, as below, or keep
/// `ConnectInfo<SocketAddr>` by passing the listener through axum's
/// `ListenerExt::tap_io(|_| {})`, for which axum implements it for any listener.
///
/// # Example
///
/// ```no_run
/// use axum::{extract::ConnectInfo, routing::get, Router};
/// use linger::{LingeringListener, PeerAddr};
///
/// # async fn run() -> std::io::Result<()> {
/// let app = Router::new().route(
///     "/",
///     get(|ConnectInfo(PeerAddr(addr)): ConnectInfo<PeerAddr>| async move {
///         format!("hello {addr}")
///     }),
/// );
/// let listener = LingeringListener::new(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
/// axum::serve(
///     listener,
///     app.into_make_service_with_connect_info::<PeerAddr>(),
/// )
/// .await
/// # }
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
