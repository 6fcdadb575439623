use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};

use super::decision::{DrainWhenDropped, Progress, UnreadBody};

/// The request body as the inner service sees it.
///
/// It behaves exactly like the body it wraps. When the service drops it
/// before the end, the unread rest goes back to the layer, which decides
/// whether to drain it: right away if the response is not out yet, or in a
/// background task if the service held the body past its response.
pub struct DrainBody<B> {
    body: Option<B>,
    handoff: Option<Arc<Handoff<B>>>,
    progress: Progress,
}

/// Where the body and the layer meet when one of them is done: the service
/// drops the body, the response future settles what becomes of it.
///
/// Both sides may act at the same moment on different threads; the lock
/// decides who came first, so that a body dropped while the response is being
/// settled is either taken by the response or drained as a held body, never
/// neither or both. It is taken only when something is left to settle: a body
/// read to its end and dropped before the response (the common case) says so
/// with one atomic operation ([`quick`](Self::quick)), and the response finds
/// it with another.
///
/// A handoff whose request is settled goes back to a spare slot of its thread
/// ([`Handoff::for_request`] takes it from there), so that a thread serving
/// requests with bodies of one type allocates none after the first.
pub(crate) struct Handoff<B> {
    /// `OPEN`, then `ENDED` when the service dropped the body at its end before
    /// the response looked (without the lock), or `SETTLING` once the response
    /// has looked: from then on everything goes through the lock.
    quick: AtomicU8,
    state: Mutex<State<B>>,
}

/// [`Handoff::quick`]: neither side has acted yet.
const OPEN: u8 = 0;
/// [`Handoff::quick`]: the service dropped the body at its end, first.
const ENDED: u8 = 1;
/// [`Handoff::quick`]: the response has looked; the lock decides the rest.
const SETTLING: u8 = 2;

thread_local! {
    /// One settled handoff kept for the next request with a body on this thread,
    /// whatever its body type (a mismatch is dropped and a new one made).
    static SPARE: Cell<Option<Arc<dyn Any + Send + Sync>>> = const { Cell::new(None) };
}

enum State<B> {
    /// The service has the body; no response yet.
    WithService,
    /// The service dropped the body at its end, before the response.
    DroppedAtEnd,
    /// The service dropped the body before its end, before the response.
    DroppedUnfinished(UnreadBody<B>),
    /// The response went out while the service held the body: this runs
    /// when the service drops it.
    DrainWhenDropped(DrainWhenDropped<B>),
    /// Nothing more to do.
    Done,
}

/// Where the body is when the response is ready.
pub(crate) enum AtResponse<'a, B> {
    /// Still with the service (moved into a task, or into the response).
    StillHeld(HeldBodyGuard<'a, B>),
    /// Read to its end.
    Finished,
    /// Dropped before its end.
    Unfinished(UnreadBody<B>),
}

/// The handoff, locked, of a body the service still holds at the response.
pub(crate) struct HeldBodyGuard<'a, B>(MutexGuard<'a, State<B>>);

impl<B> HeldBodyGuard<'_, B> {
    /// Leaves `plan` to run when the service drops the body.
    pub(crate) fn drain_when_dropped(mut self, plan: DrainWhenDropped<B>) {
        *self.0 = State::DrainWhenDropped(plan);
    }
}

impl<B> Handoff<B> {
    /// Where the body is, now that the response exists. Whatever the answer,
    /// the body is the response's business from here on.
    pub(crate) fn at_response(&self) -> AtResponse<'_, B> {
        // `ENDED` is final: a plain load finds it, without a write to the
        // line the body's thread may still hold.
        if self.quick.load(Ordering::Acquire) == ENDED
            || self.quick.swap(SETTLING, Ordering::AcqRel) == ENDED
        {
            return AtResponse::Finished;
        }
        let mut state = self.lock();
        match std::mem::replace(&mut *state, State::Done) {
            State::WithService => AtResponse::StillHeld(HeldBodyGuard(state)),
            State::DroppedUnfinished(unread) => AtResponse::Unfinished(unread),
            State::DroppedAtEnd | State::DrainWhenDropped(_) | State::Done => AtResponse::Finished,
        }
    }

    /// The layer wants nothing more from the body (the connection was
    /// taken over): a body dropped later is just dropped.
    pub(crate) fn pass_through(&self) {
        *self.lock() = State::Done;
    }

    fn lock(&self) -> MutexGuard<'_, State<B>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<B: Send + 'static> Handoff<B> {
    /// The handoff of a new request: the thread's spare if it is of this
    /// type, else a new one.
    pub(crate) fn for_request() -> Arc<Self> {
        SPARE
            .try_with(Cell::take)
            .ok()
            .flatten()
            .and_then(|spare| spare.downcast::<Self>().ok())
            .unwrap_or_else(|| {
                Arc::new(Self {
                    quick: AtomicU8::new(OPEN),
                    state: Mutex::new(State::WithService),
                })
            })
    }

    /// Keeps a handoff that nothing else holds any more (its body is gone) as
    /// the thread's spare, reset for the next request; a held one is just
    /// dropped.
    pub(crate) fn recycle(mut handoff: Arc<Self>) {
        let Some(fresh) = Arc::get_mut(&mut handoff) else {
            return;
        };
        let Ok(state) = fresh.state.get_mut() else {
            return;
        };
        if !matches!(state, State::WithService | State::Done) {
            return;
        }
        *state = State::WithService;
        *fresh.quick.get_mut() = OPEN;
        let spare: Arc<dyn Any + Send + Sync> = handoff;
        let _ = SPARE.try_with(|slot| slot.set(Some(spare)));
    }
}

