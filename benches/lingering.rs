//! Benchmarks of [`linger::LingeringIo`] (the staged close) on loopback:
//! bullets 4 and 5 of BENCHMARKS.md, which explains goals and method.
//!
//! * `staged_close`: time a server spends closing a connection after its
//!   response to a prompt peer: plain `TcpStream`, `LingeringIo`, and a few
//!   Go-style closes (FIN, then a blind 500 ms sleep). Not pinned.
//! * `many_lingering`: memory per lingering connection on a hyper server
//!   behind a `LingeringListener` (B), and the latency of a keep-alive client
//!   on B against the same client on an idle server A, with and without
//!   `LINGER_BENCH_PEERS` peers (1 000 by default) lingering on B. Client and
//!   servers share one CPU (`LINGER_BENCH_NO_PIN=1` to not pin).
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo bench --bench lingering
//! cargo bench --bench lingering -- staged_close    # one part (substring filter)
//! ulimit -n 25000; LINGER_BENCH_PEERS=10000 cargo bench --bench lingering -- many_lingering
//! LINGER_BENCH_CLOSE=plain cargo bench --bench lingering -- many_lingering  # baseline
//! ```
//!
//! Every peer costs two file descriptors (its socket and the server's): when
//! the soft `RLIMIT_NOFILE` is too low for the requested peers, the number of
//! peers is lowered to fit and the summary says so. `cargo test --benches`
//! runs both parts briefly, as a smoke test.

mod common;

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    fmt_duration, live_bytes, median, percentile, server_live_bytes, Client, Settings, STEP_TIMEOUT,
};
use criterion::Criterion;
use linger::{LingerConfig, LingerGroup, LingeringIo, LingeringListener};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::mpsc;
use tower::ServiceBuilder;

/// Counts live heap bytes, of the process and of the server threads: the
/// memory per lingering connection of bullet 5.
#[global_allocator]
static GLOBAL: common::CountingAlloc<true> = common::CountingAlloc;

/// Resident set size of the process, from `/proc/self/statm` (Linux; 4 KiB
/// pages assumed). `None` elsewhere.
fn rss_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The soft limit on open files, from `/proc/self/limits`.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// `samples` in order, ready for [`percentile`].
fn sorted(mut samples: Vec<Duration>) -> Vec<Duration> {
    samples.sort();
    samples
}

// ---------------------------------------------------------------------------
// Part 4: staged close with a prompt peer

#[derive(Clone, Copy)]
enum CloseKind {
    /// `shutdown()` (FIN) then drop: what hyper does on a plain `TcpStream`.
    Plain,
    /// `LingeringIo::new(tcp)`: flush, FIN, read until the peer's EOF.
    Lingering,
    /// FIN, then a blind 500 ms sleep before dropping (Go's `rstAvoidanceDelay`).
    Sleep500,
}

const CLOSE_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";

/// Writes [`CLOSE_RESPONSE`], then times the close: `shutdown()`, the
/// `pause` if any, and the drop.
async fn respond_and_close<S>(mut stream: S, pause: Option<Duration>) -> Option<Duration>
where
    S: AsyncWrite + Unpin,
{
    stream.write_all(CLOSE_RESPONSE).await.ok()?;
    let start = Instant::now();
    let _ = stream.shutdown().await;
    if let Some(pause) = pause {
        tokio::time::sleep(pause).await;
    }
    drop(stream);
    Some(start.elapsed())
}

/// A client of a close server that reads the response to EOF and closes at
/// once (a prompt peer); collects the server's close times.
struct CloseClient {
    addr: SocketAddr,
    times: mpsc::UnboundedReceiver<Option<Duration>>,
    errors: u64,
}

