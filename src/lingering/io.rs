//! The connection IO whose `poll_shutdown` closes in stages: its `AsyncRead` and
//! `AsyncWrite` face.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task;

use super::close::Close;
use super::group::{LingerGroup, OpenGuard};
use super::mode::CloseMode;
use crate::discard_signal::{self, DiscardSignal};

/// A tokio `AsyncRead + AsyncWrite` wrapper whose `poll_shutdown` closes in stages, as
/// RFC 9112 §9.6 asks, so that the peer gets the whole response instead of a reset.
///
/// Closing a TCP socket with unread input makes Linux send RST and throw away whatever
/// response bytes are still queued. The staged close therefore:
///
/// 1. flushes the inner IO,
/// 2. half-closes it (inner `poll_shutdown`: FIN),
/// 3. reads and discards until the peer's EOF, the [idle timeout](crate::LingerConfig::idle_timeout)
///    between reads, the [total cap](crate::LingerConfig::total_timeout) on the whole
///    close, or the [byte cap](crate::LingerConfig::max_bytes),
/// 4. lets the socket close.
///
/// Errors of steps 1 and 2 are returned as a plain `poll_shutdown` would, and so is
/// reaching the total cap before the FIN is out (`ErrorKind::TimedOut`: the response did
/// not fully leave); a later `poll_shutdown` reports the failure again. Errors while
/// discarding (a reset by the peer, say) end the linger quietly. A peer whose EOF was
/// already read costs no wait, and there is no fixed delay anywhere. Beyond the group's
/// [`max_lingering`](crate::LingerConfig::max_lingering), step 3 is skipped.
///
/// Reads, writes (vectored included, with `is_write_vectored` forwarded, which hyper
/// uses to pick its write strategy) and flushes go straight to the inner IO.
///
/// # Where step 3 runs
///
/// For a `LingeringIo` made by [`new`](Self::new) or [`LingerGroup::wrap`],
/// `poll_shutdown` returns once the FIN is out, and step 3 runs in a task on the current
/// tokio runtime once the IO is dropped, which hyper does right after `poll_shutdown`.
/// hyper's connection state (its read and write buffers) is freed meanwhile, so a
/// lingering connection costs little more than its socket, and a server's graceful
/// shutdown no longer waits for lingering clients: await
/// [`LingerGroup::wait_idle`] after it (see [`LingerStats`](crate::LingerStats) for the
/// gauges).
///
/// The same happens when hyper drops the IO without calling `poll_shutdown` (service or
/// body error, header read timeout, I/O error, a handler that panics): the whole staged
/// close then runs in the task, within the same bounds and under the same cap. hyper's
/// HTTP/2 server always ends connections this way, so HTTP/2 closes linger after a
/// GOAWAY but without TLS close_notify. This needs `T: Send + 'static`;
/// [`local`](Self::local) and [`LingerGroup::wrap_local`] accept any IO and linger inside
/// `poll_shutdown` instead. [`into_inner`](Self::into_inner) never starts a close (it
/// counts as [`released`](crate::LingerStats::released)).
///
/// An IO still used after `poll_shutdown` (a tunnel that half-closed one direction with
/// `tokio::io::copy_bidirectional` and still forwards the other) is not lingering: its
/// slot, its timers and its total timeout start when it is dropped, and an EOF its user
/// read from the peer meanwhile ends the close at once, as `peer_eof`.
///
/// # When the request body is given up
///
/// Under a [`DrainBodyLayer`](crate::DrainBodyLayer), the layer tells the `LingeringIo`
/// its request came on when it stops reading the request body before its end: a response
/// that ends the connection, or a drain that gives up (over the limit, past its
/// deadline). From then on, reads show hyper the end of the input (so that hyper never
/// parses a byte after those thrown away, and closes after the response), and each write
/// first reads and discards what the client sends, within
/// [`max_bytes`](crate::LingerConfig::max_bytes) and
/// [`total_timeout`](crate::LingerConfig::total_timeout): a client that sends its whole
/// body before it reads gets the response instead of waiting on a server that waits on
/// it. Those bytes count in the close's `bytes_discarded` and byte cap. Once discarding
/// stops at a bound, a write that cannot go on fails at the total timeout, counted as
/// [`stalled_write`](crate::LingerStats::stalled_write): a client that neither reads
/// nor stops sending does not hold the connection forever.
///
/// The layer finds the IO through the tokio task that reads it, so each
/// connection needs a task of its own (`tokio::spawn` per connection, as `axum::serve`
/// does). A task that has read two `LingeringIo`s at once gets no signal at all, and the
/// layer then does without the IO (drains through hyper, and nothing is discarded
/// beneath it) rather than tell the wrong connection.
///
/// # Runtimes
///
/// The bounds use tokio timers. What a drop needs is found when the IO is wrapped (on
/// the accepting task, usually): the current runtime, and whether it has timers. A drop,
/// even one while a handler's panic unwinds the connection's task, then hands the IO to
/// a background close on that runtime without asking anything. Wrapped outside a tokio
/// runtime, or in one built without timers, nothing lingers: `poll_shutdown` flushes and
/// half-closes like the inner IO and a drop closes plainly, counted as
/// [`skipped`](crate::LingerStats::skipped).
///
/// tokio offers no way to ask whether a runtime has timers, so the crate creates one
/// under `catch_unwind`, once per runtime: a runtime without timers lets tokio's "timers
/// are disabled" message through the panic hook once. Under `panic = "abort"` nothing can
/// be asked that way and timers are assumed: **build the runtime with timers**
/// (`enable_time` or `enable_all`, as `#[tokio::main]` does), or a close on it aborts the
/// process.
///
/// A `tokio::net::TcpStream` made with `new` or `wrap` is discarded on Linux with
/// `recv(MSG_TRUNC)`, which copies nothing; other IO reads through one 16 KiB window per
/// thread. Under TLS, wrap the TCP stream, not the TLS stream: the TLS layer sends
/// close_notify and then calls this `poll_shutdown`, and the raw bytes that follow need
/// no decryption to be thrown away.
///
/// # Example
///
/// ```no_run
/// use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response};
/// use hyper_util::rt::TokioIo;
/// use linger::LingeringIo;
///
/// # async fn run() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// loop {
///     let (stream, _) = listener.accept().await?;
///     let io = TokioIo::new(LingeringIo::new(stream));
///     tokio::spawn(async move {
///         let service = service_fn(|_req: Request<Incoming>| async {
///             Ok::<_, std::convert::Infallible>(Response::new(String::from("hello")))
///         });
///         let _ = http1::Builder::new().serve_connection(io, service).await;
///     });
/// }
/// # }
/// ```
pub struct LingeringIo<T> {
    /// `None` only once `into_inner` has taken it, so that `Drop` leaves it alone.
    io: Option<T>,
    close: Close,
    mode: CloseMode<T>,
    /// What the drain layer serving this IO's requests tells it (see
    /// `crate::discard_signal`), minted once and filed under the task using the IO.
    signal: Arc<DiscardSignal>,
    /// The task last seen reading the IO, under which `signal` is filed, and its waker: a
    /// read from the same task is told by comparing wakers, which costs two compares.
    /// (Writes are not watched: an upgraded connection split between a reading and a
    /// writing task would move the filing on every call.)
    user: Option<(task::Id, Waker)>,
    /// Counts this IO in `LingerStats::open`. A field, so that it is released only after
    /// `Drop::drop` has handed the close over (its lingering slot taken): the IO is always
    /// in one of the gauges `wait_idle` watches.
    _open: OpenGuard,
}

