//! Benchmarks of [`linger::DrainBodyLayer`] on loopback HTTP/1.1: bullets 1–3
//! of BENCHMARKS.md, which explains the scenarios, goals and method.
//!
//! Each scenario has two real hyper 1 servers (baseline and variant) on one
//! server thread and, on the main thread, one raw keep-alive `TcpStream`
//! client per server that writes pre-built requests, parses the responses and
//! replaces a connection the server closed. Criterion measures each variant
//! on its own; because the machine may be shared, the summary table comes from
//! a separate pass that interleaves baseline and variant in ABBA rounds of
//! about 25 ms with equal request counts (median and interquartile range of
//! the per-round ratios), and counts allocation calls the same way.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo bench --bench drain
//! cargo bench --bench drain -- get_tiny      # one scenario (substring filter)
//! ```
//!
//! Client and server threads share one CPU (`LINGER_BENCH_NO_PIN=1` to not
//! pin; see `common::pin_this_thread`). `cargo test --benches` runs every
//! scenario briefly, as a smoke test.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use common::{alloc_calls, fmt_duration, median, percentile, Client, OkResponse, Settings};
use criterion::Throughput;
use http::Request;
use http_body_util::BodyExt;
use hyper::body::Body;
use linger::DrainBodyLayer;
use tokio::net::TcpListener;
use tower::ServiceBuilder;

/// Counts allocation calls only: bullet 1's "allocations added per request".
#[global_allocator]
static GLOBAL: common::CountingAlloc<false> = common::CountingAlloc;

// ---------------------------------------------------------------------------
// Servers

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

async fn handle<B>(handler: Handler, request: Request<B>) -> Result<OkResponse, Infallible>
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
    Ok(common::ok_response())
}

/// Starts an HTTP/1 server on `127.0.0.1:0` on the server runtime.
fn start_server(server: &tokio::runtime::Handle, handler: Handler, stack: Stack) -> SocketAddr {
    let (listener, addr) = common::bind_local();
    server.spawn(async move {
        let listener = TcpListener::from_std(listener).expect("tokio listener");
        loop {
            let stream = common::accept(&listener).await;
            // One closure per arm: the layer changes the request body type.
            match stack {
                Stack::Plain => {
                    let service =
                        ServiceBuilder::new().service_fn(move |request| handle(handler, request));
                    tokio::spawn(common::serve_http1(stream, service));
                }
                Stack::Layered => {
                    let service = ServiceBuilder::new()
                        .layer(DrainBodyLayer::default())
                        .service_fn(move |request| handle(handler, request));
                    tokio::spawn(common::serve_http1(stream, service));
                }
            }
        }
    });
    addr
}

// ---------------------------------------------------------------------------
// Client

