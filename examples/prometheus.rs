//! Both fixes in an axum app, with their counters served on `/metrics` in the
//! Prometheus text format through `prometheus-client`.
//!
//! [`LingerStats::metrics`](linger::LingerStats::metrics) and
//! [`DrainStats::metrics`](linger::DrainStats::metrics) list every counter and
//! gauge with its Prometheus name, kind and help text, so the collector below
//! stays complete when a later version of `linger` adds one.
//!
//! Run it (the address defaults to `127.0.0.1:3002`; pass another as the first
//! argument or in `LINGER_ADDR`):
//!
//! ```text
//! cargo run --example prometheus --features axum
//! ```
//!
//! Then try, in another terminal:
//!
//! ```text
//! # An ignored 100 KB body (drained, connection reused), and 1 MB rejected
//! # unread (above the 256 KiB limit: `Connection: close`, a staged close).
//! head -c 100000 /dev/zero | curl -s -H 'Expect:' --data-binary @- http://127.0.0.1:3002/ignore
//! head -c 1000000 /dev/zero | curl -s -H 'Expect:' --data-binary @- http://127.0.0.1:3002/ignore
//!
//! curl -s http://127.0.0.1:3002/metrics
//! ```
//!
//! prints, among the rest:
//!
//! ```text
//! # HELP linger_closes_total Connections closed in stages by linger, by how the close ended (peer_eof is the good end)
//! # TYPE linger_closes_total counter
//! linger_closes_total{outcome="peer_eof"} 2
//! linger_closes_total{outcome="idle_timeout"} 0
//! ...
//! linger_drain_bodies_total{outcome="drained"} 1
//! linger_drain_bodies_total{outcome="over_limit"} 1
//! ...
//! linger_drained_bytes_total 100000
//! ```
//!
//! Useful queries: `rate(linger_closes_total{outcome!="peer_eof"}[5m])` (closes
//! that hit a bound or an error), `linger_lingering_connections` against
//! `LingerConfig::get_max_lingering`, and
//! `rate(linger_drain_bodies_total{outcome=~"over_limit|deadline"}[5m])`
//! (connections that had to close because a body could not be drained).

use std::sync::Arc;
use std::time::Duration;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use linger::{DrainBodyLayer, DrainCounters, LingerGroup, LingeringListener, MetricKind};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Reads the listener's [`LingerGroup`] and the layer's [`DrainCounters`] on
/// every scrape.
#[derive(Debug)]
struct LingerCollector {
    group: LingerGroup,
    counters: DrainCounters,
}

impl Collector for LingerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.group.stats();
        let drain = self.counters.snapshot();
        // The metrics of one name come one after another: one descriptor each.
        let mut metrics = stats.metrics().chain(drain.metrics()).peekable();
        while let Some(first) = metrics.next() {
            let kind = match first.kind {
                MetricKind::Counter => MetricType::Counter,
                MetricKind::Gauge => MetricType::Gauge,
            };
            // prometheus-client adds `_total` to counters itself.
            let name = first.name.strip_suffix("_total").unwrap_or(first.name);
            let mut family = encoder.encode_descriptor(name, first.help, None, kind)?;
            let mut next = Some(first);
            while let Some(metric) = next {
                let labels: Vec<(&str, &str)> = metric.label.into_iter().collect();
                let sample = family.encode_family(&labels)?;
                match metric.kind {
                    MetricKind::Counter => ConstCounter::new(metric.value).encode(sample)?,
                    MetricKind::Gauge => ConstGauge::new(metric.value).encode(sample)?,
                }
                next = metrics.next_if(|m| m.name == metric.name);
            }
        }
        Ok(())
    }
}

/// The app: `/ignore` answers without reading the body, `/metrics` serves
/// `registry`.
fn app(counters: DrainCounters, registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/ignore", post(|| async { "body ignored\n" }))
        .route(
            "/metrics",
            get(move || std::future::ready(metrics(&registry))),
        )
        .layer(DrainBodyLayer::new(256 * 1024).counters(counters))
}

