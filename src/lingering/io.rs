//! The IO wrapper that closes in stages.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::runtime::Handle;
use tokio::task;
use tokio::time::Instant;
use tracing::Instrument;

use super::close::{Closing, READS_PER_POLL};
use super::discard::{self, DiscardFn};
use super::group::{OpenGuard, Outcome};
use super::LingerGroup;
use crate::connection::{self, Link};
use crate::timers;

/// Hands an IO dropped before its close finished to a background task.
type DropHook<T> = fn(Leftover<T>);

/// What a dropped [`LingeringIo`] leaves to finish.
struct Leftover<T> {
    io: T,
    closing: Closing,
    runtime: Option<Handle>,
    discard: DiscardFn<T>,
}

enum State {
    Open,
    /// `poll_shutdown` is flushing and half-closing, or lingering inline (no drop path).
    Closing(Closing),
    /// The FIN is out and `poll_shutdown` has returned. The linger starts once the IO is
    /// dropped, in a background task, so that hyper's buffers are freed meanwhile and an
    /// IO still in use (a tunnel) holds no slot.
    HalfClosed,
    Closed,
    /// The staged close failed; later calls report it again.
    Failed(io::ErrorKind),
}

/// A tokio `AsyncRead + AsyncWrite` wrapper whose `poll_shutdown` closes in stages, as
/// RFC 9112 §9.6 asks, so that the peer gets the whole response instead of a reset.
///
/// Closing a TCP socket with unread input makes Linux send RST and throw away whatever
/// response bytes are still queued. The staged close therefore:
///
/// 1. flushes the inner IO,
/// 2. half-closes it (inner `poll_shutdown`: FIN),
/// 3. reads and discards until the peer's EOF, the [idle timeout](super::LingerConfig::idle_timeout)
///    between reads, the [total cap](super::LingerConfig::total_timeout) on the whole
///    close, or the [byte cap](super::LingerConfig::max_bytes),
/// 4. lets the socket close.
///
/// Errors of steps 1 and 2 are returned as a plain `poll_shutdown` would, and so is
/// reaching the total cap before the FIN is out (`ErrorKind::TimedOut`: the response did
/// not fully leave); a later `poll_shutdown` reports the failure again. Errors while
/// discarding (a reset by the peer, say) end the linger quietly. A peer whose EOF was
/// already read costs no wait, and there is no fixed delay anywhere. Beyond the group's
/// [`max_lingering`](super::LingerConfig::max_lingering), step 3 is skipped.
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
/// [`LingerGroup::wait_idle`] after it (see [`LingerStats`](super::LingerStats) for the
/// gauges).
///
/// The same happens when hyper drops the IO without calling `poll_shutdown` (service or
/// body error, header read timeout, I/O error, a handler that panics): the whole staged
/// close then runs in the task, within the same bounds and under the same cap. hyper's
/// HTTP/2 server always ends connections this way, so HTTP/2 closes linger after a
/// GOAWAY but without TLS close_notify. This needs `T: Send + 'static`;
/// [`local`](Self::local) and [`LingerGroup::wrap_local`] accept any IO and linger inside
/// `poll_shutdown` instead. [`into_inner`](Self::into_inner) never starts a close (it
/// counts as [`released`](super::LingerStats::released)).
///
/// An IO still used after `poll_shutdown` (a tunnel that half-closed one direction with
/// `tokio::io::copy_bidirectional` and still forwards the other) is not lingering: its
/// slot, its timers and its total timeout start when it is dropped, and an EOF its user
/// read from the peer meanwhile ends the close at once, as `peer_eof`.
///
/// # While a closing response is written
///
/// Under a [`DrainBodyLayer`](crate::DrainBodyLayer), the layer tells the `LingeringIo`
/// its request came on (found through the connection's tokio task) when a response ends
/// the connection with the request body unfinished. From then on, each write first reads
/// and discards what the client sends, within [`max_bytes`](super::LingerConfig::max_bytes)
/// and [`total_timeout`](super::LingerConfig::total_timeout): a client that sends its
/// whole body before it reads gets the response instead of waiting on a server that
/// waits on it. Those bytes count in the close's `bytes_discarded` and byte cap.
///
/// # Runtimes
///
/// The bounds use tokio timers. What a drop needs is found when the IO is wrapped (on
/// the accepting task, usually): the current runtime, and whether it has timers. A drop,
/// even one while a handler's panic unwinds the connection's task, then hands the IO to
/// a background close on that runtime without asking anything. Wrapped outside a tokio
/// runtime, or in one built without timers, nothing lingers: `poll_shutdown` flushes and
/// half-closes like the inner IO and a drop closes plainly, counted as
/// [`skipped`](super::LingerStats::skipped).
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
    group: LingerGroup,
    state: State,
    peer_eof: bool,
    discard: DiscardFn<T>,
    on_drop: Option<DropHook<T>>,
    /// The runtime to linger on, if it has timers; found when the IO is wrapped, so that
    /// a drop (while a panic unwinds, say) asks nothing.
    runtime: Option<Handle>,
    /// What the drain layer serving this IO's requests tells it (see `crate::connection`),
    /// once filed under the task reading the IO.
    link: Option<Arc<Link>>,
    /// The task last seen reading the IO, under which `link` is filed, and its waker: a
    /// read from the same task is told by comparing wakers, which costs two compares.
    reader: Option<(task::Id, Waker)>,
    /// Bytes thrown away while a response that ends the connection was written.
    discarded: u64,
    /// When that started; it stops after the total timeout.
    discarding_since: Option<Instant>,
    /// Counts this IO in `LingerStats::open`. A field, so that it is released only after
    /// `Drop::drop` has handed the close over (its lingering slot taken): the IO is always
    /// in one of the gauges `wait_idle` watches.
    _open: OpenGuard,
}

