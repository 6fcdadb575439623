use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::body::{Handoff, LetGo, Returned};
use super::drainer::{DrainEnd, Drainer};
use super::DrainBodyLayer;

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
    config: DrainBodyLayer,
    expects_continue: bool,
}

/// A drain the response waits for (`wait_for_drain(true)`).
struct Waiting<B> {
    drainer: Drainer<B>,
    deadline: Pin<Box<Sleep>>,
}

impl<B> Watch<B> {
    pub(crate) fn new(
        handoff: Arc<Handoff<B>>,
        config: DrainBodyLayer,
        expects_continue: bool,
    ) -> Self {
        Self {
            handoff,
            config,
            expects_continue,
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
                trace_drain_end(end, &waiting.drainer);
                if let Some((_, mut output)) = this.waiting.take() {
                    if let (Ok(response), false) = (&mut output, end == DrainEnd::Complete) {
                        mark_close(response);
                    }
                    return Poll::Ready(output);
                }
            }
            let mut output = ready!(this.inner.as_mut().poll(cx));
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
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        trace_untouched("upgrade");
        return None;
    }
    let Returned { body, progress } = match watch.handoff.outcome() {
        LetGo::Unfinished(returned) => returned,
        LetGo::Finished => {
            trace_untouched("read");
            return None;
        }
        LetGo::Held => {
            trace_untouched("held");
            return None;
        }
    };
    let config = watch.config;
    let refuse = if progress.failed {
        Some("body_error")
    } else if watch.expects_continue && !progress.polled {
        // Polling would make hyper send `100 Continue` and invite an upload
        // that would only be thrown away.
        Some("expect_continue")
    } else {
        None
    };
    if let Some(outcome) = refuse {
        mark_close(response);
        tracing::debug!(
            outcome,
            bytes_read = progress.bytes_read,
            bytes_drained = 0u64,
            elapsed_ms = 0u64,
            "request body not drained; closing after the response"
        );
        return None;
    }

    // Takes what has already arrived. A declared remainder above the limit
    // ends this at once, before anything is read.
    let mut drainer = Drainer::new(body, config.limit);
    if let Poll::Ready(end) = drainer.poll_drain(cx) {
        if end != DrainEnd::Complete {
            mark_close(response);
        }
        trace_drain_end(end, &drainer);
        return None;
    }

    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        mark_close(response);
        tracing::debug!(
            outcome = "no_runtime",
            bytes_drained = drainer.drained(),
            elapsed_ms = 0u64,
            "cannot drain outside a tokio runtime; closing after the response"
        );
        return None;
    };
    let deadline = Instant::now() + config.timeout;
    if config.wait_for_drain {
        return Some(Waiting {
            drainer,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        });
    }
    tracing::debug!(
        outcome = "draining",
        bytes_drained = drainer.drained(),
        timeout_ms = config.timeout.as_millis() as u64,
        "response released; draining the rest of the request body alongside"
    );
    runtime.spawn(drain_in_background(drainer, deadline));
    None
}

/// Drains alongside the response; dropping the body on give-up tells hyper
/// to close the connection after the response.
async fn drain_in_background<B>(mut drainer: Drainer<B>, deadline: Instant)
where
    B: Body + Unpin,
{
    let drain = poll_fn(|cx| drainer.poll_drain(cx));
    let end = tokio::time::timeout_at(deadline, drain)
        .await
        .unwrap_or(DrainEnd::Deadline);
    trace_drain_end(end, &drainer);
}

fn trace_drain_end<B>(end: DrainEnd, drainer: &Drainer<B>)
where
    B: Body + Unpin,
{
    tracing::debug!(
        outcome = end.as_str(),
        bytes_drained = drainer.drained(),
        elapsed_ms = drainer.elapsed().as_millis() as u64,
        "request body drain finished"
    );
}

/// The body needs nothing from the layer.
fn trace_untouched(outcome: &'static str) {
    tracing::debug!(
        outcome,
        bytes_drained = 0u64,
        elapsed_ms = 0u64,
        "request body left as it is"
    );
}

fn mark_close<ResBody>(response: &mut Response<ResBody>) {
    if !says_close(response.headers()) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

/// Whether the `Connection` header already lists `close`.
fn says_close(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

impl<F: Future, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("watching", &self.watch.is_some())
            .field("waiting_for_drain", &self.waiting.is_some())
            .finish_non_exhaustive()
    }
}