impl<T: fmt::Debug> fmt::Debug for LingeringIo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LingeringIo")
            .field("io", &self.io)
            .field("close", &self.close)
            .field("drop_path", &self.mode.lingers_in_background())
            .field("discarding", &self.signal.is_raised())
            .finish()
    }
}

impl<T> LingeringIo<T> {
    /// What [`LingerGroup::wrap`] and [`LingerGroup::wrap_local`] make.
    pub(super) fn with_mode(io: T, group: &LingerGroup, mode: CloseMode<T>) -> Self {
        Self {
            io: Some(io),
            close: Close::open(group.clone()),
            mode,
            signal: Arc::default(),
            user: None,
            _open: group.open_guard(),
        }
    }

    /// The inner IO.
    pub fn get_ref(&self) -> &T {
        self.io
            .as_ref()
            .expect("LingeringIo holds its IO until into_inner")
    }

    /// The inner IO; reading or writing through it bypasses nothing but the EOF tracking.
    pub fn get_mut(&mut self) -> &mut T {
        self.io
            .as_mut()
            .expect("LingeringIo holds its IO until into_inner")
    }

    /// Unwraps the inner IO without closing it, counted as
    /// [`released`](crate::LingerStats::released); a close in progress in
    /// `poll_shutdown` is abandoned, and counted as
    /// [`aborted`](crate::LingerStats::aborted).
    pub fn into_inner(mut self) -> T {
        self.withdraw_signal();
        self.close.release();
        self.io
            .take()
            .expect("LingeringIo holds its IO until into_inner")
    }

