use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};

/// The request body as the inner service sees it.
///
/// It behaves exactly like the body it wraps. When the handler drops it
/// before the end, the unread rest goes back to the layer, which decides
/// whether to drain it.
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

/// Where a dropped [`DrainBody`] leaves the unread body for the layer.
///
/// An empty slot after the response means the handler still holds the body.
pub(crate) struct Handoff<B> {
    slot: Mutex<Option<Returned<B>>>,
    /// Set instead of filling the slot when the body was read to its end,
    /// the common case, which then costs no lock.
    finished: AtomicBool,
}

impl<B> Handoff<B> {
    /// What the handler did with the body, once the response exists.
    pub(crate) fn outcome(&self) -> LetGo<B>
    where
        B: Body,
    {
        if self.finished.load(Ordering::Acquire) {
            return LetGo::Finished;
        }
        let returned = self
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match returned {
            None => LetGo::Held,
            Some(returned) if returned.body.is_end_stream() => LetGo::Finished,
            Some(returned) => LetGo::Unfinished(returned),
        }
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
    /// A body the layer will never drain (HTTP/2, upgrades, empty bodies).
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
            slot: Mutex::new(None),
            finished: AtomicBool::new(false),
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
        // Nobody will look at the slot once the response future is gone.
        if Arc::strong_count(&handoff) == 1 {
            return;
        }
        if self.progress.ended {
            handoff.finished.store(true, Ordering::Release);
            return;
        }
        let returned = Returned {
            body,
            progress: self.progress,
        };
        *handoff.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(returned);
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