impl CloseClient {
    /// Starts a server that answers every connection with
    /// [`CLOSE_RESPONSE`], closes it the way `kind` says and reports how long
    /// the close took. Connections are served one at a time, so that nothing
    /// else runs on the server meanwhile.
    fn start(server: &Handle, kind: CloseKind) -> Self {
        let (listener, addr) = common::bind_local();
        let (tx, times) = mpsc::unbounded_channel();
        server.spawn(async move {
            let listener = TcpListener::from_std(listener).expect("tokio listener");
            loop {
                let stream = common::accept(&listener).await;
                let close = async move {
                    match kind {
                        CloseKind::Plain => respond_and_close(stream, None).await,
                        CloseKind::Lingering => {
                            respond_and_close(LingeringIo::new(stream), None).await
                        }
                        CloseKind::Sleep500 => {
                            respond_and_close(stream, Some(Duration::from_millis(500))).await
                        }
                    }
                };
                // Bounded even if the peer never closes (the linger idle timeout
                // is 2 s by default, this is a second fence).
                let elapsed = tokio::time::timeout(STEP_TIMEOUT * 2, close)
                    .await
                    .ok()
                    .flatten();
                if tx.send(elapsed).is_err() {
                    return;
                }
            }
        });
        Self {
            addr,
            times,
            errors: 0,
        }
    }

    /// `n` closes; returns the sum of the server's close times and adds each
    /// of them to `samples`.
    async fn run(&mut self, n: u64, samples: &mut Vec<Duration>) -> Duration {
        let before = samples.len();
        for _ in 0..n {
            let Ok(mut stream) = common::connect(self.addr).await else {
                self.errors += 1;
                continue;
            };
            if common::read_to_eof(&mut stream).await.is_err() {
                self.errors += 1;
            }
            drop(stream);
            match tokio::time::timeout(STEP_TIMEOUT * 3, self.times.recv()).await {
                Ok(Some(Some(elapsed))) => samples.push(elapsed),
                _ => self.errors += 1,
            }
        }
        samples[before..].iter().sum()
    }
}

/// Measures bullet 4; returns its summary.
fn staged_close(criterion: &mut Criterion, settings: &Settings, runtime: &Runtime) -> String {
    let server = common::server_runtime(None);
    let mut clients =
        [CloseKind::Plain, CloseKind::Lingering].map(|kind| CloseClient::start(&server, kind));
    let mut sleeper = CloseClient::start(&server, CloseKind::Sleep500);

    let mut group = criterion.benchmark_group("staged_close");
    for (label, client) in ["plain_tcp", "lingering_io"].into_iter().zip(&mut clients) {
        group.bench_function(label, |b| {
            b.iter_custom(|iters| runtime.block_on(client.run(iters, &mut Vec::new())));
        });
    }
    group.finish();

    // Only a few sleep-style closes: each takes half a second.
    let (rounds, per_round, sleeps) = if settings.full {
        (20, 100, 3)
    } else {
        (2, 3, 1)
    };
    let mut times: [Vec<Duration>; 3] = Default::default();
    let (mut round_ratios, mut round_added) = (Vec::new(), Vec::new());
    runtime.block_on(async {
        for round in 0..rounds {
            let mut round_times: [Vec<Duration>; 2] = Default::default();
            for i in common::abba_order(round) {
                clients[i].run(per_round, &mut round_times[i]).await;
            }
            if round < sleeps {
                sleeper.run(1, &mut times[2]).await;
            }
            let [a, b] = round_times.map(sorted);
            let (ma, mb) = (percentile(&a, 0.5), percentile(&b, 0.5));
            round_ratios.push(mb.as_secs_f64() / ma.as_secs_f64().max(1e-9));
            round_added.push(mb.as_secs_f64() - ma.as_secs_f64());
            times[0].extend(a);
            times[1].extend(b);
        }
    });
    let errors = [&clients[0], &clients[1], &sleeper].map(|client| client.errors);
    let times = times.map(sorted);
    let [plain, lingering, sleep] = &times;
    let added = median(&round_added);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "staged_close ({rounds} interleaved rounds; server time from shutdown() to socket \
         dropped, prompt peer)"
    );
    let labels = ["plain_tcp", "lingering_io", "sleep_500ms"];
    percentiles(&mut out, "close", labels.into_iter().zip(&times));
    let _ = writeln!(
        out,
        "  lingering − plain: {} added (median of per-round median differences; goal < 1 ms: \
         {}); ratio lingering/plain {:.2}×",
        fmt_duration(Duration::from_secs_f64(added.max(0.0))),
        if added < 1e-3 { "met" } else { "NOT met" },
        median(&round_ratios)
    );
    let _ = writeln!(
        out,
        "  p99 added: {}\n  sleep_500ms / lingering_io: {:.0}× (medians)",
        fmt_duration(percentile(lingering, 0.99).saturating_sub(percentile(plain, 0.99))),
        percentile(sleep, 0.5).as_secs_f64() / percentile(lingering, 0.5).as_secs_f64().max(1e-9)
    );
    let _ = writeln!(
        out,
        "  errors (connect, read, missing server time): plain {}, lingering {}, sleep {}",
        errors[0], errors[1], errors[2]
    );
    out
}

