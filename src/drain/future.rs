use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{Response, StatusCode, Version};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::body::{AtResponse, Handoff};
use super::close_header::{ends_connection, mark_close};
use super::counters::{Outcome, PendingOutcome};
use super::decision::{decide, Decision, DrainPolicy, DrainWhenDropped, DrainWindow, IoBeneath};
use super::drainer::{DrainEnd, Drainer};

pin_project! {
    /// Response future of [`DrainBodyService`](crate::DrainBodyService).
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F, B>
    where
        F: Future,
    {
        #[pin]
        inner: F,
        tracked: Option<TrackedBody<B>>,
        // The drain the response waits for, and the response: boxed, as it is
        // rare (`wait_for_drain` with a drain that has to wait) and big, and
        // every request moves this future (HTTP/2 into a task of its own).
        waiting: Option<Box<(Waiting<B>, F::Output)>>,
    }
}

/// The layer's side of a request body it watches: what it needs to settle
/// the body once the response exists.
pub(crate) struct TrackedBody<B> {
    pub(crate) handoff: Arc<Handoff<B>>,
    pub(crate) policy: DrainPolicy,
    /// An HTTP/1 `CONNECT` request: a `2xx` answer turns the connection into
    /// a tunnel. (An HTTP/2 `CONNECT` stream is never tracked.)
    pub(crate) connect: bool,
    pub(crate) version: Version,
    pub(crate) pending_outcome: PendingOutcome,
    /// The task that called the service: only there can the connection's
    /// `LingeringIo` be found.
    pub(crate) called_from: Option<tokio::task::Id>,
}

/// A drain the response waits for (`wait_for_drain(true)`).
struct Waiting<B> {
    drainer: Drainer<B>,
    deadline: Pin<Box<Sleep>>,
    version: Version,
}

impl<F: Future, B> ResponseFuture<F, B> {
    pub(crate) fn untracked(inner: F) -> Self {
        Self {
            inner,
            tracked: None,
            waiting: None,
        }
    }

    pub(crate) fn tracked(inner: F, tracked: TrackedBody<B>) -> Self {
        Self {
            inner,
            tracked: Some(tracked),
            waiting: None,
        }
    }
}

impl<F, B, ResBody, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    B: Body + Unpin + Send + 'static,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // A request the layer does not watch (every one without a body): the
        // inner future's answer, untouched.
        if this.tracked.is_none() && this.waiting.is_none() {
            return this.inner.poll(cx);
        }
        loop {
            if let Some(waiting) = this.waiting.as_mut() {
                let end = ready!(waiting.0.poll(cx));
                if let Some((waiting, mut output)) = this.waiting.take().map(|boxed| *boxed) {
                    if let (Ok(response), false) = (&mut output, end == DrainEnd::Complete) {
                        mark_close(response, waiting.version);
                    }
                    waiting.drainer.finish(end, false);
                    return Poll::Ready(output);
                }
            }
            let mut output = ready!(this.inner.as_mut().poll(cx));
            // A service error drops the tracked body: counted as abandoned.
            let (Some(tracked), Ok(response)) = (this.tracked.take(), &mut output) else {
                return Poll::Ready(output);
            };
            match decide_at_response(tracked, response, cx) {
                // Polled right away so that the deadline's timer is registered.
                Some(waiting) => *this.waiting = Some(Box::new((waiting, output))),
                None => return Poll::Ready(output),
            }
        }
    }
}

impl<B> Waiting<B>
where
    B: Body + Unpin,
{
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<DrainEnd> {
        if let Poll::Ready(end) = self.drainer.poll_drain(cx) {
            return Poll::Ready(end);
        }
        ready!(self.deadline.as_mut().poll(cx));
        Poll::Ready(DrainEnd::Deadline)
    }
}

/// Settles the body once the response exists, marking the response when the
/// connection will close after it.
///
/// Returns a drain to wait for only in `wait_for_drain` mode; otherwise the
/// response is ready to go.
fn decide_at_response<B, ResBody>(
    tracked: TrackedBody<B>,
    response: &mut Response<ResBody>,
    cx: &mut Context<'_>,
) -> Option<Waiting<B>>
where
    B: Body + Unpin + Send + 'static,
{
    let TrackedBody {
        handoff,
        policy,
        connect,
        version,
        pending_outcome,
        called_from,
    } = tracked;
    // hyper hands the connection over after these, and only these: other
    // answers to `Upgrade` and `CONNECT` are ordinary responses.
    let status = response.status();
    if status == StatusCode::SWITCHING_PROTOCOLS || (connect && status.is_success()) {
        handoff.pass_through();
        pending_outcome.record(Outcome::PassedThrough, 0, Duration::ZERO);
        return None;
    }
    let unread = match handoff.at_response() {
        AtResponse::Unfinished(unread) => Some(unread),
        AtResponse::Finished => None,
        AtResponse::StillHeld(slot) => {
            let window = DrainWindow::from_now(policy.timeout);
            // Dropped later, maybe on another task: the IO is found now.
            let io = io_beneath(policy, response, called_from).looked_up();
            slot.drain_when_dropped(DrainWhenDropped::new(policy, window, io, pending_outcome));
            tracing::debug!(
                outcome = "held",
                timeout_ms = u64::try_from(policy.timeout.as_millis()).unwrap_or(u64::MAX),
                "response released; the request body is drained once the service drops it"
            );
            return None;
        }
    };
    // The body is gone: the handoff can serve the thread's next request.
    Handoff::recycle(handoff);
    let Some(unread) = unread else {
        pending_outcome.record(Outcome::Read, 0, Duration::ZERO);
        return None;
    };
    let window = || DrainWindow::from_now(policy.timeout);
    let io = io_beneath(policy, response, called_from);
    match decide(unread, policy, pending_outcome, window, io, Some(cx)) {
        Decision::Settled { close } => {
            if close {
                mark_close(response, version);
            }
            None
        }
        Decision::Wait(drainer, deadline) => Some(Waiting {
            drainer,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            version,
        }),
        Decision::Spawned => None,
    }
}

/// The connection's `LingeringIo`, if the layer can be sure which it is, and
/// whether the connection closes after `response` anyway (as the request or
/// the response says).
fn io_beneath<ResBody>(
    policy: DrainPolicy,
    response: &Response<ResBody>,
    called_from: Option<tokio::task::Id>,
) -> IoBeneath {
    // An HTTP/2 stream never ends its connection (hyper strips a
    // `Connection` header the handler sets), and the IO beneath must keep
    // every byte for the other streams.
    if policy.multiplexed {
        return IoBeneath::none();
    }
    let closes_anyway =
        policy.request_closes || ends_connection(response.version(), response.headers());
    IoBeneath::of_task(called_from, closes_anyway)
}

impl<F: Future, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("tracking", &self.tracked.is_some())
            .field("waiting_for_drain", &self.waiting.is_some())
            .finish_non_exhaustive()
    }
}
