//! Counters, as a property on real HTTP/2 connections: random uploads, handlers
//! and clients, and each body lands in exactly one `DrainStats` outcome, the one
//! its story calls for.
//!
//! Unlike `crate::props`, this runs each case on a multi-thread runtime of its
//! own, so the panic hook `crate::props` installs counts nothing here (it counts
//! per thread, on the threads of its own cases) and hands every panic on.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use linger::{DrainBodyLayer, DrainStats};
use proptest::prelude::*;

use super::body::{channel_body, no_body, ChannelBody};
use super::server::{serve, Transport};
use super::wire::{Wire, NO_ERROR};
use super::{settled, step_within, KIB, STEP};
use crate::common::{counted, layer_enabled, TestBody, TestRequest, TestResponse};

/// What the handler does with the body.
#[derive(Clone, Copy, Debug)]
enum Handling {
    Ignore,
    /// Reads at least `n` bytes (or to the end), then drops the body.
    Read(usize),
    /// Moves the body into a task that reads at least `n` bytes, then drops it.
    Hold(usize),
    ReadAll,
}

/// How the client sends the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sending {
    Complete,
    /// Sends half, then nothing more, the stream left open.
    Stall,
    /// Sends half, then fails the body: hyper's client resets the stream.
    Abort,
}

#[derive(Clone, Debug)]
struct Exchange {
    size: usize,
    handling: Handling,
    sending: Sending,
}

impl Exchange {
    /// Bytes the client sends before it ends, stalls or aborts.
    fn sent(&self) -> usize {
        match self.sending {
            Sending::Complete => self.size,
            Sending::Stall | Sending::Abort => self.size / 2,
        }
    }

    /// Whether the request has a body the layer sees (hyper's client sends
    /// an empty one that ends at once with the headers).
    fn counted(&self) -> bool {
        !(self.size == 0 && self.sending == Sending::Complete)
    }
}

fn exchange() -> impl Strategy<Value = Exchange> {
    let size = prop_oneof![
        1 => Just(0usize),
        3 => 1..16 * KIB,
        3 => 16 * KIB..256 * KIB,
        2 => 256 * KIB..1536 * KIB,
    ];
    let reads = prop_oneof![Just(1usize), 1..64 * KIB, 64 * KIB..1024 * KIB];
    let handling = prop_oneof![
        3 => Just(Handling::Ignore),
        2 => reads.clone().prop_map(Handling::Read),
        2 => reads.prop_map(Handling::Hold),
        1 => Just(Handling::ReadAll),
    ];
    let sending = prop_oneof![
        6 => Just(Sending::Complete),
        2 => Just(Sending::Stall),
        1 => Just(Sending::Abort),
    ];
    (size, handling, sending).prop_map(|(size, handling, sending)| {
        // A handler never waits for more than the client sends.
        let cap = |n: usize| n.min(exchange_sent(size, sending));
        let handling = match handling {
            Handling::Read(n) => Handling::Read(cap(n)),
            Handling::Hold(n) => Handling::Hold(cap(n)),
            Handling::ReadAll if sending != Sending::Complete => {
                Handling::Read(exchange_sent(size, sending))
            }
            other => other,
        };
        Exchange {
            size,
            handling,
            sending,
        }
    })
}

fn exchange_sent(size: usize, sending: Sending) -> usize {
    Exchange {
        size,
        handling: Handling::Ignore,
        sending,
    }
    .sent()
}

/// The handler of the property: the `x-exchange` header says what to do;
/// it reports the bytes it read.
async fn scripted(
    req: TestRequest,
    script: Arc<Vec<Exchange>>,
    read: Arc<Mutex<Vec<u64>>>,
) -> TestResponse {
    let i: usize = req.headers()["x-exchange"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut body = req.into_body();
    let report = move |n: usize| read.lock().unwrap()[i] = u64::try_from(n).unwrap();
    async fn read_at_least(body: &mut TestBody, want: usize, all: bool) -> usize {
        let mut n = 0;
        while all || n < want {
            match body.frame().await {
                Some(Ok(frame)) => n += frame.data_ref().map_or(0, Bytes::len),
                Some(Err(_)) | None => break,
            }
        }
        n
    }
    match script[i].handling {
        Handling::Ignore => report(0),
        Handling::Read(want) => report(read_at_least(&mut body, want, false).await),
        Handling::ReadAll => report(read_at_least(&mut body, 0, true).await),
        Handling::Hold(want) => {
            tokio::spawn(async move { report(read_at_least(&mut body, want, false).await) });
        }
    }
    Response::new(Full::new(Bytes::from_static(b"done")))
}

/// The outcomes a body may land in, given its story.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Read,
    Drained,
    OverLimit,
    Deadline,
    BodyError,
}

