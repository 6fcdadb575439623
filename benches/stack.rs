//! The README setup against the same server without `linger`, on loopback
//! keep-alive HTTP/1.1: section 6 of BENCHMARKS.md, which explains goals and
//! method.
//!
//! * axum (feature `axum`): `DrainBodyLayer::new(256 * 1024).axum()` around
//!   the whole `Router`, served by `axum::serve(LingeringListener::new(tcp), app)`,
//!   against the same `Router` without the layer served by
//!   `axum::serve(tcp, app)`; and the other forms (`Router::layer`, ...).
//! * hyper: the README's accept loop (`LingeringListener::accept`,
//!   `ServiceBuilder` with the layer, `http1::Builder`), against the same
//!   loop on the bare `TcpListener` without the layer.
//!
//! For each, a GET with a 2-byte response and POSTs whose 1 KiB and 16 KiB
//! bodies the handler reads whole (`*_post_read_16k`: issue 22). Three measures:
//!
//! 1. Criterion, each server on its own (a cross-check only).
//! 2. Interleaved ABBA rounds of ~10 ms with the same request count on both
//!    servers, in three passes: throughput ratio (median of the per-round
//!    ratios, interquartile range, median of each pass) from elapsed time and
//!    from the CPU time of the client and server threads (`schedstat`, which
//!    leaves out what other processes ran meanwhile), then allocation calls
//!    per request with a counting allocator.
//! 3. When `valgrind` is installed: user-space instructions per request of
//!    the server thread under callgrind, which do not depend on the load of
//!    the machine, for the two setups and for each part on its own (only the
//!    listener, only the layer, the layer around the whole `Router`). Each
//!    server runs in a child process of its own, twice (0 and N requests
//!    after the same warm-up), and the difference divided by N is the cost
//!    of one request. `LINGER_BENCH_NO_CALLGRIND=1` skips this part.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/tgt-bench cargo bench --bench stack --features axum
//! cargo bench --bench stack --features axum -- axum_get   # substring filter
//! ```
//!
//! Without the feature only the hyper scenarios run. Client and server
//! threads share one CPU (`LINGER_BENCH_NO_PIN=1` to not pin; see
//! `common::pin_this_thread`). `cargo test --benches` runs every scenario
//! and every server of part 3 briefly in-process, as a smoke test, without
//! valgrind.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{alloc_calls, fmt_duration, median, percentile, Client, OkResponse, Settings};
use criterion::Throughput;
use http::{Method, Request};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use linger::{DrainBody, DrainBodyLayer, LingeringListener};
use tokio::net::TcpListener;
use tokio::runtime::{Handle, Runtime};
use tower::ServiceBuilder;

/// Counts allocation calls only, as the drain bench does.
#[global_allocator]
static GLOBAL: common::CountingAlloc<false> = common::CountingAlloc;

/// The README's limit.
const README_LIMIT: usize = 256 * 1024;

/// Set in the child processes that callgrind runs: `<stack>:<request>:<n>`.
const CHILD_ENV: &str = "LINGER_BENCH_CALLGRIND_CHILD";

// ---------------------------------------------------------------------------
// Servers

/// One way of serving the same application.
// Without the feature only the `Hyper…` variants are left.
#[cfg_attr(not(feature = "axum"), allow(clippy::enum_variant_names))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stack {
    /// hyper's HTTP/1 server on the bare `TcpListener`, no layer.
    HyperBare,
    /// The README's hyper accept loop: `LingeringListener` and the layer.
    HyperReadme,
    HyperListenerOnly,
    HyperLayerOnly,
    #[cfg(feature = "axum")]
    /// `axum::serve(tcp, router)`.
    AxumBare,
    /// The README's axum quick start: `layer.axum()` around the whole router
    /// (served through `with_state(())` and `into_make_service`, which cost the
    /// same per request as `axum::serve(listener, app)` and build on older
    /// revisions too).
    #[cfg(feature = "axum")]
    AxumReadme,
    /// The README's other axum form (its quick start before issue 22):
    /// `axum::serve(LingeringListener::new(tcp), router.layer(layer))`.
    #[cfg(feature = "axum")]
    AxumRouterLayer,
    #[cfg(feature = "axum")]
    AxumListenerOnly,
    #[cfg(feature = "axum")]
    AxumLayerOnly,
    /// The README's other axum form, the layer around the whole `Router`
    /// (`layer.layer(router)`), behind the `LingeringListener`.
    #[cfg(feature = "axum")]
    AxumAroundRouter,
    /// The same with `router.with_state(())`, which turns the handlers into
    /// routes once instead of on every request.
    #[cfg(feature = "axum")]
    AxumAroundRouterWithState,
    /// The README quick start with the axum flavour of the layer:
    /// `router.layer(layer.axum())`.
    #[cfg(feature = "axum")]
    AxumReadmeAxumLayer,
    /// The bare router with a layer that does nothing, `router.layer(Identity)`,
    /// and no `linger` at all: what axum's `Router::layer` itself costs.
    #[cfg(feature = "axum")]
    AxumIdentityLayer,
}

