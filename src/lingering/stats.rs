//! How a close can end: the outcome table of the lingering half, its snapshot and metrics.

use crate::metrics::Metric;
use crate::outcome_table::outcome_table;

outcome_table! {
    /// How a close ended.
    enum Outcome;
    /// The outcome counters of one group.
    struct OutcomeCounters;
    /// A snapshot of the counters of a [`LingerGroup`](crate::LingerGroup).
    ///
    /// The outcome counters (`peer_eof` to `released`) count closes since the group was
    /// made: every [`LingeringIo`](crate::LingeringIo) of the group that is dropped (or
    /// whose `poll_shutdown` finished) adds one to exactly one of them, so they add up to
    /// [`closes`](Self::closes). `open`, `lingering` and `background` are gauges.
    ///
    /// # Example
    ///
    /// ```
    /// use linger::{LingerGroup, LingerStats};
    ///
    /// let group = LingerGroup::default();
    /// let stats: LingerStats = group.stats();
    /// // Nothing closed yet; a share of `peer_eof` near 1 is the healthy sign later on.
    /// assert_eq!(stats.closes(), 0);
    /// assert_eq!((stats.peer_eof, stats.lingering), (0, 0));
    /// ```
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    #[non_exhaustive]
    pub struct LingerStats {
        outcomes {
            /// Closes that ended at the peer's EOF, the good outcome.
            PeerEof => peer_eof,
            /// Closes that ended because the peer stayed silent for the idle timeout.
            IdleTimeout => idle_timeout,
            /// Closes that ended at the total time cap.
            TotalTimeout => total_timeout,
            /// Closes that ended at the byte cap.
            ByteCap => byte_cap,
            /// Closes that ended on an I/O error (usually a reset by the peer).
            Error => error,
            /// Connections closed at once, without lingering, because the group's
            /// [`max_lingering`](crate::LingerConfig::max_lingering) was reached, or because
            /// there was no tokio runtime with timers to linger on.
            Skipped => skipped,
            /// Closes cut short before they ended on their own: the runtime shut down under
            /// a background close, [`into_inner`](crate::LingeringIo::into_inner) took the IO
            /// back in the middle of a close, or an IO without the drop path was dropped
            /// while closing.
            Aborted => aborted,
            /// Connections ended because the client neither read the response nor
            /// stopped sending: its input was thrown away up to the byte cap or the total
            /// timeout while the response was written, and the write still could not go
            /// on at the total timeout.
            StalledWrite => stalled_write,
            /// IO taken back with [`into_inner`](crate::LingeringIo::into_inner) before its
            /// close started (or after `poll_shutdown` returned): the caller closes it.
            Released => released,
        }
        /// IOs of the group alive now: every [`LingeringIo`](crate::LingeringIo) made
        /// from it ([`wrap`](crate::LingerGroup::wrap),
        /// [`wrap_local`](crate::LingerGroup::wrap_local), a
        /// [`LingeringListener`](crate::LingeringListener)) and not yet dropped or taken
        /// apart with [`into_inner`](crate::LingeringIo::into_inner). Connections being
        /// served, and those a server has reported finished but not dropped yet; a dropped
        /// IO that goes on lingering counts in `lingering` instead.
        pub open: usize,
        /// Connections lingering now, on either path.
        pub lingering: usize,
        /// Of those, the ones lingering in a background task after being dropped (all of
        /// them but the closes of [`wrap_local`](crate::LingerGroup::wrap_local) IO, and
        /// those whose IO has not been dropped yet after `poll_shutdown`).
        pub background: usize,
        /// Bytes read and thrown away while lingering.
        pub bytes_discarded: u64,
    }
}

/// The name of the closes metric, one per outcome label.
const CLOSES: &str = "linger_closes_total";

impl LingerStats {
    /// All closes counted so far: the sum of the outcome counters.
    pub fn closes(&self) -> u64 {
        self.sum_of_outcomes()
    }

    /// Every value of the snapshot as a [`Metric`](crate::Metric), named for Prometheus:
    /// `linger_closes_total{outcome="..."}`, `linger_discarded_bytes_total`,
    /// `linger_lingering_connections`, `linger_lingering_background_connections` and
    /// `linger_open_connections`.
    ///
    /// Fields added in later versions show up here too, so an exporter that loops over
    /// this never misses one. See [`Metric`](crate::Metric) for an exporter.
    ///
    /// # Example
    ///
    /// ```
    /// let stats = linger::LingerGroup::default().stats();
    /// let peer_eof = stats
    ///     .metrics()
    ///     .find(|m| m.label == Some(("outcome", "peer_eof")))
    ///     .expect("one metric per outcome");
    /// assert_eq!((peer_eof.name, peer_eof.value), ("linger_closes_total", 0));
    /// ```
    pub fn metrics(&self) -> impl Iterator<Item = Metric> {
        let help =
            "Connections closed in stages by linger, by how the close ended (peer_eof is the good end)";
        // The outcomes come from the table; every other field is listed here (the metrics
        // tests count one metric per field).
        let Self {
            open,
            lingering,
            background,
            bytes_discarded,
            ..
        } = *self;
        let stats = *self;
        Outcome::ALL
            .iter()
            .map(move |&outcome| Metric::outcome(CLOSES, help, outcome.as_str(), stats.get(outcome)))
            .chain([
                Metric::counter(
                    "linger_discarded_bytes_total",
                    "Bytes read from clients and thrown away by lingering closes",
                    bytes_discarded,
                ),
                Metric::gauge(
                    "linger_lingering_connections",
                    "Connections lingering now: closed by the server, reading until the client's FIN",
                    lingering,
                ),
                Metric::gauge(
                    "linger_lingering_background_connections",
                    "Of the lingering connections, those lingering in a background task",
                    background,
                ),
                Metric::gauge(
                    "linger_open_connections",
                    "Connections wrapped by linger and not yet dropped by the server; lingering ones count apart",
                    open,
                ),
            ])
    }
}
