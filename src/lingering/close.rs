//! The staged close (RFC 9112 §9.6), shared by `poll_shutdown` and the drop path.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

use super::discard::{DiscardFn, Scratch};
use super::LingerGroup;

/// Reads per poll before yielding, so that a peer that keeps sending cannot monopolise a
/// worker thread even if the IO never returns `Pending`.
const READS_PER_POLL: usize = 32;

/// How a close ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    PeerEof,
    IdleTimeout,
    TotalTimeout,
    ByteCap,
    Error,
    Skipped,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::PeerEof => "peer_eof",
            Self::IdleTimeout => "idle_timeout",
            Self::TotalTimeout => "total_timeout",
            Self::ByteCap => "byte_cap",
            Self::Error => "error",
            Self::Skipped => "skipped",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Flush,
    Shutdown,
    Discard,
    Done,
}

/// One staged close in progress. It owns a lingering slot of its group from the start
/// (unless the peer already sent EOF or the cap was reached) until it is dropped.
pub(crate) struct Closing {
    group: LingerGroup,
    stage: Stage,
    holds_slot: bool,
    peer_eof: bool,
    drop_path: bool,
    started: Instant,
    deadline: Pin<Box<Sleep>>,
    idle: Option<Pin<Box<Sleep>>>,
    scratch: Scratch,
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
    /// Starts a close; needs a tokio runtime with time enabled.
    pub(crate) fn start(group: LingerGroup, peer_eof: bool) -> Self {
        let holds_slot = !peer_eof && group.try_acquire();
        let started = Instant::now();
        let deadline = Box::pin(tokio::time::sleep_until(
            started + group.config().total_timeout,
        ));
        Self {
            group,
            stage: Stage::Flush,
            holds_slot,
            peer_eof,
            drop_path: false,
            started,
            deadline,
            idle: None,
            scratch: Scratch::default(),
            discarded: 0,
        }
    }

    /// Whether this close would read from the peer at all.
    pub(crate) fn holds_slot(&self) -> bool {
        self.holds_slot
    }

    pub(crate) fn set_drop_path(&mut self) {
        self.drop_path = true;
    }

    /// Ends a close that will not run, because the IO is being dropped without a slot.
    pub(crate) fn abandon_on_drop(&mut self) {
        self.drop_path = true;
        if self.stage != Stage::Done {
            self.finish(if self.peer_eof {
                Outcome::PeerEof
            } else {
                Outcome::Skipped
            });
        }
    }

    /// Drives the close. Errors of flush and half-close are returned, as a plain
    /// `poll_shutdown` would; errors while discarding only end the linger.
    pub(crate) fn poll<T: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut T,
        discard: DiscardFn<T>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            match self.stage {
                Stage::Flush | Stage::Shutdown => {
                    if self.deadline.as_mut().poll(cx).is_ready() {
                        self.finish(Outcome::TotalTimeout);
                        return Poll::Ready(Ok(()));
                    }
                    let res = if self.stage == Stage::Flush {
                        ready!(Pin::new(&mut *io).poll_flush(cx))
                    } else {
                        ready!(Pin::new(&mut *io).poll_shutdown(cx))
                    };
                    if let Err(e) = res {
                        tracing::debug!(error = %e, stage = ?self.stage, "staged close failed");
                        self.finish(Outcome::Error);
                        return Poll::Ready(Err(e));
                    }
                    self.stage = match self.stage {
                        Stage::Flush => Stage::Shutdown,
                        _ if self.peer_eof => return self.ready(Outcome::PeerEof),
                        _ if !self.holds_slot => return self.ready(Outcome::Skipped),
                        _ => {
                            tracing::trace!("half-closed, lingering");
                            Stage::Discard
                        }
                    };
                }
                Stage::Discard => return self.poll_discard(io, discard, cx),
                Stage::Done => return Poll::Ready(Ok(())),
            }
        }
    }

    fn poll_discard<T>(
        &mut self,
        io: &mut T,
        discard: DiscardFn<T>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        let config = self.group.config();
        for _ in 0..READS_PER_POLL {
            if self.deadline.as_mut().poll(cx).is_ready() {
                return self.ready(Outcome::TotalTimeout);
            }
            let remaining = config.max_bytes.saturating_sub(self.discarded);
            if remaining == 0 {
                return self.ready(Outcome::ByteCap);
            }
            let limit = usize::try_from(remaining).unwrap_or(usize::MAX);
            match discard(io, &mut self.scratch, limit, cx) {
                Poll::Ready(Ok(0)) => return self.ready(Outcome::PeerEof),
                Poll::Ready(Ok(n)) => {
                    self.discarded = self.discarded.saturating_add(n as u64);
                    let next = Instant::now() + config.idle_timeout;
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
                    let idle = self
                        .idle
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(config.idle_timeout)));
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

    fn ready(&mut self, outcome: Outcome) -> Poll<io::Result<()>> {
        self.finish(outcome);
        Poll::Ready(Ok(()))
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
        self.release();
        self.idle = None;
        self.scratch = Scratch::default();
    }

    fn release(&mut self) {
        if std::mem::take(&mut self.holds_slot) {
            self.group.release();
        }
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        self.release();
    }
}