impl Stack {
    /// Every stack, bare first within each framework: the rows of part 3.
    const ALL: &[Stack] = &[
        Stack::HyperBare,
        Stack::HyperReadme,
        Stack::HyperListenerOnly,
        Stack::HyperLayerOnly,
        #[cfg(feature = "axum")]
        Stack::AxumBare,
        #[cfg(feature = "axum")]
        Stack::AxumReadme,
        #[cfg(feature = "axum")]
        Stack::AxumRouterLayer,
        #[cfg(feature = "axum")]
        Stack::AxumListenerOnly,
        #[cfg(feature = "axum")]
        Stack::AxumLayerOnly,
        #[cfg(feature = "axum")]
        Stack::AxumAroundRouter,
        #[cfg(feature = "axum")]
        Stack::AxumAroundRouterWithState,
        #[cfg(feature = "axum")]
        Stack::AxumReadmeAxumLayer,
        #[cfg(feature = "axum")]
        Stack::AxumIdentityLayer,
    ];

    fn name(self) -> &'static str {
        match self {
            Stack::HyperBare => "hyper_bare",
            Stack::HyperReadme => "hyper_readme",
            Stack::HyperListenerOnly => "hyper_listener_only",
            Stack::HyperLayerOnly => "hyper_layer_only",
            #[cfg(feature = "axum")]
            Stack::AxumBare => "axum_bare",
            #[cfg(feature = "axum")]
            Stack::AxumReadme => "axum_readme",
            #[cfg(feature = "axum")]
            Stack::AxumRouterLayer => "axum_router_layer",
            #[cfg(feature = "axum")]
            Stack::AxumListenerOnly => "axum_listener_only",
            #[cfg(feature = "axum")]
            Stack::AxumLayerOnly => "axum_layer_only",
            #[cfg(feature = "axum")]
            Stack::AxumAroundRouter => "axum_layer_around_router",
            #[cfg(feature = "axum")]
            Stack::AxumAroundRouterWithState => "axum_layer_around_router_with_state",
            #[cfg(feature = "axum")]
            Stack::AxumReadmeAxumLayer => "axum_readme_axum_layer",
            #[cfg(feature = "axum")]
            Stack::AxumIdentityLayer => "axum_identity_layer",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|stack| stack.name() == name)
    }

    /// The bare stack of the same framework, the baseline of part 3.
    fn bare(self) -> Self {
        match self {
            Stack::HyperBare
            | Stack::HyperReadme
            | Stack::HyperListenerOnly
            | Stack::HyperLayerOnly => Stack::HyperBare,
            #[cfg(feature = "axum")]
            _ => Stack::AxumBare,
        }
    }

    /// Starts a server of this stack on `127.0.0.1:0` on the server runtime.
    fn start(self, server: &Handle) -> SocketAddr {
        let (listener, addr) = common::bind_local();
        server.spawn(async move {
            let tcp = TcpListener::from_std(listener).expect("tokio listener");
            let (lingering, layered) = match self {
                Stack::HyperBare => (false, false),
                Stack::HyperReadme => (true, true),
                Stack::HyperListenerOnly => (true, false),
                Stack::HyperLayerOnly => (false, true),
                #[cfg(feature = "axum")]
                axum_stack => return axum_app::serve(axum_stack, tcp).await,
            };
            serve_hyper(tcp, lingering, layered).await;
        });
        addr
    }
}

/// The hyper application: a GET is answered at once, a POST body is read
/// to its end first.
async fn handle<B>(request: Request<B>) -> Result<OkResponse, Infallible>
where
    B: Body + Unpin,
{
    if request.method() == Method::POST {
        let mut body = request.into_body();
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                break;
            }
        }
    }
    Ok(common::ok_response())
}

