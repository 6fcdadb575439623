//! Benchmarks of [`linger::DrainBodyLayer`] on loopback HTTP/1.1.
//!
//! Every scenario runs real hyper 1 servers (`hyper::server::conn::http1`,
//! `TokioIo`, `TowerToHyperService`, `tower::ServiceBuilder`) bound to
//! `127.0.0.1:0` on one dedicated server thread, and a raw `TcpStream` client
//! on the main thread that writes pre-built request bytes and parses the
//! responses. One connection is kept alive for as long as the server allows;
//! a closed connection is detected and replaced.
//!
//! | scenario | baseline | variant | goal |
//! |---|---|---|---|
//! | `get_tiny` | plain hyper | + `DrainBodyLayer` | throughput ≥ 0.98×, ≤ 1 added allocation/request |
//! | `post_read_1k` (handler reads the body) | plain hyper | + layer | throughput ≥ 0.98×, ≤ 1 added allocation/request |
//! | `post_ignored_16k` (handler ignores the body) | plain hyper (closes, client reconnects) | + layer (keep-alive) | throughput ≥ 2×, no errors |
//! | `drain_16k`, `drain_256k` | plain hyper, handler reads the body | + layer, handler ignores it | time/request ≤ 1.05× |
//!
//! Criterion measures each variant on its own (its usual report and HTML
//! files). Because the machine may be shared, the ratios in the final summary
//! table come from a separate pass that interleaves baseline and variant in
//! short ABBA rounds (about 25 ms each) of equal request counts; each round
//! gives a ratio, and the table shows the median and the interquartile range
//! of those ratios. Heap allocations are
//! counted with a counting global allocator over interleaved rounds of
//! `ALLOC_REQUESTS` requests while nothing else runs in the process.
//!
//! Run it with
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo bench --bench drain
//! cargo bench --bench drain -- get_tiny      # one scenario (substring filter)
//! ```
//!
//! The client thread and the server thread are pinned to one CPU with
//! `taskset -p` when it is available (set `LINGER_BENCH_NO_PIN=1` not to): on
//! a VM, a wake-up across vCPUs costs tens of microseconds and would hide the
//! layer's own cost.
//!
//! `cargo test --benches` runs every scenario once, briefly, as a smoke test.
//! The whole benchmark takes about a minute.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use linger::DrainBodyLayer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tower::{Service, ServiceBuilder};

// ---------------------------------------------------------------------------
// Counting allocator

/// Counts every allocation call (`alloc`, `alloc_zeroed`, `realloc`) made by
/// the process, then hands it to the system allocator.
struct CountingAlloc;

static ALLOC_CALLS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOC_CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOC_CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOC_CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn alloc_calls() -> u64 {
    ALLOC_CALLS.load(Ordering::SeqCst)
}

// ---------------------------------------------------------------------------
// Servers

/// Every client step (connect, write, each read) must finish within this.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handler {
    /// Answers without touching the request body.
    Ignore,
    /// Reads the request body to its end, then answers.
    ReadAll,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stack {
    /// hyper with the handler alone.
    Plain,
    /// hyper with `DrainBodyLayer::default()` around the handler.
    Layered,
}

async fn handle<B>(
    handler: Handler,
    request: Request<B>,
) -> Result<Response<Full<Bytes>>, Infallible>
where
    B: Body + Unpin,
{
    match handler {
        Handler::Ignore => drop(request),
        Handler::ReadAll => {
            let mut body = request.into_body();
            while let Some(frame) = body.frame().await {
                if frame.is_err() {
                    break;
                }
            }
        }
    }
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

async fn serve_connection<S>(stream: TcpStream, service: S)
where
    S: Service<Request<Incoming>, Response = Response<Full<Bytes>>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
        .await;
}

/// Starts an HTTP/1 server on `127.0.0.1:0` on the server runtime.
fn start_server(server: &tokio::runtime::Handle, handler: Handler, stack: Stack) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let addr = listener.local_addr().expect("local address");
    server.spawn(async move {
        let listener = TcpListener::from_std(listener).expect("tokio listener");
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of file descriptors or similar: back off, retry.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            match stack {
                Stack::Plain => {
                    let service =
                        ServiceBuilder::new().service_fn(move |request| handle(handler, request));
                    tokio::spawn(serve_connection(stream, service));
                }
                Stack::Layered => {
                    let service = ServiceBuilder::new()
                        .layer(DrainBodyLayer::default())
                        .service_fn(move |request| handle(handler, request));
                    tokio::spawn(serve_connection(stream, service));
                }
            }
        }
    });
    addr
}