// ---------------------------------------------------------------------------
// Part 5: many peers lingering at once

const GET_CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";

/// A hyper server behind a `LingeringListener`; returns its address, its
/// group and a counter of accepted connections.
fn start_lingering_server(
    server: &Handle,
    config: LingerConfig,
) -> (SocketAddr, LingerGroup, Arc<AtomicUsize>) {
    let (listener, addr) = common::bind_local();
    let group = LingerGroup::new(config);
    let accepted = Arc::new(AtomicUsize::new(0));
    let (group2, accepted2) = (group.clone(), Arc::clone(&accepted));
    server.spawn(async move {
        let listener = TcpListener::from_std(listener).expect("tokio listener");
        let listener = LingeringListener::with_group(listener, group2);
        let plain = plain_close();
        loop {
            let Ok((io, _)) = listener.accept().await else {
                common::accept_backoff().await;
                continue;
            };
            let _ = io.get_ref().set_nodelay(true);
            accepted2.fetch_add(1, Ordering::Relaxed);
            let service = ServiceBuilder::new().service_fn(|_request| async {
                Ok::<_, std::convert::Infallible>(common::ok_response())
            });
            if plain {
                tokio::spawn(common::serve_http1(io.into_inner(), service));
            } else {
                tokio::spawn(common::serve_http1(io, service));
            }
        }
    });
    (addr, group, accepted)
}

/// `LINGER_BENCH_CLOSE=plain`: the servers close plainly (no `LingeringIo`), the baseline
/// for the memory a lingering connection adds. Memory is then per plainly closed peer.
fn plain_close() -> bool {
    std::env::var("LINGER_BENCH_CLOSE").is_ok_and(|v| v == "plain")
}

/// `n` keep-alive GETs; the latency of each that succeeds goes to `samples`.
async fn timed_gets(client: &mut Client, n: u64, samples: &mut Vec<Duration>) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        let sent = Instant::now();
        if client.request(common::GET).await {
            samples.push(sent.elapsed());
        }
    }
    start.elapsed()
}

/// Keep-alive GETs to servers A and B, alternating every `per_round`
/// requests in ABBA order; returns the sorted latencies seen on each.
fn alternate(
    runtime: &Runtime,
    clients: &mut [Client; 2],
    rounds: usize,
    per_round: u64,
) -> [Vec<Duration>; 2] {
    let mut samples: [Vec<Duration>; 2] = Default::default();
    runtime.block_on(async {
        for round in 0..rounds {
            for i in common::abba_order(round) {
                timed_gets(&mut clients[i], per_round, &mut samples[i]).await;
            }
        }
    });
    samples.map(sorted)
}

/// Peers that made a `Connection: close` request, read the response to EOF
/// and keep their socket open, silent. Returns them and the failures.
async fn start_lingering_peers(addr: SocketAddr, n: usize) -> (Vec<TcpStream>, u64) {
    let mut peers = Vec::with_capacity(n);
    let mut errors = 0;
    let mut left = n;
    while left > 0 {
        // In batches, so as not to overflow the listen backlog.
        let batch = left.min(256);
        left -= batch;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..batch {
            set.spawn(async move {
                let mut stream = common::connect(addr).await.ok()?;
                common::write_all(&mut stream, GET_CLOSE).await.ok()?;
                common::read_to_eof(&mut stream).await.ok()?;
                Some(stream)
            });
        }
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(Some(stream)) => peers.push(stream),
                _ => errors += 1,
            }
        }
    }
    (peers, errors)
}

/// Waits until `done` holds, for at most `limit`.
async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// Heap and RSS per connection, in bytes.
struct Memory {
    /// Whole process, per lingering connection.
    heap: f64,
    /// Server threads only, per lingering connection.
    server_heap: f64,
    /// Server threads, per connection that is merely open (hyper waiting for
    /// a request).
    open_heap: f64,
    rss: Option<f64>,
}

