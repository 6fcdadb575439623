//! How request bodies ended, counted for anyone who asks.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use std::time::Duration;

use crate::metrics::Metric;
use crate::outcome_table::outcome_table;

/// Counters of what [`DrainBodyLayer`](crate::DrainBodyLayer) did with request
/// bodies, shared by every layer, service and connection it is given to.
///
/// Opt-in: a layer without counters counts nothing and costs nothing. Cloning
/// is cheap (one `Arc`); clones share the counters. Read them with
/// [`snapshot`](Self::snapshot).
///
/// # Example
///
/// ```
/// use linger::{DrainBodyLayer, DrainCounters};
///
/// let counters = DrainCounters::new();
/// let layer = DrainBodyLayer::new(256 * 1024).counters(counters.clone());
/// # let _ = layer;
/// let stats = counters.snapshot();
/// assert_eq!(stats.settled(), 0);
/// assert_eq!(stats.draining, 0);
/// ```
#[derive(Clone, Default)]
pub struct DrainCounters {
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    outcomes: OutcomeCounters,
    draining: AtomicUsize,
    bytes_drained: AtomicU64,
}

outcome_table! {
    /// What finally became of a request body.
    enum Outcome;
    /// The outcome counters of one [`DrainCounters`].
    struct OutcomeCounters;
    /// A snapshot of [`DrainCounters`].
    ///
    /// Every request that arrives with a body (one that has not already ended
    /// when the layer sees the request), over any HTTP version, ends up in
    /// exactly one of the outcome counters, `read` to `abandoned`, once its fate
    /// is known: usually when the response is ready, after the drain for drained
    /// bodies, and when the service lets go of it for bodies it held past the
    /// response (a body held forever is never counted). Requests without a body
    /// are not counted. `draining` is a gauge and `bytes_drained` a running total.
    ///
    /// Over HTTP/2 the outcomes mean the same; where HTTP/1 closes the
    /// connection after the response (`over_limit`, `deadline`, `no_timers`),
    /// hyper resets the stream with `RST_STREAM(NO_ERROR)` instead. There a
    /// `body_error` is usually the client's own doing: it reset the stream or
    /// closed the connection once it had its response, before its upload ended
    /// (curl does both).
    ///
    /// # Example
    ///
    /// ```
    /// use linger::{DrainBodyLayer, DrainCounters, DrainStats};
    ///
    /// let counters = DrainCounters::new();
    /// let _layer = DrainBodyLayer::new(256 * 1024).counters(counters.clone());
    /// // ... serve; then, from a metrics endpoint or a log line:
    /// let stats: DrainStats = counters.snapshot();
    /// let kept_alive = stats.drained_inline + stats.drained;
    /// let closed = stats.over_limit + stats.deadline;
    /// assert_eq!((kept_alive, closed, stats.draining), (0, 0, 0));
    /// ```
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    #[non_exhaustive]
    pub struct DrainStats {
        outcomes {
            /// The service read the body to its end itself: nothing left to drain.
            Read => read,
            /// The rest of the body had already arrived and was taken as the response
            /// went out, without waiting: the connection was reused at no cost.
            DrainedInline => drained_inline,
            /// The rest was drained to its end after the response: in a background
            /// task, while the response waited (`wait_for_drain`), or after the
            /// service dropped a body it had held past the response.
            Drained => drained,
            /// Not drained, or drain stopped, because the body holds more than the
            /// limit (including every unfinished body with a limit of 0); over
            /// HTTP/2, the [HTTP/2 limit](crate::DrainBodyLayer::http2_limit).
            OverLimit => over_limit,
            /// The drain ran out of time.
            Deadline => deadline,
            /// The body failed (bad framing, peer gone), while the service read it
            /// or while it was drained.
            BodyError => body_error,
            /// Not drained: `Expect: 100-continue` and the service never asked for
            /// the body, so reading it would invite an upload only to throw it away.
            ExpectContinue => expect_continue,
            /// Not drained: no tokio runtime, or one built without timers, so the
            /// drain could not be bounded in time.
            NoTimers => no_timers,
            /// Left alone: `101 Switching Protocols` and `2xx` answers to an HTTP/1
            /// `CONNECT` (the connection is handed over), and HTTP/2 `CONNECT`
            /// streams, extended `CONNECT` included, whatever the answer (hyper gives
            /// those an empty body, which is not counted at all).
            PassedThrough => passed_through,
            /// Not drained: the HTTP/1 connection closes after the response anyway
            /// (the request or the response says `Connection: close`), and the
            /// [`LingeringIo`](crate::LingeringIo) beneath it throws the rest away
            /// without copying, while the response is written and after the FIN
            /// (counted in its group's `bytes_discarded`).
            LeftToLinger => left_to_linger,
            /// No response left the layer (the service failed or panicked, or its
            /// future was dropped), or a drain was dropped before it ended (its
            /// connection or runtime went away).
            Abandoned => abandoned,
        }
        /// Drains in progress now: background tasks plus HTTP/1 responses held
        /// back by `wait_for_drain`.
        pub draining: usize,
        /// Bytes read and thrown away by drains, in all.
        pub bytes_drained: u64,
    }
}

