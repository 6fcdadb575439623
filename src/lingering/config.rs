//! Bounds of a staged close.

use std::time::Duration;

/// Default wait for the next byte from the peer while lingering.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(2);
/// Default cap on the whole staged close.
const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on the bytes read and thrown away while lingering.
const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Default cap on connections lingering at the same time in one [`LingerGroup`].
///
/// [`LingerGroup`]: super::LingerGroup
const DEFAULT_MAX_LINGERING: usize = 1024;

/// Bounds of the staged close performed by [`LingeringIo`](crate::LingeringIo).
///
/// Every bound holds whatever the peer does: a close ends at the peer's EOF, when the peer
/// stays silent for [`idle_timeout`](Self::idle_timeout), when the whole close has taken
/// [`total_timeout`](Self::total_timeout), or when [`max_bytes`](Self::max_bytes) have been
/// thrown away, whichever comes first.
///
/// | bound | default | anchors |
/// |---|---|---|
/// | `idle_timeout` | 2 s | Apache `ap_lingering_close`: 2 s per read; nginx `lingering_timeout`: 5 s; Go: one blind 500 ms sleep without reading; hyper: none |
/// | `total_timeout` | 30 s | Apache: 30 s; nginx `lingering_time`: 30 s |
/// | `max_bytes` | 64 MiB | nginx and Apache: no byte cap, only time; gunicorn: 64 KiB |
/// | `max_lingering` | 1024 | none of them caps it; a lingering socket holds a file descriptor and kernel buffers, so a flood of stuck peers must not pin them all |
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use linger::LingerConfig;
///
/// let config = LingerConfig::new()
///     .idle_timeout(Duration::from_secs(5))
///     .max_lingering(4096);
/// // Each bound reads back through a `get_` method (the bare names set it).
/// assert_eq!(config.get_idle_timeout(), Duration::from_secs(5));
/// assert_eq!(config.get_total_timeout(), Duration::from_secs(30));
/// assert_eq!(config.get_max_bytes(), 64 * 1024 * 1024);
/// assert_eq!(config.get_max_lingering(), 4096);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LingerConfig {
    pub(crate) idle_timeout: Duration,
    pub(crate) total_timeout: Duration,
    pub(crate) max_bytes: u64,
    pub(crate) max_lingering: usize,
}

impl Default for LingerConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl LingerConfig {
    /// The defaults: 2 s idle, 30 s total, 64 MiB, 1024 connections at once.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            total_timeout: DEFAULT_TOTAL_TIMEOUT,
            max_bytes: DEFAULT_MAX_BYTES,
            max_lingering: DEFAULT_MAX_LINGERING,
        }
    }

    /// Sets how long to wait for the next bytes (or EOF) from the peer while lingering.
    #[must_use]
    pub const fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets the cap on the whole staged close, flush and half-close included.
    ///
    /// It counts from the start of the close: when the IO is dropped, for IO made by
    /// [`LingerGroup::wrap`](crate::LingerGroup::wrap) (hyper's `poll_shutdown` only sends
    /// the FIN; the linger starts at the drop), or at the first `poll_shutdown` for
    /// [`wrap_local`](crate::LingerGroup::wrap_local) IO. It also bounds a graceful
    /// shutdown: see [`get_total_timeout`](Self::get_total_timeout).
    #[must_use]
    pub const fn total_timeout(mut self, timeout: Duration) -> Self {
        self.total_timeout = timeout;
        self
    }

    /// Sets the cap on bytes read and thrown away while lingering.
    #[must_use]
    pub const fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Sets how many connections of one [`LingerGroup`](crate::LingerGroup) may linger at
    /// the same time; beyond it a connection is closed at once (flush and half-close, no
    /// reading) and counted as skipped. Zero disables lingering.
    ///
    /// Each lingering connection holds its socket (and the kernel's buffers for it) and a
    /// few hundred bytes of process memory for its task and timers, for at most
    /// [`total_timeout`](Self::total_timeout); hyper's buffers are freed when the linger
    /// starts. See BENCHMARKS.md for measured figures.
    #[must_use]
    pub const fn max_lingering(mut self, max_lingering: usize) -> Self {
        self.max_lingering = max_lingering;
        self
    }

    /// How long a lingering close waits for the next bytes (or EOF) from the peer; see
    /// [`idle_timeout`](Self::idle_timeout).
    #[must_use]
    pub const fn get_idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// The cap on one whole staged close; see [`total_timeout`](Self::total_timeout).
    ///
    /// [`LingerGroup::wait_idle`](crate::LingerGroup::wait_idle), awaited after a server's
    /// graceful shutdown, ends at most this long after the last IO of the group is
    /// dropped. Bound it with this plus a margin (1 s in the README), not with this
    /// alone: a server may report its connections done a little before it drops their
    /// IO, and even when it does not, two equal deadlines race. See `wait_idle` for the
    /// recipe and the margin.
    #[must_use]
    pub const fn get_total_timeout(&self) -> Duration {
        self.total_timeout
    }

    /// The cap on bytes thrown away by one lingering close; see
    /// [`max_bytes`](Self::max_bytes).
    #[must_use]
    pub const fn get_max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// How many connections of one group may linger at once; see
    /// [`max_lingering`](Self::max_lingering).
    #[must_use]
    pub const fn get_max_lingering(&self) -> usize {
        self.max_lingering
    }
}
