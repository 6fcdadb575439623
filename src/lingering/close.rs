//! The staged close (RFC 9112 §9.6), shared by `poll_shutdown` and the drop path.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use tokio::time::{Instant, Sleep};

use super::discard::DiscardFn;
use super::group::Outcome;
use super::LingerGroup;
use crate::timers;

/// Reads per poll before yielding, so that a peer that keeps sending cannot monopolise a
/// worker thread even if the IO never returns `Pending`.
pub(crate) const READS_PER_POLL: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Flush,
    Shutdown,
    /// The FIN is out; whether to linger is decided when the IO is let go.
    HalfClosed,
    Discard,
    Done,
}

/// One staged close in progress: flush, half-close (FIN), then, once the IO is let go,
/// read and discard until the peer's EOF or a bound.
///
/// It holds a lingering slot of its group only from the moment the IO is let go
/// ([`let_go`](Self::let_go)) until it ends, so that an IO still in use after its FIN (a
/// tunnel forwarding the other direction) holds none. It counts exactly one outcome: the
/// one it ends with, `aborted` when it is dropped before, or none when `poll_shutdown`
/// hands the rest over to the IO's drop ([`hand_over`](Self::hand_over)).
pub(crate) struct Closing {
    group: LingerGroup,
    stage: Stage,
    holds_slot: bool,
    peer_eof: bool,
    drop_path: bool,
    /// Whether the runtime has timers; without them nothing is bounded, so nothing lingers.
    timed: bool,
    started: Instant,
    /// The total cap, counted from the start.
    deadline_at: Instant,
    /// While discarding, the idle timeout counts from here.
    last_read: Instant,
    /// Wakes the close at the total cap, or sooner at the idle timeout while discarding.
    /// Made on first need rather than at the start, because a close may start in `Drop`,
    /// where creating a timer could panic.
    timer: Option<Pin<Box<Sleep>>>,
    discarded: u64,
}

impl fmt::Debug for Closing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Closing")
            .field("stage", &self.stage)
            .field("lingering", &self.holds_slot)
            .field("peer_eof", &self.peer_eof)
            .field("drop_path", &self.drop_path)
            .field("discarded", &self.discarded)
            .finish_non_exhaustive()
    }
}

impl Closing {
    /// Starts a close; `timed` says whether the current runtime has timers.
    pub(crate) fn start(group: LingerGroup, peer_eof: bool, timed: bool) -> Self {
        let started = Instant::now();
        let deadline_at = timers::instant_after(started, group.config().total_timeout);
        Self {
            group,
            stage: Stage::Flush,
            holds_slot: false,
            peer_eof,
            drop_path: false,
            timed,
            started,
            deadline_at,
            last_read: started,
            timer: None,
            discarded: 0,
        }
    }

    /// The rest of a close whose FIN `poll_shutdown` has already sent.
    pub(crate) fn after_half_close(group: LingerGroup, peer_eof: bool, timed: bool) -> Self {
        let mut closing = Self::start(group, peer_eof, timed);
        closing.stage = Stage::HalfClosed;
        closing
    }

    /// Counts an IO that goes away without closing (taken back by `into_inner`), with
    /// the bytes it discarded before.
    pub(crate) fn record_without_close(group: LingerGroup, outcome: Outcome, discarded: u64) {
        let mut closing = Self::start(group, false, false).counting(discarded);
        closing.drop_path = true;
        closing.finish(outcome);
    }

    /// Counts `discarded` bytes, thrown away before the close, in its outcome and its
    /// byte cap.
    pub(crate) fn counting(mut self, discarded: u64) -> Self {
        self.discarded = discarded;
        self
    }

    /// Ends a close that will not read from the peer: the IO closes plainly.
    pub(crate) fn end_plainly(mut self) {
        self.drop_path = true;
        self.finish(if self.peer_eof {
            Outcome::PeerEof
        } else {
            Outcome::Skipped
        });
    }

    pub(crate) fn group(&self) -> &LingerGroup {
        &self.group
    }

    pub(crate) fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// The IO is let go: takes a lingering slot, so that the close may read from the peer
    /// after its FIN. Returns `false`, with the close ended, when there is nothing to read
    /// (the peer already sent EOF) or nothing to read with (no timers, or the group's cap
    /// is reached).
    pub(crate) fn let_go(&mut self, drop_path: bool) -> bool {
        self.drop_path = drop_path;
        if self.stage == Stage::Done || self.holds_slot {
            return !self.is_done();
        }
        if self.peer_eof {
            self.finish(Outcome::PeerEof);
            return false;
        }
        if !self.timed || !self.group.try_acquire() {
            self.finish(Outcome::Skipped);
            return false;
        }
        self.holds_slot = true;
        if self.stage == Stage::HalfClosed {
            self.begin_discard();
        }
        true
    }

