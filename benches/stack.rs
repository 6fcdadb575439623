//! The README setup against the same server without `linger`, on loopback
//! keep-alive HTTP/1.1: bullet 6 of BENCHMARKS.md, which explains goals and
//! method.
//!
//! * axum (feature `axum`): `Router::layer(DrainBodyLayer::new(256 * 1024))`
//!   served by `axum::serve(LingeringListener::new(tcp), app)`, against the
//!   same `Router` without the layer served by `axum::serve(tcp, app)`.
//! * hyper: the README's accept loop (`LingeringListener::accept`,
//!   `ServiceBuilder` with the layer, `http1::Builder`), against the same
//!   loop on the bare `TcpListener` without the layer.
//!
//! For each, a GET with a 2-byte response and a POST whose 1 KiB body the
//! handler reads whole. Three measures:
//!
//! 1. Criterion, each server on its own (a cross-check only).
//! 2. Interleaved ABBA rounds of ~10 ms with the same request count on both
//!    servers, in three passes: throughput ratio (median of the per-round
//!    ratios, interquartile range, median of each pass), then allocation
//!    calls per request with a counting allocator.
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
const README_LIMIT: u64 = 256 * 1024;

/// Set in the child processes that callgrind runs: `<stack>:<request>:<n>`.
const CHILD_ENV: &str = "LINGER_BENCH_CALLGRIND_CHILD";

// ---------------------------------------------------------------------------
// Servers

/// One way of serving the same application.
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
    /// The README's axum quick start:
    /// `axum::serve(LingeringListener::new(tcp), router.layer(layer))`.
    #[cfg(feature = "axum")]
    AxumReadme,
    #[cfg(feature = "axum")]
    AxumListenerOnly,
    #[cfg(feature = "axum")]
    AxumLayerOnly,
    /// The README's other axum form, the layer around the whole `Router`
    /// (`layer.layer(router)`), behind the `LingeringListener`.
    #[cfg(feature = "axum")]
    AxumAroundRouter,
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
        Stack::AxumListenerOnly,
        #[cfg(feature = "axum")]
        Stack::AxumLayerOnly,
        #[cfg(feature = "axum")]
        Stack::AxumAroundRouter,
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
            Stack::AxumListenerOnly => "axum_listener_only",
            #[cfg(feature = "axum")]
            Stack::AxumLayerOnly => "axum_layer_only",
            #[cfg(feature = "axum")]
            Stack::AxumAroundRouter => "axum_layer_around_router",
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
                axum::serve(LingeringListener::new(tcp), router().layer(layer)).await
            }
            Stack::AxumListenerOnly => axum::serve(LingeringListener::new(tcp), router()).await,
            Stack::AxumLayerOnly => axum::serve(tcp, router().layer(layer)).await,
            Stack::AxumAroundRouter => {
                let app = layer.layer(router());
                let make = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
                axum::serve(LingeringListener::new(tcp), make).await
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
}

impl Kind {
    const ALL: [Kind; 2] = [Kind::Get, Kind::PostRead1k];

