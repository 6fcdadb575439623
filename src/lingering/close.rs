//! One connection's close, from wrap to the end, as one state machine (RFC 9112 §9.6).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use tokio::runtime::Handle;
use tokio::time::{Instant, Sleep};

use super::discard::Discard;
use super::group::{LingerGroup, LingerSlot};
use super::stats::Outcome;
use crate::timers;

/// Reads per poll before yielding, so that a peer that keeps sending cannot monopolise a
/// worker thread even if the IO never returns `Pending`.
const READS_PER_POLL: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reads and writes go through; a response that ends the connection may have the
    /// client's input thrown away meanwhile.
    Open,
    /// The close has started: the rest of the response goes out.
    Flushing,
    /// The FIN goes out.
    HalfClosing,
    /// The FIN is out and `poll_shutdown` has returned, but the IO may still be in use (a
    /// tunnel forwarding the other direction): whether to linger is decided when the IO
    /// is let go.
    HalfClosed,
    /// Reading and throwing away until the peer's EOF or a bound, holding a slot.
    Discarding,
    /// Counted; nothing is left to do.
    Done,
    /// The flush or the half-close failed (counted); `poll_shutdown` says so again.
    Failed(io::ErrorKind),
}

/// Why one round of discarding stopped.
enum Stop {
    PeerEof,
    ByteCap,
    Deadline,
    Failed(io::Error),
    /// Nothing more to read now.
    Blocked,
    /// The peer keeps sending: this round has read its share.
    Yielded,
}

/// The close of one connection: flush, half-close (FIN), then, once the IO is let go,
/// read and discard until the peer's EOF or a bound.
///
/// It counts exactly one outcome in its group, the one it ends with; `aborted` when it is
/// dropped in the middle; none while the IO is open or half-closed, whose owner decides
/// what the end is ([`close_without_lingering`](Self::close_without_lingering),
/// [`release`](Self::release), or a linger). It holds a lingering slot only from the
/// moment the IO is let go ([`try_linger`](Self::try_linger)) until it ends, so that an IO still
/// in use after its FIN holds none.
pub(crate) struct Close {
    group: LingerGroup,
    phase: Phase,
    /// The peer's EOF has been read: there is nothing to wait for.
    peer_eof: bool,
    /// The runtime to linger on, if it has timers; found when the IO is wrapped, so that a
    /// drop (while a panic unwinds, say) asks nothing. Without it nothing lingers.
    runtime: Option<Handle>,
    /// Bytes thrown away: while a response that ends the connection was written, and
    /// after the FIN. One byte cap covers both.
    discarded: u64,
    /// Where the time bounds count from: the first discard while a closing response is
    /// written, then the start of the close, then the moment a dropped IO is let go.
    since: Option<Instant>,
    /// Throwing the input away while writing has reached the byte cap or the total
    /// timeout: a write that stalls from then on has until the total timeout.
    input_bound_reached: bool,
    /// While discarding after the FIN, the idle timeout counts from here.
    last_read: Option<Instant>,
    /// Wakes the close at the total cap, or sooner at the idle timeout while discarding.
    /// Made on first need rather than at the start, because a close may start in `Drop`,
    /// where creating a timer could panic.
    timer: Option<Pin<Box<Sleep>>>,
    slot: Option<LingerSlot>,
    /// Whether the linger runs in a background task after the IO's drop (traced).
    drop_path: bool,
}

impl fmt::Debug for Close {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Close")
            .field("phase", &self.phase)
            .field("peer_eof", &self.peer_eof)
            .field("lingering", &self.slot.is_some())
            .field("timed", &self.runtime.is_some())
            .field("discarded", &self.discarded)
            .finish_non_exhaustive()
    }
}

impl Close {
    /// The state of an IO just wrapped, on the current runtime if it has timers.
    pub(crate) fn open(group: LingerGroup) -> Self {
        Self {
            group,
            phase: Phase::Open,
            peer_eof: false,
            runtime: timers::runtime(),
            discarded: 0,
            since: None,
            input_bound_reached: false,
            last_read: None,
            timer: None,
            slot: None,
            drop_path: false,
        }
    }

    /// What stays behind in a dropped IO once its close has been taken away: a close that
    /// is over and asks nothing (no runtime probe, no timer).
    pub(crate) fn taken(&self) -> Self {
        Self {
            group: self.group.clone(),
            phase: Phase::Done,
            peer_eof: self.peer_eof,
            runtime: None,
            discarded: 0,
            since: None,
            input_bound_reached: false,
            last_read: self.last_read,
            timer: None,
            slot: None,
            drop_path: false,
        }
    }

