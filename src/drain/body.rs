use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};

use super::held::WhenDropped;

/// The request body as the inner service sees it.
///
/// It behaves exactly like the body it wraps. When the handler drops it
/// before the end, the unread rest goes back to the layer, which decides
/// whether to drain it: right away if the response is not out yet, or in a
/// background task if the handler held the body past its response.
pub struct DrainBody<B> {
    body: Option<B>,
    handoff: Option<Arc<Handoff<B>>>,
    progress: Progress,
}

/// What the handler did with the body, as seen when it let go of it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Progress {
    /// The handler polled the body at least once (for `Expect: 100-continue`
    /// that means hyper has sent, or is about to send, `100 Continue`).
    pub(crate) polled: bool,
    pub(crate) ended: bool,
    pub(crate) failed: bool,
    pub(crate) bytes_read: u64,
}

/// The body as the handler left it.
pub(crate) struct Returned<B> {
    pub(crate) body: B,
    pub(crate) progress: Progress,
}

/// Where the body and the layer meet when one of them is done: the service
/// drops the body, the response future settles what becomes of it.
///
/// Both sides may act at the same moment on different threads; the lock
/// decides who came first, so that a body dropped while the response is being
/// settled is either taken by the response or drained as a held body, never
/// neither or both. It is taken twice per request with a body, uncontended
/// but for that race.
pub(crate) struct Handoff<B> {
    state: Mutex<State<B>>,
}

enum State<B> {
    /// The service has the body; the response is not settled yet.
    Lent,
    /// Dropped after its end while the response was not settled yet.
    Ended,
    /// Dropped before its end while the response was not settled yet.
    Returned(Returned<B>),
    /// The response went out while the service held the body: this runs
    /// when the service drops it.
    Planned(WhenDropped<B>),
    /// Nothing more to do.
    Settled,
}

impl<B> Handoff<B> {
    /// What the service did with the body, once the response exists. If it
    /// still holds the body, `plan` is made and left for when it lets go.
    pub(crate) fn settle(&self, plan: impl FnOnce() -> WhenDropped<B>) -> LetGo<B>
    where
        B: Body,
    {
        let mut state = self.lock();
        match std::mem::replace(&mut *state, State::Settled) {
            State::Returned(returned) if !returned.body.is_end_stream() => {
                LetGo::Unfinished(returned)
            }
            State::Lent => {
                *state = State::Planned(plan());
                LetGo::Held
            }
            State::Ended | State::Returned(_) | State::Planned(_) | State::Settled => {
                LetGo::Finished
            }
        }
    }

    /// The layer wants nothing more from the body (the connection was
    /// taken over): a body dropped later is just dropped.
    pub(crate) fn pass_through(&self) {
        *self.lock() = State::Settled;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<B>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What became of the body by the time the response was ready.
pub(crate) enum LetGo<B> {
    /// Still held by the service (moved into a task, or into the response).
    Held,
    /// Read to its end.
    Finished,
    /// Dropped before its end.
    Unfinished(Returned<B>),
}

impl<B> DrainBody<B> {
    /// A body the layer will never drain (HTTP/2, empty bodies).
    pub(crate) fn untracked(body: B) -> Self {
        Self {
            body: Some(body),
            handoff: None,
            progress: Progress::default(),
        }
    }

    /// A body whose unread rest goes back to the layer when dropped.
    pub(crate) fn tracked(body: B) -> (Self, Arc<Handoff<B>>) {
        let handoff = Arc::new(Handoff {
            state: Mutex::new(State::Lent),
        });
        let body = Self {
            body: Some(body),
            handoff: Some(Arc::clone(&handoff)),
            progress: Progress::default(),
        };
        (body, handoff)
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
        let Some(body) = self.body.take() else {
            return;
        };
        let mut state = handoff.lock();
        match std::mem::replace(&mut *state, State::Settled) {
            State::Planned(plan) => {
                drop(state);
                // Spawns at most; no timer is made here.
                plan.run(body, self.progress);
            }
            State::Lent if self.progress.ended => *state = State::Ended,
            State::Lent => {
                *state = State::Returned(Returned {
                    body,
                    progress: self.progress,
                });
            }
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
                    this.progress.bytes_read += data.remaining() as u64;
                }
                // A Content-Length body is over with its last byte, even if
                // the handler never polls for the `None` after it.
                this.progress.ended = body.is_end_stream();
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

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    use super::*;
    use crate::drain::counters::DrainCounters;
    use crate::drain::held::Plan;

    /// The body's drop and the response's settling race on two threads:
    /// whichever comes first, the body is settled exactly once (taken by the
    /// response, read, or run through the held-body plan, which counts it).
    #[test]
    fn drop_and_settle_race_settles_once() {
        for ended in [false, true] {
            for _ in 0..2000 {
                let counters = DrainCounters::new();
                let (mut body, handoff) = DrainBody::tracked(Full::new(Bytes::from_static(b"abc")));
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
                let plan = || {
                    WhenDropped::new(Plan {
                        limit: 1024,
                        deadline: crate::timers::deadline_after(std::time::Duration::ZERO),
                        // No runtime: an unfinished held body counts as `no_timers`.
                        runtime: None,
                        expects_continue: false,
                        tally: counters.tally(),
                    })
                };
                let settled_here = match handoff.settle(plan) {
                    LetGo::Held => 0,
                    LetGo::Finished => 1,
                    LetGo::Unfinished(returned) => {
                        assert!(!ended);
                        assert!(!returned.body.is_end_stream());
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