/// A single-threaded tokio runtime on its own thread: the server side.
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
/// round trip between the client thread and the server thread is then 7 µs or
/// 70 µs depending only on where the scheduler put them, which hides the
/// layer's own cost; on one CPU every request costs its CPU time.
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

// ---------------------------------------------------------------------------
// Client

fn get_request() -> Vec<u8> {
    b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n".to_vec()
}

fn post_request(body_len: usize) -> Vec<u8> {
    let mut request = format!(
        "POST /upload HTTP/1.1\r\nHost: bench\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {body_len}\r\n\r\n"
    )
    .into_bytes();
    request.resize(request.len() + body_len, b'x');
    request
}

#[derive(Clone, Copy, Debug, Default)]
struct ClientStats {
    ok: u64,
    /// Requests that got no complete response, even after a retry.
    errors: u64,
    /// `ECONNRESET`, `EPIPE` or `ECONNABORTED` seen on a client step.
    resets: u64,
    /// End of stream before a complete response.
    eofs: u64,
    timeouts: u64,
    /// Requests sent again because a reused connection was found closed
    /// before any byte of the response came back.
    stale_retries: u64,
    connects: u64,
}

enum Failure {
    Reset { got_response_bytes: bool },
    Eof { got_response_bytes: bool },
    Timeout,
    Other,
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    served: u64,
}

/// A keep-alive HTTP/1.1 client that reconnects when the server closes.
struct Client {
    addr: SocketAddr,
    conn: Option<Conn>,
    stats: ClientStats,
    /// Send only this many bytes of the request, wait for the response, then
    /// send the rest: a body that arrives after the handler has answered.
    late_split: Option<usize>,
}

impl Client {
    fn new(addr: SocketAddr, late_split: Option<usize>) -> Self {
        Self {
            addr,
            conn: None,
            stats: ClientStats::default(),
            late_split,
        }
    }

    async fn connect(&mut self) -> Result<Conn, Failure> {
        let stream = match tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(self.addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(_)) => return Err(Failure::Other),
            Err(_) => return Err(Failure::Timeout),
        };
        let _ = stream.set_nodelay(true);
        self.stats.connects += 1;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            served: 0,
        })
    }

    /// Sends `request`, waits for the whole response. Returns whether a
    /// complete `200` response came back.
    async fn request(&mut self, request: &[u8]) -> bool {
        let (first, rest) = request.split_at(self.late_split.unwrap_or(request.len()));
        for _attempt in 0..2 {
            let mut conn = match self.conn.take() {
                Some(conn) => conn,
                None => match self.connect().await {
                    Ok(conn) => conn,
                    Err(failure) => {
                        self.count(&failure);
                        self.stats.errors += 1;
                        return false;
                    }
                },
            };
            match round_trip(&mut conn, first).await {
                Ok(server_closes) => {
                    self.stats.ok += 1;
                    conn.served += 1;
                    let mut usable = !server_closes;
                    if !rest.is_empty() {
                        match tokio::time::timeout(STEP_TIMEOUT, conn.stream.write_all(rest)).await
                        {
                            Ok(Ok(())) => {}
                            Ok(Err(error)) => {
                                self.count(&io_failure(&error, true));
                                usable = false;
                            }
                            Err(_) => {
                                self.count(&Failure::Timeout);
                                usable = false;
                            }
                        }
                    }
                    if usable {
                        self.conn = Some(conn);
                    }
                    return true;
                }
                Err(failure) => {
                    self.count(&failure);
                    let nothing_back = matches!(
                        failure,
                        Failure::Reset {
                            got_response_bytes: false
                        } | Failure::Eof {
                            got_response_bytes: false
                        }
                    );
                    // A reused connection the server closed while idle: send
                    // again on a new one, as HTTP clients do.
                    if conn.served > 0 && nothing_back {
                        self.stats.stale_retries += 1;
                        continue;
                    }
                    self.stats.errors += 1;
                    return false;
                }
            }
        }
        self.stats.errors += 1;
        false
    }

    fn count(&mut self, failure: &Failure) {
        match failure {
            Failure::Reset { .. } => self.stats.resets += 1,
            Failure::Eof { .. } => self.stats.eofs += 1,
            Failure::Timeout => self.stats.timeouts += 1,
            Failure::Other => {}
        }
    }

    /// Sends `n` requests one after the other; returns the elapsed time.
    async fn run(&mut self, request: &[u8], n: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            self.request(request).await;
        }
        start.elapsed()
    }
}

