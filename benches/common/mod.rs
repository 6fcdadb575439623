//! What the benchmarks share: the counting allocator, thread pinning, the
//! server and client runtimes, the hyper server, a keep-alive HTTP/1.1 client
//! (which reads responses with the tests' reader, `tests/common/http1.rs`),
//! command-line handling and a few statistics helpers.

// Each bench compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::Criterion;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Handle, Runtime};
use tower::Service;

#[path = "../../tests/common/http1.rs"]
mod http1;

// For the drain bench, which splits requests after their head.
#[allow(unused_imports)]
pub use http1::head_end;
use http1::{Framing, RawHead, Reader};

// ---------------------------------------------------------------------------
// Counting allocator

/// Counts allocation calls (`alloc`, `alloc_zeroed`, `realloc`) and, with
/// `LIVE_BYTES`, the live heap bytes of the whole process and of the server
/// threads; then hands every call to the system allocator.
///
/// The byte count is a const parameter so that the drain bench, which only
/// counts calls, pays nothing for it on its per-request hot path.
pub struct CountingAlloc<const LIVE_BYTES: bool>;

static ALLOC_CALLS: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicI64 = AtomicI64::new(0);
static SERVER_LIVE: AtomicI64 = AtomicI64::new(0);

thread_local! {
    /// Set on the threads started by [`server_runtime`].
    static ON_SERVER_THREAD: Cell<bool> = const { Cell::new(false) };
}

impl<const LIVE_BYTES: bool> CountingAlloc<LIVE_BYTES> {
    fn account(delta: i64) {
        if !LIVE_BYTES {
            return;
        }
        LIVE.fetch_add(delta, Ordering::Relaxed);
        // `try_with`: the allocator also runs while thread-locals are torn down.
        if ON_SERVER_THREAD.try_with(Cell::get).unwrap_or(false) {
            SERVER_LIVE.fetch_add(delta, Ordering::Relaxed);
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the counters have no effect on the memory handed out.
unsafe impl<const LIVE_BYTES: bool> GlobalAlloc for CountingAlloc<LIVE_BYTES> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOC_CALLS.fetch_add(1, Ordering::Relaxed);
        Self::account(layout.size() as i64);
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOC_CALLS.fetch_add(1, Ordering::Relaxed);
        Self::account(layout.size() as i64);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOC_CALLS.fetch_add(1, Ordering::Relaxed);
        Self::account(new_size as i64 - layout.size() as i64);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Self::account(-(layout.size() as i64));
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

pub fn alloc_calls() -> u64 {
    ALLOC_CALLS.load(Ordering::SeqCst)
}

/// Live heap bytes of the process (only counted with `CountingAlloc<true>`).
pub fn live_bytes() -> i64 {
    LIVE.load(Ordering::SeqCst)
}

/// Live heap bytes allocated on the server threads (`CountingAlloc<true>`).
pub fn server_live_bytes() -> i64 {
    SERVER_LIVE.load(Ordering::SeqCst)
}

// ---------------------------------------------------------------------------
// Threads and runtimes

/// Pins the calling thread to the first CPU the process may use, unless
/// `LINGER_BENCH_NO_PIN` is set; returns that CPU if it worked. Pass it to
/// [`server_runtime`] so that client and servers share the CPU.
///
/// Why: on a virtual machine a wake-up sent to another, idle vCPU costs tens
/// of microseconds, while a wake-up on the same CPU costs a few. A keep-alive
/// round trip between the client thread and a server thread is then 7 µs or
/// 70 µs depending only on where the scheduler put them, which hides the
/// effect under test; on one CPU every request costs its CPU time.
pub fn pin_this_thread() -> Option<String> {
    if std::env::var_os("LINGER_BENCH_NO_PIN").is_some() {
        return None;
    }
    let cpu = cpu_to_pin()?;
    pin_thread(&cpu).then_some(cpu)
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

/// A current-thread tokio runtime on a thread of its own: one server side.
/// With `pin`, the thread first pins itself to that CPU.
pub fn server_runtime(pin: Option<&str>) -> Handle {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("server runtime");
    let handle = runtime.handle().clone();
    let pin = pin.map(str::to_owned);
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

/// The clients' current-thread runtime, driven by the main thread.
pub fn client_runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime")
}

// ---------------------------------------------------------------------------
// Server

/// A non-blocking listener on `127.0.0.1:0`, to hand to a server runtime.
pub fn bind_local() -> (std::net::TcpListener, SocketAddr) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let addr = listener.local_addr().expect("local address");
    (listener, addr)
}

/// The next connection on `listener`, with Nagle off as the clients have it.
pub async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                return stream;
            }
            Err(_) => accept_backoff().await,
        }
    }
}