    pub(crate) fn group(&self) -> &LingerGroup {
        &self.group
    }

    pub(crate) fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// The peer sent its EOF: a close will not wait for it.
    #[inline]
    pub(crate) fn peer_closed(&mut self) {
        self.peer_eof = true;
    }

    /// Once nothing reads the request any more (the drain layer raised the IO's signal),
    /// throws away what the client sends, before each write and in place of each read, so
    /// that a client that sends its whole body before it reads is not left waiting on a
    /// server that waits on it. Bounded by the byte cap and the total timeout (counted
    /// from the first call); it counts no outcome, and the wakers it registers make the
    /// writer try again when more arrives.
    pub(crate) fn discard_input<T>(&mut self, io: &mut T, read: Discard<T>, cx: &mut Context<'_>) {
        if self.peer_eof || self.phase != Phase::Open {
            return;
        }
        if self.input_bound_reached {
            return;
        }
        self.since.get_or_insert_with(Instant::now);
        match self.discard(io, read, self.deadline(), cx) {
            // As a stalled write would not, come back for more.
            Stop::Yielded => cx.waker().wake_by_ref(),
            Stop::ByteCap | Stop::Deadline => {
                tracing::debug!(
                    bytes_discarded = self.discarded,
                    "stopped throwing away the client's input while writing"
                );
                self.input_bound_reached = true;
            }
            Stop::PeerEof | Stop::Failed(_) | Stop::Blocked => {}
        }
    }