fn io_failure(error: &io::Error, got_response_bytes: bool) -> Failure {
    match error.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted => Failure::Reset { got_response_bytes },
        io::ErrorKind::UnexpectedEof => Failure::Eof { got_response_bytes },
        _ => Failure::Other,
    }
}

/// Writes one request and reads one response. `Ok(true)` when the server said
/// it will close the connection.
async fn round_trip(conn: &mut Conn, request: &[u8]) -> Result<bool, Failure> {
    match tokio::time::timeout(STEP_TIMEOUT, conn.stream.write_all(request)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(io_failure(&error, false)),
        Err(_) => return Err(Failure::Timeout),
    }
    let mut chunk = [0u8; 8192];
    let mut head: Option<(usize, usize, bool)> = None;
    loop {
        if head.is_none() {
            if let Some(end) = find_head_end(&conn.buf) {
                let (content_length, close) = parse_head(&conn.buf[..end])?;
                head = Some((end, content_length, close));
            }
        }
        if let Some((end, content_length, close)) = head {
            if conn.buf.len() >= end + content_length {
                conn.buf.drain(..end + content_length);
                return Ok(close);
            }
        }
        let got = !conn.buf.is_empty();
        match tokio::time::timeout(STEP_TIMEOUT, conn.stream.read(&mut chunk)).await {
            Ok(Ok(0)) => {
                return Err(Failure::Eof {
                    got_response_bytes: got,
                })
            }
            Ok(Ok(n)) => conn.buf.extend_from_slice(&chunk[..n]),
            Ok(Err(error)) => return Err(io_failure(&error, got)),
            Err(_) => return Err(Failure::Timeout),
        }
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// Content length and whether the response says `Connection: close`.
fn parse_head(head: &[u8]) -> Result<(usize, bool), Failure> {
    if !head.starts_with(b"HTTP/1.1 200 ") {
        return Err(Failure::Other);
    }
    let mut content_length = None;
    let mut close = false;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            content_length = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<usize>().ok());
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= value
                .split(|&b| b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
    }
    content_length.map(|n| (n, close)).ok_or(Failure::Other)
}

// ---------------------------------------------------------------------------
// Scenarios

#[derive(Clone, Copy)]
enum Goal {
    /// variant throughput / baseline throughput must be at least this.
    ThroughputAtLeast(f64),
    /// variant time per request / baseline time per request at most this.
    TimeAtMost(f64),
}

struct Scenario {
    name: &'static str,
    request: Vec<u8>,
    baseline: (&'static str, Handler, Stack),
    variant: (&'static str, Handler, Stack),
    goal: Goal,
    /// Count allocations per request; `Some(goal)` for added allocations.
    allocations: Option<Option<f64>>,
    /// The variant must not fail a single request.
    zero_errors: bool,
    /// Body bytes sent with the head; the rest only after the response.
    late_body: Option<usize>,
}

impl Scenario {
    fn late_split(&self) -> Option<usize> {
        let head = find_head_end(&self.request)?;
        self.late_body.map(|n| head + n)
    }
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "get_tiny",
            request: get_request(),
            baseline: ("plain", Handler::Ignore, Stack::Plain),
            variant: ("layer", Handler::Ignore, Stack::Layered),
            goal: Goal::ThroughputAtLeast(0.98),
            allocations: Some(Some(1.0)),
            zero_errors: false,
            late_body: None,
        },
        Scenario {
            name: "post_read_1k",
            request: post_request(1024),
            baseline: ("plain", Handler::ReadAll, Stack::Plain),
            variant: ("layer", Handler::ReadAll, Stack::Layered),
            goal: Goal::ThroughputAtLeast(0.98),
            allocations: Some(Some(1.0)),
            zero_errors: false,
            late_body: None,
        },
        Scenario {
            name: "post_ignored_16k",
            request: post_request(16 * 1024),
            baseline: ("plain", Handler::Ignore, Stack::Plain),
            variant: ("layer", Handler::Ignore, Stack::Layered),
            goal: Goal::ThroughputAtLeast(2.0),
            allocations: None,
            zero_errors: true,
            late_body: None,
        },
        Scenario {
            name: "post_ignored_16k_late",
            request: post_request(16 * 1024),
            baseline: ("plain", Handler::Ignore, Stack::Plain),
            variant: ("layer", Handler::Ignore, Stack::Layered),
            goal: Goal::ThroughputAtLeast(2.0),
            allocations: None,
            zero_errors: true,
            late_body: Some(1024),
        },
        Scenario {
            name: "drain_16k",
            request: post_request(16 * 1024),
            baseline: ("handler_reads", Handler::ReadAll, Stack::Plain),
            variant: ("layer_drains", Handler::Ignore, Stack::Layered),
            goal: Goal::TimeAtMost(1.05),
            allocations: Some(None),
            zero_errors: true,
            late_body: None,
        },
        Scenario {
            name: "drain_256k",
            request: post_request(256 * 1024),
            baseline: ("handler_reads", Handler::ReadAll, Stack::Plain),
            variant: ("layer_drains", Handler::Ignore, Stack::Layered),
            goal: Goal::TimeAtMost(1.05),
            allocations: Some(None),
            zero_errors: true,
            late_body: None,
        },
    ]
}

// ---------------------------------------------------------------------------
// Measurement

struct Settings {
    /// `cargo bench`; otherwise a short smoke run (`cargo test --benches`).
    full: bool,
    /// Positional filter given on the command line, if any.
    filter: Option<String>,
    rounds: usize,
    round_target: Duration,
    alloc_rounds: usize,
    alloc_requests: u64,
}

/// Requests per allocation-counting round.
const ALLOC_REQUESTS: u64 = 2000;

impl Settings {
    fn from_args() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let has = |flag: &str| args.iter().any(|a| a == flag);
        let full = has("--bench") && !has("--test") && !has("--list");
        // Criterion options that take a value; the value is not a filter.
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
        if full {
            Self {
                full,
                filter,
                rounds: 40,
                round_target: Duration::from_millis(25),
                alloc_rounds: 5,
                alloc_requests: ALLOC_REQUESTS,
            }
        } else {
            Self {
                full,
                filter,
                rounds: 2,
                round_target: Duration::from_millis(5),
                alloc_rounds: 1,
                alloc_requests: 20,
            }
        }
    }

    fn selected(&self, name: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| name.contains(f))
    }
}

