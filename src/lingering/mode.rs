//! Where a close lingers: in a background task after the IO's drop, or inside `poll_shutdown`.

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;

use super::close::Close;
use super::discard::{self, Discard};

/// The two things that depend on the IO type's bounds, chosen when the IO is wrapped.
///
/// `LingeringIo<T>`'s `Drop` and `AsyncWrite` impls cannot ask for `T: Send + 'static`,
/// which a background task and the zero-copy discard of a `TcpStream` need, so
/// [`LingerGroup::wrap`](crate::LingerGroup::wrap), where the bounds are known, picks
/// these functions and [`wrap_local`](crate::LingerGroup::wrap_local) picks the ones
/// that work for any IO.
pub(crate) struct CloseMode<T> {
    discard: Discard<T>,
    /// Finishes the close of a dropped IO in a background task; `None` when the close
    /// lingers inside `poll_shutdown` and a drop closes plainly.
    finish_dropped: Option<fn(T, Close)>,
}

impl<T> Clone for CloseMode<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for CloseMode<T> {}

impl<T> CloseMode<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// The linger runs in a task once the IO is dropped; a `TcpStream` is discarded
    /// without copying.
    pub(crate) fn background() -> Self {
        Self {
            discard: discard::best::<T>,
            finish_dropped: Some(finish_in_background::<T>),
        }
    }
}

impl<T> CloseMode<T>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    /// The linger runs inside `poll_shutdown`, through the thread's scratch window.
    pub(crate) fn inline() -> Self {
        Self {
            discard: discard::portable::<T>,
            finish_dropped: None,
        }
    }
}

impl<T> CloseMode<T> {
    /// How the client's input is read and thrown away.
    pub(crate) fn discard(self) -> Discard<T> {
        self.discard
    }

    pub(crate) fn lingers_in_background(self) -> bool {
        self.finish_dropped.is_some()
    }

    /// Ends the close of an IO dropped before its close ended: in a background task, or
    /// plainly when the close lingers inline.
    pub(crate) fn finish_dropped(self, io: T, mut close: Close) {
        match self.finish_dropped {
            Some(finish) => finish(io, close),
            // An open IO simply closes; a close in progress is cut short (`aborted`,
            // counted by its own drop).
            None if close.is_open() => close.close_without_lingering(),
            None => {}
        }
    }
}

/// The drop path: the rest of the close, in a task on the runtime found at wrap time.
fn finish_in_background<T>(mut io: T, mut close: Close)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    close.start(false);
    // Nothing to read (the peer is done, or the cap is reached), or nothing to read with
    // (no runtime with timers): the kernel's close is the bounded answer.
    let Some(runtime) = close.background_runtime() else {
        return;
    };
    let mode = CloseMode::<T>::background();
    let guard = close.group().background_guard();
    // Keeps the connection's span (peer address, say) on the background close.
    let task = async move {
        let _guard = guard;
        std::future::poll_fn(|cx| {
            // An error here has ended the close already; it has nobody to go to.
            let _ = std::task::ready!(close.poll_fin(&mut io, cx));
            close.poll_discard(&mut io, mode.discard(), cx)
        })
        .await;
    };
    runtime.spawn(task.in_current_span());
}