    fn name(self) -> &'static str {
        match self {
            Kind::Get => "get",
            Kind::PostRead1k => "post_read_1k",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    fn request(self) -> Vec<u8> {
        match self {
            Kind::Get => common::GET.to_vec(),
            Kind::PostRead1k => {
                let body_len = 1024;
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
    kind: Kind,
    request: Vec<u8>,
    /// Baseline, then variant.
    stacks: [Stack; 2],
}

fn scenarios() -> Vec<Scenario> {
    let pairs = [
        #[cfg(feature = "axum")]
        ("axum", [Stack::AxumBare, Stack::AxumReadme]),
        ("hyper", [Stack::HyperBare, Stack::HyperReadme]),
    ];
    pairs
        .into_iter()
        .flat_map(|(framework, stacks)| {
            Kind::ALL.map(|kind| Scenario {
                name: format!("{framework}_{}", kind.name()),
                kind,
                request: kind.request(),
                stacks,
            })
        })
        .collect()
}

/// The throughput goal of every scenario: README setup / bare.
const THROUGHPUT_GOAL: f64 = 0.98;
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
                (200, 3, 60, 10, 5, 2000)
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

struct Measured {
    /// variant/baseline time-per-request ratio of each round, by pass.
    time_ratios: Vec<Vec<f64>>,
    /// Seconds per request of each round: baseline, variant.
    per_request: [Vec<f64>; 2],
    /// Allocation calls per request (medians): baseline, variant, added.
    allocations: [f64; 3],
}

/// Both clients send `n` requests, in ABBA order by `round`; returns the time
/// each took and the allocation calls of the whole process meanwhile.
async fn abba_round(
    clients: &mut [Client; 2],
    request: &[u8],
    n: u64,
    round: usize,
) -> [(Duration, u64); 2] {
    let mut out = [(Duration::ZERO, 0); 2];
    for i in common::abba_order(round) {
        let calls = alloc_calls();
        let elapsed = clients[i].run(request, n).await;
        out[i] = (elapsed, alloc_calls() - calls);
    }
    out
}

fn interleave(
    runtime: &Runtime,
    plan: &Plan,
    scenario: &Scenario,
    clients: &mut [Client; 2],
) -> Measured {
    let request = &scenario.request;
    let [(a, _), (b, _)] = runtime.block_on(abba_round(clients, request, plan.warm_up, 0));
    let slowest = a.max(b) / plan.warm_up as u32;
    let per_round = ((plan.round_target.as_secs_f64() / slowest.as_secs_f64().max(1e-7)) as u64)
        .clamp(5, 20_000);

    let mut measured = Measured {
        time_ratios: Vec::new(),
        per_request: [Vec::new(), Vec::new()],
        allocations: [f64::NAN; 3],
    };
    for _pass in 0..plan.passes {
        let mut ratios = Vec::with_capacity(plan.rounds_per_pass);
        for round in 0..plan.rounds_per_pass {
            let [(a, _), (b, _)] = runtime.block_on(abba_round(clients, request, per_round, round));
            ratios.push(b.as_secs_f64() / a.as_secs_f64());
            measured.per_request[0].push(a.as_secs_f64() / per_round as f64);
            measured.per_request[1].push(b.as_secs_f64() / per_round as f64);
        }
        measured.time_ratios.push(ratios);
    }

    let n = plan.alloc_requests;
    let mut per_request: [Vec<f64>; 3] = Default::default();
    for round in 0..plan.alloc_rounds {
        let [(_, a), (_, b)] = runtime.block_on(abba_round(clients, request, n, round));
        per_request[0].push(a as f64 / n as f64);
        per_request[1].push(b as f64 / n as f64);
        per_request[2].push((b as f64 - a as f64) / n as f64);
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
fn run_child(stack: Stack, kind: Kind, warm_up: u64, n: u64) -> common::ClientStats {
    let server = common::server_runtime(None);
    let runtime = common::client_runtime();
    let mut client = Client::new(stack.start(&server), None);
    runtime.block_on(client.run(&kind.request(), warm_up + n));
    client.stats
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
    let stats = run_child(stack, kind, CHILD_WARM_UP, n);
    println!("ok {} errors {}", stats.ok, stats.errors);
    true
}

/// Instructions of one callgrind run: main thread (client), other threads
/// (the server).
#[derive(Clone, Copy, Default)]
struct Counts {
    client: u64,
    server: u64,
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
    if !output.status.success() || !stdout.contains(" errors 0") {
        return Err(format!(
            "{} {}: child failed ({}): {}",
            stack.name(),
            kind.name(),
            output.status,
            stdout.trim()
        ));
    }
    // With --separate-threads, thread k writes `<file>-0k`; thread 1 is main.
    let mut counts = Counts::default();
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

/// Instructions per request of `stack` for `kind`: client, server.
fn instructions_per_request(dir: &Path, stack: Stack, kind: Kind) -> Result<[f64; 2], String> {
    let none = callgrind_run(dir, stack, kind, 0)?;
    let some = callgrind_run(dir, stack, kind, CHILD_REQUESTS)?;
    let per = |a: u64, b: u64| (b as f64 - a as f64) / CHILD_REQUESTS as f64;
    Ok([per(none.client, some.client), per(none.server, some.server)])
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
                if run_child(stack, *kind, 2, 3).errors > 0 {
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
        "{:<38} {:>12} {:>12} {:>12} {:>10} {:>14}\n",
        "server", "client", "server", "added", "server ×", "whole process ×"
    ));
    for (kind, stacks) in rows {
        let mut bare: Option<[f64; 2]> = None;
        for stack in stacks {
            let name = row_name(stack, kind);
            let [client, server] = match instructions_per_request(&dir, stack, kind) {
                Ok(counts) => counts,
                Err(error) => {
                    out.push_str(&format!("{name:<38} failed: {error}\n"));
                    continue;
                }
            };
            if stack == stack.bare() {
                bare = Some([client, server]);
            }
            let (added, server_ratio, total_ratio) = match bare {
                Some([bc, bs]) => (
                    format!("{:+.0}", server - bs),
                    format!("{:.3}", server / bs),
                    format!("{:.3}", (client + server) / (bc + bs)),
                ),
                None => Default::default(),
            };
            out.push_str(&format!(
                "{name:<38} {client:>12.0} {server:>12.0} {added:>12} {server_ratio:>10} \
                 {total_ratio:>14}\n"
            ));
        }
    }
    out.push_str(
        "added, ×: against the bare server of the same framework (first row of each group).\n",
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
    let results: Vec<Measured> = scenarios
        .iter()
        .zip(&mut clients)
        .map(|(scenario, pair)| interleave(&runtime, &plan, scenario, pair))
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

fn print_summary(
    settings: &Settings,
    plan: &Plan,
    scenarios: &[Scenario],
    results: &[Measured],
    clients: &[[Client; 2]],
) {
    println!();
    println!(
        "stack summary ({} passes of {} ABBA rounds; throughput ratio = README setup / bare, \
         median over all rounds [interquartile range], then the median of each pass){}",
        plan.passes,
        plan.rounds_per_pass,
        settings.smoke_note()
    );
    println!(
        "{:<20} {:<34} {:>10} {:>10} {:>22} {:>22} {:>7} {:>4}",
        "scenario", "measure", "bare", "readme", "ratio [p25..p75]", "per pass", "goal", "met"
    );
    for ((scenario, m), pair) in scenarios.iter().zip(results).zip(clients) {
        let mut all: Vec<f64> = m.time_ratios.concat();
        all.sort_by(f64::total_cmp);
        let throughput = 1.0 / median(&all);
        let range = format!(
            "[{:.3}..{:.3}]",
            1.0 / percentile(&all, 0.75),
            1.0 / percentile(&all, 0.25)
        );
        let passes: Vec<String> = m
            .time_ratios
            .iter()
            .map(|pass| format!("{:.3}", 1.0 / median(pass)))
            .collect();
        let per_request = m
            .per_request
            .each_ref()
            .map(|v| fmt_duration(Duration::from_secs_f64(median(v))));
        let errors = pair[0].stats.errors + pair[1].stats.errors;
        println!(
            "{:<20} {:<34} {:>10} {:>10} {:>22} {:>22} {:>7} {:>4}",
            scenario.name,
            "throughput",
            per_request[0],
            per_request[1],
            format!("{throughput:.3} {range}"),
            passes.join(" "),
            format!("≥ {THROUGHPUT_GOAL}"),
            if throughput >= THROUGHPUT_GOAL && errors == 0 {
                "yes"
            } else {
                "NO"
            }
        );
        let [a, b, added] = m.allocations;
        let (goal, met) = match scenario.kind {
            Kind::Get => (
                format!("≤ {GET_ALLOC_GOAL}"),
                if added <= GET_ALLOC_GOAL + 0.005 {
                    "yes"
                } else {
                    "NO"
                },
            ),
            Kind::PostRead1k => ("—".to_owned(), "—"),
        };
        println!(
            "{:<20} {:<34} {:>10.2} {:>10.2} {:>22} {:>22} {:>7} {:>4}",
            "",
            "alloc calls/req: added",
            a,
            b,
            format!("{added:+.2}"),
            "",
            goal,
            met
        );
        for (stack, client) in scenario.stacks.iter().zip(pair) {
            let s = client.stats;
            println!(
                "{:<20}   {}: ok {} errors {} resets {} eofs {} timeouts {} stale-retries {} \
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
    println!("bare, readme: median time per request of the interleaved rounds.");
    println!(
        "alloc calls/req: alloc+alloc_zeroed+realloc calls in the whole process (client + server) \
         per request, median over {} interleaved rounds of {} requests; added = readme − bare.",
        plan.alloc_rounds, plan.alloc_requests
    );
}