fn count(stats: &DrainStats, outcome: Outcome) -> u64 {
    match outcome {
        Outcome::Read => stats.read,
        Outcome::Drained => stats.drained + stats.drained_inline,
        Outcome::OverLimit => stats.over_limit,
        Outcome::Deadline => stats.deadline,
        Outcome::BodyError => stats.body_error,
    }
}

/// Where a body of `exchange` may land, the handler having read `read`
/// bytes of it.
fn allowed(exchange: &Exchange, read: u64, limit: u64) -> Vec<Outcome> {
    use Outcome::*;
    let remainder = exchange.size as u64 - read;
    match exchange.sending {
        // The client resets its stream after the response: the drain fails,
        // unless it was refused first or ran out of time.
        Sending::Abort => vec![BodyError, OverLimit, Deadline],
        Sending::Stall if limit == 0 || remainder > limit => vec![OverLimit],
        Sending::Stall => vec![Deadline],
        Sending::Complete if matches!(exchange.handling, Handling::ReadAll) => vec![Read],
        // All the data read, the end of the stream maybe not seen yet: the
        // layer waits for it (a drain of 0 bytes), except with a limit of 0.
        Sending::Complete if remainder == 0 && limit == 0 => vec![Read, OverLimit],
        Sending::Complete if remainder == 0 => vec![Read, Drained],
        Sending::Complete if limit == 0 || remainder > limit => vec![OverLimit],
        Sending::Complete => vec![Drained],
    }
}