/// The accept loop of the README's hyper quick start, with or without the
/// `LingeringListener` and the layer. Nagle is off on both, as in the other
/// benches.
async fn serve_hyper(tcp: TcpListener, lingering: bool, layered: bool) {
    let listener = LingeringListener::new(tcp);
    loop {
        // One arm per combination: each changes the IO or the body type.
        match (lingering, layered) {
            (true, layered) => {
                let Ok((stream, _peer)) = listener.accept().await else {
                    common::accept_backoff().await;
                    continue;
                };
                let _ = stream.get_ref().set_nodelay(true);
                if layered {
                    let service = ServiceBuilder::new()
                        .layer(DrainBodyLayer::new(README_LIMIT))
                        .service_fn(handle::<DrainBody<Incoming>>);
                    tokio::spawn(common::serve_http1(stream, service));
                } else {
                    let service = ServiceBuilder::new().service_fn(handle::<Incoming>);
                    tokio::spawn(common::serve_http1(stream, service));
                }
            }
            (false, layered) => {
                let stream = common::accept(listener.get_ref()).await;
                if layered {
                    let service = ServiceBuilder::new()
                        .layer(DrainBodyLayer::new(README_LIMIT))
                        .service_fn(handle::<DrainBody<Incoming>>);
                    tokio::spawn(common::serve_http1(stream, service));
                } else {
                    let service = ServiceBuilder::new().service_fn(handle::<Incoming>);
                    tokio::spawn(common::serve_http1(stream, service));
                }
            }
        }
    }
}

#[cfg(feature = "axum")]
mod axum_app {
    use axum::body::Bytes;
    use axum::routing::{get, post};
    use axum::Router;
    use linger::{DrainBodyLayer, LingeringListener};
    use tokio::net::TcpListener;
    use tower::Layer;

    use super::{Stack, README_LIMIT};

    /// The axum application: `GET /` and `POST /upload`, whose handler takes
    /// the whole body (`Bytes`), both answering `ok`.
    fn router() -> Router {
        Router::new().route("/", get(|| async { "ok" })).route(
            "/upload",
            post(|body: Bytes| async move {
                drop(body);
                "ok"
            }),
        )
    }

    /// Serves `stack` on `tcp` exactly as the README writes it: no
    /// `set_nodelay` on either side, as `axum::serve` does not set it.
    pub(super) async fn serve(stack: Stack, tcp: TcpListener) {
        let layer = DrainBodyLayer::new(README_LIMIT);
        let _ = match stack {
            Stack::AxumBare => axum::serve(tcp, router()).await,
            Stack::AxumReadme => {
                let app = layer.axum().layer(router().with_state(()));
                let make = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
                axum::serve(LingeringListener::new(tcp), make).await
            }
            Stack::AxumRouterLayer => {
                axum::serve(LingeringListener::new(tcp), router().layer(layer)).await
            }
            Stack::AxumListenerOnly => axum::serve(LingeringListener::new(tcp), router()).await,
            Stack::AxumLayerOnly => axum::serve(tcp, router().layer(layer)).await,
            Stack::AxumAroundRouter | Stack::AxumAroundRouterWithState => {
                let router = if stack == Stack::AxumAroundRouter {
                    router()
                } else {
                    router().with_state(())
                };
                let app = layer.layer(router);
                let make = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
                axum::serve(LingeringListener::new(tcp), make).await
            }
            Stack::AxumReadmeAxumLayer => {
                axum::serve(LingeringListener::new(tcp), router().layer(layer.axum())).await
            }
            Stack::AxumIdentityLayer => {
                axum::serve(tcp, router().layer(tower::layer::util::Identity::new())).await
            }
            _ => unreachable!("not an axum stack: {stack:?}"),
        };
    }
}

// ---------------------------------------------------------------------------
// Requests and scenarios

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Get,
    PostRead1k,
    PostRead16k,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Get, Kind::PostRead1k, Kind::PostRead16k];

    fn name(self) -> &'static str {
        match self {
            Kind::Get => "get",
            Kind::PostRead1k => "post_read_1k",
            Kind::PostRead16k => "post_read_16k",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    fn request(self) -> Vec<u8> {
        match self {
            Kind::Get => common::GET.to_vec(),
            Kind::PostRead1k | Kind::PostRead16k => {
                let body_len = if self == Kind::PostRead1k {
                    1024
                } else {
                    16 * 1024
                };
                let mut request = format!(
                    "POST /upload HTTP/1.1\r\nHost: bench\r\nContent-Type: \
                     application/octet-stream\r\nContent-Length: {body_len}\r\n\r\n"
                )
                .into_bytes();
                request.resize(request.len() + body_len, b'x');
                request
            }
        }
    }
}