/// What the interleaved pass measured for one scenario.
struct Measured {
    /// variant/baseline time-per-request ratio of each round.
    time_ratios: Vec<f64>,
    baseline_per_req: Vec<Duration>,
    variant_per_req: Vec<Duration>,
    baseline_stats: ClientStats,
    variant_stats: ClientStats,
    /// Allocation calls per request: (baseline, variant, added).
    allocations: Option<(f64, f64, f64)>,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn median_duration(values: &[Duration]) -> Duration {
    let mut secs: Vec<f64> = values.iter().map(Duration::as_secs_f64).collect();
    Duration::from_secs_f64(median(&mut secs))
}

/// Baseline and variant in ABBA rounds with the same number of requests.
fn interleave(
    runtime: &Runtime,
    settings: &Settings,
    scenario: &Scenario,
    baseline: &mut Client,
    variant: &mut Client,
) -> Measured {
    let request = &scenario.request;
    // Warm up both connections and calibrate the round size on the slower one.
    let warm = if settings.full { 50 } else { 3 };
    let slowest = runtime.block_on(async {
        let a = baseline.run(request, warm).await;
        let b = variant.run(request, warm).await;
        a.max(b) / warm as u32
    });
    let per_round = ((settings.round_target.as_secs_f64() / slowest.as_secs_f64().max(1e-7))
        as u64)
        .clamp(5, 20_000);

    let mut measured = Measured {
        time_ratios: Vec::new(),
        baseline_per_req: Vec::new(),
        variant_per_req: Vec::new(),
        baseline_stats: ClientStats::default(),
        variant_stats: ClientStats::default(),
        allocations: None,
    };
    for round in 0..settings.rounds {
        let (a, b) = runtime.block_on(async {
            if round % 2 == 0 {
                let a = baseline.run(request, per_round).await;
                let b = variant.run(request, per_round).await;
                (a, b)
            } else {
                let b = variant.run(request, per_round).await;
                let a = baseline.run(request, per_round).await;
                (a, b)
            }
        });
        measured.time_ratios.push(b.as_secs_f64() / a.as_secs_f64());
        measured.baseline_per_req.push(a / per_round as u32);
        measured.variant_per_req.push(b / per_round as u32);
    }

    if let Some(_goal) = scenario.allocations {
        let n = settings.alloc_requests;
        let mut per_req_a = Vec::new();
        let mut per_req_b = Vec::new();
        let mut added = Vec::new();
        for round in 0..settings.alloc_rounds {
            let (a, b) = runtime.block_on(async {
                if round % 2 == 0 {
                    let a = count_allocations(baseline, request, n).await;
                    let b = count_allocations(variant, request, n).await;
                    (a, b)
                } else {
                    let b = count_allocations(variant, request, n).await;
                    let a = count_allocations(baseline, request, n).await;
                    (a, b)
                }
            });
            per_req_a.push(a as f64 / n as f64);
            per_req_b.push(b as f64 / n as f64);
            added.push((b as f64 - a as f64) / n as f64);
        }
        measured.allocations = Some((
            median(&mut per_req_a),
            median(&mut per_req_b),
            median(&mut added),
        ));
    }
    measured.baseline_stats = baseline.stats;
    measured.variant_stats = variant.stats;
    measured
}

/// Allocation calls made by the whole process while `client` sends `n` requests.
async fn count_allocations(client: &mut Client, request: &[u8], n: u64) -> u64 {
    let before = alloc_calls();
    client.run(request, n).await;
    alloc_calls() - before
}

/// Per-request time of each criterion bench, from its `iter_custom` calls.
#[derive(Default)]
struct CriterionLog {
    totals: HashMap<String, (u64, Duration)>,
}

impl CriterionLog {
    fn record(&mut self, id: &str, iters: u64, elapsed: Duration) {
        let entry = self.totals.entry(id.to_owned()).or_default();
        entry.0 += iters;
        entry.1 += elapsed;
    }

