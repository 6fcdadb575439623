//! Drains that run alongside the response, in a tokio task.

use std::future::poll_fn;

use http_body::Body;
use tokio::runtime::Handle;
use tokio::time::Instant;

use super::counters::Outcome;
use super::drainer::{DrainEnd, Drainer};

/// Drains in a task on `runtime` until the end, the limit or `deadline`.
///
/// The deadline's timer is made inside the task, so this can be called from
/// anywhere, `Drop` included. Dropping the body when the drain gives up tells
/// hyper to close the connection after the response.
pub(crate) fn spawn<B>(runtime: &Handle, mut drainer: Drainer<B>, deadline: Instant)
where
    B: Body + Unpin + Send + 'static,
{
    drainer.start_draining();
    runtime.spawn(drain(drainer, deadline));
}

async fn drain<B>(mut drainer: Drainer<B>, deadline: Instant)
where
    B: Body + Unpin,
{
    let drained = poll_fn(|cx| drainer.poll_drain(cx));
    let end = tokio::time::timeout_at(deadline, drained)
        .await
        .unwrap_or(DrainEnd::Deadline);
    drainer.finish(Outcome::of_drain(end, false));
}
