use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use http_body::Body;
use tokio::time::Instant;

use super::counters::Outcome;

/// Reads and discards a body, within a byte budget.
pub(crate) struct Drainer<B> {
    body: B,
    budget: u64,
    drained: u64,
    started: Instant,
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
    pub(crate) fn new(body: B, budget: u64) -> Self {
        Self {
            body,
            budget,
            drained: 0,
            started: Instant::now(),
        }
    }

    pub(crate) fn drained(&self) -> u64 {
        self.drained
    }

    /// The `tracing` event for the end of this drain.
    pub(crate) fn trace_end(&self, outcome: Outcome) {
        tracing::debug!(
            outcome = outcome.as_str(),
            bytes_drained = self.drained,
            elapsed_ms = self.started.elapsed().as_millis() as u64,
            "request body drain finished"
        );
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