/// Opens `peers` idle connections to server B and closes them, then makes
/// `peers` connections linger there; returns the lingering peers (to keep
/// them open), the memory they cost and the number of failed peers.
async fn measure_memory(
    addr: SocketAddr,
    group: &LingerGroup,
    accepted: &AtomicUsize,
    peers: usize,
) -> (Vec<TcpStream>, Memory, u64) {
    let heap0 = live_bytes();
    let server0 = server_live_bytes();
    let rss0 = rss_bytes();
    let mut errors = 0;

    let accepted0 = accepted.load(Ordering::SeqCst);
    let mut open = Vec::with_capacity(peers);
    for _ in 0..peers {
        match common::connect(addr).await {
            Ok(stream) => open.push(stream),
            Err(_) => errors += 1,
        }
    }
    let target = accepted0 + open.len();
    wait_until(STEP_TIMEOUT, || accepted.load(Ordering::SeqCst) >= target).await;
    // Let hyper allocate its connection state.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let open_heap = server_live_bytes() - server0;
    let open_heap_per_peer = open_heap as f64 / open.len().max(1) as f64;
    drop(open);
    wait_until(STEP_TIMEOUT, || {
        server_live_bytes() - server0 < open_heap / 8
    })
    .await;

    let before = group.stats().lingering;
    let (lingering, failed) = start_lingering_peers(addr, peers).await;
    errors += failed;
    let want = before + lingering.len();
    if !plain_close() {
        wait_until(STEP_TIMEOUT, || group.stats().lingering >= want).await;
    }
    let n = lingering.len().max(1) as f64;
    let memory = Memory {
        heap: (live_bytes() - heap0) as f64 / n,
        server_heap: (server_live_bytes() - server0) as f64 / n,
        open_heap: open_heap_per_peer,
        rss: rss0
            .zip(rss_bytes())
            .map(|(before, after)| (after - before) as f64 / n),
    };
    (lingering, memory, errors)
}

