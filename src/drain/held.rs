//! Bodies the service still holds when its response goes out.
//!
//! A handler may move the body into a task that reads some of it, or none,
//! and drops it a moment later. The response does not wait for that, but the
//! body is still drained when it is dropped unfinished: with the same limit,
//! and by the deadline counted from the response, in a background task.

use http_body::Body;
use tokio::runtime::Handle;
use tokio::time::Instant;

use super::background;
use super::body::Progress;
use super::counters::{Outcome, Tally};
use super::drainer::Drainer;
use super::future::refusal;

/// What to do with a held body once the service drops it.
///
/// Made where the body's type is known to be drainable, run from
/// `DrainBody`'s `Drop`, which knows nothing about its type.
pub(crate) struct WhenDropped<B> {
    run: fn(B, Progress, Plan),
    plan: Plan,
}

/// The settings of a drain that starts when a held body is dropped.
pub(crate) struct Plan {
    pub(crate) limit: u64,
    /// Counted from the response.
    pub(crate) deadline: Instant,
    /// `None` without a runtime that has timers: the body is just dropped
    /// and hyper closes the connection.
    pub(crate) runtime: Option<Handle>,
    pub(crate) expects_continue: bool,
    pub(crate) tally: Tally,
}

impl<B> WhenDropped<B>
where
    B: Body + Unpin + Send + 'static,
{
    pub(crate) fn new(plan: Plan) -> Self {
        Self {
            run: run::<B>,
            plan,
        }
    }
}

impl<B> WhenDropped<B> {
    /// Settles the body the service has just dropped.
    pub(crate) fn run(self, body: B, progress: Progress) {
        (self.run)(body, progress, self.plan)
    }
}

fn run<B>(body: B, progress: Progress, plan: Plan)
where
    B: Body + Unpin + Send + 'static,
{
    let Plan {
        limit,
        deadline,
        runtime,
        expects_continue,
        tally,
    } = plan;
    let refused = if progress.ended || body.is_end_stream() {
        Some(Outcome::Read)
    } else {
        refusal(progress, expects_continue, limit)
    };
    let outcome = match (refused, runtime) {
        (Some(outcome), _) => outcome,
        (None, None) => Outcome::NoTimers,
        (None, Some(runtime)) => {
            tracing::debug!(
                outcome = "draining",
                bytes_read = progress.bytes_read,
                "held request body dropped unfinished; draining the rest in the background"
            );
            background::spawn(&runtime, Drainer::new(body, limit, tally), deadline);
            return;
        }
    };
    tracing::debug!(
        outcome = outcome.as_str(),
        bytes_read = progress.bytes_read,
        bytes_drained = 0u64,
        "held request body let go; not drained"
    );
    tally.record(outcome, 0);
}