    fn per_request(&self, id: &str) -> Option<Duration> {
        let (iters, total) = self.totals.get(id)?;
        (*iters > 0).then(|| *total / *iters as u32)
    }
}

fn fmt_duration(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros >= 1000.0 {
        format!("{:.2} ms", micros / 1000.0)
    } else {
        format!("{micros:.1} µs")
    }
}

fn main() {
    let settings = Settings::from_args();
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .configure_from_args();

    // Client (this thread) and server pinned to one CPU, unless
    // LINGER_BENCH_NO_PIN is set (see `pin_thread`).
    let pin = if std::env::var_os("LINGER_BENCH_NO_PIN").is_some() {
        None
    } else {
        cpu_to_pin()
    };
    let pinned = pin.clone().filter(|cpu| pin_thread(cpu));
    let server = server_runtime(pinned.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");

    let scenarios: Vec<Scenario> = scenarios()
        .into_iter()
        .filter(|s| settings.selected(s.name))
        .collect();
    let mut clients: Vec<(RefCell<Client>, RefCell<Client>)> = scenarios
        .iter()
        .map(|s| {
            let a = start_server(&server, s.baseline.1, s.baseline.2);
            let b = start_server(&server, s.variant.1, s.variant.2);
            (
                RefCell::new(Client::new(a, s.late_split())),
                RefCell::new(Client::new(b, s.late_split())),
            )
        })
        .collect();

    // Criterion: each variant on its own.
    let log = RefCell::new(CriterionLog::default());
    for (scenario, (baseline, variant)) in scenarios.iter().zip(&clients) {
        let mut group = criterion.benchmark_group(scenario.name);
        group.throughput(Throughput::Elements(1));
        for (label, client) in [
            (scenario.baseline.0, baseline),
            (scenario.variant.0, variant),
        ] {
            let id = format!("{}/{label}", scenario.name);
            group.bench_function(label, |b| {
                b.iter_custom(|iters| {
                    let elapsed =
                        runtime.block_on(client.borrow_mut().run(&scenario.request, iters));
                    log.borrow_mut().record(&id, iters, elapsed);
                    elapsed
                });
            });
        }
        group.finish();
    }
    criterion.final_summary();

    // Interleaved pass: the ratios reported below.
    let mut results = Vec::new();
    for (scenario, (baseline, variant)) in scenarios.iter().zip(&mut clients) {
        let measured = interleave(
            &runtime,
            &settings,
            scenario,
            baseline.get_mut(),
            variant.get_mut(),
        );
        results.push(measured);
    }

    print_summary(&settings, &scenarios, &results, &log.borrow());
    match pinned {
        Some(cpu) => println!("client and server threads pinned to CPU {cpu}"),
        None => println!(
            "NOTE: threads not pinned (LINGER_BENCH_NO_PIN, one CPU, or no `taskset`): times \
             depend on thread placement"
        ),
    }
}

fn print_summary(
    settings: &Settings,
    scenarios: &[Scenario],
    results: &[Measured],
    log: &CriterionLog,
) {
    println!();
    println!(
        "drain summary ({} ABBA rounds per scenario; ratio = median over rounds [interquartile range]{})",
        settings.rounds,
        if settings.full {
            ""
        } else {
            "; SMOKE RUN, not a measurement"
        }
    );
    println!(
        "{:<17} {:<28} {:>11} {:>11} {:>24} {:>10} {:>8} {:>5}",
        "scenario",
        "variant vs baseline",
        "base/req",
        "var/req",
        "ratio [p25..p75]",
        "goal",
        "seq.crit",
        "met"
    );
    for (scenario, m) in scenarios.iter().zip(results) {
        let mut time = m.time_ratios.clone();
        let time_median = median(&mut time);
        // Interquartile range of the per-round ratios.
        let quartile = |q: f64| {
            time.get(((time.len().saturating_sub(1)) as f64 * q).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        let (lo, hi) = (quartile(0.25), quartile(0.75));
        let crit = match (
            log.per_request(&format!("{}/{}", scenario.name, scenario.baseline.0)),
            log.per_request(&format!("{}/{}", scenario.name, scenario.variant.0)),
        ) {
            (Some(a), Some(b)) => b.as_secs_f64() / a.as_secs_f64(),
            _ => f64::NAN,
        };
        let (metric, ratio, range, goal, met, crit) = match scenario.goal {
            Goal::ThroughputAtLeast(goal) => (
                "throughput",
                1.0 / time_median,
                format!("[{:.3}..{:.3}]", 1.0 / hi, 1.0 / lo),
                format!("≥ {goal}×"),
                1.0 / time_median >= goal,
                1.0 / crit,
            ),
            Goal::TimeAtMost(goal) => (
                "time/req",
                time_median,
                format!("[{lo:.3}..{hi:.3}]"),
                format!("≤ {goal}×"),
                time_median <= goal,
                crit,
            ),
        };
        let errors_ok = !scenario.zero_errors || m.variant_stats.errors == 0;
        println!(
            "{:<17} {:<28} {:>11} {:>11} {:>24} {:>10} {:>8.3} {:>5}",
            scenario.name,
            format!("{metric}: {} / {}", scenario.variant.0, scenario.baseline.0),
            fmt_duration(median_duration(&m.baseline_per_req)),
            fmt_duration(median_duration(&m.variant_per_req)),
            format!("{ratio:.3} {range}"),
            goal,
            crit,
            if met && errors_ok { "yes" } else { "NO" }
        );
        if let (Some((a, b, added)), Some(goal)) = (m.allocations, scenario.allocations) {
            let (goal_text, met) = match goal {
                Some(goal) => (
                    format!("≤ {goal}"),
                    if added <= goal { "yes" } else { "NO" },
                ),
                None => ("(info)".to_owned(), "-"),
            };
            println!(
                "{:<17} {:<28} {:>11.2} {:>11.2} {:>24} {:>10} {:>8} {:>5}",
                "",
                "alloc calls/req: added",
                a,
                b,
                format!("{added:+.2}"),
                goal_text,
                "",
                met
            );
        }
        for (label, stats) in [
            (scenario.baseline.0, &m.baseline_stats),
            (scenario.variant.0, &m.variant_stats),
        ] {
            println!(
                "{:<17}   {label}: ok {} errors {} resets {} eofs {} timeouts {} stale-retries {} connects {}",
                "",
                stats.ok,
                stats.errors,
                stats.resets,
                stats.eofs,
                stats.timeouts,
                stats.stale_retries,
                stats.connects
            );
        }
    }
    println!(
        "base/req, var/req: median time per request of the interleaved rounds. seq.crit: the same \
         ratio from criterion's sequential (not interleaved) samples, for comparison only."
    );
    println!(
        "alloc calls/req: alloc+alloc_zeroed+realloc calls in the whole process (client + server) \
         per request, median over {} interleaved rounds of {} requests; added = variant − baseline.",
        settings.alloc_rounds, settings.alloc_requests
    );
    println!(
        "ok/errors/...: every request of the run (criterion, interleaved and allocation passes)."
    );
}
