//! How request bodies ended, counted for anyone who asks.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use std::time::Duration;

/// Counters of what [`DrainBodyLayer`](super::DrainBodyLayer) did with request
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
    read: AtomicU64,
    drained_inline: AtomicU64,
    drained: AtomicU64,
    over_limit: AtomicU64,
    deadline: AtomicU64,
    body_error: AtomicU64,
    expect_continue: AtomicU64,
    no_timers: AtomicU64,
    passed_through: AtomicU64,
    left_to_linger: AtomicU64,
    abandoned: AtomicU64,
    draining: AtomicUsize,
    bytes_drained: AtomicU64,
}

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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainStats {
    /// The service read the body to its end itself: nothing left to drain.
    pub read: u64,
    /// The rest of the body had already arrived and was taken as the response
    /// went out, without waiting: the connection was reused at no cost.
    pub drained_inline: u64,
    /// The rest was drained to its end after the response: in a background
    /// task, while the response waited (`wait_for_drain`), or after the
    /// service dropped a body it had held past the response.
    pub drained: u64,
    /// Not drained, or drain stopped, because the body holds more than the
    /// limit (including every unfinished body with a limit of 0); over
    /// HTTP/2, the [HTTP/2 limit](super::DrainBodyLayer::http2_limit).
    pub over_limit: u64,
    /// The drain ran out of time.
    pub deadline: u64,
    /// The body failed (bad framing, peer gone), while the service read it
    /// or while it was drained.
    pub body_error: u64,
    /// Not drained: `Expect: 100-continue` and the service never asked for
    /// the body, so reading it would invite an upload only to throw it away.
    pub expect_continue: u64,
    /// Not drained: no tokio runtime, or one built without timers, so the
    /// drain could not be bounded in time.
    pub no_timers: u64,
    /// Left alone: `101 Switching Protocols` and `2xx` answers to an HTTP/1
    /// `CONNECT` (the connection is handed over), and HTTP/2 `CONNECT`
    /// streams, extended `CONNECT` included, whatever the answer (hyper gives
    /// those an empty body, which is not counted at all).
    pub passed_through: u64,
    /// Not drained: the HTTP/1 connection closes after the response anyway
    /// (the request or the response says `Connection: close`), and the
    /// [`LingeringIo`](crate::LingeringIo) beneath it throws the rest away
    /// without copying, while the response is written and after the FIN
    /// (counted in its group's `bytes_discarded`).
    pub left_to_linger: u64,
    /// No response left the layer (the service failed or panicked, or its
    /// future was dropped), or a drain was dropped before it ended (its
    /// connection or runtime went away).
    pub abandoned: u64,
    /// Drains in progress now: background tasks plus HTTP/1 responses held
    /// back by `wait_for_drain`.
    pub draining: usize,
    /// Bytes read and thrown away by drains, in all.
    pub bytes_drained: u64,
}

impl DrainStats {
    /// Requests whose body has reached an outcome: the sum of the outcome
    /// counters (`read` to `abandoned`).
    pub fn settled(&self) -> u64 {
        [
            self.read,
            self.drained_inline,
            self.drained,
            self.over_limit,
            self.deadline,
            self.body_error,
            self.expect_continue,
            self.no_timers,
            self.passed_through,
            self.left_to_linger,
            self.abandoned,
        ]
        .into_iter()
        .fold(0, u64::saturating_add)
    }

    /// Every value of the snapshot as a [`Metric`](crate::Metric), named for Prometheus:
    /// `linger_drain_bodies_total{outcome="..."}`, `linger_drained_bytes_total` and
    /// `linger_drains_in_progress`.
    ///
    /// Fields added in later versions show up here too, so an exporter that loops over
    /// this never misses one. See [`Metric`](crate::Metric) for an exporter.
    pub fn metrics(&self) -> impl Iterator<Item = crate::Metric> {
        crate::metrics::drain(self)
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
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        DrainStats {
            read: load(&c.read),
            drained_inline: load(&c.drained_inline),
            drained: load(&c.drained),
            over_limit: load(&c.over_limit),
            deadline: load(&c.deadline),
            body_error: load(&c.body_error),
            expect_continue: load(&c.expect_continue),
            no_timers: load(&c.no_timers),
            passed_through: load(&c.passed_through),
            left_to_linger: load(&c.left_to_linger),
            abandoned: load(&c.abandoned),
            draining,
            bytes_drained: load(&c.bytes_drained),
        }
    }

    /// A body that will land in one outcome counter, sooner or later.
    pub(crate) fn tally(&self) -> Tally {
        // Every field spelled out: `..Tally::uncounted()` would drop a
        // temporary `Tally`, whose `Drop` traces a spurious "abandoned".
        Tally {
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

/// What finally became of a request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Read,
    DrainedInline,
    Drained,
    OverLimit,
    Deadline,
    BodyError,
    ExpectContinue,
    NoTimers,
    PassedThrough,
    LeftToLinger,
    Abandoned,
}

impl Outcome {
    /// The name used in `tracing` events, the same as the counter's.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::DrainedInline => "drained_inline",
            Self::Drained => "drained",
            Self::OverLimit => "over_limit",
            Self::Deadline => "deadline",
            Self::BodyError => "body_error",
            Self::ExpectContinue => "expect_continue",
            Self::NoTimers => "no_timers",
            Self::PassedThrough => "passed_through",
            Self::LeftToLinger => "left_to_linger",
            Self::Abandoned => "abandoned",
        }
    }
}

/// One body's entry in the counters, settled exactly once: the one place
/// where an outcome is traced and counted.
///
/// It travels with the body (into a waiting response, a background drain or
/// a held body's plan); dropped unsettled, it counts as
/// [`abandoned`](DrainStats::abandoned). Without counters it only traces.
pub(crate) struct Tally {
    counts: Option<Arc<Counts>>,
    /// Counted in the `draining` gauge until settled or dropped.
    draining: bool,
    settled: bool,
}

impl Tally {
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
    pub(crate) fn settle(mut self, outcome: Outcome, bytes_drained: u64, elapsed: Duration) {
        self.count(outcome, bytes_drained, elapsed);
    }

    fn count(&mut self, outcome: Outcome, bytes_drained: u64, elapsed: Duration) {
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
        let counter = match outcome {
            Outcome::Read => &counts.read,
            Outcome::DrainedInline => &counts.drained_inline,
            Outcome::Drained => &counts.drained,
            Outcome::OverLimit => &counts.over_limit,
            Outcome::Deadline => &counts.deadline,
            Outcome::BodyError => &counts.body_error,
            Outcome::ExpectContinue => &counts.expect_continue,
            Outcome::NoTimers => &counts.no_timers,
            Outcome::PassedThrough => &counts.passed_through,
            Outcome::LeftToLinger => &counts.left_to_linger,
            Outcome::Abandoned => &counts.abandoned,
        };
        counter.fetch_add(1, Ordering::Relaxed);
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

impl Drop for Tally {
    fn drop(&mut self) {
        self.count(Outcome::Abandoned, 0, Duration::ZERO);
    }
}