    /// `poll_shutdown` is done: the FIN is out, and the linger, if any, happens when the
    /// IO is let go. Counts nothing; the IO counts its close when it goes away.
    pub(crate) fn hand_over(mut self) {
        debug_assert_eq!(self.stage, Stage::HalfClosed);
        self.stage = Stage::Done;
    }

    /// Flushes and half-closes. Errors are returned, as a plain `poll_shutdown` would, and
    /// so is reaching the total timeout first (`TimedOut`): the FIN never went out.
    pub(crate) fn poll_half_close<T: AsyncWrite + Unpin>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let flushing = match self.stage {
                Stage::Flush => true,
                Stage::Shutdown => false,
                Stage::HalfClosed | Stage::Discard | Stage::Done => return Poll::Ready(Ok(())),
            };
            let res = if flushing {
                Pin::new(&mut *io).poll_flush(cx)
            } else {
                Pin::new(&mut *io).poll_shutdown(cx)
            };
            // Only a stage that cannot go on now can time out: even a zero total timeout
            // sends what the IO takes at once, and the FIN.
            let Poll::Ready(res) = res else {
                if self.timed && self.poll_timer(self.deadline_at, cx).is_ready() {
                    self.finish(Outcome::TotalTimeout);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "total_timeout reached before the connection was half-closed",
                    )));
                }
                return Poll::Pending;
            };
            if let Err(e) = res {
                tracing::debug!(error = %e, stage = ?self.stage, "staged close failed");
                self.finish(Outcome::Error);
                return Poll::Ready(Err(e));
            }
            if flushing {
                self.stage = Stage::Shutdown;
            } else if self.holds_slot {
                self.begin_discard();
            } else {
                self.stage = Stage::HalfClosed;
            }
        }
    }

    fn begin_discard(&mut self) {
        tracing::trace!("half-closed, lingering");
        self.stage = Stage::Discard;
        self.last_read = Instant::now();
    }

    /// Reads and discards until the peer's EOF or a bound; errors only end the linger.
    pub(crate) fn poll_discard<T>(
        &mut self,
        io: &mut T,
        discard: DiscardFn<T>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if self.stage != Stage::Discard {
            return Poll::Ready(());
        }
        let config = self.group.config();
        for _ in 0..READS_PER_POLL {
            let now = Instant::now();
            if now >= self.deadline_at {
                return self.ready(Outcome::TotalTimeout);
            }
            let remaining = config.max_bytes.saturating_sub(self.discarded);
            if remaining == 0 {
                return self.ready(Outcome::ByteCap);
            }
            let limit = usize::try_from(remaining).unwrap_or(usize::MAX);
            match discard(io, limit, cx) {
                Poll::Ready(Ok(0)) => return self.ready(Outcome::PeerEof),
                Poll::Ready(Ok(n)) => {
                    self.discarded = self
                        .discarded
                        .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
                    self.last_read = now;
                }
                Poll::Ready(Err(e)) => {
                    tracing::debug!(error = %e, "read failed while lingering");
                    return self.ready(Outcome::Error);
                }
                Poll::Pending => {
                    let idle_at = timers::instant_after(self.last_read, config.idle_timeout);
                    return match self.poll_timer(idle_at.min(self.deadline_at), cx) {
                        Poll::Ready(()) if idle_at < self.deadline_at => {
                            self.ready(Outcome::IdleTimeout)
                        }
                        Poll::Ready(()) => self.ready(Outcome::TotalTimeout),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
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

    fn ready(&mut self, outcome: Outcome) -> Poll<()> {
        self.finish(outcome);
        Poll::Ready(())
    }

    fn finish(&mut self, outcome: Outcome) {
        self.stage = Stage::Done;
        self.group.record(outcome, self.discarded);
        let elapsed_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::debug!(
            outcome = outcome.as_str(),
            bytes_discarded = self.discarded,
            elapsed_ms,
            drop_path = self.drop_path,
            "linger finished"
        );
        if std::mem::take(&mut self.holds_slot) {
            self.group.release();
        }
        self.timer = None;
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        if self.stage != Stage::Done {
            self.finish(Outcome::Aborted);
        }
    }
}