/// The README setup (variant) against the same server without `linger`
/// (baseline), for one request.
struct Scenario {
    name: String,
    request: Vec<u8>,
    /// Baseline, then variant.
    stacks: [Stack; 2],
}

fn scenarios() -> Vec<Scenario> {
    let pairs = [
        #[cfg(feature = "axum")]
        ("axum", [Stack::AxumBare, Stack::AxumReadme]),
        #[cfg(feature = "axum")]
        (
            "axum_around_router",
            [Stack::AxumBare, Stack::AxumAroundRouter],
        ),
        #[cfg(feature = "axum")]
        (
            "axum_axum_layer",
            [Stack::AxumBare, Stack::AxumReadmeAxumLayer],
        ),
        #[cfg(feature = "axum")]
        (
            "axum_router_layer",
            [Stack::AxumBare, Stack::AxumRouterLayer],
        ),
        #[cfg(feature = "axum")]
        (
            "axum_identity_layer",
            [Stack::AxumBare, Stack::AxumIdentityLayer],
        ),
        ("hyper", [Stack::HyperBare, Stack::HyperReadme]),
    ];
    pairs
        .into_iter()
        .flat_map(|(framework, stacks)| {
            Kind::ALL.map(|kind| Scenario {
                name: format!("{framework}_{}", kind.name()),
                request: kind.request(),
                stacks,
            })
        })
        .collect()
}

/// The throughput goal of a scenario, README setup / bare (issue 22): 0.99
/// for hyper, 0.98 for axum.
fn throughput_goal(scenario: &str) -> f64 {
    if scenario.starts_with("hyper") {
        0.99
    } else {
        0.98
    }
}
/// Allocation calls the README setup may add to a GET.
const GET_ALLOC_GOAL: f64 = 0.0;

// ---------------------------------------------------------------------------
// Interleaved measurement

struct Plan {
    warm_up: u64,
    passes: usize,
    rounds_per_pass: usize,
    round_target: Duration,
    alloc_rounds: usize,
    alloc_requests: u64,
}

impl Plan {
    fn new(settings: &Settings) -> Self {
        let (warm_up, passes, rounds_per_pass, round_ms, alloc_rounds, alloc_requests) =
            if settings.full {
                (200, 3, 80, 10, 5, 2000)
            } else {
                (3, 1, 2, 2, 1, 20)
            };
        Self {
            warm_up,
            passes,
            rounds_per_pass,
            round_target: Duration::from_millis(round_ms),
            alloc_rounds,
            alloc_requests,
        }
    }
}

/// The two threads that do the work: the client (main) and the server.
struct Threads {
    client: String,
    server: String,
}

impl Threads {
    /// The calling thread is the client; asks the server runtime for its own.
    fn new(runtime: &Runtime, server: &Handle) -> Option<Self> {
        let client = current_tid()?;
        let server = runtime
            .block_on(server.spawn(async { current_tid() }))
            .ok()??;
        Some(Self { client, server })
    }

    /// Nanoseconds both threads have run on a CPU so far.
    fn cpu_ns(&self) -> Option<u64> {
        Some(thread_cpu_ns(&self.client)? + thread_cpu_ns(&self.server)?)
    }
}

/// The kernel's id of the calling thread (Linux).
fn current_tid() -> Option<String> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    Some(link.file_name()?.to_str()?.to_owned())
}