impl<B> DrainBody<B> {
    /// A body the layer will never drain (empty bodies, HTTP/2 `CONNECT`).
    pub(crate) fn untracked(body: B) -> Self {
        Self {
            body: Some(body),
            handoff: None,
            progress: Progress::default(),
        }
    }

    /// A body whose unread rest goes back to the layer, through `handoff`
    /// (from [`Handoff::for_request`]), when dropped.
    pub(crate) fn tracked(body: B, handoff: &Arc<Handoff<B>>) -> Self {
        Self {
            body: Some(body),
            handoff: Some(Arc::clone(handoff)),
            progress: Progress::default(),
        }
    }

    /// Bytes of data the inner service has read so far.
    pub fn bytes_read(&self) -> u64 {
        self.progress.bytes_read
    }
}

impl<B> Drop for DrainBody<B> {
    fn drop(&mut self) {
        // An untracked body first, without moving it out of its `Option`.
        let Some(handoff) = self.handoff.take() else {
            return;
        };
        // Read to its end, and the response has not looked yet: it finds that
        // without the lock.
        if self.progress.ended
            && handoff
                .quick
                .compare_exchange(OPEN, ENDED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return;
        }
        let Some(body) = self.body.take() else {
            return;
        };
        let unread = UnreadBody {
            body,
            progress: self.progress,
        };
        let mut state = handoff.lock();
        match std::mem::replace(&mut *state, State::Done) {
            State::DrainWhenDropped(plan) => {
                drop(state);
                plan.dropped(unread);
            }
            State::WithService if self.progress.ended => *state = State::DroppedAtEnd,
            State::WithService => *state = State::DroppedUnfinished(unread),
            other => *state = other,
        }
    }
}

impl<B> Body for DrainBody<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        this.progress.polled = true;
        let frame = Pin::new(&mut *body).poll_frame(cx);
        match &frame {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = u64::try_from(data.remaining()).unwrap_or(u64::MAX);
                    this.progress.bytes_read = this.progress.bytes_read.saturating_add(len);
                }
                // A Content-Length body is over with its last byte even if the
                // handler never polls for the `None` after it: `decide` asks the
                // body once it is dropped, rather than this on every frame.
            }
            Poll::Ready(Some(Err(_))) => this.progress.failed = true,
            Poll::Ready(None) => this.progress.ended = true,
            Poll::Pending => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl<B> fmt::Debug for DrainBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainBody")
            .field("tracked", &self.handoff.is_some())
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    use super::*;
    use crate::drain::counters::DrainCounters;
    use crate::drain::decision::{DrainPolicy, DrainWindow};

    /// An HTTP/1 body's policy: 1 KiB, no deadline, the response not held.
    fn http1_policy() -> DrainPolicy {
        DrainPolicy {
            limit: 1024,
            timeout: Duration::ZERO,
            wait_for_drain: false,
            expects_continue: false,
            request_closes: false,
            multiplexed: false,
        }
    }

    /// A Content-Length body whose last byte was read but whose `None` was
    /// never polled is settled as read, by `decide`, not drained.
    #[test]
    fn a_body_read_to_its_last_byte_without_its_none_is_read() {
        use crate::drain::decision::{decide, Decision, IoBeneath};

        let policy = http1_policy();
        let counters = DrainCounters::new();
        let handoff = Handoff::for_request();
        let mut body = DrainBody::tracked(Full::new(Bytes::from_static(b"abc")), &handoff);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let frame = runtime.block_on(body.frame()).unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "abc");
        drop(body);
        let AtResponse::Unfinished(unread) = handoff.at_response() else {
            panic!("the None was not polled: the layer decides");
        };
        let window = || DrainWindow::from_now(Duration::ZERO);
        let decision = decide(
            unread,
            policy,
            counters.pending_outcome(),
            window,
            IoBeneath::none(),
            None,
        );
        assert!(matches!(decision, Decision::Settled { close: false }));
        let stats = counters.snapshot();
        assert_eq!(
            (stats.read, stats.settled(), stats.bytes_drained),
            (1, 1, 0)
        );
    }

    /// The body's drop and the response's settling race on two threads:
    /// whichever comes first, the body is settled exactly once (taken by the
    /// response, read, or run through the held-body plan, which counts it).
    #[test]
    fn drop_and_settle_race_settles_once() {
        let policy = http1_policy();
        for ended in [false, true] {
            for _ in 0..2000 {
                let counters = DrainCounters::new();
                let handoff = Handoff::for_request();
                let mut body = DrainBody::tracked(Full::new(Bytes::from_static(b"abc")), &handoff);
                if ended {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    runtime.block_on(async { while body.frame().await.is_some() {} });
                }
                let barrier = Arc::new(Barrier::new(2));
                let dropper = {
                    let barrier = Arc::clone(&barrier);
                    std::thread::spawn(move || {
                        barrier.wait();
                        drop(body);
                    })
                };
                barrier.wait();
                let settled_here = match handoff.at_response() {
                    AtResponse::StillHeld(slot) => {
                        // No runtime: an unfinished held body counts as `no_timers`.
                        let window = DrainWindow::from_now(Duration::ZERO);
                        slot.drain_when_dropped(DrainWhenDropped::new(
                            policy,
                            window,
                            crate::drain::decision::IoBeneath::none(),
                            counters.pending_outcome(),
                        ));
                        0
                    }
                    AtResponse::Finished => 1,
                    AtResponse::Unfinished(unread) => {
                        assert!(!ended);
                        assert!(!unread.body.is_end_stream());
                        1
                    }
                };
                dropper.join().unwrap();
                let stats = counters.snapshot();
                assert_eq!(
                    settled_here + stats.settled(),
                    1,
                    "ended={ended}: {stats:?}"
                );
                assert_eq!(stats.abandoned, 0);
                if ended {
                    assert_eq!(stats.no_timers, 0);
                }
            }
        }
    }
}
