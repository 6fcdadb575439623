//! What becomes of a body the service left unfinished: refused, drained at
//! once from what has already arrived, or drained alongside the response.
//!
//! The same steps run whether the service dropped the body before its
//! response or held it past the response and dropped it later; only the
//! second cannot drain in place or hold the response back.
//!
//! They run for every HTTP version; what giving up costs differs. On
//! HTTP/1 the connection closes after the response, which must say so
//! (`Connection: close`); on HTTP/2 and later only the stream ends, with the
//! `RST_STREAM(NO_ERROR)` that hyper sends when the last handle to an
//! unfinished stream goes away: the response is never marked (the header is
//! forbidden there) nor held back.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::Body;
use tokio::runtime::Handle;
use tokio::time::Instant;

use super::counters::{Outcome, PendingOutcome};
use super::drainer::{DrainEnd, Drainer};
use crate::discard_signal::{self, DiscardSignal};
use crate::timers;

/// The layer's settings and the request's facts that decide a drain.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DrainPolicy {
    pub(crate) limit: u64,
    pub(crate) timeout: Duration,
    pub(crate) wait_for_drain: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub(crate) expects_continue: bool,
    /// The request ends its connection (`Connection: close`, HTTP/1.0 without
    /// keep-alive): whatever the response, the connection closes after it.
    pub(crate) request_closes: bool,
    /// HTTP/2 and later: the body is one stream of a multiplexed connection,
    /// which giving up never closes.
    pub(crate) multiplexed: bool,
}

impl DrainPolicy {
    /// Whether giving up on the body closes the connection after the
    /// response, which the response must then announce.
    fn gives_up_by_closing(self) -> bool {
        !self.multiplexed
    }
}

/// What the service did with the body, as seen when it let go of it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Progress {
    /// The service polled the body at least once (for `Expect: 100-continue`
    /// that means hyper has sent, or is about to send, `100 Continue`).
    pub(crate) polled: bool,
    /// The service polled the body's `None`. (A body whose last byte was read
    /// but whose `None` was not is found out by `decide`.)
    pub(crate) ended: bool,
    pub(crate) failed: bool,
    pub(crate) bytes_read: u64,
}

/// A body the service has let go of, as it left it.
pub(crate) struct UnreadBody<B> {
    pub(crate) body: B,
    pub(crate) progress: Progress,
}

/// Where and until when a drain that has to wait for the peer may run.
#[derive(Debug)]
pub(crate) struct DrainWindow {
    /// `None` without a tokio runtime that has timers: a drain could not be
    /// bounded in time, so none starts.
    runtime: Option<Handle>,
    deadline: Instant,
}

impl DrainWindow {
    /// A drain that may last `timeout` from now, on the current runtime.
    pub(crate) fn from_now(timeout: Duration) -> Self {
        Self {
            runtime: timers::runtime(),
            deadline: timers::deadline_after(timeout),
        }
    }
}

/// The connection's `LingeringIo` as the layer sees it.
#[derive(Debug)]
pub(crate) struct IoBeneath {
    lookup: Lookup,
    /// The connection closes after the response anyway.
    closes_anyway: bool,
}

/// Where the IO's signal stands: looked up only when a decision needs it, so
/// that a body drained in place at once (the common case) costs no lookup.
#[derive(Debug)]
enum Lookup {
    Done(Option<Arc<DiscardSignal>>),
    /// To be looked up from the task that called the service; a lookup from
    /// any other task finds nothing.
    FromTask(Option<tokio::task::Id>),
}

impl IoBeneath {
    /// No IO to tell anything (HTTP/2, or none found).
    pub(crate) const fn none() -> Self {
        Self {
            lookup: Lookup::Done(None),
            closes_anyway: false,
        }
    }

    /// The IO of the connection whose service `called_from` called.
    pub(crate) const fn of_task(called_from: Option<tokio::task::Id>, closes_anyway: bool) -> Self {
        Self {
            lookup: Lookup::FromTask(called_from),
            closes_anyway,
        }
    }

    /// Looked up now, for a decision taken later on another task.
    pub(crate) fn looked_up(mut self) -> Self {
        self.signal();
        self
    }

    fn signal(&mut self) -> Option<Arc<DiscardSignal>> {
        if let Lookup::FromTask(called_from) = self.lookup {
            self.lookup = Lookup::Done(discard_signal::for_request(called_from));
        }
        match &self.lookup {
            Lookup::Done(signal) => signal.clone(),
            Lookup::FromTask(_) => None,
        }
    }

    /// The body will not be read any more and the connection ends after the
    /// response: the IO throws the client's input away from now on.
    fn give_up(&mut self) {
        if let Some(signal) = self.signal() {
            signal.raise();
        }
    }
}

/// How a decision left the body.
pub(crate) enum Decision<B> {
    /// Nothing more will read it; `close` when the response must say that
    /// the connection closes after it (never for HTTP/2).
    Settled { close: bool },
    /// The response waits for this drain until the deadline
    /// (`wait_for_drain`, HTTP/1 only).
    Wait(Drainer<B>, Instant),
    /// Draining alongside the response, in a task.
    Spawned,
}

