//! A seeded chaos fleet: many concurrent raw TCP clients of random behaviour
//! against the README set-ups, the raw hyper accept loop ("Quick start:
//! hyper") and, with `--features axum`, `axum::serve(LingeringListener, Router
//! .layer(DrainBodyLayer::new(256 * 1024)))` ("Quick start: axum"), and the same
//! with the layer's axum flavour (`.axum()`). All use short `LingerConfig`
//! bounds and a 1.5 s drain deadline so that misbehaving peers cost little time.
//!
//! Behaviours: keep-alive sequences with ignored, partly read and fully read
//! bodies (`Content-Length` and chunked, empty to 1 MiB, around and above the
//! limit), early 413s, slow handlers and large responses; pipelining (with a
//! body above the limit in the middle); slow drip; `Expect: 100-continue`;
//! HTTP/1.0, with and without keep-alive; half-close; a body that stops
//! mid-way; aborts with RST (SO_LINGER 0) at any byte; peers that never send
//! FIN (reading or not); endless senders, fast and trickling; prefixes
//! followed by FIN; slow readers behind a small receive window; `Upgrade`
//! offers answered without 101; heads hyper rejects; a failing service
//! (hyper only). Every client starts with a different behaviour, so each
//! one runs against each server at least once.
//!
//! Invariants:
//! - every response a well-behaved client waits for arrives whole (exact
//!   status and bytes), a `Connection: close` is followed by a clean EOF
//!   (never a reset), and a connection whose body the layer can drain is
//!   reused;
//! - the handlers see only request lines that clients really sent: request
//!   bodies consist of requests for `/smuggled`, so a leftover parsed as a
//!   request shows up; and nothing pipelined behind a response that says
//!   `Connection: close` is served;
//! - once the clients are gone, every `LingerGroup` is idle (`wait_idle`:
//!   `lingering` and `background` at 0), the runtime is back to its tasks of
//!   before (so no drain, linger or connection task is left), the
//!   `DrainCounters` show no drain in progress and exactly one outcome per
//!   request that came with a body, and resident memory is near its baseline.
//!
//! `LINGER_CHAOS_SECS` sets how long clients start new sessions (default 3);
//! `LINGER_CHAOS_SEED` replays a seed (printed on failure).
//!
//! This file is the fleet driver: it starts the servers, runs the clients and
//! checks the invariants once they are gone. The clients' behaviours live in
//! `behaviours/` by theme, the servers in `servers.rs`, the requests in
//! `wire.rs` and the response checks in `expect.rs` (on the shared reader,
//! `tests/common/http1.rs`). A test binary of its own: it measures the
//! resident memory of the whole process, which tests running alongside would
//! blur, and it loads both cores for seconds.

mod behaviours;
mod expect;
#[path = "../common/http1.rs"]
mod http1;
mod rng;
mod servers;
mod wire;

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{timeout, Instant};

use behaviours::{Ledger, Session, BEHAVIOURS};
use rng::Rng;
#[cfg(feature = "axum")]
use servers::start_axum;
use servers::{start_hyper, start_hyper_one_task, Fleet};
use wire::{PATTERN, SMUGGLE};

/// Enough that every behaviour starts once against each of the three servers.
const CLIENTS: usize = 48;
/// Sessions per client per second of the run, at most.
const SESSIONS_PER_SECOND: usize = 15;
/// No session of any behaviour may take longer, however loaded the machine.
const SESSION_LIMIT: Duration = Duration::from_secs(20);
/// Settling after the clients: gauges, tasks.
const SETTLE_LIMIT: Duration = Duration::from_secs(15);