    /// A write stalled while the client's input is meant to be thrown away: once that
    /// has stopped at a bound, the client neither reads nor stops sending, and the write
    /// fails at the total timeout (counted as `stalled_write`) rather than wait forever.
    pub(crate) fn poll_stalled_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if !self.input_bound_reached || self.phase != Phase::Open || self.runtime.is_none() {
            return Poll::Pending;
        }
        std::task::ready!(self.poll_timer(self.deadline(), cx));
        self.finish(Outcome::StalledWrite);
        self.phase = Phase::Failed(io::ErrorKind::TimedOut);
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client neither reads the response nor stops sending (total_timeout)",
        ))
    }

    /// Starts the close: what follows is bounded by the total timeout from now. Asks for
    /// the runtime again if the IO was wrapped outside one (never from a drop).
    pub(crate) fn start(&mut self, from_poll: bool) {
        if self.phase != Phase::Open {
            return;
        }
        if from_poll && self.runtime.is_none() {
            self.runtime = timers::runtime();
        }
        self.phase = Phase::Flushing;
        self.since = Some(Instant::now());
    }

    /// The error of an earlier failed close, if it failed.
    pub(crate) fn failure(&self) -> Option<io::ErrorKind> {
        match self.phase {
            Phase::Failed(kind) => Some(kind),
            _ => None,
        }
    }

    /// Whether `poll_shutdown` has nothing left to do.
    pub(crate) fn is_shut_down(&self) -> bool {
        matches!(self.phase, Phase::HalfClosed | Phase::Done)
    }

    /// Flushes and half-closes. Errors are returned, as a plain `poll_shutdown` would, and
    /// so is reaching the total timeout first (`TimedOut`): the FIN never went out.
    pub(crate) fn poll_fin<T: AsyncWrite + Unpin>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let res = match self.phase {
                Phase::Flushing => Pin::new(&mut *io).poll_flush(cx),
                Phase::HalfClosing => Pin::new(&mut *io).poll_shutdown(cx),
                _ => return Poll::Ready(Ok(())),
            };
            // Only a stage that cannot go on now can time out: even a zero total timeout
            // sends what the IO takes at once, and the FIN.
            let Poll::Ready(res) = res else {
                if self.runtime.is_some() && self.poll_timer(self.deadline(), cx).is_ready() {
                    self.finish(Outcome::TotalTimeout);
                    self.phase = Phase::Failed(io::ErrorKind::TimedOut);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "total_timeout reached before the connection was half-closed",
                    )));
                }
                return Poll::Pending;
            };
            if let Err(e) = res {
                tracing::debug!(error = %e, stage = ?self.phase, "staged close failed");
                self.finish(Outcome::Error);
                self.phase = Phase::Failed(e.kind());
                return Poll::Ready(Err(e));
            }
            self.phase = match self.phase {
                Phase::Flushing => Phase::HalfClosing,
                _ if self.slot.is_some() => self.begin_discard(),
                _ => Phase::HalfClosed,
            };
        }
    }

    /// The IO is let go (dropped, or done with after an inline `poll_shutdown`): takes a
    /// lingering slot, so that the close may read from the peer after its FIN. Returns
    /// `false`, with the close ended, when there is nothing to read (the peer already
    /// sent EOF) or nothing to read with (no timers, or the group's cap is reached).
    pub(crate) fn try_linger(&mut self, drop_path: bool) -> bool {
        self.drop_path = drop_path;
        match self.phase {
            Phase::Done | Phase::Failed(_) => return false,
            _ if self.slot.is_some() => return true,
            _ => {}
        }
        if self.peer_eof {
            self.finish(Outcome::PeerEof);
            return false;
        }
        if self.runtime.is_none() {
            self.finish(Outcome::Skipped);
            return false;
        }
        let Some(slot) = self.group.try_slot() else {
            self.finish(Outcome::Skipped);
            return false;
        };
        self.slot = Some(slot);
        if self.phase == Phase::HalfClosed {
            if drop_path {
                // A dropped IO's linger is bounded from its drop: a tunnel may have
                // used it long after its FIN.
                self.since = Some(Instant::now());
            }
            self.phase = self.begin_discard();
        }
        true
    }

    /// The runtime a dropped IO's linger runs on: `None` when nothing can linger, with the
    /// close then ended.
    pub(crate) fn background_runtime(&mut self) -> Option<Handle> {
        if self.runtime.is_none() {
            self.close_without_lingering();
            return None;
        }
        self.try_linger(true)
            .then(|| self.runtime.clone())
            .flatten()
    }

    fn begin_discard(&mut self) -> Phase {
        tracing::trace!("half-closed, lingering");
        self.last_read = Some(Instant::now());
        Phase::Discarding
    }

    /// Reads and discards until the peer's EOF or a bound; errors only end the linger.
    pub(crate) fn poll_discard<T>(
        &mut self,
        io: &mut T,
        read: Discard<T>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if self.phase != Phase::Discarding {
            return Poll::Ready(());
        }
        let deadline = self.deadline();
        let outcome = match self.discard(io, read, deadline, cx) {
            Stop::PeerEof => Outcome::PeerEof,
            Stop::ByteCap => Outcome::ByteCap,
            Stop::Deadline => Outcome::TotalTimeout,
            Stop::Failed(e) => {
                tracing::debug!(error = %e, "read failed while lingering");
                Outcome::Error
            }
            Stop::Yielded => {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Stop::Blocked => {
                let idle_timeout = self.group.config().idle_timeout;
                let last_read = self.last_read.unwrap_or_else(Instant::now);
                let idle_at = timers::instant_after(last_read, idle_timeout);
                match self.poll_timer(idle_at.min(deadline), cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) if idle_at < deadline => Outcome::IdleTimeout,
                    Poll::Ready(()) => Outcome::TotalTimeout,
                }
            }
        };
        self.finish(outcome);
        Poll::Ready(())
    }

    /// The one read-and-discard loop, for both times the client's input is thrown away.
    fn discard<T>(
        &mut self,
        io: &mut T,
        read: Discard<T>,
        deadline: Instant,
        cx: &mut Context<'_>,
    ) -> Stop {
        let max_bytes = self.group.config().max_bytes;
        for _ in 0..READS_PER_POLL {
            let now = Instant::now();
            if now >= deadline {
                return Stop::Deadline;
            }
            let remaining = max_bytes.saturating_sub(self.discarded);
            if remaining == 0 {
                return Stop::ByteCap;
            }
            let limit = usize::try_from(remaining).unwrap_or(usize::MAX);
            match read(io, limit, cx) {
                Poll::Ready(Ok(0)) => {
                    self.peer_eof = true;
                    return Stop::PeerEof;
                }
                Poll::Ready(Ok(n)) => {
                    let n = u64::try_from(n).unwrap_or(u64::MAX);
                    self.discarded = self.discarded.saturating_add(n);
                    self.last_read = Some(now);
                }
                Poll::Ready(Err(e)) => return Stop::Failed(e),
                Poll::Pending => return Stop::Blocked,
            }
        }
        Stop::Yielded
    }

    /// Ends a close that will not read from the peer: the IO closes plainly.
    pub(crate) fn close_without_lingering(&mut self) {
        if matches!(self.phase, Phase::Done | Phase::Failed(_)) {
            return;
        }
        self.drop_path = true;
        self.finish(if self.peer_eof {
            Outcome::PeerEof
        } else {
            Outcome::Skipped
        });
    }

    /// The IO is taken back (`into_inner`): counted as released if no close was under
    /// way, as aborted if one was.
    pub(crate) fn release(&mut self) {
        match self.phase {
            Phase::Open | Phase::HalfClosed => {
                self.drop_path = true;
                self.finish(Outcome::Released);
            }
            Phase::Flushing | Phase::HalfClosing | Phase::Discarding => {
                self.finish(Outcome::Aborted);
            }
            Phase::Done | Phase::Failed(_) => {}
        }
    }

    /// The total cap, counted from where the bounds count from.
    fn deadline(&self) -> Instant {
        let since = self.since.unwrap_or_else(Instant::now);
        timers::instant_after(since, self.group.config().total_timeout)
    }

    /// Polls the close's one timer, set to fire at `at`.
    fn poll_timer(&mut self, at: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let timer = match &mut self.timer {
            Some(timer) => {
                if timer.deadline() != at {
                    timer.as_mut().reset(at);
                }
                timer
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        timer.as_mut().poll(cx)
    }

    fn finish(&mut self, outcome: Outcome) {
        self.phase = Phase::Done;
        self.group.record(outcome, self.discarded);
        let elapsed = self.since.map(|since| since.elapsed()).unwrap_or_default();
        tracing::debug!(
            outcome = outcome.as_str(),
            bytes_discarded = self.discarded,
            elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            drop_path = self.drop_path,
            "linger finished"
        );
        // After the outcome, so that a snapshot that sees the slot free sees the count.
        self.slot = None;
        self.timer = None;
    }
}

impl Drop for Close {
    fn drop(&mut self) {
        if matches!(
            self.phase,
            Phase::Flushing | Phase::HalfClosing | Phase::Discarding
        ) {
            self.finish(Outcome::Aborted);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadBuf};

    use super::*;
    use crate::lingering::config::LingerConfig;
    use crate::lingering::discard;

    fn group(config: LingerConfig) -> LingerGroup {
        LingerGroup::new(config)
    }

    /// A close of the server half of a duplex pipe, run inline to its end.
    async fn close_inline(close: &mut Close, io: &mut DuplexStream) -> io::Result<()> {
        close.start(true);
        poll_fn(|cx| close.poll_fin(io, cx)).await?;
        if close.try_linger(false) {
            poll_fn(|cx| close.poll_discard(io, discard::portable, cx)).await;
        }
        Ok(())
    }

    /// The one outcome the group counted, by name.
    fn counted(group: &LingerGroup) -> Vec<&'static str> {
        let stats = group.stats();
        stats
            .outcomes()
            .filter(|&(_, n)| n > 0)
            .map(|(outcome, n)| {
                assert_eq!(n, 1, "{stats:?}");
                outcome.as_str()
            })
            .collect()
    }

    #[tokio::test]
    async fn the_peers_eof_ends_the_linger() {
        let group = group(LingerConfig::new());
        let (mut server, mut client) = tokio::io::duplex(64);
        let mut close = Close::open(group.clone());
        let peer = tokio::spawn(async move {
            client.write_all(b"late bytes").await.unwrap();
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).await.unwrap(); // the FIN
            drop(client);
        });
        close_inline(&mut close, &mut server).await.unwrap();
        peer.await.unwrap();
        assert_eq!(counted(&group), ["peer_eof"]);
        assert_eq!(group.stats().bytes_discarded, 10);
        assert_eq!(group.stats().lingering, 0);
    }

    #[tokio::test]
    async fn an_eof_read_before_costs_no_wait() {
        let group = group(LingerConfig::new());
        let (mut server, client) = tokio::io::duplex(64);
        let mut close = Close::open(group.clone());
        close.peer_closed();
        close_inline(&mut close, &mut server).await.unwrap();
        drop(client);
        assert_eq!(counted(&group), ["peer_eof"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_meets_the_idle_timeout() {
        let config = LingerConfig::new().idle_timeout(Duration::from_millis(50));
        let group = group(config);
        let (mut server, _client) = tokio::io::duplex(64);
        let mut close = Close::open(group.clone());
        close_inline(&mut close, &mut server).await.unwrap();
        assert_eq!(counted(&group), ["idle_timeout"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_peer_meets_the_total_timeout() {
        let config = LingerConfig::new()
            .idle_timeout(Duration::from_millis(50))
            .total_timeout(Duration::from_millis(200));
        let group = group(config);
        let (mut server, mut client) = tokio::io::duplex(64);
        let mut close = Close::open(group.clone());
        let peer = tokio::spawn(async move {
            // One byte every 20 ms: never idle for 50 ms, never done.
            while client.write_all(b"x").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        close_inline(&mut close, &mut server).await.unwrap();
        assert_eq!(counted(&group), ["total_timeout"]);
        drop(server);
        peer.await.unwrap();
    }

    #[tokio::test]
    async fn a_flooding_peer_meets_the_byte_cap() {
        let group = group(LingerConfig::new().max_bytes(1000));
        let (mut server, mut client) = tokio::io::duplex(4096);
        let mut close = Close::open(group.clone());
        client.write_all(&[0; 4096]).await.unwrap();
        close_inline(&mut close, &mut server).await.unwrap();
        assert_eq!(counted(&group), ["byte_cap"]);
        assert_eq!(group.stats().bytes_discarded, 1000);
    }

    #[tokio::test]
    async fn a_full_cap_skips_the_linger() {
        let group = group(LingerConfig::new().max_lingering(0));
        let (mut server, _client) = tokio::io::duplex(64);
        let mut close = Close::open(group.clone());
        close_inline(&mut close, &mut server).await.unwrap();
        assert_eq!(counted(&group), ["skipped"]);
    }

    #[test]
    fn no_runtime_skips_the_linger() {
        let group = group(LingerConfig::new());
        let mut close = Close::open(group.clone());
        close.start(true);
        assert!(!close.try_linger(false));
        assert_eq!(counted(&group), ["skipped"]);
    }

    #[tokio::test]
    async fn a_failed_half_close_is_an_error_and_says_so_again() {
        let group = group(LingerConfig::new());
        let mut close = Close::open(group.clone());
        close.start(true);
        let mut io = Failing;
        let err = poll_fn(|cx| close.poll_fin(&mut io, cx)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(close.failure(), Some(io::ErrorKind::BrokenPipe));
        assert_eq!(counted(&group), ["error"]);
    }

    #[tokio::test]
    async fn a_failed_read_ends_the_linger_as_an_error() {
        let group = group(LingerConfig::new());
        let mut close = Close::open(group.clone());
        close.start(true);
        close.phase = Phase::HalfClosed;
        assert!(close.try_linger(false));
        let mut io = Failing;
        poll_fn(|cx| close.poll_discard(&mut io, discard::portable, cx)).await;
        assert_eq!(counted(&group), ["error"]);
    }

    #[tokio::test]
    async fn a_close_dropped_midway_is_aborted() {
        let group = group(LingerConfig::new());
        let (mut server, _client) = tokio::io::duplex(64);
        let mut close = Close::open(group.clone());
        close.start(true);
        poll_fn(|cx| close.poll_fin(&mut server, cx)).await.unwrap();
        assert!(close.try_linger(false));
        assert_eq!(group.stats().lingering, 1);
        drop(close);
        assert_eq!(counted(&group), ["aborted"]);
        assert_eq!(group.stats().lingering, 0);
    }

    #[tokio::test]
    async fn an_io_taken_back_is_released() {
        let group = group(LingerConfig::new());
        let mut close = Close::open(group.clone());
        close.release();
        assert_eq!(counted(&group), ["released"]);
        // Counted once: the close is over.
        close.release();
        drop(close);
        assert_eq!(group.stats().closes(), 1);
    }

    #[tokio::test]
    async fn input_thrown_away_while_writing_counts_in_the_cap() {
        let group = group(LingerConfig::new().max_bytes(100));
        let (mut server, mut client) = tokio::io::duplex(64);
        let mut close = Close::open(group.clone());
        client.write_all(&[0; 60]).await.unwrap();
        poll_fn(|cx| {
            close.discard_input(&mut server, discard::portable, cx);
            Poll::Ready(())
        })
        .await;
        assert_eq!(close.discarded, 60);
        // Nothing counted yet: discarding while writing ends no close.
        assert_eq!(group.stats().closes(), 0);
        client.write_all(&[0; 60]).await.unwrap();
        close_inline(&mut close, &mut server).await.unwrap();
        assert_eq!(counted(&group), ["byte_cap"]);
        assert_eq!(group.stats().bytes_discarded, 100);
    }

    /// An IO whose every operation fails.
    struct Failing;

    impl tokio::io::AsyncRead for Failing {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
        }
    }

    impl AsyncWrite for Failing {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
        }
    }
}