fn metrics(registry: &Registry) -> axum::response::Response {
    let mut text = String::new();
    match prometheus_text::encode(&mut text, registry) {
        Ok(()) => ([(CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], text).into_response(),
        Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A registry with the collector of `group` and `counters`; an app registers
/// its own metrics in the same one.
fn registry(group: LingerGroup, counters: DrainCounters) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(LingerCollector { group, counters }));
    registry
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("LINGER_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:3002".to_owned());
    let listener = LingeringListener::new(tokio::net::TcpListener::bind(&addr).await?);
    let group = listener.group().clone();
    let counters = DrainCounters::new();
    let registry = Arc::new(registry(group.clone(), counters.clone()));

    println!("metrics on http://{}/metrics", listener.local_addr()?);
    axum::serve(listener, app(counters, registry))
        .with_graceful_shutdown(async {
            tokio::signal::ctrl_c().await.ok();
        })
        .await?;
    // Bounded: see the README, "Graceful shutdown".
    let _ = tokio::time::timeout(Duration::from_secs(10), group.wait_idle()).await;
    Ok(())
}

/// `cargo test --all-features` runs this (`test = true` in Cargo.toml).
#[cfg(test)]
mod tests {
    use std::future::IntoFuture as _;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::time::timeout;

    use super::*;

    const STEP: Duration = Duration::from_secs(10);

    /// Sends `request` on a new connection and reads until the server closes.
    async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut stream = timeout(STEP, TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap();
        timeout(STEP, stream.write_all(request))
            .await
            .unwrap()
            .unwrap();
        let mut response = Vec::new();
        timeout(STEP, stream.read_to_end(&mut response))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8(response).unwrap()
    }

    /// A real server and raw clients: the collector reports what happened, and
    /// every metric `linger` lists shows up on `/metrics`.
    #[tokio::test]
    async fn metrics_report_a_refused_body_and_its_close() {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = LingeringListener::new(tcp);
        let group = listener.group().clone();
        let counters = DrainCounters::new();
        let registry = Arc::new(registry(group.clone(), counters.clone()));
        tokio::spawn(axum::serve(listener, app(counters.clone(), registry)).into_future());

        // 1 MiB declared, above the 256 KiB limit, and never sent: the layer
        // refuses to drain it and the server closes after the answer.
        let refused = exchange(
            addr,
            b"POST /ignore HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n",
        )
        .await;
        assert!(refused.starts_with("HTTP/1.1 200 OK\r\n"), "{refused}");
        assert!(refused.contains("connection: close\r\n"), "{refused}");
        // The client has closed too (dropped in `exchange`): the server's
        // linger ends at that FIN.
        timeout(STEP, group.wait_idle()).await.unwrap();

        let scrape = exchange(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await;
        let (head, text) = scrape.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains(prometheus_text::CONTENT_TYPE), "{head}");
        let lines: Vec<&str> = text.lines().collect();
        for expected in [
            "# TYPE linger_closes_total counter",
            "linger_closes_total{outcome=\"peer_eof\"} 1",
            "linger_closes_total{outcome=\"aborted\"} 0",
            "# TYPE linger_lingering_connections gauge",
            "linger_lingering_connections 0",
            "linger_drain_bodies_total{outcome=\"over_limit\"} 1",
            "linger_drain_bodies_total{outcome=\"drained\"} 0",
            "linger_drained_bytes_total 0",
            "linger_drains_in_progress 0",
        ] {
            assert!(
                lines.contains(&expected),
                "{expected:?} missing from\n{text}"
            );
        }
        // Every metric of both snapshots, under the name `linger` gives it.
        let every = group.stats().metrics().chain(counters.snapshot().metrics());
        for metric in every {
            let sample = match metric.label {
                Some((key, value)) => format!("{}{{{key}=\"{value}\"}} ", metric.name),
                None => format!("{} ", metric.name),
            };
            assert!(
                lines.iter().any(|line| line.starts_with(&sample)),
                "{sample:?} missing from\n{text}"
            );
        }
    }
}