    /// The group whose bounds, cap and counters this connection uses.
    pub fn group(&self) -> &LingerGroup {
        self.close.group()
    }

    /// Files the signal under the task reading the IO, so that the drain layer serving its
    /// requests (called from the same task) can find it. The task may change: a TLS
    /// handshake on the accept loop, then the connection's task.
    #[inline]
    fn note_reader(&mut self, cx: &Context<'_>) {
        let same = self
            .user
            .as_ref()
            .is_some_and(|(_, waker)| waker.will_wake(cx.waker()));
        if !same {
            self.file_signal(cx);
        }
    }

    #[cold]
    fn file_signal(&mut self, cx: &Context<'_>) {
        let Some(task) = task::try_id() else { return };
        if let Some((filed_task, waker)) = &mut self.user {
            if *filed_task == task {
                // The same task, with a waker that compares differently.
                waker.clone_from(cx.waker());
                return;
            }
        }
        self.withdraw_signal();
        discard_signal::file(task, &self.signal);
        self.user = Some((task, cx.waker().clone()));
    }

    fn withdraw_signal(&mut self) {
        if let Some((task, _)) = self.user.take() {
            discard_signal::withdraw(task);
        }
    }
}

impl<T: AsyncRead + Unpin> LingeringIo<T> {
    /// Before each write: a response is being served, and if nothing will read the
    /// request any more, what the client still sends is thrown away.
    #[inline]
    fn before_write(&mut self, cx: &mut Context<'_>) {
        if self.signal.is_raised() {
            self.discard_input(cx);
        }
    }

    #[cold]
    fn discard_input(&mut self, cx: &mut Context<'_>) {
        if let Some(io) = self.io.as_mut() {
            self.close.discard_input(io, self.mode.discard(), cx);
        }
    }

    /// A write that cannot go on: once the client's input is no longer thrown away (past
    /// the byte cap or the total timeout), a client that neither reads nor stops sending
    /// would hold it forever. It fails at the total timeout instead.
    #[cold]
    fn stalled<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        match self.close.poll_stalled_write(cx) {
            Poll::Ready(e) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T> Drop for LingeringIo<T> {
    fn drop(&mut self) {
        // After `into_inner` the IO is gone.
        let Some(io) = self.io.take() else { return };
        self.withdraw_signal();
        let taken = self.close.taken();
        let close = std::mem::replace(&mut self.close, taken);
        self.mode.finish_dropped(io, close);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for LingeringIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.note_reader(cx);
        if this.signal.is_raised() {
            // Nothing reads this connection's input any more: hyper is shown its end, so
            // that it never parses a byte that follows those thrown away beneath it.
            this.discard_input(cx);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let wanted = buf.remaining() > 0;
        let res = Pin::new(this.get_mut()).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            if wanted && buf.filled().len() == before {
                this.close.peer_closed();
            }
        }
        res
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LingeringIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.before_write(cx);
        match Pin::new(this.get_mut()).poll_write(cx, buf) {
            Poll::Pending if this.signal.is_raised() => this.stalled(cx),
            res => res,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.before_write(cx);
        match Pin::new(this.get_mut()).poll_write_vectored(cx, bufs) {
            Poll::Pending if this.signal.is_raised() => this.stalled(cx),
            res => res,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.get_ref().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.before_write(cx);
        match Pin::new(this.get_mut()).poll_flush(cx) {
            Poll::Pending if this.signal.is_raised() => this.stalled(cx),
            res => res,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(kind) = this.close.failure() {
            return Poll::Ready(Err(io::Error::new(
                kind,
                "an earlier shutdown of this connection failed",
            )));
        }
        if this.close.is_shut_down() {
            return Poll::Ready(Ok(()));
        }
        this.close.start(true);
        let io = this
            .io
            .as_mut()
            .expect("LingeringIo holds its IO until into_inner");
        std::task::ready!(this.close.poll_fin(io, cx))?;
        if !this.mode.lingers_in_background() && this.close.try_linger(false) {
            // No drop path: linger here, the IO is let go as far as this wrapper knows.
            std::task::ready!(this.close.poll_discard(io, this.mode.discard(), cx));
        }
        // With the drop path, the FIN is out: the linger, if any, starts once the IO is
        // dropped.
        Poll::Ready(Ok(()))
    }
}