/// Settles `unread`, or starts draining it.
///
/// `cx` is the response future's context: with it, what has already arrived
/// is taken at once, and the response may wait for the drain. `window` is
/// asked only when the drain has to wait for the peer. `io` is the
/// connection's `LingeringIo`: when the connection closes after the response
/// anyway, it throws the rest away, without copying, while the response is
/// written and after the FIN, and nothing is drained here; when the layer gives
/// up on the body (now, or later in a drain), it takes over the input from then.
pub(crate) fn decide<B>(
    unread: UnreadBody<B>,
    policy: DrainPolicy,
    pending_outcome: PendingOutcome,
    window: impl FnOnce() -> DrainWindow,
    mut io: IoBeneath,
    cx: Option<&mut Context<'_>>,
) -> Decision<B>
where
    B: Body + Unpin + Send + 'static,
{
    let UnreadBody { body, progress } = unread;
    if progress.ended || body.is_end_stream() {
        pending_outcome.record(Outcome::Read, 0, Duration::ZERO);
        return Decision::Settled { close: false };
    }
    if io.closes_anyway {
        if let Some(signal) = io.signal() {
            signal.raise();
            pending_outcome.record(Outcome::LeftToLinger, 0, Duration::ZERO);
            return Decision::Settled { close: false };
        }
    }
    if let Some(outcome) = refusal(progress, policy) {
        io.give_up();
        pending_outcome.record(outcome, 0, Duration::ZERO);
        return Decision::Settled {
            close: policy.gives_up_by_closing(),
        };
    }
    // Takes what has already arrived. A declared remainder above the limit
    // ends this at once, before anything is read.
    let mut drainer = Drainer::new(body, policy.limit, pending_outcome);
    let responding = cx.is_some();
    if let Some(cx) = cx {
        if let Poll::Ready(end) = drainer.poll_drain(cx) {
            if end != DrainEnd::Complete {
                drainer.tell_on_give_up(io.signal());
            }
            drainer.finish(end, true);
            return Decision::Settled {
                close: end != DrainEnd::Complete && policy.gives_up_by_closing(),
            };
        }
    }
    // The drain may give up later, on another task: the IO is found now.
    drainer.tell_on_give_up(io.signal());
    let DrainWindow { runtime, deadline } = window();
    let Some(runtime) = runtime else {
        drainer.give_up(Outcome::NoTimers);
        return Decision::Settled {
            close: policy.gives_up_by_closing(),
        };
    };
    // Waiting is for a connection that may have to close; a stream's
    // response goes at once.
    if responding && policy.wait_for_drain && policy.gives_up_by_closing() {
        drainer.start_draining();
        return Decision::Wait(drainer, deadline);
    }
    tracing::debug!(
        outcome = "draining",
        bytes_read = progress.bytes_read,
        bytes_drained = drainer.drained(),
        timeout_ms = u64::try_from(policy.timeout.as_millis()).unwrap_or(u64::MAX),
        "draining the rest of the request body in the background"
    );
    drainer.spawn(&runtime, deadline);
    Decision::Spawned
}

/// Why a body left unfinished is not read at all, if it is not.
fn refusal(progress: Progress, policy: DrainPolicy) -> Option<Outcome> {
    if progress.failed {
        Some(Outcome::BodyError)
    } else if policy.expects_continue && !progress.polled {
        // Polling would make hyper send `100 Continue` and invite an upload
        // that would only be thrown away.
        Some(Outcome::ExpectContinue)
    } else if policy.limit == 0 {
        // Nothing is ever drained, not even what has already arrived.
        Some(Outcome::OverLimit)
    } else {
        None
    }
}

/// What to do with a body the service still held when its response went
/// out, once the service drops it.
///
/// Made where the body's type is known to be drainable, run from
/// `DrainBody`'s `Drop`, which knows nothing about its type.
pub(crate) struct DrainWhenDropped<B> {
    dropped: fn(UnreadBody<B>, DrainPolicy, DrainWindow, PendingOutcome, IoBeneath),
    policy: DrainPolicy,
    /// Fixed at the response: the deadline counts from there, and `Drop` is
    /// no place to ask whether the runtime has timers, nor which connection
    /// the body came on.
    window: DrainWindow,
    io: IoBeneath,
    pending_outcome: PendingOutcome,
}

impl<B> DrainWhenDropped<B>
where
    B: Body + Unpin + Send + 'static,
{
    pub(crate) fn new(
        policy: DrainPolicy,
        window: DrainWindow,
        io: IoBeneath,
        pending_outcome: PendingOutcome,
    ) -> Self {
        Self {
            dropped: |unread, policy, window, pending_outcome, io| {
                decide(unread, policy, pending_outcome, || window, io, None);
            },
            policy,
            window,
            io,
            pending_outcome,
        }
    }
}

