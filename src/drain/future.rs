use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{Response, StatusCode, Version};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::runtime::Handle;
use tokio::time::Sleep;

use super::background;
use super::body::{Handoff, LetGo, Progress, Returned};
use super::connection::mark_close;
use super::counters::{Outcome, Tally};
use super::drainer::{DrainEnd, Drainer};
use super::held::{Plan, WhenDropped};
use super::DrainBodyLayer;
use crate::timers;

pin_project! {
    /// Response future of [`DrainBodyService`](super::DrainBodyService).
    pub struct ResponseFuture<F, B>
    where
        F: Future,
    {
        #[pin]
        inner: F,
        watch: Option<Watch<B>>,
        // The drain the response waits for, and the response.
        waiting: Option<(Waiting<B>, F::Output)>,
    }
}

/// What the future needs to settle the body once the response exists.
pub(crate) struct Watch<B> {
    handoff: Arc<Handoff<B>>,
    limit: u64,
    timeout: Duration,
    wait_for_drain: bool,
    expects_continue: bool,
    /// A `CONNECT` request: a `2xx` answer turns the connection into a tunnel.
    connect: bool,
    version: Version,
    tally: Tally,
}

/// A drain the response waits for (`wait_for_drain(true)`).
struct Waiting<B> {
    drainer: Drainer<B>,
    deadline: Pin<Box<Sleep>>,
    version: Version,
}

impl<B> Watch<B> {
    pub(crate) fn new(
        handoff: Arc<Handoff<B>>,
        config: &DrainBodyLayer,
        expects_continue: bool,
        connect: bool,
        version: Version,
    ) -> Self {
        Self {
            handoff,
            limit: config.limit,
            timeout: config.timeout,
            wait_for_drain: config.wait_for_drain,
            expects_continue,
            connect,
            version,
            tally: config
                .counters
                .as_ref()
                .map(|counters| counters.tally())
                .unwrap_or_default(),
        }
    }
}

impl<F: Future, B> ResponseFuture<F, B> {
    pub(crate) fn untracked(inner: F) -> Self {
        Self {
            inner,
            watch: None,
            waiting: None,
        }
    }

