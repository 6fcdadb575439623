use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http_body::Body;
use tokio::time::Instant;

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

impl DrainEnd {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "drained",
            Self::OverLimit => "over_limit",
            Self::BodyError => "body_error",
            Self::Deadline => "deadline",
        }
    }
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

    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
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
