//! Benchmarks of [`linger::LingeringIo`] (the staged close) on loopback.
//!
//! * `staged_close`: a server writes a short response on a fresh connection
//!   and closes it; the client reads to EOF, then closes its side at once (a
//!   prompt peer). Measured on the server, from the start of `shutdown()`
//!   until it has returned and the socket is dropped: `LingeringIo::new(tcp)`
//!   (flush, FIN, read until the peer's EOF) against a plain `TcpStream`
//!   (`shutdown` then drop), and against a Go-style close (FIN, then a blind
//!   500 ms sleep, `rstAvoidanceDelay`), of which only a few are timed. Goal:
//!   less than 1 ms added over the plain close.
//! * `many_lingering`: two hyper 1 HTTP/1 servers behind `LingeringListener`s,
//!   A and B, each on a thread and current-thread runtime of its own.
//!   `LINGER_BENCH_PEERS` peers (1 000 by default) send `Connection: close`
//!   requests to B, read the response to EOF and then stay silent with the
//!   socket open, so that every one of them lingers on B. Measured: heap and
//!   RSS per lingering connection (against a merely open connection), and the
//!   latency of an unrelated keep-alive client on B while they linger,
//!   against the same client on the idle server A, alternating between A and
//!   B every 50 requests (p50/p99; goal: p99 ≤ 1.1× idle). A control pass
//!   with nobody lingering gives the noise floor of that comparison. The
//!   client and both servers are pinned to one CPU with `taskset -p` when it
//!   is available (set `LINGER_BENCH_NO_PIN=1` not to): on a VM, a wake-up
//!   across vCPUs costs tens of microseconds and would otherwise decide the
//!   latencies on its own.
//!
//! Servers run on dedicated threads (current-thread tokio runtimes), the
//! clients on the main thread, all on 127.0.0.1. Because the
//! machine may be shared, the final summary table comes from a separate pass
//! that interleaves baseline and variant (ABBA rounds); criterion's own report
//! shows each variant measured on its own.
//!
//! Run it with
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo bench --bench lingering
//! cargo bench --bench lingering -- staged_close    # one part (substring filter)
//! ulimit -n 25000; LINGER_BENCH_PEERS=10000 cargo bench --bench lingering -- many_lingering
//! ```
//!
//! Every peer costs two file descriptors (its socket and the server's): when
//! the soft `RLIMIT_NOFILE` is too low for the requested peers, the number of
//! peers is lowered to fit and the summary says so. `cargo test --benches`
//! runs both parts briefly, as a smoke test. The default run takes about a
//! minute.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::Criterion;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use linger::{LingerConfig, LingerGroup, LingeringIo, LingeringListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tower::ServiceBuilder;

// ---------------------------------------------------------------------------
// Counting allocator: live heap bytes, for the whole process and for the
// server thread alone.

struct CountingAlloc;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static SERVER_LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static ALLOC_CALLS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static ON_SERVER_THREAD: Cell<bool> = const { Cell::new(false) };
}

fn on_server_thread() -> bool {
    ON_SERVER_THREAD.try_with(Cell::get).unwrap_or(false)
}