impl<T: fmt::Debug> fmt::Debug for LingeringIo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state: &dyn fmt::Debug = match &self.state {
            State::Open => &"open",
            State::Closing(closing) => closing,
            State::HalfClosed => &"half-closed",
            State::Closed => &"closed",
            State::Failed(kind) => kind,
        };
        f.debug_struct("LingeringIo")
            .field("io", &self.io)
            .field("state", state)
            .field("peer_eof", &self.peer_eof)
            .field("drop_path", &self.on_drop.is_some())
            .field("timed", &self.runtime.is_some())
            .field(
                "discarding",
                &self.link.as_ref().is_some_and(|link| link.is_closing()),
            )
            .finish()
    }
}

impl<T> LingeringIo<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Wraps `io` with the default [`LingerConfig`](super::LingerConfig) in a group of its
    /// own, so its cap does not limit other connections: use [`LingerGroup::wrap`] or a
    /// [`LingeringListener`](super::LingeringListener) to share one.
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

impl<T> LingeringIo<T> {
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
    /// [`released`](super::LingerStats::released); a close in progress in
    /// `poll_shutdown` is abandoned, and counted as
    /// [`aborted`](super::LingerStats::aborted).
    pub fn into_inner(mut self) -> T {
        self.unregister();
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Open | State::HalfClosed => {
                Closing::record_without_close(
                    self.group.clone(),
                    Outcome::Released,
                    self.discarded,
                );
            }
            // Dropping it counts it as aborted.
            State::Closing(closing) => drop(closing),
            State::Closed | State::Failed(_) => {}
        }
        self.io
            .take()
            .expect("LingeringIo holds its IO until into_inner")
    }

    /// The group whose bounds, cap and counters this connection uses.
    pub fn group(&self) -> &LingerGroup {
        &self.group
    }

    /// Files this IO under the task reading it, so that the drain layer serving its
    /// requests (polled by the same task) can find it. The reading task may change: a
    /// TLS handshake on the accept loop, then the connection's task.
    #[inline]
    fn note_reader(&mut self, cx: &Context<'_>) {
        let same = self
            .reader
            .as_ref()
            .is_some_and(|(_, waker)| waker.will_wake(cx.waker()));
        if !same {
            self.register(cx);
        }
    }

    #[cold]
    fn register(&mut self, cx: &Context<'_>) {
        let Some(task) = task::try_id() else { return };
        if let Some((filed, waker)) = &mut self.reader {
            if *filed == task {
                // The same task, with a waker that compares differently.
                waker.clone_from(cx.waker());
                return;
            }
        }
        self.unregister();
        let link = Arc::new(Link::default());
        // Not filed when the task already reads another `LingeringIo`.
        if connection::register(task, &link) {
            self.link = Some(link);
        }
        self.reader = Some((task, cx.waker().clone()));
    }

    fn unregister(&mut self) {
        if let (Some(link), Some((task, _))) = (self.link.take(), &self.reader) {
            connection::unregister(*task, &link);
        }
    }

    /// A close starting now, with what was discarded before it.
    fn closing(&self, stage: fn(LingerGroup, bool, bool) -> Closing) -> Closing {
        stage(self.group.clone(), self.peer_eof, self.runtime.is_some()).counting(self.discarded)
    }
}