/// After a failed `accept` (out of file descriptors or similar): back off
/// before trying again rather than spin.
pub async fn accept_backoff() {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

pub type OkResponse = Response<Full<Bytes>>;

/// The response of every handler: `200`, body `ok`.
pub fn ok_response() -> OkResponse {
    Response::new(Full::new(Bytes::from_static(b"ok")))
}

/// Serves one connection with hyper's HTTP/1 server until it ends.
pub async fn serve_http1<I, S>(io: I, service: S)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = OkResponse, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
        .await;
}

// ---------------------------------------------------------------------------
// Client

/// Every client step (connect, write, each read) must finish within this.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(5);

pub const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

/// `step` bounded by [`STEP_TIMEOUT`]; running out is `ErrorKind::TimedOut`.
pub async fn step<T>(step: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(STEP_TIMEOUT, step)
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

/// A client connection with Nagle off, as the servers' are.
pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = step(TcpStream::connect(addr)).await?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

pub async fn write_all(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    step(stream.write_all(bytes)).await
}

/// Reads until the peer's EOF.
pub async fn read_to_eof(stream: &mut TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 1024];
    while step(stream.read(&mut buf)).await? > 0 {}
    Ok(())
}

/// A client connection's reader: 8 KiB reads, each bounded by [`STEP_TIMEOUT`].
fn response_reader(stream: TcpStream) -> Reader<TcpStream> {
    Reader::new(stream)
        .with_read_size(8 * 1024)
        .with_read_timeout(STEP_TIMEOUT)
}

/// Reads one `200` response with a `Content-Length` body; the reader keeps what
/// is read beyond it. Returns whether the response says `Connection: close`.
/// Allocates nothing once the reader's buffer has grown to fit a response.
///
/// Errors: `UnexpectedEof` when the stream ends first (`reader.got()` then
/// says how much of the response came), `InvalidData` for another status, no
/// length or a malformed head, `TimedOut`, or the read's own error.
pub async fn read_response(reader: &mut Reader<TcpStream>) -> io::Result<bool> {
    let len = reader.head_len().await?;
    let (framing, close) = {
        let head = RawHead::parse(&reader.buffered()[..len])?;
        if !head.status_line().starts_with("HTTP/1.1 200 ") {
            return Err(io::ErrorKind::InvalidData.into());
        }
        (head.framing()?, head.has_close())
    };
    let Framing::Length(_) = framing else {
        return Err(io::ErrorKind::InvalidData.into());
    };
    reader.consume(len);
    reader.body(framing, |_| Ok(())).await?;
    Ok(close)
}

#[derive(Clone, Copy, Debug, Default)]
pub struct ClientStats {
    pub ok: u64,
    /// Requests that got no complete response, even after a retry.
    pub errors: u64,
    /// `ECONNRESET`, `EPIPE` or `ECONNABORTED` seen on a client step.
    pub resets: u64,
    /// End of stream before a complete response.
    pub eofs: u64,
    pub timeouts: u64,
    /// Requests sent again because a reused connection was found closed
    /// before any byte of the response came back.
    pub stale_retries: u64,
    pub connects: u64,
}

/// The connection ended, by reset or EOF, rather than failing otherwise.
fn closed(error: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionReset | BrokenPipe | ConnectionAborted | UnexpectedEof
    )
}

struct Conn {
    /// The stream, with the response bytes read and not yet parsed (none
    /// between requests).
    reader: Reader<TcpStream>,
    served: u64,
}

/// A keep-alive HTTP/1.1 client that reconnects when the server closes.
pub struct Client {
    addr: SocketAddr,
    conn: Option<Conn>,
    pub stats: ClientStats,
    /// Send only this many bytes of the request, wait for the response, then
    /// send the rest: a body that arrives after the handler has answered.
    late_split: Option<usize>,
}