/// Client `id` of the fleet: sessions of behaviours and servers picked at random
/// (the first one fixed, for coverage) until `secs` have passed.
async fn client(id: usize, seed: u64, fleets: Arc<Vec<Fleet>>, ledger: Arc<Ledger>, secs: u64) {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut rng = Rng::new(seed ^ (id as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    for number in 0..SESSIONS_PER_SECOND * secs.max(1) as usize {
        if number > 0 && Instant::now() >= end {
            break;
        }
        // The first sessions of the fleet cover every behaviour on every server.
        let (behaviour, fleet) = if number == 0 {
            (
                BEHAVIOURS[id % BEHAVIOURS.len()].1,
                (id / BEHAVIOURS.len()) % fleets.len(),
            )
        } else {
            (rng.weighted(&BEHAVIOURS), rng.usize(0, fleets.len() - 1))
        };
        let fleet = &fleets[fleet];
        let tag = format!("{}{id}x{number}", &fleet.name[..1]);
        let mut session = Session::new(&ledger, fleet, Rng::new(rng.next_u64()), tag);
        let outcome = match timeout(SESSION_LIMIT, session.run(behaviour)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("session timed out after {SESSION_LIMIT:?}")),
        };
        if let Err(what) = outcome {
            ledger.failures.lock().unwrap().push(format!(
                "{} client {id} session {number} {behaviour:?}: {what}",
                fleet.name
            ));
        }
        *ledger
            .sessions
            .lock()
            .unwrap()
            .entry((behaviour, fleet.name))
            .or_default() += 1;
    }
}

/// Polls `cond` until it holds or `limit` passes; returns whether it held.
async fn settle(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= until {
            return false;
        }
        // The runtime's task count has no notification to wait for.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

async fn with_limit<F: Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_fleet() {
    let seed = env_u64("LINGER_CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let secs = env_u64("LINGER_CHAOS_SECS").unwrap_or(3);
    let replay =
        format!("seed {seed}: replay with LINGER_CHAOS_SEED={seed} LINGER_CHAOS_SECS={secs}");
    eprintln!("chaos fleet, {replay}");

    // The shared buffers are part of the baseline, not of what the run leaves behind.
    let _ = (SMUGGLE.len(), PATTERN.len());
    #[allow(unused_mut)]
    let mut fleets = vec![start_hyper().await, start_hyper_one_task().await];
    #[cfg(feature = "axum")]
    fleets.push(start_axum(false).await);
    #[cfg(feature = "axum")]
    fleets.push(start_axum(true).await);
    let fleets = Arc::new(fleets);
    let metrics = tokio::runtime::Handle::current().metrics();
    // The test's own task and the servers' accept loops.
    let baseline_tasks = metrics.num_alive_tasks();
    let baseline_rss = rss_bytes();

    let ledger = Arc::new(Ledger::default());
    // The highest gauges seen, to show what the run exercised.
    let peaks = Arc::new(Mutex::new(vec![(0usize, 0usize); fleets.len()]));
    let sampler = {
        let (fleets, peaks) = (fleets.clone(), peaks.clone());
        tokio::spawn(async move {
            loop {
                for (fleet, peak) in fleets.iter().zip(peaks.lock().unwrap().iter_mut()) {
                    let stats = fleet.group.stats();
                    peak.0 = peak.0.max(stats.lingering);
                    peak.1 = peak.1.max(stats.background);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut clients = tokio::task::JoinSet::new();
    for id in 0..CLIENTS {
        clients.spawn(client(id, seed, fleets.clone(), ledger.clone(), secs));
    }
    let run_limit = Duration::from_secs(secs) + SESSION_LIMIT + Duration::from_secs(10);
    with_limit(run_limit, "the fleet", async {
        while let Some(joined) = clients.join_next().await {
            if let Err(e) = joined {
                ledger
                    .failures
                    .lock()
                    .unwrap()
                    .push(format!("client panicked: {e}"));
            }
        }
    })
    .await;

    sampler.abort();
    let _ = sampler.await;
    let mut problems: Vec<String> = ledger.failures.lock().unwrap().clone();

    for fleet in fleets.iter() {
        if timeout(SETTLE_LIMIT, fleet.group.wait_idle())
            .await
            .is_err()
        {
            problems.push(format!(
                "{}: gauges stuck: {:?}",
                fleet.name,
                fleet.group.stats()
            ));
        }
    }
    // Every connection, drain and background close is a task of this runtime.
    let tasks_back = settle(SETTLE_LIMIT, || metrics.num_alive_tasks() <= baseline_tasks).await;
    if !tasks_back {
        problems.push(format!(
            "{} tasks alive after the fleet, {baseline_tasks} before",
            metrics.num_alive_tasks()
        ));
    }
    for fleet in fleets.iter() {
        let drains = fleet.counters.snapshot();
        let with_body = fleet.seen.with_body.load(Ordering::Relaxed);
        if drains.draining != 0 || drains.settled() != with_body {
            problems.push(format!(
                "{}: {with_body} requests with a body, drain counters {drains:?}",
                fleet.name
            ));
        }
    }

    let sent = ledger.sent.lock().unwrap().clone();
    for fleet in fleets.iter() {
        let seen = fleet.seen.lines.lock().unwrap();
        for line in seen.iter() {
            if !sent.contains(line) {
                problems.push(format!(
                    "{}: handler saw a request nobody sent: {line}",
                    fleet.name
                ));
            }
        }
    }
    let not_served = ledger.not_served.lock().unwrap().clone();
    for fleet in fleets.iter() {
        for line in fleet.seen.lines.lock().unwrap().iter() {
            if not_served.contains(line) {
                problems.push(format!(
                    "{}: served a request behind a closing one: {line}",
                    fleet.name
                ));
            }
        }
    }
    let seen_all: HashSet<String> = fleets
        .iter()
        .flat_map(|fleet| fleet.seen.lines.lock().unwrap().clone())
        .collect();
    for line in ledger.answered.lock().unwrap().iter() {
        if !seen_all.contains(line) {
            problems.push(format!("answered without the handler seeing it: {line}"));
        }
    }

    if let (Some(before), Some(after)) = (baseline_rss, rss_bytes()) {
        // Generous: allocator caches stay; a leak of connections or bodies does not fit.
        let bound = 96 * 1024 * 1024;
        if after > before + bound {
            problems.push(format!(
                "resident memory {} MiB after the fleet, {} MiB before",
                after >> 20,
                before >> 20
            ));
        }
        eprintln!(
            "rss: {} MiB before, {} MiB after",
            before >> 20,
            after >> 20
        );
    }

    let sessions = ledger.sessions.lock().unwrap().clone();
    for fleet in fleets.iter() {
        for (_, behaviour) in BEHAVIOURS {
            if !sessions.contains_key(&(behaviour, fleet.name)) {
                problems.push(format!("{}: no {behaviour:?} session ran", fleet.name));
            }
        }
    }
    let total: usize = sessions.values().sum();
    eprintln!("{total} sessions: {sessions:?}");
    for (fleet, (lingering, background)) in fleets.iter().zip(peaks.lock().unwrap().iter()) {
        eprintln!(
            "{}: {} requests handled, peak lingering {lingering}, peak background {background}, {:?}, {:?}",
            fleet.name,
            fleet.seen.lines.lock().unwrap().len(),
            fleet.group.stats(),
            fleet.counters.snapshot()
        );
    }
    if !problems.is_empty() {
        let shown = problems.len().min(25);
        panic!(
            "chaos fleet, {replay}: {} problems, first {shown}:\n{}",
            problems.len(),
            problems[..shown].join("\n")
        );
    }
}

/// Resident memory of this process, from `/proc/self/statm` (Linux).
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // 4 KiB pages: x86_64 and aarch64 Linux defaults.
    Some(resident_pages * 4096)
}