/// Time thread `tid` of this process has spent on a CPU, user and kernel,
/// in nanoseconds (first field of its `schedstat`, Linux). Unlike elapsed
/// time it leaves out what other processes ran on the shared CPU.
fn thread_cpu_ns(tid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// One side of one round.
#[derive(Clone, Copy, Default)]
struct Sample {
    elapsed: Duration,
    cpu_ns: Option<u64>,
    alloc_calls: u64,
}

struct Measured {
    /// variant/baseline elapsed time ratio of each round, by pass.
    time_ratios: Vec<Vec<f64>>,
    /// variant/baseline CPU time ratio of each round, by pass (empty
    /// without schedstat).
    cpu_ratios: Vec<Vec<f64>>,
    /// Seconds per request of each round: baseline, variant.
    per_request: [Vec<f64>; 2],
    /// CPU seconds (client + server thread) per request of each round.
    cpu_per_request: [Vec<f64>; 2],
    /// Allocation calls per request (medians): baseline, variant, added.
    allocations: [f64; 3],
}

/// Both clients send `n` requests, in ABBA order by `round`; returns the time
/// and CPU time each took and the allocation calls of the whole process
/// meanwhile.
async fn abba_round(
    clients: &mut [Client; 2],
    threads: Option<&Threads>,
    request: &[u8],
    n: u64,
    round: usize,
) -> [Sample; 2] {
    let mut out = [Sample::default(); 2];
    for i in common::abba_order(round) {
        let cpu = threads.and_then(Threads::cpu_ns);
        let calls = alloc_calls();
        let elapsed = clients[i].run(request, n).await;
        out[i] = Sample {
            elapsed,
            alloc_calls: alloc_calls() - calls,
            cpu_ns: cpu
                .zip(threads.and_then(Threads::cpu_ns))
                .map(|(before, after)| after - before),
        };
    }
    out
}

fn interleave(
    runtime: &Runtime,
    threads: Option<&Threads>,
    plan: &Plan,
    scenario: &Scenario,
    clients: &mut [Client; 2],
) -> Measured {
    let request = &scenario.request;
    let [a, b] = runtime.block_on(abba_round(clients, threads, request, plan.warm_up, 0));
    let slowest = a.elapsed.max(b.elapsed) / plan.warm_up as u32;
    let per_round = ((plan.round_target.as_secs_f64() / slowest.as_secs_f64().max(1e-7)) as u64)
        .clamp(5, 20_000);

    let mut measured = Measured {
        time_ratios: Vec::new(),
        cpu_ratios: Vec::new(),
        per_request: Default::default(),
        cpu_per_request: Default::default(),
        allocations: [f64::NAN; 3],
    };
    for _pass in 0..plan.passes {
        let (mut times, mut cpus) = (Vec::new(), Vec::new());
        for round in 0..plan.rounds_per_pass {
            let sides = runtime.block_on(abba_round(clients, threads, request, per_round, round));
            let [a, b] = sides.map(|s| s.elapsed.as_secs_f64());
            times.push(b / a);
            measured.per_request[0].push(a / per_round as f64);
            measured.per_request[1].push(b / per_round as f64);
            if let [Some(a), Some(b)] = sides.map(|s| s.cpu_ns) {
                cpus.push(b as f64 / a.max(1) as f64);
                measured.cpu_per_request[0].push(a as f64 * 1e-9 / per_round as f64);
                measured.cpu_per_request[1].push(b as f64 * 1e-9 / per_round as f64);
            }
        }
        measured.time_ratios.push(times);
        if !cpus.is_empty() {
            measured.cpu_ratios.push(cpus);
        }
    }

    let n = plan.alloc_requests;
    let mut per_request: [Vec<f64>; 3] = Default::default();
    for round in 0..plan.alloc_rounds {
        let [a, b] = runtime
            .block_on(abba_round(clients, None, request, n, round))
            .map(|s| s.alloc_calls as f64);
        per_request[0].push(a / n as f64);
        per_request[1].push(b / n as f64);
        per_request[2].push((b - a) / n as f64);
    }
    measured.allocations = per_request.map(|v| median(&v));
    measured
}

// ---------------------------------------------------------------------------
// Instructions per request under callgrind

/// Requests of the warm-up each child makes before the counted ones.
const CHILD_WARM_UP: u64 = 200;
/// Counted requests of a child in the full run.
const CHILD_REQUESTS: u64 = 2000;

/// The child process: serves `stack` and sends it `warm_up + n` requests of
/// `kind`. Also what the smoke run calls in-process.
/// Returns the client's counts and the allocation calls of the `n` requests.
fn run_child(stack: Stack, kind: Kind, warm_up: u64, n: u64) -> (common::ClientStats, u64) {
    let server = common::server_runtime(None);
    let runtime = common::client_runtime();
    let mut client = Client::new(stack.start(&server), None);
    let request = kind.request();
    runtime.block_on(client.run(&request, warm_up));
    let calls = alloc_calls();
    runtime.block_on(client.run(&request, n));
    (client.stats, alloc_calls() - calls)
}

/// Parses [`CHILD_ENV`] and runs the child; `false` when this is no child.
fn child_main() -> bool {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return false;
    };
    let mut parts = spec.split(':');
    let (Some(stack), Some(kind), Some(n)) = (
        parts.next().and_then(Stack::from_name),
        parts.next().and_then(Kind::from_name),
        parts.next().and_then(|n| n.parse().ok()),
    ) else {
        eprintln!("{CHILD_ENV}: expected <stack>:<request>:<n>, got {spec:?}");
        std::process::exit(2);
    };
    let (stats, alloc_calls) = run_child(stack, kind, CHILD_WARM_UP, n);
    println!(
        "ok {} errors {} alloc_calls {alloc_calls}",
        stats.ok, stats.errors
    );
    true
}