/// The peers asked for with `LINGER_BENCH_PEERS`, lowered to what the soft
/// `RLIMIT_NOFILE` allows, with a note when it had to be.
fn peer_count(settings: &Settings) -> (usize, Option<String>) {
    let requested: usize = std::env::var("LINGER_BENCH_PEERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if settings.full { 1000 } else { 50 });
    // Two descriptors per peer, plus room for everything else.
    let limit = open_files_limit().unwrap_or(u64::MAX);
    let fit = (limit.saturating_sub(200) / 2)
        .try_into()
        .unwrap_or(usize::MAX);
    let note = (requested > fit).then(|| {
        format!(
            "{requested} peers need {} file descriptors, the soft limit is {limit}: measured \
             with {fit} peers (raise it with `ulimit -n`)",
            2 * requested + 200
        )
    });
    (requested.min(fit), note)
}

/// Measures bullet 5; returns its summary.
fn many_lingering(criterion: &mut Criterion, settings: &Settings, runtime: &Runtime) -> String {
    let (peers, note) = peer_count(settings);
    let config = LingerConfig::new()
        .idle_timeout(Duration::from_secs(60))
        .total_timeout(Duration::from_secs(60))
        .max_lingering(peers + 64);
    // Server A stays idle; server B, on a thread and runtime of its own, gets
    // the lingering peers. The keep-alive client alternates between the two
    // every few requests, so that both see the same machine state.
    let pinned = common::pin_this_thread();
    let server_a = common::server_runtime(pinned.as_deref());
    let server_b = common::server_runtime(pinned.as_deref());
    let (addr_a, _group_a, _) = start_lingering_server(&server_a, config);
    let (addr_b, group, accepted) = start_lingering_server(&server_b, config);
    let mut clients = [addr_a, addr_b].map(|addr| Client::new(addr, None));
    let (rounds, per_round) = if settings.full { (200, 50) } else { (2, 10) };

    // Control: nobody lingers anywhere (after a warm-up).
    alternate(runtime, &mut clients, 2, 100);
    let control = alternate(runtime, &mut clients, rounds, per_round);

    let (lingering_peers, memory, peer_errors) =
        runtime.block_on(measure_memory(addr_b, &group, &accepted, peers));
    let lingering_seen = group.stats().lingering;

    let mut bench = criterion.benchmark_group("many_lingering");
    let labels = [
        "keepalive_get/idle_server".to_owned(),
        format!("keepalive_get/server_with_{peers}_lingering"),
    ];
    for (label, client) in labels.into_iter().zip(&mut clients) {
        bench.bench_function(label, |b| {
            b.iter_custom(|iters| runtime.block_on(timed_gets(client, iters, &mut Vec::new())));
        });
    }
    bench.finish();

    let loaded = alternate(runtime, &mut clients, rounds, per_round);
    let lingering_after = group.stats().lingering;
    runtime.block_on(async {
        drop(lingering_peers);
        wait_until(Duration::from_secs(10), || group.stats().lingering == 0).await;
    });

    let client_errors = clients[0].stats.errors + clients[1].stats.errors;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "many_lingering ({peers} peers lingering at once on server B; keep-alive GETs \
         alternate between idle server A and B every few requests)"
    );
    if let Some(note) = note {
        let _ = writeln!(out, "  NOTE: {note}");
    }
    let _ = match pinned {
        Some(cpu) => writeln!(out, "  client and both servers pinned to CPU {cpu}"),
        None => writeln!(out, "  {}", common::not_pinned_note()),
    };
    let _ = writeln!(
        out,
        "  memory per {} connection: heap {:.0} B (server threads {:.0} B; a merely open \
         hyper connection: {:.0} B), RSS {}",
        if plain_close() {
            "plainly closed (LINGER_BENCH_CLOSE=plain)"
        } else {
            "lingering"
        },
        memory.heap,
        memory.server_heap,
        memory.open_heap,
        memory
            .rss
            .map_or("n/a".to_owned(), |rss| format!("{rss:.0} B")),
    );
    let rows = [
        ("control: server A", &control[0]),
        ("control: server B", &control[1]),
        ("A idle, while B lingers", &loaded[0]),
        ("B, while its peers linger", &loaded[1]),
    ];
    percentiles(&mut out, "keep-alive GET latency", rows);
    let ratio = |[a, b]: &[Vec<Duration>; 2], q: f64| {
        percentile(b, q).as_secs_f64() / percentile(a, q).as_secs_f64().max(1e-9)
    };
    let p99 = ratio(&loaded, 0.99);
    let _ = writeln!(
        out,
        "  B/A while lingering: p50 {:.3}×, p99 {p99:.3}×; control B/A (noise floor): p50 \
         {:.3}×, p99 {:.3}×; goal p99 ≤ 1.1×: {}",
        ratio(&loaded, 0.5),
        ratio(&control, 0.5),
        ratio(&control, 0.99),
        if p99 <= 1.1 { "met" } else { "NOT met" }
    );
    let _ = writeln!(
        out,
        "  lingering gauge: {lingering_seen} after set-up, {lingering_after} after the \
         measurements; peers that failed: {peer_errors}; keep-alive client errors: \
         {client_errors}"
    );
    out
}

/// A table of p50, p90 and p99 of sorted samples, a row per label.
fn percentiles<'a>(
    out: &mut String,
    title: &str,
    rows: impl IntoIterator<Item = (&'a str, &'a Vec<Duration>)>,
) {
    let _ = writeln!(
        out,
        "  {title:<26} {:>10} {:>10} {:>10}  n",
        "p50", "p90", "p99"
    );
    for (label, samples) in rows {
        let [p50, p90, p99] = [0.5, 0.9, 0.99].map(|q| fmt_duration(percentile(samples, q)));
        let n = samples.len();
        let _ = writeln!(out, "  {label:<26} {p50:>10} {p90:>10} {p99:>10}  {n}");
    }
}

fn main() {
    let settings = Settings::from_args();
    let mut criterion = common::criterion();
    let runtime = common::client_runtime();

    let close = settings
        .selected("staged_close")
        .then(|| staged_close(&mut criterion, &settings, &runtime));
    let many = settings
        .selected("many_lingering")
        .then(|| many_lingering(&mut criterion, &settings, &runtime));
    criterion.final_summary();

    println!();
    println!("lingering summary{}", settings.smoke_note());
    print!("{}{}", close.unwrap_or_default(), many.unwrap_or_default());
}