/// The name of the bodies metric, one per outcome label.
const BODIES: &str = "linger_drain_bodies_total";

impl DrainStats {
    /// Requests whose body has reached an outcome: the sum of the outcome
    /// counters (`read` to `abandoned`).
    pub fn settled(&self) -> u64 {
        self.sum_of_outcomes()
    }

    /// Every value of the snapshot as a [`Metric`](crate::Metric), named for Prometheus:
    /// `linger_drain_bodies_total{outcome="..."}`, `linger_drained_bytes_total` and
    /// `linger_drains_in_progress`.
    ///
    /// Fields added in later versions show up here too, so an exporter that loops over
    /// this never misses one. See [`Metric`](crate::Metric) for an exporter.
    pub fn metrics(&self) -> impl Iterator<Item = Metric> {
        let help = "Request bodies seen by DrainBodyLayer, by what became of them once the response was ready";
        // The outcomes come from the table; every other field is listed here (the metrics
        // tests count one metric per field).
        let Self {
            draining,
            bytes_drained,
            ..
        } = *self;
        let stats = *self;
        Outcome::ALL
            .iter()
            .map(move |&outcome| {
                Metric::outcome(BODIES, help, outcome.as_str(), stats.get(outcome))
            })
            .chain([
                Metric::counter(
                    "linger_drained_bytes_total",
                    "Bytes of request bodies read and thrown away by DrainBodyLayer",
                    bytes_drained,
                ),
                Metric::gauge(
                    "linger_drains_in_progress",
                    "Request body drains running now, in the background or holding back a response",
                    draining,
                ),
            ])
    }
}

impl DrainCounters {
    /// New counters, all at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters as they are now.
    pub fn snapshot(&self) -> DrainStats {
        let c = &*self.counts;
        // First: a drain that has left the gauge has already been counted.
        let draining = c.draining.load(Ordering::Acquire);
        DrainStats::from_counts(
            c.outcomes.load(),
            draining,
            c.bytes_drained.load(Ordering::Relaxed),
        )
    }

    /// A body that will land in one outcome counter, sooner or later.
    pub(crate) fn pending_outcome(&self) -> PendingOutcome {
        // Every field spelled out: `..PendingOutcome::uncounted()` would drop a
        // temporary `PendingOutcome`, whose `Drop` traces a spurious "abandoned".
        PendingOutcome {
            counts: Some(Arc::clone(&self.counts)),
            draining: false,
            settled: false,
        }
    }
}

impl fmt::Debug for DrainCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DrainCounters")
            .field(&self.snapshot())
            .finish()
    }
}

/// One body's entry in the counters, settled exactly once: the one place
/// where an outcome is traced and counted.
///
/// It travels with the body (into a waiting response, a background drain or
/// a held body's plan); dropped unsettled, it counts as
/// [`abandoned`](DrainStats::abandoned). Without counters it only traces.
pub(crate) struct PendingOutcome {
    counts: Option<Arc<Counts>>,
    /// Counted in the `draining` gauge until settled or dropped.
    draining: bool,
    settled: bool,
}

impl PendingOutcome {
    /// A body that is traced but not counted.
    pub(crate) const fn uncounted() -> Self {
        Self {
            counts: None,
            draining: false,
            settled: false,
        }
    }

    /// Counts this body in the `draining` gauge until it is settled.
    pub(crate) fn start_draining(&mut self) {
        if let (Some(counts), false) = (&self.counts, self.draining) {
            counts.draining.fetch_add(1, Ordering::AcqRel);
            self.draining = true;
        }
    }

    /// Settles the body: `outcome`, with the bytes its drain threw away and
    /// the time that took.
    #[inline]
    pub(crate) fn record(mut self, outcome: Outcome, bytes_drained: u64, elapsed: Duration) {
        self.settle(outcome, bytes_drained, elapsed);
    }

    /// What `Drop` runs for a body never settled: out of line, as it is rare.
    fn count(&mut self, outcome: Outcome, bytes_drained: u64, elapsed: Duration) {
        self.settle(outcome, bytes_drained, elapsed);
    }

    /// Inline into [`record`](Self::record): every request with a body
    /// settles once, and without counters and a subscriber that costs the
    /// tests of `tracing::debug!` alone.
    #[inline]
    fn settle(&mut self, outcome: Outcome, bytes_drained: u64, elapsed: Duration) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        tracing::debug!(
            outcome = outcome.as_str(),
            bytes_drained,
            elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            "request body settled"
        );
        let Some(counts) = self.counts.take() else {
            return;
        };
        counts.outcomes.add(outcome);
        if bytes_drained > 0 {
            counts
                .bytes_drained
                .fetch_add(bytes_drained, Ordering::Relaxed);
        }
        // After the outcome, so that `draining == 0` means every drain that
        // has stopped is visible in its counter.
        if self.draining {
            counts.draining.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for PendingOutcome {
    #[inline]
    fn drop(&mut self) {
        // Inline, so that a settled body's drop (every one) costs a test.
        if !self.settled {
            self.count(Outcome::Abandoned, 0, Duration::ZERO);
        }
    }
}
