use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
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
/// Both sides may act at the same moment on different threads; the lock on
/// `state` decides who came first, so that a body dropped while the response
/// is being settled is either taken by the response or drained as a held
/// body, never neither or both.
pub(crate) struct Handoff<B> {
    state: Mutex<State<B>>,
    /// Set instead of taking the lock when the body was read to its end,
    /// the common case.
    finished: AtomicBool,
    /// Set (under the lock) before the response leaves a plan for a held
    /// body, so that a body finishing at the same time takes the lock and
    /// finds it. With `finished`, a store-then-load pair on each side: at
    /// least one side sees the other's store.
    planned: AtomicBool,
}

enum State<B> {
    /// The service has the body; the response is not settled yet.
    Lent,
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
        if self.finished.load(Ordering::Acquire) {
            return LetGo::Finished;
        }
        let mut state = self.lock();
        match std::mem::replace(&mut *state, State::Settled) {
            State::Returned(returned) if returned.body.is_end_stream() => LetGo::Finished,
            State::Returned(returned) => LetGo::Unfinished(returned),
            State::Lent => {
                self.planned.store(true, Ordering::SeqCst);
                if self.finished.load(Ordering::SeqCst) {
                    return LetGo::Finished;
                }
                *state = State::Planned(plan());
                LetGo::Held
            }
            State::Planned(_) | State::Settled => LetGo::Finished,
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
            finished: AtomicBool::new(false),
            planned: AtomicBool::new(false),
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
        let (Some(handoff), Some(body)) = (self.handoff.take(), self.body.take()) else {
            return;
        };
        if self.progress.ended {
            handoff.finished.store(true, Ordering::SeqCst);
            if !handoff.planned.load(Ordering::SeqCst) {
                return;
            }
        }
        let mut state = handoff.lock();
        match std::mem::replace(&mut *state, State::Settled) {
            State::Planned(plan) => {
                drop(state);
                // Spawns at most; no timer is made here.
                plan.run(body, self.progress);
            }
            // Nobody will look at the state once the response future is gone.
            State::Lent if !self.progress.ended && Arc::strong_count(&handoff) > 1 => {
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