fn post_request(body_len: usize) -> Vec<u8> {
    let mut request = format!(
        "POST /upload HTTP/1.1\r\nHost: bench\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {body_len}\r\n\r\n"
    )
    .into_bytes();
    request.resize(request.len() + body_len, b'x');
    request
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

/// One server of a scenario: its label in the reports, handler and stack.
#[derive(Clone, Copy)]
struct Side(&'static str, Handler, Stack);

struct Scenario {
    name: &'static str,
    request: Vec<u8>,
    /// Baseline, then variant.
    sides: [Side; 2],
    goal: Goal,
    /// Most allocation calls the variant may add per request; allocations
    /// are counted only where this is set.
    max_added_allocs: Option<f64>,
    /// The variant must not fail a single request.
    zero_errors: bool,
    /// Body bytes sent with the head; the rest only after the response.
    late_body: Option<usize>,
}

impl Scenario {
    /// A scenario where the variant must not fail a single request and
    /// allocations are not counted.
    fn new(name: &'static str, request: Vec<u8>, sides: [Side; 2], goal: Goal) -> Self {
        Self {
            name,
            request,
            sides,
            goal,
            max_added_allocs: None,
            zero_errors: true,
            late_body: None,
        }
    }

    fn late_split(&self) -> Option<usize> {
        let head = common::head_end(&self.request)?;
        self.late_body.map(|n| head + n)
    }
}

fn scenarios() -> Vec<Scenario> {
    use Handler::{Ignore, ReadAll};
    let with_and_without = |handler| {
        [
            Side("plain", handler, Stack::Plain),
            Side("layer", handler, Stack::Layered),
        ]
    };
    // Bullet 1: nothing left to drain, so only the layer's own cost.
    let overhead = |name, request, handler| Scenario {
        max_added_allocs: Some(1.0),
        zero_errors: false,
        ..Scenario::new(
            name,
            request,
            with_and_without(handler),
            Goal::ThroughputAtLeast(0.98),
        )
    };
    // Bullet 2: a body the handler ignores, all of it sent with the head or
    // only its first KiB before the response.
    let ignored = |name| {
        let sides = with_and_without(Ignore);
        Scenario::new(
            name,
            post_request(16 * 1024),
            sides,
            Goal::ThroughputAtLeast(2.0),
        )
    };
    // Bullet 3: the layer draining a body against the handler reading it.
    let drain_vs_read = |name, body_len| {
        let sides = [
            Side("handler_reads", ReadAll, Stack::Plain),
            Side("layer_drains", Ignore, Stack::Layered),
        ];
        Scenario::new(name, post_request(body_len), sides, Goal::TimeAtMost(1.05))
    };
    vec![
        overhead("get_tiny", common::GET.to_vec(), Ignore),
        overhead("post_read_1k", post_request(1024), ReadAll),
        ignored("post_ignored_16k"),
        Scenario {
            late_body: Some(1024),
            ..ignored("post_ignored_16k_late")
        },
        drain_vs_read("drain_16k", 16 * 1024),
        drain_vs_read("drain_256k", 256 * 1024),
    ]
}

// ---------------------------------------------------------------------------
// Interleaved measurement

/// Sizes of the interleaved pass.
struct Plan {
    /// Requests on each side before calibrating the round size.
    warm_up: u64,
    rounds: usize,
    round_target: Duration,
    alloc_rounds: usize,
    alloc_requests: u64,
}

impl Plan {
    fn new(settings: &Settings) -> Self {
        let (warm_up, rounds, round_ms, alloc_rounds, alloc_requests) = if settings.full {
            (50, 40, 25, 5, 2000)
        } else {
            (3, 2, 5, 1, 20)
        };
        Self {
            warm_up,
            rounds,
            round_target: Duration::from_millis(round_ms),
            alloc_rounds,
            alloc_requests,
        }
    }
}

/// What the interleaved pass measured for one scenario.
struct Measured {
    /// variant/baseline time-per-request ratio of each round.
    time_ratios: Vec<f64>,
    /// Seconds per request of each round: baseline, variant.
    per_request: [Vec<f64>; 2],
    /// Allocation calls per request (medians): baseline, variant, added.
    allocations: Option<[f64; 3]>,
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
    runtime: &tokio::runtime::Runtime,
    plan: &Plan,
    scenario: &Scenario,
    clients: &mut [Client; 2],
) -> Measured {
    let request = &scenario.request;
    // Warm up both connections and calibrate the round size on the slower one.
    let [(a, _), (b, _)] = runtime.block_on(abba_round(clients, request, plan.warm_up, 0));
    let slowest = a.max(b) / plan.warm_up as u32;
    let per_round = ((plan.round_target.as_secs_f64() / slowest.as_secs_f64().max(1e-7)) as u64)
        .clamp(5, 20_000);

    let mut measured = Measured {
        time_ratios: Vec::new(),
        per_request: [Vec::new(), Vec::new()],
        allocations: None,
    };
    for round in 0..plan.rounds {
        let [(a, _), (b, _)] = runtime.block_on(abba_round(clients, request, per_round, round));
        measured.time_ratios.push(b.as_secs_f64() / a.as_secs_f64());
        measured.per_request[0].push(a.as_secs_f64() / per_round as f64);
        measured.per_request[1].push(b.as_secs_f64() / per_round as f64);
    }

    // Separate rounds with no timing goal: nothing else runs in the process.
    if scenario.max_added_allocs.is_some() {
        let n = plan.alloc_requests;
        let mut per_request: [Vec<f64>; 3] = Default::default();
        for round in 0..plan.alloc_rounds {
            let [(_, a), (_, b)] = runtime.block_on(abba_round(clients, request, n, round));
            per_request[0].push(a as f64 / n as f64);
            per_request[1].push(b as f64 / n as f64);
            per_request[2].push((b as f64 - a as f64) / n as f64);
        }
        measured.allocations = Some(per_request.map(|v| median(&v)));
    }
    measured
}

fn main() {
    let settings = Settings::from_args();
    let mut criterion = common::criterion();
    let pinned = common::pin_this_thread();
    let server = common::server_runtime(pinned.as_deref());
    let runtime = common::client_runtime();

    let scenarios: Vec<Scenario> = scenarios()
        .into_iter()
        .filter(|s| settings.selected(s.name))
        .collect();
    let mut clients: Vec<[Client; 2]> = scenarios
        .iter()
        .map(|s| {
            s.sides.map(|Side(_, handler, stack)| {
                Client::new(start_server(&server, handler, stack), s.late_split())
            })
        })
        .collect();

    // Criterion: each variant on its own.
    for (scenario, pair) in scenarios.iter().zip(&mut clients) {
        let mut group = criterion.benchmark_group(scenario.name);
        group.throughput(Throughput::Elements(1));
        for (Side(label, ..), client) in scenario.sides.iter().zip(pair) {
            group.bench_function(*label, |b| {
                b.iter_custom(|iters| runtime.block_on(client.run(&scenario.request, iters)));
            });
        }
        group.finish();
    }
    criterion.final_summary();

    // Interleaved pass: the ratios reported below.
    let plan = Plan::new(&settings);
    let results: Vec<Measured> = scenarios
        .iter()
        .zip(&mut clients)
        .map(|(scenario, pair)| interleave(&runtime, &plan, scenario, pair))
        .collect();

    print_summary(&settings, &plan, &scenarios, &results, &clients);
    match pinned {
        Some(cpu) => println!("client and server threads pinned to CPU {cpu}"),
        None => println!("{}", common::not_pinned_note()),
    }
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
        "drain summary ({} ABBA rounds per scenario; ratio = median over rounds [interquartile \
         range]){}",
        plan.rounds,
        settings.smoke_note()
    );
    println!(
        "{:<22} {:<38} {:>11} {:>11} {:>24} {:>10} {:>5}",
        "scenario", "variant vs baseline", "base/req", "var/req", "ratio [p25..p75]", "goal", "met"
    );
    for ((scenario, m), pair) in scenarios.iter().zip(results).zip(clients) {
        let mut time = m.time_ratios.clone();
        time.sort_by(f64::total_cmp);
        let (lo, mid, hi) = (
            percentile(&time, 0.25),
            median(&time),
            percentile(&time, 0.75),
        );
        let (metric, ratio, range, goal, met) = match scenario.goal {
            Goal::ThroughputAtLeast(goal) => (
                "throughput",
                1.0 / mid,
                format!("[{:.3}..{:.3}]", 1.0 / hi, 1.0 / lo),
                format!("≥ {goal}×"),
                1.0 / mid >= goal,
            ),
            Goal::TimeAtMost(goal) => (
                "time/req",
                mid,
                format!("[{lo:.3}..{hi:.3}]"),
                format!("≤ {goal}×"),
                mid <= goal,
            ),
        };
        let [Side(base, ..), Side(variant, ..)] = scenario.sides;
        let errors_ok = !scenario.zero_errors || pair[1].stats.errors == 0;
        let per_request = m
            .per_request
            .each_ref()
            .map(|v| fmt_duration(Duration::from_secs_f64(median(v))));
        println!(
            "{:<22} {:<38} {:>11} {:>11} {:>24} {:>10} {:>5}",
            scenario.name,
            format!("{metric}: {variant} / {base}"),
            per_request[0],
            per_request[1],
            format!("{ratio:.3} {range}"),
            goal,
            if met && errors_ok { "yes" } else { "NO" }
        );
        if let (Some([a, b, added]), Some(goal)) = (m.allocations, scenario.max_added_allocs) {
            println!(
                "{:<22} {:<38} {:>11.2} {:>11.2} {:>24} {:>10} {:>5}",
                "",
                "alloc calls/req: added",
                a,
                b,
                format!("{added:+.2}"),
                format!("≤ {goal}"),
                if added <= goal { "yes" } else { "NO" }
            );
        }
        for (Side(label, ..), client) in scenario.sides.iter().zip(pair) {
            let s = client.stats;
            println!(
                "{:<22}   {label}: ok {} errors {} resets {} eofs {} timeouts {} stale-retries {} \
                 connects {}",
                "", s.ok, s.errors, s.resets, s.eofs, s.timeouts, s.stale_retries, s.connects
            );
        }
    }
    println!("base/req, var/req: median time per request of the interleaved rounds.");
    println!(
        "alloc calls/req: alloc+alloc_zeroed+realloc calls in the whole process (client + server) \
         per request, median over {} interleaved rounds of {} requests; added = variant − baseline.",
        plan.alloc_rounds, plan.alloc_requests
    );
    println!(
        "ok/errors/...: every request of the run (criterion, interleaved and allocation passes)."
    );
}