impl<T: AsyncRead + Unpin> LingeringIo<T> {
    /// Before each write: a response is being served, and if it ends the connection, what
    /// the client still sends is thrown away.
    #[inline]
    fn before_write(&mut self, cx: &mut Context<'_>) {
        if self.link.as_ref().is_some_and(|link| link.is_closing()) {
            self.discard_while_closing(cx);
        }
    }

    /// While a response that ends the connection is written, throws away what the client
    /// sends, so that a client that sends its whole body before it reads (Python's
    /// `requests`, Java's `HttpURLConnection`) is not left waiting on a server that waits
    /// on it. Bounded by the byte cap and the total timeout; the wakers it registers make
    /// the writer try again when more arrives.
    #[cold]
    fn discard_while_closing(&mut self, cx: &mut Context<'_>) {
        if self.peer_eof || !matches!(self.state, State::Open) {
            return;
        }
        let config = self.group.config();
        let since = *self.discarding_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= config.total_timeout {
            return;
        }
        let Some(io) = self.io.as_mut() else { return };
        for _ in 0..READS_PER_POLL {
            let remaining = config.max_bytes.saturating_sub(self.discarded);
            if remaining == 0 {
                return;
            }
            let limit = usize::try_from(remaining).unwrap_or(usize::MAX);
            match (self.discard)(io, limit, cx) {
                Poll::Ready(Ok(0)) => {
                    self.peer_eof = true;
                    return;
                }
                Poll::Ready(Ok(n)) => {
                    let n = u64::try_from(n).unwrap_or(u64::MAX);
                    self.discarded = self.discarded.saturating_add(n);
                }
                // The write that follows meets the error, if it is one for it.
                Poll::Ready(Err(_)) | Poll::Pending => return,
            }
        }
        // The client keeps sending: come back for more, as a stalled write would not.
        cx.waker().wake_by_ref();
    }
}

impl<T> Drop for LingeringIo<T> {
    fn drop(&mut self) {
        // After `into_inner` the IO is gone.
        let Some(io) = self.io.take() else { return };
        self.unregister();
        let state = std::mem::replace(&mut self.state, State::Closed);
        let Some(hook) = self.on_drop else {
            // No drop path: an open IO simply closes, and a close in progress is cut
            // short (`aborted`, counted by its own drop).
            if let State::Open | State::HalfClosed = state {
                self.closing(Closing::start).end_plainly();
            }
            return;
        };
        let closing = match state {
            State::Closed | State::Failed(_) => return,
            State::Open => self.closing(Closing::start),
            State::HalfClosed => self.closing(Closing::after_half_close),
            State::Closing(closing) => closing,
        };
        hook(Leftover {
            io,
            closing,
            runtime: self.runtime.take(),
            discard: self.discard,
        });
    }
}

