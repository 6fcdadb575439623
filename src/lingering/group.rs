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
    lingering: AtomicUsize,
    background: AtomicUsize,
    outcomes: OutcomeCounters,
    bytes_discarded: AtomicU64,
    /// Woken whenever `lingering` or `background` drops to zero.
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
        let lingering = s.lingering.load(Ordering::Acquire);
        let background = s.background.load(Ordering::Acquire);
        LingerStats::from_counts(
            s.outcomes.load(),
            lingering,
            background,
            s.bytes_discarded.load(Ordering::Relaxed),
        )
    }

    /// Resolves once no connection of the group is lingering, at once if none is.
    ///
    /// hyper's `poll_shutdown` returns as soon as the FIN is out, and the rest of a staged
    /// close (reading until the client's FIN) goes on in a background task, so a server's
    /// graceful shutdown ends before its lingering closes do. Await this after it, before
    /// the runtime shuts down (which would cut those closes short, as
    /// [`LingerStats::aborted`]). It takes at most
    /// [`total_timeout`](LingerConfig::total_timeout) after the last connection closed;
    /// connections still open keep it waiting only once they close.
    ///
    /// # Example
    ///
    /// ```
    /// use linger::LingerGroup;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let group = LingerGroup::default();
    /// // ... serve with `group.wrap(stream)` until a graceful shutdown completes, then:
    /// group.wait_idle().await;
    /// assert_eq!(group.stats().lingering, 0);
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
        self.shared.lingering.load(Ordering::Acquire) == 0
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