    pub(crate) fn watched(inner: F, watch: Watch<B>) -> Self {
        Self {
            inner,
            watch: Some(watch),
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
        loop {
            if let Some((waiting, _)) = this.waiting.as_mut() {
                let end = ready!(waiting.poll(cx));
                if let Some((waiting, mut output)) = this.waiting.take() {
                    if let (Ok(response), false) = (&mut output, end == DrainEnd::Complete) {
                        mark_close(response, waiting.version);
                    }
                    waiting.finish(end);
                    return Poll::Ready(output);
                }
            }
            let mut output = ready!(this.inner.as_mut().poll(cx));
            // A service error drops the watch: counted as abandoned.
            let (Some(watch), Ok(response)) = (this.watch.take(), &mut output) else {
                return Poll::Ready(output);
            };
            match settle(watch, response, cx) {
                // Polled right away so that the deadline's timer is registered.
                Some(waiting) => *this.waiting = Some((waiting, output)),
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

    fn finish(self, end: DrainEnd) {
        self.drainer.finish(Outcome::of_drain(end, false));
    }
}

/// Why a body left unfinished is not read at all, if it is not.
pub(crate) fn refusal(progress: Progress, expects_continue: bool, limit: u64) -> Option<Outcome> {
    if progress.failed {
        Some(Outcome::BodyError)
    } else if expects_continue && !progress.polled {
        // Polling would make hyper send `100 Continue` and invite an upload
        // that would only be thrown away.
        Some(Outcome::ExpectContinue)
    } else if limit == 0 {
        // Nothing is ever drained, not even what has already arrived.
        Some(Outcome::OverLimit)
    } else {
        None
    }
}

/// The current runtime, if it has the timers a bounded drain needs.
fn runtime_with_timers() -> Result<Handle, &'static str> {
    let runtime = Handle::try_current().map_err(|_| "no_runtime")?;
    if timers::available() {
        Ok(runtime)
    } else {
        Err("no_timers")
    }
}

/// Decides, once the response exists, what becomes of the unread body.
///
/// Returns a drain to wait for only in `wait_for_drain` mode; otherwise the
/// response is ready to go.
fn settle<B, ResBody>(
    watch: Watch<B>,
    response: &mut Response<ResBody>,
    cx: &mut Context<'_>,
) -> Option<Waiting<B>>
where
    B: Body + Unpin + Send + 'static,
{
    let Watch {
        handoff,
        limit,
        timeout,
        wait_for_drain,
        expects_continue,
        connect,
        version,
        mut tally,
    } = watch;
    // hyper hands the connection over after these, and only these: other
    // answers to `Upgrade` and `CONNECT` are ordinary responses.
    let status = response.status();
    if status == StatusCode::SWITCHING_PROTOCOLS || (connect && status.is_success()) {
        handoff.pass_through();
        trace_untouched(Outcome::PassedThrough);
        tally.record(Outcome::PassedThrough, 0);
        return None;
    }
    let let_go = handoff.settle(|| {
        WhenDropped::new(Plan {
            limit,
            deadline: timers::deadline_after(timeout),
            runtime: runtime_with_timers().ok(),
            expects_continue,
            tally: std::mem::take(&mut tally),
        })
    });
    let Returned { body, progress } = match let_go {
        LetGo::Unfinished(returned) => returned,
        LetGo::Finished => {
            trace_untouched(Outcome::Read);
            tally.record(Outcome::Read, 0);
            return None;
        }
        LetGo::Held => {
            tracing::debug!(
                outcome = "held",
                timeout_ms = timeout.as_millis() as u64,
                "response released; the request body is drained once the service drops it"
            );
            return None;
        }
    };
    if let Some(outcome) = refusal(progress, expects_continue, limit) {
        mark_close(response, version);
        tracing::debug!(
            outcome = outcome.as_str(),
            bytes_read = progress.bytes_read,
            bytes_drained = 0u64,
            elapsed_ms = 0u64,
            "request body not drained; closing after the response"
        );
        tally.record(outcome, 0);
        return None;
    }

    // Takes what has already arrived. A declared remainder above the limit
    // ends this at once, before anything is read.
    let mut drainer = Drainer::new(body, limit, tally);
    if let Poll::Ready(end) = drainer.poll_drain(cx) {
        if end != DrainEnd::Complete {
            mark_close(response, version);
        }
        drainer.finish(Outcome::of_drain(end, true));
        return None;
    }

    // The rest needs a deadline, and so a timer.
    let runtime = match runtime_with_timers() {
        Ok(runtime) => runtime,
        Err(missing) => {
            mark_close(response, version);
            tracing::debug!(
                outcome = missing,
                bytes_drained = drainer.drained(),
                elapsed_ms = 0u64,
                "cannot bound a drain without tokio timers; closing after the response"
            );
            drainer.finish(Outcome::NoTimers);
            return None;
        }
    };
    let deadline = timers::deadline_after(timeout);
    if wait_for_drain {
        drainer.start_draining();
        return Some(Waiting {
            drainer,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            version,
        });
    }
    tracing::debug!(
        outcome = "draining",
        bytes_drained = drainer.drained(),
        timeout_ms = timeout.as_millis() as u64,
        "response released; draining the rest of the request body alongside"
    );
    background::spawn(&runtime, drainer, deadline);
    None
}

/// The body needs nothing from the layer.
fn trace_untouched(outcome: Outcome) {
    tracing::debug!(
        outcome = outcome.as_str(),
        bytes_drained = 0u64,
        elapsed_ms = 0u64,
        "request body left as it is"
    );
}

impl<F: Future, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("watching", &self.watch.is_some())
            .field("waiting_for_drain", &self.waiting.is_some())
            .finish_non_exhaustive()
    }
}
