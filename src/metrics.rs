//! The values of [`LingerStats`] and [`DrainStats`] as a list that exporters can loop over.
//!
//! Both snapshots are `#[non_exhaustive]`: an exporter that names their fields one by one
//! silently misses the fields a later version adds. [`LingerStats::metrics`] and
//! [`DrainStats::metrics`] list every field (the outcomes come from each half's outcome
//! table, the other fields are listed beside it, and the tests here check that each field
//! shows up once and that the table below says what is emitted), each with a name in
//! Prometheus style, a kind and a help text.

#[cfg(any(test, doc))]
use crate::{DrainStats, LingerStats};

/// One value of a [`LingerStats`] or [`DrainStats`] snapshot, named and typed for a
/// metrics exporter; made by [`LingerStats::metrics`] and [`DrainStats::metrics`].
///
/// Names follow Prometheus conventions: a `linger_` prefix, `_total` at the end of
/// counters, the unit in the name (`_bytes`), and the outcome of a close or of a request
/// body in an `outcome` label rather than in the name, so that a query can sum over it.
/// The metrics of one name come one after another, with the same kind and help text, so
/// that an exporter writes `# HELP` and `# TYPE` once per name.
///
/// | name | kind | label | from |
/// |---|---|---|---|
/// | `linger_closes_total` | counter | `outcome`: `peer_eof`, `idle_timeout`, `total_timeout`, `byte_cap`, `error`, `skipped`, `aborted`, `stalled_write`, `released` | [`LingerStats`] outcome counters |
/// | `linger_discarded_bytes_total` | counter | — | [`LingerStats::bytes_discarded`] |
/// | `linger_lingering_connections` | gauge | — | [`LingerStats::lingering`] |
/// | `linger_lingering_background_connections` | gauge | — | [`LingerStats::background`] |
/// | `linger_open_connections` | gauge | — | [`LingerStats::open`] |
/// | `linger_drain_bodies_total` | counter | `outcome`: `read`, `drained_inline`, `drained`, `over_limit`, `deadline`, `body_error`, `expect_continue`, `no_timers`, `passed_through`, `left_to_linger`, `abandoned` | [`DrainStats`] outcome counters |
/// | `linger_drained_bytes_total` | counter | — | [`DrainStats::bytes_drained`] |
/// | `linger_drains_in_progress` | gauge | — | [`DrainStats::draining`] |
///
/// The label values are the field names, which are also the `outcome` values of the
/// crate's `tracing` events. New fields of later versions come as new metrics or new
/// label values; existing names and labels do not change within a major version.
///
/// # Example
///
/// A whole exporter in the Prometheus text format, without any library (see
/// `examples/prometheus.rs` in the repository for one with `prometheus-client`):
///
/// ```
/// use std::fmt::Write as _;
/// use linger::{DrainCounters, LingerGroup};
///
/// let group = LingerGroup::default();
/// let counters = DrainCounters::new();
/// let mut text = String::new();
/// let mut last = "";
/// for metric in group.stats().metrics().chain(counters.snapshot().metrics()) {
///     if metric.name != last {
///         writeln!(text, "# HELP {} {}", metric.name, metric.help).unwrap();
///         writeln!(text, "# TYPE {} {}", metric.name, metric.kind.as_str()).unwrap();
///         last = metric.name;
///     }
///     match metric.label {
///         Some((key, value)) => writeln!(text, "{}{{{key}=\"{value}\"}} {}", metric.name, metric.value),
///         None => writeln!(text, "{} {}", metric.name, metric.value),
///     }
///     .unwrap();
/// }
/// assert!(text.contains("# TYPE linger_closes_total counter\n"));
/// assert!(text.contains("linger_closes_total{outcome=\"peer_eof\"} 0\n"));
/// assert!(text.contains("linger_drains_in_progress 0\n"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metric {
    /// The name as Prometheus shows it, `_total` included for counters. (OpenMetrics
    /// encoders, such as `prometheus-client`'s, want the name without `_total` and add it.)
    pub name: &'static str,
    /// The label that tells metrics of one name apart, as `(key, value)`, such as
    /// `("outcome", "peer_eof")`; `None` for a name with a single value.
    pub label: Option<(&'static str, &'static str)>,
    /// Counter (only goes up, from 0 when the group or counters were made) or gauge.
    pub kind: MetricKind,
    /// One line saying what the name counts, the same for every label value, without a
    /// final full stop (some encoders add one).
    pub help: &'static str,
    /// The value in the snapshot.
    pub value: u64,
}

