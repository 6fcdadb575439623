//! A listener whose connections close in stages.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

use super::config::LingerConfig;
use super::group::LingerGroup;
use super::io::LingeringIo;
use super::stats::LingerStats;

/// Wraps a listener so that every accepted connection is a [`LingeringIo`] of one shared
/// [`LingerGroup`].
///
/// With a `tokio::net::TcpListener` it offers [`accept`](Self::accept) for a plain hyper
/// accept loop. With the `axum` feature it implements `axum::serve::Listener` for any
/// axum listener, so that `axum::serve(LingeringListener::new(tcp), app)` works.
///
/// For axum's `ConnectInfo<SocketAddr>`, pass it through axum's `ListenerExt::tap_io`:
/// `axum::serve(listener.tap_io(|_| {}), app.into_make_service_with_connect_info::<SocketAddr>())`.
/// axum implements `Connected` for the address of any listener wrapped in its `TapIo`,
/// and for no other listener but its own (see `PeerAddr`, feature `axum`, for why and for
/// the alternative). Clone the [`group`](Self::group) first: `TapIo` hides it.
///
/// # Example
///
/// ```no_run
/// use hyper::{server::conn::http1, service::service_fn, Response};
/// use hyper_util::rt::TokioIo;
/// use linger::LingeringListener;
///
/// # async fn run() -> std::io::Result<()> {
/// let listener = LingeringListener::new(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
/// loop {
///     let (io, _peer) = listener.accept().await?;
///     tokio::spawn(async move {
///         let service = service_fn(|_req| async {
///             Ok::<_, std::convert::Infallible>(Response::new(String::from("hello")))
///         });
///         let _ = http1::Builder::new()
///             .serve_connection(TokioIo::new(io), service)
///             .await;
///     });
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct LingeringListener<L = TcpListener> {
    inner: L,
    group: LingerGroup,
}

impl<L> LingeringListener<L> {
    /// Wraps `listener` with the default [`LingerConfig`].
    pub fn new(listener: L) -> Self {
        Self::with_group(listener, LingerGroup::default())
    }

    /// Wraps `listener` with `config`, in a group of its own.
    pub fn with_config(listener: L, config: LingerConfig) -> Self {
        Self::with_group(listener, LingerGroup::new(config))
    }

    /// Wraps `listener`; its connections share `group`'s cap and counters with every other
    /// user of the group.
    pub fn with_group(listener: L, group: LingerGroup) -> Self {
        Self {
            inner: listener,
            group,
        }
    }

    /// The group of the accepted connections.
    pub fn group(&self) -> &LingerGroup {
        &self.group
    }

    /// A snapshot of the group's counters.
    pub fn stats(&self) -> LingerStats {
        self.group.stats()
    }

    /// The wrapped listener.
    pub fn get_ref(&self) -> &L {
        &self.inner
    }

    /// The wrapped listener, mutably.
    pub fn get_mut(&mut self) -> &mut L {
        &mut self.inner
    }

    /// Unwraps the listener; connections already accepted keep their group.
    pub fn into_inner(self) -> L {
        self.inner
    }
}

impl LingeringListener<TcpListener> {
    /// Accepts a connection and wraps it in a [`LingeringIo`] of this listener's group.
    pub async fn accept(&self) -> io::Result<(LingeringIo<TcpStream>, SocketAddr)> {
        let (stream, addr) = self.inner.accept().await?;
        Ok((self.group.wrap(stream), addr))
    }

    /// The local address of the listener.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

#[cfg(feature = "axum")]
impl<L: axum::serve::Listener> axum::serve::Listener for LingeringListener<L> {
    type Io = LingeringIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        (self.group.wrap(io), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        axum::serve::Listener::local_addr(&self.inner)
    }
}
