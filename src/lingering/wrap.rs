//! Making a [`LingeringIo`]: from a [`LingerGroup`], or in a group of its own.
//!
//! Apart from `group.rs` because the group sits beneath the close and the IO, which count
//! into it, while making an IO needs all three.

use tokio::io::{AsyncRead, AsyncWrite};

use super::group::LingerGroup;
use super::io::LingeringIo;
use super::mode::CloseMode;

impl LingerGroup {
    /// Wraps `io` so that it closes in stages, within this group's bounds and cap.
    ///
    /// `poll_shutdown` returns once the FIN is out, and the linger goes on in a task on the
    /// current tokio runtime once the IO is dropped (as it does for a connection dropped
    /// without `poll_shutdown`); that is why `T` must be `Send + 'static`. A
    /// `tokio::net::TcpStream` is discarded without copying on Linux. See
    /// [`wrap_local`](Self::wrap_local) for other IO types.
    pub fn wrap<T>(&self, io: T) -> LingeringIo<T>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        LingeringIo::with_mode(io, self, CloseMode::background())
    }

    /// Wraps any `io`: the staged close, linger included, happens inside `poll_shutdown`,
    /// a drop before it finishes closes plainly, and discarded bytes go through the
    /// thread's scratch window.
    pub fn wrap_local<T>(&self, io: T) -> LingeringIo<T>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        LingeringIo::with_mode(io, self, CloseMode::inline())
    }
}

impl<T> LingeringIo<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Wraps `io` with the default [`LingerConfig`](crate::LingerConfig) in a group of its
    /// own, so its cap does not limit other connections: use [`LingerGroup::wrap`] or a
    /// [`LingeringListener`](crate::LingeringListener) to share one.
    pub fn new(io: T) -> Self {
        LingerGroup::default().wrap(io)
    }
}

impl<T> LingeringIo<T>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps any `io`, in a group of its own: lingering happens inside `poll_shutdown`
    /// (no drop path, no task) and reads through the thread's scratch window.
    pub fn local(io: T) -> Self {
        LingerGroup::default().wrap_local(io)
    }
}
