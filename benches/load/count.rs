//! `load count`: one server and the blocking client in one process, for the
//! allocation calls per request of the server's threads; `count.sh` also
//! runs it under callgrind for their instructions per request.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::client::{Client, Tally, Workload};
use crate::h2client::{H2Client, H2Workload};
use crate::server;

/// The client of a workload: HTTP/1 (`client.rs`) or HTTP/2 (`h2_*`).
enum Driver {
    Http1(Client),
    Http2(H2Client),
}

impl Driver {
    fn new(addr: std::net::SocketAddr, workload: &str) -> Option<Self> {
        if let Some(h2) = H2Workload::from_name(workload) {
            return Some(Self::Http2(H2Client::new(addr, h2)));
        }
        Workload::from_name(workload).map(|w| Self::Http1(Client::new(addr, w)))
    }

    fn run(&mut self, n: u64) {
        match self {
            Self::Http1(client) => client.run(n),
            Self::Http2(client) => client.run(n),
        }
    }

    fn tally(&self) -> Tally {
        match self {
            Self::Http1(client) => client.tally,
            Self::Http2(client) => client.tally,
        }
    }
}

/// Counts `alloc`, `alloc_zeroed` and `realloc` calls made on server threads
/// while [`COUNTING`] is set, and the bytes they ask for (a `realloc`: its
/// new size); hands every call to the system allocator.
pub struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static SERVER_ALLOCS: AtomicU64 = AtomicU64::new(0);
static SERVER_BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the threads of the server's runtime.
    static ON_SERVER_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Counts one call asking for `bytes`.
fn count_one(bytes: usize) {
    if COUNTING.load(Ordering::Relaxed) && ON_SERVER_THREAD.try_with(Cell::get).unwrap_or(false) {
        SERVER_ALLOCS.fetch_add(1, Ordering::Relaxed);
        SERVER_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one(layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn mark_server_thread() {
    ON_SERVER_THREAD.with(|flag| flag.set(true));
}

pub fn count_main(server: &str, workload: &str, n: &str, warm_up: &str) -> ExitCode {
    let known =
        H2Workload::from_name(workload).is_some() || Workload::from_name(workload).is_some();
    let (Some(server), true, Ok(n), Ok(warm_up)) = (
        server::parse_server(server),
        known,
        n.parse::<u64>(),
        warm_up.parse::<u64>(),
    ) else {
        eprintln!("load: usage: load count <server> <workload> <n> [warm-up]");
        return ExitCode::from(2);
    };
    // One worker, as `taskset -c 0` gives the served binary.
    let workers = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let runtime = server::runtime(Some(workers), mark_server_thread);
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    std_listener.set_nonblocking(true).expect("non-blocking");
    let addr = std_listener.local_addr().expect("local address");
    let metrics = runtime.metrics();
    runtime.spawn(async move {
        let tcp = tokio::net::TcpListener::from_std(std_listener).expect("tokio listener");
        server::serve(server, tcp).await;
    });

    let Some(mut client) = Driver::new(addr, workload) else {
        return ExitCode::from(2);
    };
    client.run(1);
    let idle_tasks = settle(&metrics, usize::MAX);
    client.run(warm_up);
    settle(&metrics, idle_tasks);

    COUNTING.store(true, Ordering::SeqCst);
    let before = client.tally();
    let started = Instant::now();
    client.run(n);
    let elapsed = started.elapsed();
    let settled = settle(&metrics, idle_tasks);
    COUNTING.store(false, Ordering::SeqCst);
    let allocs = SERVER_ALLOCS.load(Ordering::SeqCst);
    let bytes = SERVER_BYTES.load(Ordering::SeqCst);
    let after = client.tally();

    let per = |x: u64| x as f64 / n.max(1) as f64;
    println!(
        "count server={server:?} workload={workload:?} n={n} warm_up={warm_up} \
         server_allocs_per_request={:.2} server_alloc_bytes_per_request={:.0} responses={} connections={} write_errors={} \
         resets={} lost={} tasks_left={} us_per_request={:.1}",
        per(allocs),
        per(bytes),
        after.responses - before.responses,
        after.connections - before.connections,
        after.write_errors - before.write_errors,
        after.resets - before.resets,
        after.lost - before.lost,
        settled.saturating_sub(idle_tasks.min(settled)),
        elapsed.as_secs_f64() * 1e6 / n.max(1) as f64,
    );
    ExitCode::SUCCESS
}

/// Waits (at most 3 s) until the runtime has no more live tasks than
/// `idle`: the connection tasks and background drains and lingers of the
/// requests made so far have ended. Returns the count it saw last.
///
/// The first call, with `usize::MAX`, only lets the accept loop start and
/// returns the count of tasks an idle server has.
fn settle(metrics: &tokio::runtime::RuntimeMetrics, idle: usize) -> usize {
    let until = Instant::now() + Duration::from_secs(3);
    let mut alive = metrics.num_alive_tasks();
    if idle == usize::MAX {
        // The client has closed its connection; give the server's tasks for
        // it the same time to end as below.
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
            let now = metrics.num_alive_tasks();
            if now == alive {
                return now;
            }
            alive = now;
        }
        return alive;
    }
    while alive > idle && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
        alive = metrics.num_alive_tasks();
    }
    alive
}