impl<B> DrainWhenDropped<B> {
    /// Settles the body the service has just dropped: spawns a drain at
    /// most, and makes no timer.
    pub(crate) fn dropped(self, unread: UnreadBody<B>) {
        (self.dropped)(
            unread,
            self.policy,
            self.window,
            self.pending_outcome,
            self.io,
        );
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::Waker;

    use bytes::Bytes;
    use http_body::{Frame, SizeHint};
    use http_body_util::Full;

    use super::*;
    use crate::drain::counters::{DrainCounters, DrainStats};

    const RULES: DrainPolicy = DrainPolicy {
        limit: 1024,
        timeout: Duration::from_secs(5),
        wait_for_drain: false,
        expects_continue: false,
        request_closes: false,
        multiplexed: false,
    };

    fn progress(polled: bool, failed: bool) -> Progress {
        Progress {
            polled,
            failed,
            ..Progress::default()
        }
    }

    #[test]
    fn a_failed_body_is_never_read_again() {
        assert_eq!(
            refusal(progress(true, true), RULES),
            Some(Outcome::BodyError)
        );
    }

    #[test]
    fn an_unpolled_expect_continue_body_is_not_invited() {
        let policy = DrainPolicy {
            expects_continue: true,
            ..RULES
        };
        assert_eq!(
            refusal(progress(false, false), policy),
            Some(Outcome::ExpectContinue)
        );
        // Once polled, hyper has sent `100 Continue`: the body is coming anyway.
        assert_eq!(refusal(progress(true, false), policy), None);
    }

    #[test]
    fn a_zero_limit_refuses_everything() {
        let policy = DrainPolicy { limit: 0, ..RULES };
        assert_eq!(
            refusal(progress(true, false), policy),
            Some(Outcome::OverLimit)
        );
        assert_eq!(refusal(progress(true, false), RULES), None);
    }

    /// A body whose rest never comes.
    struct Stalled;

    impl Body for Stalled {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Pending
        }

        fn size_hint(&self) -> SizeHint {
            SizeHint::with_exact(10)
        }
    }

    fn unread<B>(body: B) -> UnreadBody<B> {
        UnreadBody {
            body,
            progress: Progress::default(),
        }
    }

    /// Decides on `body` as the response is ready, and returns whether the
    /// response is marked and what was counted.
    fn decide_now<B>(body: B, policy: DrainPolicy) -> (Option<bool>, DrainStats)
    where
        B: Body + Unpin + Send + 'static,
    {
        let counters = DrainCounters::new();
        let mut cx = Context::from_waker(Waker::noop());
        let close = match decide(
            unread(body),
            policy,
            counters.pending_outcome(),
            || DrainWindow::from_now(policy.timeout),
            IoBeneath::none(),
            Some(&mut cx),
        ) {
            Decision::Settled { close } => Some(close),
            Decision::Wait(..) | Decision::Spawned => None,
        };
        (close, counters.snapshot())
    }

    #[test]
    fn giving_up_closes_a_connection_but_not_a_stream() {
        let http1 = RULES;
        let http2 = DrainPolicy {
            multiplexed: true,
            ..RULES
        };
        let over = || Full::new(Bytes::from(vec![0; 2048]));
        // Declared above the limit: refused.
        for (policy, close) in [(http1, true), (http2, false)] {
            let (marked, stats) = decide_now(over(), policy);
            assert_eq!(marked, Some(close));
            assert_eq!(stats.over_limit, 1);
        }
        // A limit of 0, and no timers (no runtime here) for a body that stalls.
        for (policy, close) in [(http1, true), (http2, false)] {
            let (marked, stats) = decide_now(over(), DrainPolicy { limit: 0, ..policy });
            assert_eq!(marked, Some(close));
            assert_eq!(stats.over_limit, 1);
            let (marked, stats) = decide_now(Stalled, policy);
            assert_eq!(marked, Some(close));
            assert_eq!(stats.no_timers, 1);
        }
        // Within the limit, taken at once: nothing to mark either way.
        for policy in [http1, http2] {
            let (marked, stats) = decide_now(Full::new(Bytes::from_static(b"abc")), policy);
            assert_eq!(marked, Some(false));
            assert_eq!((stats.drained_inline, stats.bytes_drained), (1, 3));
        }
    }

    #[tokio::test]
    async fn a_stream_response_never_waits_for_its_drain() {
        let waiting = DrainPolicy {
            wait_for_drain: true,
            ..RULES
        };
        for (policy, waits) in [
            (waiting, true),
            (
                DrainPolicy {
                    multiplexed: true,
                    ..waiting
                },
                false,
            ),
        ] {
            let counters = DrainCounters::new();
            let mut cx = Context::from_waker(Waker::noop());
            let decision = decide(
                unread(Stalled),
                policy,
                counters.pending_outcome(),
                || DrainWindow::from_now(policy.timeout),
                IoBeneath::none(),
                Some(&mut cx),
            );
            match decision {
                Decision::Wait(..) => assert!(waits),
                Decision::Spawned => assert!(!waits),
                Decision::Settled { .. } => panic!("settled a stalled body"),
            }
            assert_eq!(counters.snapshot().draining, 1);
        }
    }
}
