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
const READS_PER_POLL: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Flush,
    Shutdown,
    Discard,
    Done,
}

/// One staged close in progress. It owns a lingering slot of its group from the start
/// (unless the peer already sent EOF, the cap was reached or there are no timers) until
/// it ends, and counts exactly one outcome: the one it ends with, or `aborted` when it is
/// dropped before.
pub(crate) struct Closing {
    group: LingerGroup,
    stage: Stage,
    holds_slot: bool,
    peer_eof: bool,
    drop_path: bool,
    /// Whether the runtime has timers; without them nothing is bounded, so nothing lingers.
    timed: bool,
    started: Instant,
    deadline_at: Instant,
    /// Made on the first poll rather than at the start, because a close may start in
    /// `Drop`, where creating a timer could panic.
    deadline: Option<Pin<Box<Sleep>>>,
    idle: Option<Pin<Box<Sleep>>>,
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
        let holds_slot = timed && !peer_eof && group.try_acquire();
        let deadline_at = timers::deadline_after(group.config().total_timeout);
        Self {
            group,
            stage: Stage::Flush,
            holds_slot,
            peer_eof,
            drop_path: false,
            timed,
            started: Instant::now(),
            deadline_at,
            deadline: None,
            idle: None,
            discarded: 0,
        }
    }

    /// Counts an IO dropped before any close started, with no lingering to follow.
    pub(crate) fn record_plain_close(group: LingerGroup, peer_eof: bool) {
        Self::start(group, peer_eof, false).end_without_linger();
    }

    /// Whether this close holds a lingering slot: it is still to read from the peer.
    pub(crate) fn holds_slot(&self) -> bool {
        self.holds_slot
    }

    pub(crate) fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    pub(crate) fn set_drop_path(&mut self) {
        self.drop_path = true;
    }

    /// Ends a close that will not run any further, because the IO is being dropped
    /// without lingering.
    pub(crate) fn end_without_linger(&mut self) {
        self.drop_path = true;
        if self.stage != Stage::Done {
            self.finish(if self.peer_eof {
                Outcome::PeerEof
            } else {
                Outcome::Skipped
            });
        }
    }

    /// Flushes and half-closes. Errors are returned, as a plain `poll_shutdown` would, and
    /// so is reaching the total timeout first (`TimedOut`): the FIN never went out. Done
    /// when there is nothing to linger for; otherwise [`poll_discard`](Self::poll_discard)
    /// comes next.
    pub(crate) fn poll_half_close<T: AsyncWrite + Unpin>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let flushing = match self.stage {
                Stage::Flush => true,
                Stage::Shutdown => false,
                Stage::Discard | Stage::Done => return Poll::Ready(Ok(())),
            };
            let res = if flushing {
                Pin::new(&mut *io).poll_flush(cx)
            } else {
                Pin::new(&mut *io).poll_shutdown(cx)
            };
            // Only a stage that cannot go on now can time out: even a zero total timeout
            // sends what the IO takes at once, and the FIN.
            let Poll::Ready(res) = res else {
                if self.timed && self.deadline().poll(cx).is_ready() {
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
            self.stage = if flushing {
                Stage::Shutdown
            } else if self.peer_eof {
                self.finish(Outcome::PeerEof);
                return Poll::Ready(Ok(()));
            } else if !self.holds_slot {
                self.finish(Outcome::Skipped);
                return Poll::Ready(Ok(()));
            } else {
                tracing::trace!("half-closed, lingering");
                Stage::Discard
            };
        }
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
            if self.deadline().poll(cx).is_ready() {
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
                    self.discarded = self.discarded.saturating_add(n as u64);
                    let next = timers::deadline_after(config.idle_timeout);
                    match &mut self.idle {
                        Some(idle) => idle.as_mut().reset(next),
                        None => self.idle = Some(Box::pin(tokio::time::sleep_until(next))),
                    }
                }
                Poll::Ready(Err(e)) => {
                    tracing::debug!(error = %e, "read failed while lingering");
                    return self.ready(Outcome::Error);
                }
                Poll::Pending => {
                    let idle = self.idle.get_or_insert_with(|| {
                        let next = timers::deadline_after(config.idle_timeout);
                        Box::pin(tokio::time::sleep_until(next))
                    });
                    return match idle.as_mut().poll(cx) {
                        Poll::Ready(()) => self.ready(Outcome::IdleTimeout),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn deadline(&mut self) -> Pin<&mut Sleep> {
        let at = self.deadline_at;
        self.deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)))
            .as_mut()
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
        self.deadline = None;
        self.idle = None;
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        if self.stage != Stage::Done {
            self.finish(Outcome::Aborted);
        }
    }
}