impl Client {
    pub fn new(addr: SocketAddr, late_split: Option<usize>) -> Self {
        Self {
            addr,
            conn: None,
            stats: ClientStats::default(),
            late_split,
        }
    }

    /// Sends `request`, waits for the whole response. Returns whether a
    /// complete `200` response came back.
    pub async fn request(&mut self, request: &[u8]) -> bool {
        let (first, rest) = request.split_at(self.late_split.unwrap_or(request.len()));
        for _attempt in 0..2 {
            let mut conn = match self.conn.take() {
                Some(conn) => conn,
                None => match connect(self.addr).await {
                    Ok(stream) => {
                        self.stats.connects += 1;
                        Conn {
                            reader: response_reader(stream),
                            served: 0,
                        }
                    }
                    Err(error) => return self.failed(&error),
                },
            };
            let response = match write_all(conn.reader.get_mut(), first).await {
                Ok(()) => read_response(&mut conn.reader).await,
                Err(error) => Err(error),
            };
            match response {
                Ok(server_closes) => {
                    self.stats.ok += 1;
                    conn.served += 1;
                    self.send_rest(conn, rest, server_closes).await;
                    return true;
                }
                // A reused connection the server closed while idle, nothing
                // of the response came: send again on a new one, as HTTP
                // clients do.
                Err(error) if conn.served > 0 && conn.reader.got() == 0 && closed(&error) => {
                    self.count(&error);
                    self.stats.stale_retries += 1;
                }
                Err(error) => return self.failed(&error),
            }
        }
        self.stats.errors += 1;
        false
    }

    fn failed(&mut self, error: &io::Error) -> bool {
        self.count(error);
        self.stats.errors += 1;
        false
    }

    /// After the response: the late part of the body, if any, then keeps the
    /// connection unless the server closes it or the write failed.
    async fn send_rest(&mut self, mut conn: Conn, rest: &[u8], server_closes: bool) {
        let mut usable = !server_closes;
        if !rest.is_empty() {
            if let Err(error) = write_all(conn.reader.get_mut(), rest).await {
                self.count(&error);
                usable = false;
            }
        }
        if usable {
            self.conn = Some(conn);
        }
    }

    fn count(&mut self, error: &io::Error) {
        match error.kind() {
            io::ErrorKind::UnexpectedEof => self.stats.eofs += 1,
            io::ErrorKind::TimedOut => self.stats.timeouts += 1,
            _ if closed(error) => self.stats.resets += 1,
            _ => {}
        }
    }

    /// Sends `n` requests one after the other; returns the elapsed time.
    pub async fn run(&mut self, request: &[u8], n: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            self.request(request).await;
        }
        start.elapsed()
    }
}

// ---------------------------------------------------------------------------
// Command line and criterion

pub struct Settings {
    /// `cargo bench`; otherwise a short smoke run (`cargo test --benches`).
    pub full: bool,
    /// Positional filter given on the command line, if any.
    pub filter: Option<String>,
}

impl Settings {
    pub fn from_args() -> Self {
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
        Self { full, filter }
    }

    /// Whether the command-line filter (a substring) selects `name`.
    pub fn selected(&self, name: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| name.contains(f))
    }

    /// Appended to a summary's title.
    pub fn smoke_note(&self) -> &'static str {
        if self.full {
            ""
        } else {
            " (SMOKE RUN, not a measurement)"
        }
    }
}

/// Short criterion runs: the summary tables come from the benches' own
/// interleaved passes, criterion's report is a per-variant cross-check.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .configure_from_args()
}

pub fn not_pinned_note() -> &'static str {
    "NOTE: threads not pinned (LINGER_BENCH_NO_PIN, one CPU, or no `taskset`): times depend on \
     thread placement"
}

// ---------------------------------------------------------------------------
// Statistics

pub fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Which of baseline (0) and variant (1) goes first in ABBA round `round`,
/// so that neither always runs on the warmer or the quieter side of a pair.
pub fn abba_order(round: usize) -> [usize; 2] {
    if round % 2 == 0 {
        [0, 1]
    } else {
        [1, 0]
    }
}

/// The `q` quantile of sorted samples (nearest rank).
pub fn percentile<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub fn fmt_duration(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros >= 1000.0 {
        format!("{:.2} ms", micros / 1000.0)
    } else {
        format!("{micros:.1} µs")
    }
}
