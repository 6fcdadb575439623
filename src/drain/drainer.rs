//! Reading a body to its end only to throw it away, within a byte limit, at
//! once or in a task of its own.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use http_body::Body;
use tokio::runtime::Handle;
use tokio::time::Instant;
use tracing::Instrument;

use super::counters::{Outcome, PendingOutcome};
use crate::discard_signal::DiscardSignal;

/// Reads and discards a body, within a byte limit, and settles its
/// [`PendingOutcome`] with how that ended.
///
/// A drainer dropped before [`finish`](Self::finish) (its task or its response
/// future dropped) counts as `abandoned`, with the bytes it had drained.
pub(crate) struct Drainer<B> {
    body: B,
    limit: u64,
    drained: u64,
    started: Instant,
    /// Taken when the drain is settled.
    pending_outcome: Option<PendingOutcome>,
    /// The connection's `LingeringIo`, told when the drain gives up: the
    /// connection then ends after the response, and the IO takes over the
    /// client's input, so that a client sending its whole body before it reads
    /// gets the response.
    io_signal: Option<Arc<DiscardSignal>>,
}

/// How a drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DrainEnd {
    /// The end of the body was reached: the connection can be reused.
    Complete,
    /// The body holds more than the limit allows.
    OverLimit,
    /// The body failed (bad framing, peer gone).
    BodyError,
    /// The deadline passed first.
    Deadline,
}

impl DrainEnd {
    /// How a drain that ended so counts; `inline` when it never waited for
    /// the peer.
    fn outcome(self, inline: bool) -> Outcome {
        match self {
            Self::Complete if inline => Outcome::DrainedInline,
            Self::Complete => Outcome::Drained,
            Self::OverLimit => Outcome::OverLimit,
            Self::BodyError => Outcome::BodyError,
            Self::Deadline => Outcome::Deadline,
        }
    }
}

impl<B> Drainer<B>
where
    B: Body + Unpin,
{
    pub(crate) fn new(body: B, limit: u64, pending_outcome: PendingOutcome) -> Self {
        Self {
            body,
            limit,
            drained: 0,
            started: Instant::now(),
            pending_outcome: Some(pending_outcome),
            io_signal: None,
        }
    }

    /// The connection's `LingeringIo` to tell if the drain gives up.
    pub(crate) fn tell_on_give_up(&mut self, io_signal: Option<Arc<DiscardSignal>>) {
        self.io_signal = io_signal;
    }

    /// Ends the drain: traced and counted, as drained in place (`inline`) or
    /// after waiting for the peer. The body goes with the drainer; dropping it
    /// unfinished tells hyper to close after the response.
    pub(crate) fn finish(mut self, end: DrainEnd, inline: bool) {
        if end != DrainEnd::Complete {
            self.hand_input_to_io();
        }
        self.record(end.outcome(inline));
    }

    /// Ends the drain before it started waiting for the peer, as `outcome`.
    pub(crate) fn give_up(mut self, outcome: Outcome) {
        self.hand_input_to_io();
        self.record(outcome);
    }

    /// Before the body is dropped (which has hyper give up on it), so that hyper
    /// already sees the input's end when it tries to read the rest.
    fn hand_input_to_io(&mut self) {
        if let Some(signal) = self.io_signal.take() {
            signal.raise();
        }
    }

    /// Counts this drain in the `draining` gauge until it ends.
    pub(crate) fn start_draining(&mut self) {
        if let Some(pending_outcome) = &mut self.pending_outcome {
            pending_outcome.start_draining();
        }
    }

    /// Discards frames until the body ends, fails, or exceeds the limit.
    ///
    /// Also the way to "take what has already arrived": it returns `Pending`
    /// as soon as the body has nothing more at hand.
    pub(crate) fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<DrainEnd> {
        loop {
            if self.body.is_end_stream() {
                return Poll::Ready(DrainEnd::Complete);
            }
            if self.body.size_hint().lower() > self.limit.saturating_sub(self.drained) {
                return Poll::Ready(DrainEnd::OverLimit);
            }
            let Some(frame) = ready!(Pin::new(&mut self.body).poll_frame(cx)) else {
                return Poll::Ready(DrainEnd::Complete);
            };
            let Ok(frame) = frame else {
                return Poll::Ready(DrainEnd::BodyError);
            };
            if let Some(data) = frame.data_ref() {
                let len = u64::try_from(data.remaining()).unwrap_or(u64::MAX);
                self.drained = self.drained.saturating_add(len);
                if self.drained > self.limit {
                    return Poll::Ready(DrainEnd::OverLimit);
                }
            }
        }
    }
}

impl<B> Drainer<B>
where
    B: Body + Unpin + Send + 'static,
{
    /// Drains the rest in a task on `runtime`, until the end, the limit or
    /// `deadline`, while the response goes its way.
    ///
    /// The deadline's timer is made inside the task, so this can be called
    /// from anywhere, `Drop` included. Dropping the body when the drain gives
    /// up tells hyper to close the connection after the response. The task
    /// keeps the current span (the connection's, say).
    pub(crate) fn spawn(mut self, runtime: &Handle, deadline: Instant) {
        self.start_draining();
        runtime.spawn(
            async move {
                let drained = poll_fn(|cx| self.poll_drain(cx));
                let end = tokio::time::timeout_at(deadline, drained)
                    .await
                    .unwrap_or(DrainEnd::Deadline);
                self.finish(end, false);
            }
            .in_current_span(),
        );
    }
}

impl<B> Drainer<B> {
    pub(crate) fn drained(&self) -> u64 {
        self.drained
    }

    fn record(&mut self, outcome: Outcome) {
        if let Some(pending_outcome) = self.pending_outcome.take() {
            pending_outcome.record(outcome, self.drained, self.started.elapsed());
        }
    }
}

impl<B> Drop for Drainer<B> {
    fn drop(&mut self) {
        // A no-op once `finish` has settled the pending_outcome.
        self.record(Outcome::Abandoned);
    }
}