/// Runs the exchanges concurrently on one HTTP/2 connection and checks that
/// every body the layer saw landed in exactly one outcome, one its story
/// allows, that the bytes drained add up, and which streams the server
/// reset.
fn run_property(limit: usize, script: Vec<Exchange>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let layer = DrainBodyLayer::new(0)
            .http2_limit(limit)
            .timeout(Duration::from_millis(400));
        let (layer, counters) = counted(layer);
        let script = Arc::new(script);
        let read = Arc::new(Mutex::new(vec![0u64; script.len()]));
        let server = {
            let (script, read) = (script.clone(), read.clone());
            serve(Transport::H2c, layer, move |req| {
                scripted(req, script.clone(), read.clone())
            })
            .await
        };
        let (send, client_conn) = server.h2_client::<ChannelBody>().await;
        let mut conn = server.next_conn().await;

        let mut stalled = Vec::new();
        let mut responses = Vec::new();
        for (i, exchange) in script.iter().enumerate() {
            let (tx, mut body) = channel_body(u64::try_from(exchange.size).unwrap());
            if !exchange.counted() {
                body = no_body();
            }
            let mut left = exchange.sent();
            while left > 0 {
                let n = left.min(16 * KIB);
                tx.send(Ok(Bytes::from(vec![b'p'; n]))).unwrap();
                left -= n;
            }
            let sending = exchange.sending;
            // A complete body ends here; an aborted one fails once the
            // handler has answered, so that hyper hands it the request.
            let abort = match sending {
                Sending::Complete => None,
                Sending::Stall => {
                    stalled.push(tx);
                    None
                }
                Sending::Abort => Some(tx),
            };
            let mut send = send.clone();
            step_within(STEP, "ready", send.ready()).await.unwrap();
            // Sent in order: exchange `i` is stream `2 i + 1`.
            let res = send.send_request(
                Request::post(server.url("/script"))
                    .header("x-exchange", i)
                    .body(body)
                    .unwrap(),
            );
            responses.push(tokio::spawn(async move {
                // The whole response first: hyper's client resets the stream
                // when the body fails, and the reset discards what it has
                // not yet read of the response.
                let res = async { Ok(res.await?.into_body().collect().await?.to_bytes()) }
                    .await
                    .map_err(|e: hyper::Error| e.to_string());
                if let Some(tx) = abort {
                    let _ = tx.send(Err(io::Error::other("client gives up")));
                }
                res
            }));
        }
        for (exchange, res) in script.iter().zip(responses) {
            let res = step_within(STEP, "response", res).await.unwrap();
            prop_assert_eq!(res, Ok(Bytes::from_static(b"done")), "{:?}", exchange);
        }
        let bodies = script.iter().filter(|e| e.counted()).count() as u64;
        let stats = settled(&counters, bodies).await;
        // The stalled streams' resets may still be on their way once their
        // outcome is counted; the end of their bodies, if it came first,
        // would spare hyper the reset. Whether they come is asserted below.
        let stalled_streams: Vec<u32> = (0..script.len())
            .filter(|&i| script[i].sending == Sending::Stall)
            .map(|i| 2 * i as u32 + 1)
            .collect();
        let all_reset = |wire: &Wire| {
            let resets = wire.resets();
            stalled_streams
                .iter()
                .all(|s| resets.iter().any(|&(r, _)| r == *s))
        };
        let _ = tokio::time::timeout(super::STEP, conn.0.wait_for(all_reset)).await;
        drop((send, stalled));
        client_conn.closed().await;
        let wire = conn.ended().await;

        let read = read.lock().unwrap().clone();
        let limit = limit as u64;
        let (mut least, mut most) = (Vec::new(), Vec::new());
        let mut drained_at_most = 0u64;
        for (i, exchange) in script.iter().enumerate() {
            if !exchange.counted() {
                continue;
            }
            let allowed = allowed(exchange, read[i], limit);
            if allowed.len() == 1 {
                least.push(allowed[0]);
            }
            most.extend(allowed.iter().copied());
            let remainder = exchange.size as u64 - read[i];
            // A drain stops within a frame (16 KiB) past the limit.
            drained_at_most += remainder.min(limit + 16 * KIB as u64);
            let stream = 2 * i as u32 + 1;
            let resets: Vec<u32> = wire
                .resets()
                .iter()
                .filter(|&&(s, _)| s == stream)
                .map(|&(_, code)| code)
                .collect();
            if exchange.sending == Sending::Stall {
                prop_assert_eq!(&resets, &[NO_ERROR], "stalled: {:?}", exchange);
            }
            if allowed == [Outcome::Drained] || allowed == [Outcome::Read] {
                prop_assert_eq!(&resets, &[] as &[u32], "drained, yet reset: {:?}", exchange);
            }
        }
        prop_assert_eq!(stats.settled(), bodies, "one outcome per body: {:?}", stats);
        prop_assert_eq!(stats.draining, 0);
        for outcome in [
            Outcome::Read,
            Outcome::Drained,
            Outcome::OverLimit,
            Outcome::Deadline,
            Outcome::BodyError,
        ] {
            let counted = count(&stats, outcome);
            let least = least.iter().filter(|&&o| o == outcome).count() as u64;
            let most = most.iter().filter(|&&o| o == outcome).count() as u64;
            prop_assert!(
                (least..=most).contains(&counted),
                "{:?}: {} not in {}..={}: {:?}",
                outcome,
                counted,
                least,
                most,
                stats
            );
        }
        prop_assert!(stats.bytes_drained <= drained_at_most, "{:?}", stats);
        Ok(())
    })
}

fn property_cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: property_cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Real HTTP/2 connections, random uploads, handlers and clients: each
    /// body lands in exactly one `DrainStats` outcome, the one its story
    /// calls for.
    #[test]
    fn each_http2_body_lands_in_exactly_one_outcome(
        limit in prop_oneof![Just(0usize), Just(16 * KIB), Just(1024 * KIB)],
        script in prop::collection::vec(exchange(), 1..6),
    ) {
        if layer_enabled() {
            run_property(limit, script)?;
        }
    }
}