/// Whether a [`Metric`] only goes up or goes up and down.
///
/// A snapshot holds plain numbers, so these two are all there can be (no histograms).
///
/// # Example
///
/// An exporter picks a counter or a gauge type of its library by it:
///
/// ```
/// use linger::{LingerGroup, MetricKind};
///
/// for metric in LingerGroup::default().stats().metrics() {
///     match metric.kind {
///         // e.g. prometheus-client's `Counter`: only ever incremented by the difference.
///         MetricKind::Counter => assert!(metric.name.ends_with("_total")),
///         // e.g. its `Gauge`: set to the value.
///         MetricKind::Gauge => assert!(!metric.name.ends_with("_total")),
///     }
/// }
/// assert_eq!(MetricKind::Gauge.as_str(), "gauge");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Only goes up: a total since the [`LingerGroup`](crate::LingerGroup) or
    /// [`DrainCounters`](crate::DrainCounters) was made. Use `rate()` on it.
    Counter,
    /// A value now, which goes up and down.
    Gauge,
}

impl MetricKind {
    /// The Prometheus `# TYPE` name: `counter` or `gauge`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
        }
    }
}

impl Metric {
    pub(crate) const fn counter(name: &'static str, help: &'static str, value: u64) -> Self {
        Self {
            name,
            label: None,
            kind: MetricKind::Counter,
            help,
            value,
        }
    }

    pub(crate) const fn gauge(name: &'static str, help: &'static str, value: usize) -> Self {
        Self {
            name,
            label: None,
            kind: MetricKind::Gauge,
            help,
            value: value as u64,
        }
    }