fn account(delta: i64) {
    LIVE_BYTES.fetch_add(delta, Ordering::Relaxed);
    if on_server_thread() {
        SERVER_LIVE_BYTES.fetch_add(delta, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the counters have no effect on the memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOC_CALLS.fetch_add(1, Ordering::Relaxed);
        account(layout.size() as i64);
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOC_CALLS.fetch_add(1, Ordering::Relaxed);
        account(layout.size() as i64);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOC_CALLS.fetch_add(1, Ordering::Relaxed);
        account(new_size as i64 - layout.size() as i64);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        account(-(layout.size() as i64));
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

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

// ---------------------------------------------------------------------------
// Shared plumbing

/// Every client step (connect, write, each read) must finish within this.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// A current-thread tokio runtime on its own thread: the server side.
///
/// With `pin`, the thread first pins itself to that CPU (see [`pin_thread`]).
fn server_runtime(pin: Option<String>) -> tokio::runtime::Handle {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("server runtime");
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("bench-server".into())
        .spawn(move || {
            ON_SERVER_THREAD.with(|flag| flag.set(true));
            if let Some(cpu) = pin {
                pin_thread(&cpu);
            }
            runtime.block_on(std::future::pending::<()>())
        })
        .expect("server thread");
    handle
}

/// The first CPU this process may run on, from `/proc/self/status`, when it
/// may run on more than one.
fn cpu_to_pin() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
        .trim();
    if !list.contains([',', '-']) {
        return None;
    }
    let first = list.split([',', '-']).next()?;
    Some(first.to_owned())
}

/// Pins the calling thread to `cpu` with `taskset -p` (util-linux), which
/// needs no unsafe code here. Returns whether it worked.
///
/// Why: on a virtual machine a wake-up sent to another, idle vCPU costs tens
/// of microseconds, while a wake-up on the same CPU costs a few. A keep-alive
/// round trip between two threads is then 7 µs or 70 µs depending only on
/// where the scheduler happened to put them, which swamps the effect under
/// test; pinning client and servers to one CPU removes that.
fn pin_thread(cpu: &str) -> bool {
    let Ok(link) = std::fs::read_link("/proc/thread-self") else {
        return false;
    };
    let Some(tid) = link.file_name().and_then(|t| t.to_str()) else {
        return false;
    };
    std::process::Command::new("taskset")
        .args(["-p", "-c", cpu, tid])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn bind_local() -> (std::net::TcpListener, SocketAddr) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let addr = listener.local_addr().expect("local address");
    (listener, addr)
}

async fn connect(addr: SocketAddr) -> Option<TcpStream> {
    let stream = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let _ = stream.set_nodelay(true);
    Some(stream)
}

/// Reads until EOF; `false` on error or timeout.
async fn read_to_eof(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(STEP_TIMEOUT, stream.read(&mut buf)).await {
            Ok(Ok(0)) => return true,
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return false,
        }
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn fmt_duration(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros >= 1000.0 {
        format!("{:.2} ms", micros / 1000.0)
    } else {
        format!("{micros:.1} µs")
    }
}

struct Settings {
    /// `cargo bench`; otherwise a short smoke run (`cargo test --benches`).
    full: bool,
    filter: Option<String>,
}

impl Settings {
    fn from_args() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let has = |flag: &str| args.iter().any(|a| a == flag);
        let full = has("--bench") && !has("--test") && !has("--list");
        const WITH_VALUE: &[&str] = &[
            "--save-baseline",
            "--baseline",
            "--baseline-lenient",
            "--load-baseline",
            "--sample-size",
            "--warm-up-time",
            "--measurement-time",
            "--nresamples",
            "--noise-threshold",
            "--confidence-level",
            "--significance-level",
            "--profile-time",
            "--output-format",
            "--format",
            "--color",
            "-c",
            "--plotting-backend",
        ];
        let mut filter = None;
        let mut skip_next = false;
        for arg in &args {
            if skip_next {
                skip_next = false;
            } else if WITH_VALUE.contains(&arg.as_str()) {
                skip_next = true;
            } else if !arg.starts_with('-') {
                filter = Some(arg.clone());
            }
        }
        Self { full, filter }
    }

    fn selected(&self, name: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| name.contains(f))
    }
}

// ---------------------------------------------------------------------------
// Part 4: staged close with a prompt peer

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// A server that, for every connection, writes [`CLOSE_RESPONSE`], closes
/// the way `kind` says and reports how long the close took.
fn start_close_server(
    server: &tokio::runtime::Handle,
    kind: CloseKind,
) -> (SocketAddr, mpsc::UnboundedReceiver<Option<Duration>>) {
    let (listener, addr) = bind_local();
    let (tx, rx) = mpsc::unbounded_channel();
    server.spawn(async move {
        let listener = TcpListener::from_std(listener).expect("tokio listener");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let close = async move {
                match kind {
                    CloseKind::Plain => {
                        let mut stream = stream;
                        stream.write_all(CLOSE_RESPONSE).await.ok()?;
                        let start = Instant::now();
                        let _ = stream.shutdown().await;
                        drop(stream);
                        Some(start.elapsed())
                    }
                    CloseKind::Lingering => {
                        let mut stream = LingeringIo::new(stream);
                        stream.write_all(CLOSE_RESPONSE).await.ok()?;
                        let start = Instant::now();
                        let _ = stream.shutdown().await;
                        drop(stream);
                        Some(start.elapsed())
                    }
                    CloseKind::Sleep500 => {
                        let mut stream = stream;
                        stream.write_all(CLOSE_RESPONSE).await.ok()?;
                        let start = Instant::now();
                        let _ = stream.shutdown().await;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        drop(stream);
                        Some(start.elapsed())
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
    (addr, rx)
}

/// One connection to a close server: the client reads the response to EOF
/// and closes at once. Returns the server's close time.
struct CloseClient {
    addr: SocketAddr,
    times: mpsc::UnboundedReceiver<Option<Duration>>,
    errors: u64,
}

impl CloseClient {
    async fn close_once(&mut self) -> Option<Duration> {
        let Some(mut stream) = connect(self.addr).await else {
            self.errors += 1;
            return None;
        };
        if !read_to_eof(&mut stream).await {
            self.errors += 1;
        }
        drop(stream);
        match tokio::time::timeout(STEP_TIMEOUT * 3, self.times.recv()).await {
            Ok(Some(Some(elapsed))) => Some(elapsed),
            _ => {
                self.errors += 1;
                None
            }
        }
    }

    /// `n` closes; the sum of the server's close times, and each of them.
    async fn run(&mut self, n: u64, samples: &mut Vec<Duration>) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..n {
            if let Some(elapsed) = self.close_once().await {
                total += elapsed;
                samples.push(elapsed);
            }
        }
        total
    }
}

struct CloseResults {
    plain: Vec<Duration>,
    lingering: Vec<Duration>,
    sleep: Vec<Duration>,
    /// Per-round ratio of median close times, lingering / plain.
    round_ratios: Vec<f64>,
    /// Per-round difference of median close times, lingering − plain.
    round_added: Vec<f64>,
    errors: [u64; 3],
}

fn staged_close(
    criterion: &mut Criterion,
    settings: &Settings,
    runtime: &Runtime,
    server: &tokio::runtime::Handle,
) -> CloseResults {
    let clients: Vec<RefCell<CloseClient>> = [CloseKind::Plain, CloseKind::Lingering]
        .into_iter()
        .map(|kind| {
            let (addr, times) = start_close_server(server, kind);
            RefCell::new(CloseClient {
                addr,
                times,
                errors: 0,
            })
        })
        .collect();
    let (sleep_addr, sleep_times) = start_close_server(server, CloseKind::Sleep500);
    let mut sleeper = CloseClient {
        addr: sleep_addr,
        times: sleep_times,
        errors: 0,
    };

    {
        let mut group = criterion.benchmark_group("staged_close");
        for (label, client) in ["plain_tcp", "lingering_io"].into_iter().zip(&clients) {
            group.bench_function(label, |b| {
                b.iter_custom(|iters| {
                    let mut scratch = Vec::new();
                    runtime.block_on(client.borrow_mut().run(iters, &mut scratch))
                });
            });
        }
        group.finish();
    }

    let (rounds, per_round, sleeps) = if settings.full {
        (20, 100, 3)
    } else {
        (2, 3, 1)
    };
    let mut results = CloseResults {
        plain: Vec::new(),
        lingering: Vec::new(),
        sleep: Vec::new(),
        round_ratios: Vec::new(),
        round_added: Vec::new(),
        errors: [0; 3],
    };
    let mut plain = clients[0].borrow_mut();
    let mut lingering = clients[1].borrow_mut();
    runtime.block_on(async {
        for round in 0..rounds {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            if round % 2 == 0 {
                plain.run(per_round, &mut a).await;
                lingering.run(per_round, &mut b).await;
            } else {
                lingering.run(per_round, &mut b).await;
                plain.run(per_round, &mut a).await;
            }
            if round < sleeps {
                sleeper.run(1, &mut results.sleep).await;
            }
            a.sort();
            b.sort();
            let (ma, mb) = (percentile(&a, 0.5), percentile(&b, 0.5));
            results
                .round_ratios
                .push(mb.as_secs_f64() / ma.as_secs_f64().max(1e-9));
            results
                .round_added
                .push(mb.as_secs_f64() - ma.as_secs_f64());
            results.plain.extend(a);
            results.lingering.extend(b);
        }
    });
    results.plain.sort();
    results.lingering.sort();
    results.sleep.sort();
    results.errors = [plain.errors, lingering.errors, sleeper.errors];
    results
}

// ---------------------------------------------------------------------------
// Part 5: many peers lingering at once

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
const GET_CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";

async fn hello(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

/// A hyper server behind a `LingeringListener`; returns its address, its
/// group and a counter of accepted connections.
fn start_lingering_server(
    server: &tokio::runtime::Handle,
    config: LingerConfig,
) -> (SocketAddr, LingerGroup, Arc<AtomicUsize>) {
    let (listener, addr) = bind_local();
    let group = LingerGroup::new(config);
    let accepted = Arc::new(AtomicUsize::new(0));
    let (group2, accepted2) = (group.clone(), Arc::clone(&accepted));
    server.spawn(async move {
        let listener = TcpListener::from_std(listener).expect("tokio listener");
        let listener = LingeringListener::with_group(listener, group2);
        loop {
            let Ok((io, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = io.get_ref().set_nodelay(true);
            accepted2.fetch_add(1, Ordering::Relaxed);
            let service = ServiceBuilder::new().service_fn(hello);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
                    .await;
            });
        }
    });
    (addr, group, accepted)
}

/// Keep-alive client measuring the latency of each GET.
struct LatencyClient {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    errors: u64,
}

impl LatencyClient {
    async fn get(&mut self) -> Option<Duration> {
        let start = Instant::now();
        if self.stream.is_none() {
            self.stream = connect(self.addr).await;
        }
        let stream = self.stream.as_mut()?;
        let ok = async {
            tokio::time::timeout(STEP_TIMEOUT, stream.write_all(GET))
                .await
                .ok()?
                .ok()?;
            self.buf.clear();
            let mut chunk = [0u8; 1024];
            loop {
                let n = tokio::time::timeout(STEP_TIMEOUT, stream.read(&mut chunk))
                    .await
                    .ok()?
                    .ok()?;
                if n == 0 {
                    return None;
                }
                self.buf.extend_from_slice(&chunk[..n]);
                // The response is small and fixed: head, then "ok".
                if self.buf.ends_with(b"\r\n\r\nok") {
                    return Some(());
                }
            }
        }
        .await;
        if ok.is_none() {
            self.errors += 1;
            self.stream = None;
            return None;
        }
        Some(start.elapsed())
    }

    async fn run(&mut self, n: usize, samples: &mut Vec<Duration>) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            if let Some(latency) = self.get().await {
                samples.push(latency);
            }
        }
        start.elapsed()
    }
}

/// Peers that made a `Connection: close` request, read the response to EOF
/// and keep their socket open, silent.
async fn start_lingering_peers(addr: SocketAddr, n: usize) -> (Vec<TcpStream>, u64) {
    let mut peers = Vec::with_capacity(n);
    let mut errors = 0;
    let mut left = n;
    while left > 0 {
        let batch = left.min(256);
        left -= batch;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..batch {
            set.spawn(async move {
                let mut stream = connect(addr).await?;
                tokio::time::timeout(STEP_TIMEOUT, stream.write_all(GET_CLOSE))
                    .await
                    .ok()?
                    .ok()?;
                read_to_eof(&mut stream).await.then_some(stream)
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

struct ManyResults {
    requested_peers: usize,
    peers: usize,
    note: Option<String>,
    /// Control pass, nobody lingering: latencies on server A and server B.
    control: [Vec<Duration>; 2],
    /// Peers lingering on server B: latencies on A (idle) and B (loaded).
    loaded: [Vec<Duration>; 2],
    /// Live heap bytes per lingering connection, whole process and server threads.
    heap_per_peer: f64,
    server_heap_per_peer: f64,
    /// The same for a connection that is merely open (hyper waiting for a request).
    open_heap_per_peer: f64,
    rss_per_peer: Option<f64>,
    lingering_seen: usize,
    lingering_after: usize,
    peer_errors: u64,
    client_errors: u64,
    /// The CPU client and servers were pinned to, if they were.
    pinned: Option<String>,
}

/// Keep-alive GETs to servers A and B, alternating every `per_round`
/// requests in ABBA order; returns the latencies seen on each.
fn alternate(
    runtime: &Runtime,
    clients: &mut [LatencyClient; 2],
    rounds: usize,
    per_round: usize,
) -> [Vec<Duration>; 2] {
    let mut samples = [Vec::new(), Vec::new()];
    runtime.block_on(async {
        for round in 0..rounds {
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                clients[i].run(per_round, &mut samples[i]).await;
            }
        }
    });
    for s in &mut samples {
        s.sort();
    }
    samples
}

fn many_lingering(
    criterion: &mut Criterion,
    settings: &Settings,
    runtime: &Runtime,
) -> ManyResults {
    let requested_peers: usize = std::env::var("LINGER_BENCH_PEERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if settings.full { 1000 } else { 50 });
    let mut peers = requested_peers;
    let mut note = None;
    if let Some(limit) = open_files_limit() {
        // Two descriptors per peer, plus room for everything else.
        let fit = (limit.saturating_sub(200) / 2) as usize;
        if peers > fit {
            note = Some(format!(
                "{requested_peers} peers need {} file descriptors, the soft limit is {limit}: \
                 measured with {fit} peers (raise it with `ulimit -n`)",
                2 * requested_peers + 200
            ));
            peers = fit;
        }
    }
    let config = LingerConfig::new()
        .idle_timeout(Duration::from_secs(60))
        .total_timeout(Duration::from_secs(60))
        .max_lingering(peers + 64);
    // Server A stays idle; server B, on a thread and runtime of its own, gets
    // the lingering peers. The keep-alive client alternates between the two
    // every few requests, so that both see the same machine state.
    //
    // Client and servers are pinned to one CPU (see `pin_thread`) unless
    // LINGER_BENCH_NO_PIN is set.
    let pin = if std::env::var_os("LINGER_BENCH_NO_PIN").is_some() {
        None
    } else {
        cpu_to_pin()
    };
    let pinned = pin.as_deref().is_some_and(pin_thread);
    let pin = pin.filter(|_| pinned);
    let server_a = server_runtime(pin.clone());
    let server_b = server_runtime(pin.clone());
    let (addr_a, _group_a, _) = start_lingering_server(&server_a, config);
    let (addr_b, group, accepted) = start_lingering_server(&server_b, config);
    let new_client = |addr| LatencyClient {
        addr,
        stream: None,
        buf: Vec::with_capacity(1024),
        errors: 0,
    };
    let mut clients = [new_client(addr_a), new_client(addr_b)];
    let (rounds, per_round) = if settings.full { (200, 50) } else { (2, 10) };

    // Control: nobody lingers anywhere.
    alternate(runtime, &mut clients, 2, 100);
    let control = alternate(runtime, &mut clients, rounds, per_round);

    // Memory: first the same number of merely open connections, then the
    // lingering ones.
    let mut peer_errors = 0;
    let (lingering_peers, open_heap_per_peer, heap_per_peer, server_heap_per_peer, rss_per_peer) =
        runtime.block_on(async {
            let heap0 = LIVE_BYTES.load(Ordering::SeqCst);
            let server0 = SERVER_LIVE_BYTES.load(Ordering::SeqCst);
            let rss0 = rss_bytes();
            let accepted0 = accepted.load(Ordering::SeqCst);
            let mut open = Vec::with_capacity(peers);
            for _ in 0..peers {
                match connect(addr_b).await {
                    Some(stream) => open.push(stream),
                    None => peer_errors += 1,
                }
            }
            let target = accepted0 + open.len();
            wait_until(STEP_TIMEOUT, || accepted.load(Ordering::SeqCst) >= target).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let open_heap = SERVER_LIVE_BYTES.load(Ordering::SeqCst) - server0;
            let open_per_peer = open_heap as f64 / open.len().max(1) as f64;
            drop(open);
            wait_until(STEP_TIMEOUT, || {
                SERVER_LIVE_BYTES.load(Ordering::SeqCst) - server0 < open_heap / 8
            })
            .await;

            let before = group.stats().lingering;
            let (lingering_peers, errors) = start_lingering_peers(addr_b, peers).await;
            peer_errors += errors;
            let want = before + lingering_peers.len();
            wait_until(STEP_TIMEOUT, || group.stats().lingering >= want).await;
            let n = lingering_peers.len().max(1) as f64;
            let heap = (LIVE_BYTES.load(Ordering::SeqCst) - heap0) as f64 / n;
            let server = (SERVER_LIVE_BYTES.load(Ordering::SeqCst) - server0) as f64 / n;
            let rss = rss0
                .zip(rss_bytes())
                .map(|(before, after)| (after - before) as f64 / n);
            (lingering_peers, open_per_peer, heap, server, rss)
        });
    let lingering_seen = group.stats().lingering;

    {
        let clients = RefCell::new(&mut clients);
        let mut bench = criterion.benchmark_group("many_lingering");
        for (i, label) in [
            "keepalive_get/idle_server".to_owned(),
            format!("keepalive_get/server_with_{peers}_lingering"),
        ]
        .into_iter()
        .enumerate()
        {
            bench.bench_function(label, |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(clients.borrow_mut()[i].run(iters as usize, &mut Vec::new()))
                });
            });
        }
        bench.finish();
    }

    let loaded = alternate(runtime, &mut clients, rounds, per_round);
    let lingering_after = group.stats().lingering;
    runtime.block_on(async {
        drop(lingering_peers);
        wait_until(Duration::from_secs(10), || group.stats().lingering == 0).await;
    });

    ManyResults {
        requested_peers,
        peers,
        note,
        control,
        loaded,
        heap_per_peer,
        server_heap_per_peer,
        open_heap_per_peer,
        rss_per_peer,
        lingering_seen,
        lingering_after,
        peer_errors,
        client_errors: clients[0].errors + clients[1].errors,
        pinned: pin,
    }
}

// ---------------------------------------------------------------------------

fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn main() {
    let settings = Settings::from_args();
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .configure_from_args();
    let server = server_runtime(None);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");

    let close = settings
        .selected("staged_close")
        .then(|| staged_close(&mut criterion, &settings, &runtime, &server));
    let many = settings
        .selected("many_lingering")
        .then(|| many_lingering(&mut criterion, &settings, &runtime));
    criterion.final_summary();

    println!();
    println!(
        "lingering summary{}",
        if settings.full {
            ""
        } else {
            " (SMOKE RUN, not a measurement)"
        }
    );
    if let Some(r) = close {
        let added = median(&r.round_added);
        let ratio = median(&r.round_ratios);
        let sleep_median = percentile(&r.sleep, 0.5);
        let lingering_median = percentile(&r.lingering, 0.5);
        println!(
            "staged_close ({} interleaved rounds; server time from shutdown() to socket dropped, \
             prompt peer)",
            r.round_ratios.len()
        );
        println!(
            "  {:<14} {:>10} {:>10} {:>10}  n",
            "close", "p50", "p90", "p99"
        );
        for (label, samples) in [
            ("plain_tcp", &r.plain),
            ("lingering_io", &r.lingering),
            ("sleep_500ms", &r.sleep),
        ] {
            println!(
                "  {:<14} {:>10} {:>10} {:>10}  {}",
                label,
                fmt_duration(percentile(samples, 0.5)),
                fmt_duration(percentile(samples, 0.9)),
                fmt_duration(percentile(samples, 0.99)),
                samples.len()
            );
        }
        println!(
            "  lingering − plain: {} added (median of per-round median differences; goal < 1 ms: \
             {}); ratio lingering/plain {ratio:.2}×",
            fmt_duration(Duration::from_secs_f64(added.max(0.0))),
            if added < 1e-3 { "met" } else { "NOT met" }
        );
        println!(
            "  p99 added: {}",
            fmt_duration(percentile(&r.lingering, 0.99).saturating_sub(percentile(&r.plain, 0.99)))
        );
        println!(
            "  sleep_500ms / lingering_io: {:.0}× (medians)",
            sleep_median.as_secs_f64() / lingering_median.as_secs_f64().max(1e-9)
        );
        println!(
            "  errors (connect, read, missing server time): plain {}, lingering {}, sleep {}",
            r.errors[0], r.errors[1], r.errors[2]
        );
    }
    if let Some(r) = many {
        println!(
            "many_lingering ({} peers lingering at once on server B{}; keep-alive GETs alternate \
             between idle server A and B every few requests)",
            r.peers,
            if r.peers == r.requested_peers {
                String::new()
            } else {
                format!(", {} requested", r.requested_peers)
            },
        );
        if let Some(note) = &r.note {
            println!("  NOTE: {note}");
        }
        match &r.pinned {
            Some(cpu) => println!("  client and both servers pinned to CPU {cpu}"),
            None => println!(
                "  NOTE: threads not pinned (LINGER_BENCH_NO_PIN, one CPU, or no `taskset`): \
                 latencies depend on thread placement"
            ),
        }
        println!(
            "  memory per lingering connection: heap {:.0} B (server threads {:.0} B; a merely \
             open hyper connection: {:.0} B), RSS {}",
            r.heap_per_peer,
            r.server_heap_per_peer,
            r.open_heap_per_peer,
            r.rss_per_peer
                .map_or("n/a".to_owned(), |rss| format!("{rss:.0} B")),
        );
        println!(
            "  {:<34} {:>10} {:>10} {:>10}  n",
            "keep-alive GET latency", "p50", "p90", "p99"
        );
        for (label, samples) in [
            ("control: server A", &r.control[0]),
            ("control: server B", &r.control[1]),
            ("A idle, while B lingers", &r.loaded[0]),
            ("B, while its peers linger", &r.loaded[1]),
        ] {
            println!(
                "  {:<34} {:>10} {:>10} {:>10}  {}",
                label,
                fmt_duration(percentile(samples, 0.5)),
                fmt_duration(percentile(samples, 0.9)),
                fmt_duration(percentile(samples, 0.99)),
                samples.len()
            );
        }
        let ratio = |pair: &[Vec<Duration>; 2], q: f64| {
            percentile(&pair[1], q).as_secs_f64() / percentile(&pair[0], q).as_secs_f64().max(1e-9)
        };
        let p99 = ratio(&r.loaded, 0.99);
        println!(
            "  B/A while lingering: p50 {:.3}×, p99 {p99:.3}×; control B/A (noise floor): p50 \
             {:.3}×, p99 {:.3}×; goal p99 ≤ 1.1×: {}",
            ratio(&r.loaded, 0.5),
            ratio(&r.control, 0.5),
            ratio(&r.control, 0.99),
            if p99 <= 1.1 { "met" } else { "NOT met" }
        );
        println!(
            "  lingering gauge: {} after set-up, {} after the measurements; peers that failed: \
             {}; keep-alive client errors: {}",
            r.lingering_seen, r.lingering_after, r.peer_errors, r.client_errors
        );
    }
}