/// The drop path: the rest of the close, in a task on the runtime found at wrap time.
fn spawn_close<T>(left: Leftover<T>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Leftover {
        mut io,
        mut closing,
        runtime,
        discard,
    } = left;
    // Nothing to read (the peer is done, or the cap is reached), or nothing to read with
    // (no runtime with timers): the kernel's close is the bounded answer.
    let runtime = match runtime {
        Some(runtime) if closing.let_go(true) => runtime,
        Some(_) => return,
        None => return closing.end_plainly(),
    };
    let guard = closing.group().background_guard();
    // Keeps the connection's span (peer address, say) on the background close.
    let close = async move {
        let _guard = guard;
        std::future::poll_fn(|cx| {
            // An error here has ended the close already; it has nobody to go to.
            let _ = std::task::ready!(closing.poll_half_close(&mut io, cx));
            closing.poll_discard(&mut io, discard, cx)
        })
        .await;
    };
    runtime.spawn(close.in_current_span());
}

impl<T: AsyncRead + Unpin> AsyncRead for LingeringIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.note_reader(cx);
        let before = buf.filled().len();
        let wanted = buf.remaining() > 0;
        let res = Pin::new(this.get_mut()).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            if wanted && buf.filled().len() == before {
                this.peer_eof = true;
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
        Pin::new(this.get_mut()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.before_write(cx);
        Pin::new(this.get_mut()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.get_ref().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.before_write(cx);
        Pin::new(this.get_mut()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let closing = match &mut this.state {
            State::Closed | State::HalfClosed => return Poll::Ready(Ok(())),
            State::Failed(kind) => {
                return Poll::Ready(Err(io::Error::new(
                    *kind,
                    "an earlier shutdown of this connection failed",
                )))
            }
            State::Open => {
                // Wrapped outside a runtime: ask again, from a poll rather than a drop.
                if this.runtime.is_none() {
                    this.runtime = timers::runtime();
                }
                let closing = this.closing(Closing::start);
                this.state = State::Closing(closing);
                let State::Closing(closing) = &mut this.state else {
                    unreachable!("just set");
                };
                closing
            }
            State::Closing(closing) => closing,
        };
        let io = this
            .io
            .as_mut()
            .expect("LingeringIo holds its IO until into_inner");
        if let Err(e) = std::task::ready!(closing.poll_half_close(io, cx)) {
            this.state = State::Failed(e.kind());
            return Poll::Ready(Err(e));
        }
        if this.on_drop.is_none() {
            // No drop path: linger here, the IO is let go as far as this wrapper knows.
            if closing.let_go(false) {
                std::task::ready!(closing.poll_discard(io, this.discard, cx));
            }
            this.state = State::Closed;
            return Poll::Ready(Ok(()));
        }
        if let State::Closing(closing) = std::mem::replace(&mut this.state, State::HalfClosed) {
            closing.hand_over();
        }
        Poll::Ready(Ok(()))
    }
}

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
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        LingeringIo {
            io: Some(io),
            group: self.clone(),
            state: State::Open,
            peer_eof: false,
            discard: discard::best::<T>,
            on_drop: Some(spawn_close::<T>),
            runtime: timers::runtime(),
            link: None,
            reader: None,
            discarded: 0,
            discarding_since: None,
            _open: self.open_guard(),
        }
    }

    /// Wraps any `io`: the staged close, linger included, happens inside `poll_shutdown`,
    /// a drop before it finishes closes plainly, and discarded bytes go through the
    /// thread's scratch window.
    pub fn wrap_local<T>(&self, io: T) -> LingeringIo<T>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        LingeringIo {
            io: Some(io),
            group: self.clone(),
            state: State::Open,
            peer_eof: false,
            discard: discard::portable::<T>,
            on_drop: None,
            runtime: timers::runtime(),
            link: None,
            reader: None,
            discarded: 0,
            discarding_since: None,
            _open: self.open_guard(),
        }
    }
}
