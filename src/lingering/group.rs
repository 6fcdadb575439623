//! Connections that share one cap on lingering, and their counters.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use super::config::LingerConfig;
use super::stats::{LingerStats, Outcome, OutcomeCounters};

/// A [`LingerConfig`] plus the state shared by every [`LingeringIo`](crate::LingeringIo) made from it: the cap
/// on connections lingering at the same time and the counters behind [`LingerStats`].
///
/// Cloning is cheap (one `Arc`); clones share the cap and the counters. A
/// [`LingeringListener`](crate::LingeringListener) holds one group for all the connections
/// it accepts; use one group per listener (or one per process) so that the cap means
/// something.
///
/// # Example
///
/// ```no_run
/// use linger::{LingerConfig, LingerGroup};
///
/// # async fn run() -> std::io::Result<()> {
/// let group = LingerGroup::new(LingerConfig::new().max_lingering(256));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// loop {
///     let (stream, _) = listener.accept().await?;
///     let io = group.wrap(stream);
///     // hand `hyper_util::rt::TokioIo::new(io)` to hyper
///     # drop(io);
///     tracing::debug!(stats = ?group.stats(), "accepted");
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct LingerGroup {
    shared: Arc<Shared>,
}

struct Shared {
    config: LingerConfig,
    /// IOs of the group alive now: wrapped, not yet dropped or taken apart.
    open: AtomicUsize,
    lingering: AtomicUsize,
    background: AtomicUsize,
    outcomes: OutcomeCounters,
    bytes_discarded: AtomicU64,
    /// Woken whenever `open`, `lingering` or `background` drops to zero.
    idle: Notify,
}

impl fmt::Debug for LingerGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LingerGroup")
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Default for LingerGroup {
    fn default() -> Self {
        Self::new(LingerConfig::default())
    }
}

impl LingerGroup {
    /// A new group with its own cap and counters.
    pub fn new(config: LingerConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                open: AtomicUsize::new(0),
                lingering: AtomicUsize::new(0),
                background: AtomicUsize::new(0),
                outcomes: OutcomeCounters::default(),
                bytes_discarded: AtomicU64::new(0),
                idle: Notify::new(),
            }),
        }
    }

    /// The bounds every connection of this group lingers within.
    pub fn config(&self) -> LingerConfig {
        self.shared.config
    }

    /// A snapshot of the counters.
    ///
    /// The gauges are read first: a close that has left them has already been counted, so
    /// a snapshot never shows `lingering == 0` with a close missing from
    /// [`closes`](LingerStats::closes).
    pub fn stats(&self) -> LingerStats {
        let s = &self.shared;
        // An IO leaves `open` after its close took a lingering slot: read in that order.
        let open = s.open.load(Ordering::Acquire);
        let lingering = s.lingering.load(Ordering::Acquire);
        let background = s.background.load(Ordering::Acquire);
        LingerStats::from_counts(
            s.outcomes.load(),
            open,
            lingering,
            background,
            s.bytes_discarded.load(Ordering::Relaxed),
        )
    }

    /// Resolves once no IO of the group is open, none is lingering and no background close
    /// runs; at once if that is so already.
    ///
    /// hyper's `poll_shutdown` returns as soon as the FIN is out, and the rest of a staged
    /// close (reading until the client's FIN) goes on in a background task once the IO is
    /// dropped, so a server's graceful shutdown ends before its lingering closes do. Await
    /// this after it, before the runtime shuts down (which would cut those closes short, as
    /// [`LingerStats::aborted`]).
    ///
    /// It waits for the IO still open too ([`LingerStats::open`]): axum's
    /// `with_graceful_shutdown` and hyper-util's `GracefulShutdown` may report a connection
    /// finished a moment before its IO is dropped, and its close, with its
    /// [`total_timeout`](LingerConfig::total_timeout), only starts at that drop. Awaited
    /// once the server's graceful shutdown has returned, it therefore ends exactly when the
    /// last close ends, whatever the order of the two: at most `total_timeout` after the
    /// last IO of the group is dropped. Awaited while the server still serves, it also
    /// waits for every connection to end, and does not end while new ones keep coming.
    ///
    /// # Bound it with `total_timeout` plus a margin
    ///
    /// An IO that the server does not close keeps this waiting until the IO is dropped: an
    /// upgraded connection or a tunnel, an IO kept elsewhere, connections still running
    /// because the server's own graceful shutdown was cut short by a deadline. Bound the
    /// wait with `total_timeout` plus a margin, 1 s in the crate's README and examples:
    ///
    /// - the margin covers the time between the server reporting its connections done and
    ///   dropping their IO (microseconds, milliseconds on a loaded machine), the timers'
    ///   millisecond, and the scheduling of the closes that end at their deadline. 1 s is
    ///   hundreds of times that, and costs nothing when every IO is dropped: the wait ends
    ///   with the last close. It is spent only when an IO stays open;
    /// - `total_timeout` alone is not enough, whatever the order of report and drop: it
    ///   is the last close's own deadline, and two equal deadlines race. Measured with 20
    ///   clients still sending into lingering closes (total 500 ms), that bound fired with
    ///   closes still lingering, which the runtime's end then cut short, in 5 to 16 runs
    ///   of 20 with the axum setup and 13 of 20 with the hyper one; with the 1 s margin,
    ///   in none (`tests/stack/graceful_recipe.rs`).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use linger::LingerGroup;
    ///
    /// /// Covers the gap between a server reporting its connections done and dropping
    /// /// their IO; see above.
    /// const SHUTDOWN_MARGIN: Duration = Duration::from_secs(1);
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let group = LingerGroup::default();
    /// // ... serve with `group.wrap(stream)` until the server's graceful shutdown returns, then:
    /// let bound = group.config().get_total_timeout() + SHUTDOWN_MARGIN;
    /// if tokio::time::timeout(bound, group.wait_idle()).await.is_err() {
    ///     // An IO the server did not close is still open: see `group.stats().open`.
    /// }
    /// let stats = group.stats();
    /// assert_eq!((stats.open, stats.lingering, stats.background), (0, 0, 0));
    /// # }
    /// ```
    pub async fn wait_idle(&self) {
        loop {
            let mut idle = std::pin::pin!(self.shared.idle.notified());
            // Registered before the check, so a release in between is not missed.
            idle.as_mut().enable();
            if self.is_idle() {
                return;
            }
            idle.await;
        }
    }

    fn is_idle(&self) -> bool {
        // `open` first: a dropped IO takes its lingering slot before it leaves `open`.
        self.shared.open.load(Ordering::Acquire) == 0
            && self.shared.lingering.load(Ordering::Acquire) == 0
            && self.shared.background.load(Ordering::Acquire) == 0
    }

    /// Takes a lingering slot if the cap allows; the slot is given back when the returned
    /// guard drops.
    pub(crate) fn try_slot(&self) -> Option<LingerSlot> {
        let max = self.shared.config.max_lingering;
        self.shared
            .lingering
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| LingerSlot {
                group: self.clone(),
            })
    }

    /// Counts an IO in [`LingerStats::open`] for as long as the returned guard lives.
    pub(crate) fn open_guard(&self) -> OpenGuard {
        self.shared.open.fetch_add(1, Ordering::AcqRel);
        OpenGuard {
            group: self.clone(),
        }
    }

    /// Counts a background close for as long as the returned guard lives.
    pub(crate) fn background_guard(&self) -> BackgroundGuard {
        self.shared.background.fetch_add(1, Ordering::AcqRel);
        BackgroundGuard {
            group: self.clone(),
        }
    }

    /// Takes one off `gauge`, waking `wait_idle` when that leaves it at zero.
    fn leave(&self, gauge: &AtomicUsize) {
        if gauge.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.idle.notify_waiters();
        }
    }

    /// Counts a close that ended with `outcome`, having thrown `bytes_discarded` away.
    pub(crate) fn record(&self, outcome: Outcome, bytes_discarded: u64) {
        self.shared.outcomes.add(outcome);
        self.shared
            .bytes_discarded
            .fetch_add(bytes_discarded, Ordering::Relaxed);
    }
}