    /// A counter of the `outcome` label.
    pub(crate) const fn outcome(
        name: &'static str,
        help: &'static str,
        outcome: &'static str,
        value: u64,
    ) -> Self {
        Self {
            name,
            label: Some(("outcome", outcome)),
            kind: MetricKind::Counter,
            help,
            value,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Distinct values per field: each field must show up as exactly one metric.
    fn linger_stats() -> LingerStats {
        LingerStats {
            peer_eof: 1,
            idle_timeout: 2,
            total_timeout: 3,
            byte_cap: 4,
            error: 5,
            skipped: 6,
            aborted: 7,
            released: 11,
            stalled_write: 12,
            open: 13,
            lingering: 8,
            background: 9,
            bytes_discarded: 10,
        }
    }

    fn drain_stats() -> DrainStats {
        DrainStats {
            read: 1,
            drained_inline: 2,
            drained: 3,
            over_limit: 4,
            deadline: 5,
            body_error: 6,
            expect_continue: 7,
            no_timers: 8,
            passed_through: 9,
            left_to_linger: 13,
            abandoned: 10,
            draining: 11,
            bytes_drained: 12,
        }
    }

    /// Checks what every exporter relies on; `fields` is the number of fields.
    fn check(metrics: &[Metric], fields: u64) {
        // One metric per field, each field's value once.
        let mut values: Vec<u64> = metrics.iter().map(|m| m.value).collect();
        values.sort_unstable();
        assert_eq!(values, (1..=fields).collect::<Vec<_>>());
        // Every (name, label) once; a name's metrics adjacent, with one kind and help.
        let mut seen = HashSet::new();
        let mut finished = HashSet::new();
        let mut previous: Option<&Metric> = None;
        for metric in metrics {
            assert!(seen.insert((metric.name, metric.label)), "{metric:?} twice");
            if let Some(previous) = previous.filter(|p| p.name == metric.name) {
                assert_eq!((previous.kind, previous.help), (metric.kind, metric.help));
                assert!(metric.label.is_some(), "{} needs a label", metric.name);
            } else {
                assert!(finished.insert(metric.name), "{} not adjacent", metric.name);
            }
            previous = Some(metric);
            // Prometheus conventions.
            assert!(metric.name.starts_with("linger_"));
            assert_eq!(
                metric.name.ends_with("_total"),
                metric.kind == MetricKind::Counter,
                "{}",
                metric.name
            );
            assert!(metric
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!(!metric.help.is_empty() && !metric.help.contains('\n'));
            // prometheus-client adds the full stop itself.
            assert!(!metric.help.ends_with('.'), "{}", metric.help);
        }
    }

    #[test]
    fn linger_metrics_list_every_field_once() {
        let stats = linger_stats();
        let metrics: Vec<Metric> = stats.metrics().collect();
        check(&metrics, 13);
        let closes: u64 = metrics
            .iter()
            .filter(|m| m.name == "linger_closes_total")
            .map(|m| m.value)
            .sum();
        assert_eq!(closes, stats.closes());
    }

    #[test]
    fn drain_metrics_list_every_field_once() {
        let stats = drain_stats();
        let metrics: Vec<Metric> = stats.metrics().collect();
        check(&metrics, 13);
        let settled: u64 = metrics
            .iter()
            .filter(|m| m.name == "linger_drain_bodies_total")
            .map(|m| m.value)
            .sum();
        assert_eq!(settled, stats.settled());
    }

    #[test]
    fn outcome_labels_are_the_field_names() {
        let stats = linger_stats();
        let by_label = |label: &str| {
            stats
                .metrics()
                .find(|m| m.label == Some(("outcome", label)))
                .map(|m| m.value)
        };
        assert_eq!(by_label("peer_eof"), Some(stats.peer_eof));
        assert_eq!(by_label("aborted"), Some(stats.aborted));
        let stats = drain_stats();
        let by_label = |label: &str| {
            stats
                .metrics()
                .find(|m| m.label == Some(("outcome", label)))
                .map(|m| m.value)
        };
        assert_eq!(by_label("drained_inline"), Some(stats.drained_inline));
        assert_eq!(by_label("abandoned"), Some(stats.abandoned));
    }

    /// The table in [`Metric`]'s docs names every metric, kind and label value that is
    /// emitted, and nothing else.
    #[test]
    fn the_documented_table_is_what_is_emitted() {
        let source = include_str!("metrics.rs");
        let mut documented: Vec<(String, String, Vec<String>)> = Vec::new();
        for row in source
            .lines()
            .filter_map(|l| l.strip_prefix("/// | `linger_"))
        {
            let cells: Vec<&str> = row.split(" | ").collect();
            let name = format!("linger_{}", cells[0].trim_end_matches('`'));
            let labels = cells[2]
                .split_once(": ")
                .map(|(_, values)| {
                    values
                        .split(", ")
                        .map(|v| v.trim_matches('`').to_owned())
                        .collect()
                })
                .unwrap_or_default();
            documented.push((name, cells[1].to_owned(), labels));
        }
        let mut emitted: Vec<(String, String, Vec<String>)> = Vec::new();
        let all = LingerStats::default()
            .metrics()
            .chain(DrainStats::default().metrics());
        for metric in all {
            match emitted.last_mut() {
                Some((name, _, labels)) if name == metric.name => {
                    labels.push(metric.label.unwrap().1.to_owned());
                }
                _ => emitted.push((
                    metric.name.to_owned(),
                    metric.kind.as_str().to_owned(),
                    metric
                        .label
                        .map(|(_, v)| v.to_owned())
                        .into_iter()
                        .collect(),
                )),
            }
        }
        assert_eq!(documented, emitted);
    }

    #[test]
    fn names_do_not_collide_between_the_two() {
        let linger: HashSet<_> = linger_stats().metrics().map(|m| m.name).collect();
        let drain: HashSet<_> = drain_stats().metrics().map(|m| m.name).collect();
        assert!(linger.is_disjoint(&drain));
    }
}