/// Instructions of one callgrind run: main thread (client), other threads
/// (the server).
#[derive(Clone, Copy, Default)]
struct Counts {
    client: u64,
    server: u64,
    /// Allocation calls of the counted requests, whole process.
    alloc_calls: u64,
}

/// The `totals:` line of a callgrind output file.
fn callgrind_total(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with("totals:"))
        .or_else(|| text.lines().find(|l| l.starts_with("summary:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs this bench under callgrind as a child serving `stack` for `n`
/// counted requests of `kind`; `None` (with a note) when that failed.
fn callgrind_run(dir: &Path, stack: Stack, kind: Kind, n: u64) -> Result<Counts, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = dir.join(format!("{}-{}-{n}.out", stack.name(), kind.name()));
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--separate-threads=yes")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .env(CHILD_ENV, format!("{}:{}:{n}", stack.name(), kind.name()))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("valgrind: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let alloc_calls = stdout
        .split_whitespace()
        .skip_while(|&word| word != "alloc_calls")
        .nth(1)
        .and_then(|n| n.parse().ok());
    let (true, true, Some(alloc_calls)) = (
        output.status.success(),
        stdout.contains(" errors 0 "),
        alloc_calls,
    ) else {
        return Err(format!(
            "{} {}: child failed ({}): {}",
            stack.name(),
            kind.name(),
            output.status,
            stdout.trim()
        ));
    };
    // With --separate-threads, thread k writes `<file>-0k`; thread 1 is main.
    let mut counts = Counts {
        alloc_calls,
        ..Counts::default()
    };
    for thread in 1..=9 {
        let file = PathBuf::from(format!("{}-{thread:02}", out.display()));
        let Some(total) = callgrind_total(&file) else {
            continue;
        };
        if thread == 1 {
            counts.client += total;
        } else {
            counts.server += total;
        }
    }
    Ok(counts)
}

/// Instructions per request of `stack` for `kind`: client, server; and
/// allocation calls per request.
fn instructions_per_request(dir: &Path, stack: Stack, kind: Kind) -> Result<[f64; 3], String> {
    let none = callgrind_run(dir, stack, kind, 0)?;
    let some = callgrind_run(dir, stack, kind, CHILD_REQUESTS)?;
    let per = |a: u64, b: u64| (b as f64 - a as f64) / CHILD_REQUESTS as f64;
    Ok([
        per(none.client, some.client),
        per(none.server, some.server),
        per(none.alloc_calls, some.alloc_calls),
    ])
}

fn valgrind_available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Part 3; returns its summary.
fn instruction_counts(settings: &Settings) -> String {
    // The selected rows, each with the bare row it is compared with.
    let rows: Vec<(Kind, Vec<Stack>)> = Kind::ALL
        .into_iter()
        .map(|kind| {
            let selected = |stack: Stack| settings.selected(&row_name(stack, kind));
            let stacks = Stack::ALL
                .iter()
                .copied()
                .filter(|&stack| {
                    selected(stack)
                        || (stack == stack.bare()
                            && Stack::ALL
                                .iter()
                                .any(|&other| other.bare() == stack && selected(other)))
                })
                .collect();
            (kind, stacks)
        })
        .filter(|(_, stacks): &(Kind, Vec<Stack>)| !stacks.is_empty())
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    if !settings.full {
        // Smoke: every selected server in-process, no valgrind.
        let mut failed = Vec::new();
        for (kind, stacks) in &rows {
            for &stack in stacks {
                if run_child(stack, *kind, 2, 3).0.errors > 0 {
                    failed.push(row_name(stack, *kind));
                }
            }
        }
        return format!(
            "instructions: smoke run of every server in-process, failed: {failed:?} (SMOKE RUN, \
             no callgrind)\n"
        );
    }
    if std::env::var_os("LINGER_BENCH_NO_CALLGRIND").is_some() {
        return "instructions: skipped (LINGER_BENCH_NO_CALLGRIND)\n".to_owned();
    }
    if !valgrind_available() {
        return "instructions: skipped (no `valgrind` on PATH)\n".to_owned();
    }
    let dir = std::env::temp_dir().join(format!("linger-stack-callgrind-{}", std::process::id()));
    if let Err(error) = std::fs::create_dir_all(&dir) {
        return format!("instructions: skipped ({}: {error})\n", dir.display());
    }
    let mut out = format!(
        "instructions per request under callgrind (user space; ({CHILD_WARM_UP} + \
         {CHILD_REQUESTS}) − ({CHILD_WARM_UP} + 0) requests, one child process per row; \
         outputs in {})\n",
        dir.display()
    );
    out.push_str(&format!(
        "{:<54} {:>8} {:>8} {:>8} {:>9} {:>9} {:>7} {:>7}\n",
        "row", "client", "server", "added", "server ×", "process ×", "allocs", "added"
    ));
    for (kind, stacks) in rows {
        let mut bare: Option<[f64; 3]> = None;
        for stack in stacks {
            let name = row_name(stack, kind);
            let [client, server, allocs] = match instructions_per_request(&dir, stack, kind) {
                Ok(counts) => counts,
                Err(error) => {
                    out.push_str(&format!("{name:<54} failed: {error}\n"));
                    continue;
                }
            };
            if stack == stack.bare() {
                bare = Some([client, server, allocs]);
            }
            let (added, server_ratio, total_ratio, added_allocs) = match bare {
                Some([bc, bs, ba]) => (
                    format!("{:+.0}", server - bs),
                    format!("{:.3}", server / bs),
                    format!("{:.3}", (client + server) / (bc + bs)),
                    // `+ 0.0` turns a rounded −0 into 0.
                    format!("{:+.2}", ((allocs - ba) * 100.0).round() / 100.0 + 0.0),
                ),
                None => Default::default(),
            };
            out.push_str(&format!(
                "{name:<54} {client:>8.0} {server:>8.0} {added:>8} {server_ratio:>9} \
                 {total_ratio:>9} {allocs:>7.2} {added_allocs:>7}\n"
            ));
        }
    }
    out.push_str(
        "client, server: instructions per request of the main thread and of the server thread; \
         added, ×: against the bare server of the same framework (first row of each group); \
         process ×: client + server; allocs: allocation calls per request, whole process.\n",
    );
    out
}

fn row_name(stack: Stack, kind: Kind) -> String {
    format!("instructions/{}/{}", kind.name(), stack.name())
}

// ---------------------------------------------------------------------------

fn main() {
    if child_main() {
        return;
    }
    let settings = Settings::from_args();
    let mut criterion = common::criterion();
    let pinned = common::pin_this_thread();
    let server = common::server_runtime(pinned.as_deref());
    let runtime = common::client_runtime();

    let scenarios: Vec<Scenario> = scenarios()
        .into_iter()
        .filter(|s| settings.selected(&s.name))
        .collect();
    let mut clients: Vec<[Client; 2]> = scenarios
        .iter()
        .map(|s| {
            s.stacks
                .map(|stack| Client::new(stack.start(&server), None))
        })
        .collect();

    for (scenario, pair) in scenarios.iter().zip(&mut clients) {
        let mut group = criterion.benchmark_group(&scenario.name);
        group.throughput(Throughput::Elements(1));
        for (stack, client) in scenario.stacks.iter().zip(pair) {
            group.bench_function(stack.name(), |b| {
                b.iter_custom(|iters| runtime.block_on(client.run(&scenario.request, iters)));
            });
        }
        group.finish();
    }
    criterion.final_summary();

    let plan = Plan::new(&settings);
    let threads = Threads::new(&runtime, &server);
    let results: Vec<Measured> = scenarios
        .iter()
        .zip(&mut clients)
        .map(|(scenario, pair)| interleave(&runtime, threads.as_ref(), &plan, scenario, pair))
        .collect();

    let instructions = instruction_counts(&settings);

    print_summary(&settings, &plan, &scenarios, &results, &clients);
    if cfg!(not(feature = "axum")) {
        println!("NOTE: built without feature `axum`: the axum scenarios did not run");
    }
    match pinned {
        Some(cpu) => println!("client and server threads pinned to CPU {cpu}"),
        None => println!("{}", common::not_pinned_note()),
    }
    println!();
    print!("{instructions}");
}

/// Median, interquartile range and per-pass medians of time ratios
/// (variant/baseline), turned into throughput ratios (baseline/variant).
struct RatioSummary {
    throughput: f64,
    range: String,
    passes: String,
}

impl RatioSummary {
    fn new(by_pass: &[Vec<f64>]) -> Self {
        let mut all: Vec<f64> = by_pass.concat();
        all.sort_by(f64::total_cmp);
        Self {
            throughput: 1.0 / median(&all),
            range: format!(
                "[{:.3}..{:.3}]",
                1.0 / percentile(&all, 0.75),
                1.0 / percentile(&all, 0.25)
            ),
            passes: by_pass
                .iter()
                .map(|pass| format!("{:.3}", 1.0 / median(pass)))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

const ROW: usize = 20;

fn print_summary(
    settings: &Settings,
    plan: &Plan,
    scenarios: &[Scenario],
    results: &[Measured],
    clients: &[[Client; 2]],
) {
    println!();
    println!(
        "stack summary ({} passes of {} ABBA rounds; ratio = baseline time / variant time, i.e. \
         throughput variant / baseline: median over all rounds [interquartile range], then the \
         median of each pass){}",
        plan.passes,
        plan.rounds_per_pass,
        settings.smoke_note()
    );
    println!(
        "{:<ROW$} {:<44} {:>10} {:>10} {:>22} {:>20} {:>7} {:>4}",
        "scenario",
        "measure: variant / baseline",
        "base/req",
        "var/req",
        "ratio [p25..p75]",
        "per pass",
        "goal",
        "met"
    );
    let per_request = |v: &[Vec<f64>; 2]| {
        v.each_ref()
            .map(|v| fmt_duration(Duration::from_secs_f64(median(v))))
    };
    for ((scenario, m), pair) in scenarios.iter().zip(results).zip(clients) {
        let [base, variant] = scenario.stacks.map(Stack::name);
        let errors = pair[0].stats.errors + pair[1].stats.errors;
        let wall = RatioSummary::new(&m.time_ratios);
        let goal = throughput_goal(&scenario.name);
        let [a, b] = per_request(&m.per_request);
        println!(
            "{:<ROW$} {:<44} {a:>10} {b:>10} {:>22} {:>20} {:>7} {:>4}",
            scenario.name,
            format!("throughput: {variant} / {base}"),
            format!("{:.3} {}", wall.throughput, wall.range),
            wall.passes,
            format!("≥ {goal}"),
            if wall.throughput >= goal && errors == 0 {
                "yes"
            } else {
                "NO"
            }
        );
        if !m.cpu_ratios.is_empty() {
            let cpu = RatioSummary::new(&m.cpu_ratios);
            let [a, b] = per_request(&m.cpu_per_request);
            println!(
                "{:<ROW$} {:<44} {a:>10} {b:>10} {:>22} {:>20} {:>7} {:>4}",
                "",
                "same, from CPU time (client + server thread)",
                format!("{:.3} {}", cpu.throughput, cpu.range),
                cpu.passes,
                format!("≥ {goal}"),
                if cpu.throughput >= goal { "yes" } else { "NO" }
            );
        }
        let [a, b, added] = m.allocations;
        // Issue 22: nothing added to a request whose body is empty or read
        // whole, which every kind here is.
        let (goal, met) = (
            format!("≤ {GET_ALLOC_GOAL}"),
            if added <= GET_ALLOC_GOAL + 0.005 {
                "yes"
            } else {
                "NO"
            },
        );
        println!(
            "{:<ROW$} {:<44} {a:>10.2} {b:>10.2} {:>22} {:>20} {goal:>7} {met:>4}",
            "",
            "alloc calls/req: added",
            format!("{added:+.2}"),
            "",
        );
        for (stack, client) in scenario.stacks.iter().zip(pair) {
            let s = client.stats;
            println!(
                "{:<ROW$}   {}: ok {} errors {} resets {} eofs {} timeouts {} stale-retries {} \
                 connects {}",
                "",
                stack.name(),
                s.ok,
                s.errors,
                s.resets,
                s.eofs,
                s.timeouts,
                s.stale_retries,
                s.connects
            );
        }
    }
    println!(
        "base/req, var/req: median time (CPU time) per request of the interleaved rounds; CPU \
         time is the client and the server thread's, user and kernel (schedstat)."
    );
    println!(
        "alloc calls/req: alloc+alloc_zeroed+realloc calls in the whole process (client + server) \
         per request, median over {} interleaved rounds of {} requests; added = variant − \
         baseline.",
        plan.alloc_rounds, plan.alloc_requests
    );
}
