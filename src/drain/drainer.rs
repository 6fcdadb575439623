use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use http_body::Body;
use tokio::time::Instant;

use super::counters::{Outcome, Tally};

/// Reads and discards a body, within a byte budget, and counts how that ended.
///
/// A drainer dropped before [`finish`](Self::finish) (its task or its response
/// future dropped) counts as `abandoned`, with the bytes it had drained.
pub(crate) struct Drainer<B> {
    body: B,
    budget: u64,
    drained: u64,
    started: Instant,
    tally: Tally,
}

/// How a drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DrainEnd {
    /// The end of the body was reached: the connection can be reused.
    Complete,
    /// The body holds more than the budget allows.
    OverLimit,
    /// The body failed (bad framing, peer gone).
    BodyError,
    /// The deadline passed first.
    Deadline,
}

impl<B> Drainer<B>
where
    B: Body + Unpin,
{
    pub(crate) fn new(body: B, budget: u64, tally: Tally) -> Self {
        Self {
            body,
            budget,
            drained: 0,
            started: Instant::now(),
            tally,
        }
    }

    /// Counts this drain in the `draining` gauge until it ends.
    pub(crate) fn start_draining(&mut self) {
        self.tally = std::mem::take(&mut self.tally).start_draining();
    }

    pub(crate) fn drained(&self) -> u64 {
        self.drained
    }

    /// Ends the drain with `outcome`: traced and counted. The body goes with
    /// the drainer; dropping it unfinished tells hyper to close after the
    /// response.
    pub(crate) fn finish(mut self, outcome: Outcome) {
        tracing::debug!(
            outcome = outcome.as_str(),
            bytes_drained = self.drained,
            elapsed_ms = self.started.elapsed().as_millis() as u64,
            "request body drain finished"
        );
        std::mem::take(&mut self.tally).record(outcome, self.drained);
    }

    /// Discards frames until the body ends, fails, or exceeds the budget.
    ///
    /// Also the way to "take what has already arrived": it returns `Pending`
    /// as soon as the body has nothing more at hand.
    pub(crate) fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<DrainEnd> {
        loop {
            if self.body.is_end_stream() {
                return Poll::Ready(DrainEnd::Complete);
            }
            if self.body.size_hint().lower() > self.budget - self.drained {
                return Poll::Ready(DrainEnd::OverLimit);
            }
            let Some(frame) = ready!(Pin::new(&mut self.body).poll_frame(cx)) else {
                return Poll::Ready(DrainEnd::Complete);
            };
            let Ok(frame) = frame else {
                return Poll::Ready(DrainEnd::BodyError);
            };
            if let Some(data) = frame.data_ref() {
                self.drained += data.remaining() as u64;
                if self.drained > self.budget {
                    return Poll::Ready(DrainEnd::OverLimit);
                }
            }
        }
    }
}

impl<B> Drop for Drainer<B> {
    fn drop(&mut self) {
        // A no-op once `finish` has taken the tally.
        std::mem::take(&mut self.tally).record(Outcome::Abandoned, self.drained);
    }
}