/// One of a group's [`max_lingering`](LingerConfig::max_lingering) places, held while a
/// connection lingers and given back when dropped.
#[derive(Debug)]
pub(crate) struct LingerSlot {
    group: LingerGroup,
}

impl Drop for LingerSlot {
    fn drop(&mut self) {
        self.group.leave(&self.group.shared.lingering);
    }
}

/// Keeps [`LingerStats::open`] counted while a `LingeringIo` lives.
pub(crate) struct OpenGuard {
    group: LingerGroup,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.group.leave(&self.group.shared.open);
    }
}

/// Keeps [`LingerStats::background`] counted while a background close runs.
pub(crate) struct BackgroundGuard {
    group: LingerGroup,
}

impl Drop for BackgroundGuard {
    fn drop(&mut self) {
        self.group.leave(&self.group.shared.background);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// A close records its outcome, then leaves the gauge. A snapshot that saw it leave
    /// the gauge must also see its outcome: every close started before the snapshot is
    /// either lingering or counted. Before (counters read first), a close ending between
    /// the two reads was in neither.
    #[test]
    fn a_snapshot_misses_no_close() {
        let group = LingerGroup::default();
        let started = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let closer = {
            let (group, started, stop) = (group.clone(), Arc::clone(&started), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let slot = group.try_slot().expect("below the cap");
                    started.fetch_add(1, Ordering::SeqCst);
                    group.record(Outcome::PeerEof, 0);
                    drop(slot);
                }
            })
        };
        for _ in 0..2_000_000 {
            let before = started.load(Ordering::SeqCst);
            let stats = group.stats();
            let seen = stats.closes() + u64::try_from(stats.lingering).unwrap();
            assert!(seen >= before, "{before} closes started, {stats:?}");
        }
        stop.store(true, Ordering::Relaxed);
        closer.join().unwrap();
    }
}
