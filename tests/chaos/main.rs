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

mod expect;
#[path = "../common/http1.rs"]
mod http1;
mod wire;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use expect::{Expect, ExpectBody, Reader};
use http::{Method, Request, Response, StatusCode, Uri};
use http1::{End, Failure};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use linger::{
    DrainBody, DrainBodyLayer, DrainCounters, LingerConfig, LingerGroup, LingeringListener,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};
use tower::ServiceBuilder;
use wire::{
    drip, prefix, rss_bytes, total_len, write_segments, BodySpec, Req, Rng, PATTERN, SMUGGLE,
};

const LIMIT: u64 = 256 * 1024;
const DRAIN_TIMEOUT: Duration = Duration::from_millis(1500);
/// Bodies at most this large, sent at once, must always be drained.
const SURELY_DRAINED: usize = 64 * 1024;
/// Enough that every behaviour starts once against each of the three servers.
const CLIENTS: usize = 48;
/// Sessions per client per second of the run, at most.
const SESSIONS_PER_SECOND: usize = 15;
/// No single exchange may take longer.
const STEP: Duration = Duration::from_secs(8);
/// No session of any behaviour may take longer, however loaded the machine.
const SESSION_LIMIT: Duration = Duration::from_secs(20);
/// Settling after the clients: gauges, tasks.
const SETTLE_LIMIT: Duration = Duration::from_secs(15);

fn linger_config() -> LingerConfig {
    LingerConfig::new()
        .idle_timeout(Duration::from_millis(500))
        .total_timeout(Duration::from_secs(2))
        .max_bytes(8 * 1024 * 1024)
}

fn drain_layer(counters: &DrainCounters) -> DrainBodyLayer {
    DrainBodyLayer::new(LIMIT)
        .timeout(DRAIN_TIMEOUT)
        .counters(counters.clone())
}

// ------------------------------------------------------------------ server --

/// Every request line the handlers saw, in order.
#[derive(Default)]
struct Seen {
    lines: Mutex<Vec<String>>,
    /// Requests that reached the layer with a body that had not ended
    /// (counted by a layer just outside it): each must land in exactly one
    /// outcome of the layer's `DrainCounters`.
    with_body: AtomicU64,
}

impl Seen {
    fn record(&self, method: &Method, path: &str) {
        self.lines.lock().unwrap().push(format!("{method} {path}"));
    }

    /// For a `map_request` just outside the drain layer: it runs in the same
    /// `call`, so a request the handler never got to poll counts too.
    fn count_body<B: Body>(seen: &Arc<Self>) -> impl Fn(Request<B>) -> Request<B> + Clone {
        let seen = seen.clone();
        move |request: Request<B>| {
            if !request.body().is_end_stream() {
                seen.with_body.fetch_add(1, Ordering::Relaxed);
            }
            request
        }
    }
}

/// The one handler of both set-ups; the first path segment says what to do:
/// `ignore`, `consume` (answers the length read), `partial/{k}` (reads at
/// least k bytes), `big/{n}` (n bytes of `PATTERN`), `reject` (413), `slow/{ms}`.
async fn serve_request<B>(seen: &Seen, method: Method, uri: Uri, body: B) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Display,
{
    let path = uri.path().to_owned();
    let line = format!("{method} {path}");
    seen.record(&method, &path);
    let mut segments = path.split('/').skip(1);
    let kind = segments.next().unwrap_or_default();
    let arg: usize = segments
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(0);
    let text = |status: StatusCode, text: String| {
        let mut response = Response::new(Full::new(Bytes::from(text)));
        *response.status_mut() = status;
        response
    };
    match kind {
        "ignore" => text(StatusCode::OK, line),
        "consume" => match body.collect().await {
            Ok(body) => text(StatusCode::OK, format!("{line} {}", body.to_bytes().len())),
            Err(e) => text(StatusCode::BAD_REQUEST, format!("body error: {e}")),
        },
        "partial" => {
            let mut body = body;
            let mut read = 0;
            while read < arg {
                match body.frame().await {
                    Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                    _ => break,
                }
            }
            text(StatusCode::OK, line)
        }
        "big" => {
            let pattern: &'static [u8] = &PATTERN;
            Response::new(Full::new(Bytes::from_static(&pattern[..arg])))
        }
        "reject" => text(StatusCode::PAYLOAD_TOO_LARGE, line),
        "slow" => {
            // The handler's own work, part of the scenario.
            tokio::time::sleep(Duration::from_millis(arg as u64)).await;
            text(StatusCode::OK, line)
        }
        _ => text(StatusCode::NOT_FOUND, line),
    }
}

/// A server under test: its address, its linger counters and what it saw.
struct Fleet {
    name: &'static str,
    addr: SocketAddr,
    group: LingerGroup,
    counters: DrainCounters,
    seen: Arc<Seen>,
}

/// README "Quick start: hyper", with short bounds.
async fn start_hyper() -> Fleet {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let group = LingerGroup::new(linger_config());
    let listener = LingeringListener::with_group(tcp, group.clone());
    let seen = Arc::new(Seen::default());
    let record = seen.clone();
    let counters = DrainCounters::new();
    let layer = drain_layer(&counters);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _peer)) = listener.accept().await else {
                // Out of descriptors, say: the clients' failures will tell.
                tokio::task::yield_now().await;
                continue;
            };
            let seen = record.clone();
            let service = ServiceBuilder::new()
                .map_request(Seen::count_body::<Incoming>(&record))
                .layer(layer.clone())
                .service_fn(move |request: Request<DrainBody<Incoming>>| {
                    let seen = seen.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        if parts.uri.path().starts_with("/fail/") {
                            // A failing service: hyper drops the connection
                            // without closing it, the lingering drop path.
                            seen.record(&parts.method, parts.uri.path());
                            return Err(std::io::Error::other("handler failed"));
                        }
                        let response = serve_request(&seen, parts.method, parts.uri, body).await;
                        Ok(response)
                    }
                });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                    .await;
            });
        }
    });
    Fleet {
        name: "hyper",
        addr,
        group,
        counters,
        seen,
    }
}

/// README "Quick start: axum", with short bounds; `own_body` uses the
/// layer's axum flavour (`DrainBodyLayer::axum()`, axum's own `Body`).
#[cfg(feature = "axum")]
async fn start_axum(own_body: bool) -> Fleet {
    use axum::routing::any;
    use axum::Router;

    let seen = Arc::new(Seen::default());
    let record = seen.clone();
    let counters = DrainCounters::new();
    let routes = Router::new().route(
        "/{*rest}",
        any(move |request: axum::extract::Request| {
            let seen = record.clone();
            async move {
                let (parts, body) = request.into_parts();
                serve_request(&seen, parts.method, parts.uri, body).await
            }
        }),
    );
    let app = if own_body {
        routes.layer(drain_layer(&counters).axum())
    } else {
        routes.layer(drain_layer(&counters))
    };
    let app = app.layer(tower::util::MapRequestLayer::new(Seen::count_body::<
        axum::body::Body,
    >(&seen)));
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let group = LingerGroup::new(linger_config());
    let listener = LingeringListener::with_group(tcp, group.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Fleet {
        name: if own_body { "axum-own-body" } else { "axum" },
        addr,
        group,
        counters,
        seen,
    }
}

// ----------------------------------------------------------------- clients --

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Behaviour {
    Sequential,
    Pipelined,
    SlowDrip,
    ExpectContinue,
    Http10,
    HalfClose,
    StallMidBody,
    AbortRst,
    NeverFin,
    EndlessSender,
    PrefixThenFin,
    SlowReader,
    UpgradeOffer,
    BadHead,
    ServiceError,
}

const BEHAVIOURS: [(u64, Behaviour); 15] = [
    (24, Behaviour::Sequential),
    (10, Behaviour::Pipelined),
    (7, Behaviour::SlowDrip),
    (8, Behaviour::ExpectContinue),
    (6, Behaviour::Http10),
    (6, Behaviour::HalfClose),
    (3, Behaviour::StallMidBody),
    (12, Behaviour::AbortRst),
    (8, Behaviour::NeverFin),
    (4, Behaviour::EndlessSender),
    (10, Behaviour::PrefixThenFin),
    (4, Behaviour::SlowReader),
    (4, Behaviour::UpgradeOffer),
    (4, Behaviour::BadHead),
    (4, Behaviour::ServiceError),
];

/// What the fleet of clients did, for the final checks.
#[derive(Default)]
struct Ledger {
    /// Request lines clients wrote (or began to write).
    sent: Mutex<HashSet<String>>,
    /// Request lines written after one whose answer closes the connection:
    /// the server must not process them (RFC 9112 §9.6).
    not_served: Mutex<HashSet<String>>,
    /// Request lines whose response a client received whole.
    answered: Mutex<Vec<String>>,
    failures: Mutex<Vec<String>>,
    sessions: Mutex<BTreeMap<(Behaviour, &'static str), usize>>,
}

type Outcome = Result<(), String>;

struct Session<'a> {
    ledger: &'a Ledger,
    fleet: &'a Fleet,
    rng: Rng,
    tag: String,
    requests: usize,
}

/// `Err` with context unless `cond`.
fn ensure(cond: bool, what: impl FnOnce() -> String) -> Outcome {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

/// The exact response the handler gives `req` (its path says what to do).
fn expected(req: &Req) -> Expect {
    let line = req.line();
    let mut segments = req.path.split('/').skip(1);
    let kind = segments.next().unwrap_or_default();
    let arg: usize = segments
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(0);
    match kind {
        "consume" => Expect::text(200, format!("{line} {}", req.body.len())),
        "big" => Expect {
            status: 200,
            body: ExpectBody::Pattern(arg),
        },
        "reject" => Expect::text(413, line),
        _ => Expect::text(200, line),
    }
}

/// Whether the layer must get this body out of the way, keeping the connection.
fn surely_drained(req: &Req) -> bool {
    req.path.starts_with("/consume/") || req.body.len() <= SURELY_DRAINED
}

impl Session<'_> {
    fn path(&mut self, kind: &str, arg: usize) -> String {
        self.requests += 1;
        format!("/{kind}/{}-{}/{arg}", self.tag, self.requests)
    }

    fn body(&mut self, max: usize) -> BodySpec {
        let len = match self
            .rng
            .weighted(&[(3, 0u8), (4, 1), (4, 2), (2, 3), (1, 4)])
        {
            0 => self.rng.usize(0, 16),
            1 => self.rng.usize(17, 1024),
            2 => self.rng.usize(1025, SURELY_DRAINED),
            3 => self.rng.usize(200 * 1024, 300 * 1024),
            _ => wire::MAX_BODY,
        }
        .min(max);
        if self.rng.chance(40) {
            let chunk = self.rng.usize((len / 64).max(1), 16 * 1024);
            BodySpec::Chunked { len, chunk }
        } else {
            BodySpec::Length(len)
        }
    }

    /// A random request to any handler, with its exact expected response.
    fn request(&mut self, max_body: usize, max_response: usize) -> (Req, Expect) {
        let kind = self.rng.weighted(&[
            (30, "ignore"),
            (20, "consume"),
            (15, "partial"),
            (10, "big"),
            (10, "reject"),
            (8, "slow"),
        ]);
        let mut body = if self.rng.chance(15) {
            BodySpec::None
        } else {
            self.body(max_body)
        };
        if matches!(body, BodySpec::Length(0)) && self.rng.chance(50) {
            body = BodySpec::None;
        }
        let arg = match kind {
            "partial" => self.rng.usize(0, body.len()),
            "big" => {
                let len = match self.rng.weighted(&[(3, 0u8), (2, 1), (1, 2)]) {
                    0 => self.rng.usize(1, 4096),
                    1 => self.rng.usize(4097, 256 * 1024),
                    _ => wire::MAX_BODY,
                };
                len.min(max_response)
            }
            "slow" => self.rng.usize(1, 150),
            _ => 0,
        };
        let method = if matches!(body, BodySpec::None) {
            "GET"
        } else {
            "POST"
        };
        let path = self.path(kind, arg);
        let req = Req {
            method,
            path,
            version: "HTTP/1.1",
            headers: Vec::new(),
            body,
        };
        let expect = expected(&req);
        (req, expect)
    }

    async fn connect(&self) -> Result<TcpStream, String> {
        let stream = TcpStream::connect(self.fleet.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(stream)
    }

    fn sent(&self, req: &Req) {
        self.ledger.sent.lock().unwrap().insert(req.line());
    }

    fn answered(&self, req: &Req) {
        self.ledger.answered.lock().unwrap().push(req.line());
    }

    async fn run(&mut self, behaviour: Behaviour) -> Outcome {
        match behaviour {
            Behaviour::Sequential => self.sequential().await,
            Behaviour::Pipelined => self.pipelined().await,
            Behaviour::SlowDrip => self.slow_drip().await,
            Behaviour::ExpectContinue => self.expect_continue().await,
            Behaviour::Http10 => self.http10().await,
            Behaviour::HalfClose => self.half_close().await,
            Behaviour::StallMidBody => self.stall_mid_body().await,
            Behaviour::AbortRst => self.abort_rst().await,
            Behaviour::NeverFin => self.never_fin().await,
            Behaviour::EndlessSender => self.endless_sender().await,
            Behaviour::PrefixThenFin => self.prefix_then_fin().await,
            Behaviour::SlowReader => self.slow_reader().await,
            Behaviour::UpgradeOffer => self.upgrade_offer().await,
            Behaviour::BadHead => self.bad_head().await,
            Behaviour::ServiceError => self.service_error().await,
        }
    }

    /// Keep-alive: requests one after the other, each written while its
    /// response is read, as a real client does.
    async fn sequential(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let count = self.rng.usize(1, 6);
        let mut previous: Option<Req> = None;
        for i in 0..count {
            let (req, expect) = self.request(wire::MAX_BODY, wire::MAX_BODY);
            self.sent(&req);
            let segments = req.segments();
            let (written, read) =
                tokio::join!(write_segments(&mut wr, &segments), reader.response(&expect));
            let head = match read {
                Ok(head) => head,
                // The previous body could not be drained: hyper closes after
                // its response without saying so (default mode). Fine, once.
                Err(failure)
                    if failure.nothing_arrived()
                        && previous.as_ref().is_some_and(|p| !surely_drained(p)) =>
                {
                    return Ok(());
                }
                Err(failure) => {
                    return Err(format!(
                        "request {i} {} ({:?}) after {:?}: {failure}",
                        req.line(),
                        req.body,
                        previous.as_ref().map(|p| (p.line(), p.body))
                    ))
                }
            };
            self.answered(&req);
            if surely_drained(&req) {
                ensure(written.is_ok(), || {
                    format!("{}: write failed: {written:?}", req.line())
                })?;
            }
            if head.has_close() {
                ensure(!surely_drained(&req), || {
                    format!(
                        "{} ({:?}): Connection: close on a drainable body",
                        req.line(),
                        req.body
                    )
                })?;
                let end = reader.end().await;
                return ensure(end == End::Eof, || {
                    format!("{}: after Connection: close: {end:?}", req.line())
                });
            }
            previous = Some(req);
        }
        Ok(())
    }

    /// Several requests in one write; responses must come back in order. One
    /// of them may carry a body above the limit (the stopper): declared, the
    /// connection ends after its response and nothing behind it may be
    /// served; chunked, hyper may still get past the rest of it on its own,
    /// so the requests behind it are answered whole or not at all.
    async fn pipelined(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let count = self.rng.usize(2, 5);
        let close_last = self.rng.chance(50);
        let stopper = self.rng.chance(30).then(|| self.rng.usize(0, count - 2));
        let declared_stopper = self.rng.chance(50);
        let mut plan = Vec::new();
        for i in 0..count {
            let (mut req, mut expect) = self.request(16 * 1024, 64 * 1024);
            if stopper == Some(i) {
                let len = self.rng.usize(LIMIT as usize + 1, wire::MAX_BODY);
                req.method = "POST";
                req.path = self.path("ignore", 0);
                req.body = if declared_stopper {
                    BodySpec::Length(len)
                } else {
                    BodySpec::Chunked {
                        len,
                        chunk: 16 * 1024,
                    }
                };
                expect = expected(&req);
            }
            if close_last && i == count - 1 {
                req.headers.push("Connection: close".into());
            }
            plan.push((req, expect));
        }
        let mut segments = Vec::new();
        for (i, (req, _)) in plan.iter().enumerate() {
            self.sent(req);
            if declared_stopper && stopper.is_some_and(|stop| i > stop) {
                self.ledger.not_served.lock().unwrap().insert(req.line());
            }
            segments.extend(req.segments());
        }
        let must_answer = match stopper {
            Some(stop) => stop + 1,
            None => count,
        };
        let may_answer = if declared_stopper { must_answer } else { count };
        let read_all = async {
            let mut heads = Vec::new();
            for (i, (req, expect)) in plan[..may_answer].iter().enumerate() {
                match reader.response(expect).await {
                    Ok(head) => heads.push(head),
                    Err(failure) if i >= must_answer && failure.nothing_arrived() => break,
                    Err(failure) => {
                        return Err(format!(
                            "pipelined {} ({:?}): {failure}",
                            req.line(),
                            req.body
                        ))
                    }
                }
                self.answered(req);
            }
            Ok::<_, String>(heads)
        };
        let (written, heads) = tokio::join!(write_segments(&mut wr, &segments), read_all);
        let heads = heads?;
        if stopper.is_none() {
            ensure(written.is_ok(), || format!("pipelined write: {written:?}"))?;
        }
        let describe = || {
            let plan: Vec<_> = plan
                .iter()
                .map(|(req, _)| (req.line(), req.body, &req.headers))
                .collect();
            format!("pipelined {plan:?}, stopper {stopper:?}")
        };
        for (i, head) in heads.iter().enumerate() {
            let says_close = if stopper == Some(i) {
                // Chunked: the response leaves before the drain gives up.
                declared_stopper
            } else {
                close_last && i == count - 1
            };
            ensure(head.has_close() == says_close, || {
                format!("{}: response {i}: close {}", describe(), head.has_close())
            })?;
        }
        if close_last || heads.len() < count {
            let end = reader.end().await;
            ensure(end == End::Eof, || format!("{}: {end:?}", describe()))?;
        }
        Ok(())
    }

    /// A small request in tiny pieces; the connection must stay usable.
    async fn slow_drip(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let (req, expect) = self.request(8 * 1024, 64 * 1024);
        let segments = req.segments();
        let pieces: Vec<_> = (0..self.rng.usize(2, 25))
            .map(|_| (self.rng.usize(1, 700), self.rng.millis(1, 20)))
            .collect();
        self.sent(&req);
        let (written, read) =
            tokio::join!(drip(&mut wr, &segments, &pieces), reader.response(&expect));
        read.map_err(|failure| format!("drip {} ({:?}): {failure}", req.line(), req.body))?;
        self.answered(&req);
        ensure(written.is_ok(), || format!("drip write: {written:?}"))?;
        let (next, expect) = self.request(0, 64 * 1024);
        self.sent(&next);
        let segments = next.segments();
        let (written, read) =
            tokio::join!(write_segments(&mut wr, &segments), reader.response(&expect));
        read.map_err(|failure| format!("after drip {}: {failure}", req.line()))?;
        self.answered(&next);
        ensure(written.is_ok(), || format!("write after drip: {written:?}"))
    }

    /// `Expect: 100-continue`: the body goes only after `100 Continue`; an
    /// answer without reading gets `Connection: close` and a clean EOF; a
    /// body that was read keeps the connection.
    async fn expect_continue(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let kind = self.rng.weighted(&[
            (2, "consume"),
            (2, "partial"),
            (2, "ignore"),
            (1, "reject"),
            (1, "big"),
        ]);
        let len = self.rng.usize(1, SURELY_DRAINED);
        let arg = match kind {
            "partial" => self.rng.usize(1, len),
            "big" => self.rng.usize(1, 64 * 1024),
            _ => 0,
        };
        let path = self.path(kind, arg);
        let body = if self.rng.chance(30) {
            BodySpec::Chunked {
                len,
                chunk: self.rng.usize(1024, 16 * 1024),
            }
        } else {
            BodySpec::Length(len)
        };
        let req = Req {
            method: "POST",
            path,
            version: "HTTP/1.1",
            headers: vec!["Expect: 100-continue".into()],
            body,
        };
        let line = req.line();
        let expect = expected(&req);
        let reads_body = matches!(kind, "consume" | "partial");
        self.sent(&req);
        if self.rng.chance(30) {
            // RFC 9110 §10.1.1 lets a client send the body without waiting:
            // a handler that never asks for it still gets `Connection: close`,
            // and the body must not turn the close into a reset.
            let segments = req.segments();
            let read = async {
                let mut head = reader.head().await?;
                if head.status == 100 {
                    head = reader.head().await?;
                }
                reader.body(&head, Some(expect.bytes())).await?;
                Ok::<_, Failure>(head)
            };
            let (written, read) = tokio::join!(write_segments(&mut wr, &segments), read);
            let head = read.map_err(|f| format!("eager {line} ({:?}): {f}", req.body))?;
            ensure(
                head.status == expect.status && head.has_close() != reads_body,
                || {
                    format!(
                        "eager {line}: status {}, close {}",
                        head.status,
                        head.has_close()
                    )
                },
            )?;
            self.answered(&req);
            if !reads_body {
                let end = reader.end().await;
                return ensure(end == End::Eof, || format!("eager {line}: {end:?}"));
            }
            return ensure(written.is_ok(), || format!("eager {line}: {written:?}"));
        }
        wr.write_all(&req.head()).await.map_err(|e| e.to_string())?;
        let head = reader.head().await.map_err(|f| format!("{line}: {f}"))?;
        if reads_body {
            ensure(head.status == 100, || {
                format!("{line}: {} instead of 100", head.status)
            })?;
            let body = req.body_segments();
            let (written, read) =
                tokio::join!(write_segments(&mut wr, &body), reader.response(&expect));
            let head = read.map_err(|f| format!("{line} ({:?}) after 100: {f}", req.body))?;
            self.answered(&req);
            ensure(written.is_ok() && !head.has_close(), || {
                format!("{line}: {written:?}, close {}", head.has_close())
            })?;
            // The body was invited and drained: the connection goes on.
            let (next, expect) = self.request(0, 64 * 1024);
            self.sent(&next);
            let segments = next.segments();
            let (written, read) =
                tokio::join!(write_segments(&mut wr, &segments), reader.response(&expect));
            read.map_err(|f| format!("after 100-continue {line} ({:?}): {f}", req.body))?;
            self.answered(&next);
            return ensure(written.is_ok(), || format!("{line}: {written:?}"));
        }
        ensure(head.status == expect.status, || {
            format!("{line}: status {} (the body was never read)", head.status)
        })?;
        reader
            .body(&head, Some(expect.bytes()))
            .await
            .map_err(|f| format!("{line}: {f}"))?;
        self.answered(&req);
        ensure(head.has_close(), || {
            format!("{line}: no Connection: close for an uninvited body")
        })?;
        let end = reader.end().await;
        ensure(end == End::Eof, || format!("{line}: after close: {end:?}"))
    }

    /// HTTP/1.0 without keep-alive: one response, then a clean EOF.
    async fn http10(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let (mut req, _) = self.request(300 * 1024, wire::MAX_BODY);
        // HTTP/1.0 has no chunked requests.
        if let BodySpec::Chunked { len, .. } = req.body {
            req.body = BodySpec::Length(len);
        }
        req.version = "HTTP/1.0";
        let keep_alive = surely_drained(&req) && self.rng.chance(40);
        if keep_alive {
            req.headers.push("Connection: keep-alive".into());
        }
        let expect = expected(&req);
        self.sent(&req);
        let segments = req.segments();
        let (_written, read) =
            tokio::join!(write_segments(&mut wr, &segments), reader.response(&expect));
        let head = read.map_err(|f| format!("HTTP/1.0 {} ({:?}): {f}", req.line(), req.body))?;
        self.answered(&req);
        if keep_alive {
            ensure(!head.has_close(), || {
                format!("HTTP/1.0 keep-alive {}: close", req.line())
            })?;
            let (mut next, _) = self.request(0, 64 * 1024);
            next.version = "HTTP/1.0";
            if let BodySpec::Chunked { len, .. } = next.body {
                next.body = BodySpec::Length(len);
            }
            let expect = expected(&next);
            self.sent(&next);
            let segments = next.segments();
            let (_written, read) =
                tokio::join!(write_segments(&mut wr, &segments), reader.response(&expect));
            read.map_err(|f| format!("HTTP/1.0 after keep-alive {}: {f}", req.line()))?;
            self.answered(&next);
        }
        let end = reader.end().await;
        ensure(end == End::Eof, || {
            format!("HTTP/1.0 {}: {end:?}", req.line())
        })
    }

    /// A whole request, then FIN: the response comes whole or not at all,
    /// and the connection ends cleanly.
    async fn half_close(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let (req, expect) = self.request(SURELY_DRAINED, 64 * 1024);
        self.sent(&req);
        write_segments(&mut wr, &req.segments())
            .await
            .map_err(|e| e.to_string())?;
        wr.shutdown().await.map_err(|e| e.to_string())?;
        match reader.response(&expect).await {
            Ok(_) => {
                self.answered(&req);
                let end = reader.end().await;
                ensure(end == End::Eof, || {
                    format!("half-close {}: {end:?}", req.line())
                })
            }
            Err(Failure::Eof { got: 0 }) => Ok(()),
            Err(failure) => Err(format!(
                "half-close {} ({:?}): {failure}",
                req.line(),
                req.body
            )),
        }
    }

    /// Part of a body, then silence: the response comes at once, the
    /// connection ends cleanly once the drain deadline passes.
    async fn stall_mid_body(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let len = self.rng.usize(2, SURELY_DRAINED);
        let kind = self.rng.weighted(&[(3, "ignore"), (1, "reject")]);
        let path = self.path(kind, 0);
        let req = Req {
            method: "POST",
            path,
            version: "HTTP/1.1",
            headers: Vec::new(),
            body: BodySpec::Length(len),
        };
        let line = req.line();
        let expect = Expect::text(if kind == "reject" { 413 } else { 200 }, line.clone());
        let segments = req.segments();
        let cut = req.head().len() + self.rng.usize(0, len - 1);
        self.sent(&req);
        write_segments(&mut wr, &prefix(&segments, cut))
            .await
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let head = reader
            .response(&expect)
            .await
            .map_err(|f| format!("stalled {line}: {f}"))?;
        self.answered(&req);
        ensure(!head.has_close(), || {
            format!("stalled {line}: closed before the drain gave up")
        })?;
        let end = reader.end().await;
        ensure(end == End::Eof, || format!("stalled {line}: {end:?}"))?;
        ensure(
            started.elapsed() + Duration::from_millis(100) >= DRAIN_TIMEOUT,
            || format!("stalled {line}: closed after {:?}", started.elapsed()),
        )
    }

    /// A prefix of a request (maybe all of it, maybe a response read), then RST.
    async fn abort_rst(&mut self) -> Outcome {
        let stream = self.connect().await?;
        stream.set_zero_linger().map_err(|e| e.to_string())?;
        let (rd, mut wr) = stream.into_split();
        let mut reader = Reader::new(rd);
        let (req, expect) = self.request(wire::MAX_BODY, wire::MAX_BODY);
        let segments = req.segments();
        let cut = self.rng.usize(0, total_len(&segments));
        self.sent(&req);
        let _ = write_segments(&mut wr, &prefix(&segments, cut)).await;
        if self.rng.chance(30) {
            let _ = timeout(self.rng.millis(0, 100), reader.response(&expect)).await;
        }
        // SO_LINGER 0: dropping both halves resets the connection.
        drop(wr);
        drop(reader);
        Ok(())
    }

    /// A request the server answers and closes; the client reads it (or
    /// not) but never sends FIN until it goes away.
    async fn never_fin(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let (mut req, _) = self.request(wire::MAX_BODY, wire::MAX_BODY);
        match self.rng.usize(0, 2) {
            0 => req.headers.push("Connection: close".into()),
            1 => {
                req.version = "HTTP/1.0";
                if let BodySpec::Chunked { len, .. } = req.body {
                    req.body = BodySpec::Length(len);
                }
            }
            _ => {
                // Declared above the limit: the layer refuses and says close.
                req.body = BodySpec::Length(self.rng.usize(LIMIT as usize + 1, wire::MAX_BODY));
                req.method = "POST";
                if req.path.starts_with("/consume/") || req.path.starts_with("/partial/") {
                    req.path = self.path("ignore", 0);
                }
            }
        }
        let expect = expected(&req);
        let reads = self.rng.chance(70);
        let hold = self.rng.millis(50, 1200);
        self.sent(&req);
        if reads {
            let segments = req.segments();
            let exchange = async {
                tokio::join!(write_segments(&mut wr, &segments), reader.response(&expect))
            };
            let (written, read) = timeout(STEP, exchange).await.map_err(|_| {
                format!("never-FIN {} ({:?}): exchange stuck", req.line(), req.body)
            })?;
            read.map_err(|f| {
                format!(
                    "never-FIN {} ({:?}): {f}, write {written:?}",
                    req.line(),
                    req.body
                )
            })?;
            self.answered(&req);
            let end = timeout(STEP, reader.end()).await.map_err(|_| {
                format!(
                    "never-FIN {} ({:?}): no EOF, write {written:?}",
                    req.line(),
                    req.body
                )
            })?;
            ensure(end == End::Eof, || {
                format!("never-FIN {}: {end:?}", req.line())
            })?;
        } else {
            // Neither side reads while the other writes once buffers fill: the
            // peer gives up after its hold time, as such a peer would.
            let _ = timeout(hold, write_segments(&mut wr, &req.segments())).await;
        }
        // Holding the socket open without FIN is the behaviour under test.
        tokio::time::sleep(hold).await;
        Ok(())
    }

    /// A body that never ends, sent as fast as possible for a while, with the
    /// response read alongside: it must arrive whole before any reset.
    async fn endless_sender(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let kind = self.rng.weighted(&[(3, "ignore"), (1, "reject")]);
        let path = self.path(kind, 0);
        let chunked = self.rng.chance(50);
        let req = Req {
            method: "POST",
            path,
            version: "HTTP/1.1",
            headers: if chunked {
                vec!["Transfer-Encoding: chunked".into()]
            } else {
                vec![format!("Content-Length: {}", 1u64 << 40)]
            },
            body: BodySpec::None,
        };
        let line = req.line();
        let expect = Expect::text(if kind == "reject" { 413 } else { 200 }, line.clone());
        // Fast: into the linger's byte cap. Slow (a trickle that is never
        // idle for long): into its total timeout.
        let slow = self.rng.chance(30);
        let (budget, block_len, pause) = if slow {
            (self.rng.millis(2200, 2600), 512, self.rng.millis(50, 250))
        } else {
            (self.rng.millis(100, 800), 64 * 1024, Duration::ZERO)
        };
        let max_bytes = 32 * 1024 * 1024;
        self.sent(&req);
        let send = async {
            wr.write_all(&req.head()).await?;
            let started = Instant::now();
            let block: &'static [u8] = &SMUGGLE[..block_len];
            let chunk_head = format!("{:x}\r\n", block.len());
            let mut sent = 0;
            while sent < max_bytes && started.elapsed() < budget {
                if chunked {
                    wr.write_all(chunk_head.as_bytes()).await?;
                    wr.write_all(block).await?;
                    wr.write_all(b"\r\n").await?;
                } else {
                    wr.write_all(block).await?;
                }
                sent += block.len();
                if slow {
                    // The trickle is the behaviour, not synchronisation.
                    tokio::time::sleep(pause).await;
                }
            }
            Ok::<_, std::io::Error>(())
        };
        let (_sent, read) = tokio::join!(send, reader.response(&expect));
        read.map_err(|f| format!("endless {line} (chunked {chunked}, slow {slow}): {f}"))?;
        self.answered(&req);
        Ok(())
    }

    /// A large response read slowly through a small receive window, so that
    /// the server is still sending when it would close.
    async fn slow_reader(&mut self) -> Outcome {
        let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket
            .set_recv_buffer_size(16 * 1024)
            .map_err(|e| e.to_string())?;
        let stream = socket
            .connect(self.fleet.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (rd, mut wr) = stream.into_split();
        let mut reader = Reader::new(rd);
        let len = self.rng.usize(256 * 1024, wire::MAX_BODY);
        let close = self.rng.chance(50);
        let body = self.body(SURELY_DRAINED);
        let req = Req {
            method: "POST",
            path: self.path("big", len),
            version: "HTTP/1.1",
            headers: if close {
                vec!["Connection: close".into()]
            } else {
                Vec::new()
            },
            body,
        };
        let expect = expected(&req);
        // About a second for the whole response, longer than the idle timeout.
        reader.pace(Duration::from_millis(
            1000 * http1::READ_CHUNK as u64 / len as u64,
        ));
        self.sent(&req);
        let segments = req.segments();
        let (written, read) =
            tokio::join!(write_segments(&mut wr, &segments), reader.response(&expect));
        let head = read.map_err(|f| format!("slow reader {} ({:?}): {f}", req.line(), req.body))?;
        self.answered(&req);
        ensure(written.is_ok() && head.has_close() == close, || {
            format!(
                "slow reader {}: {written:?}, close {}",
                req.line(),
                head.has_close()
            )
        })?;
        reader.pace(Duration::ZERO);
        if close {
            let end = reader.end().await;
            return ensure(end == End::Eof, || {
                format!("slow reader {}: {end:?}", req.line())
            });
        }
        let (next, expect) = self.request(0, 64 * 1024);
        self.sent(&next);
        let segments = next.segments();
        let (written, read) =
            tokio::join!(write_segments(&mut wr, &segments), reader.response(&expect));
        read.map_err(|f| format!("after slow reader {}: {f}", req.line()))?;
        self.answered(&next);
        ensure(written.is_ok(), || {
            format!("after slow reader: {written:?}")
        })
    }

    /// An `Upgrade` offer with a body, answered without switching: the
    /// response arrives whole, and the connection ends cleanly or goes on.
    async fn upgrade_offer(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let (mut req, _) = self.request(16 * 1024, 64 * 1024);
        req.headers.push("Connection: upgrade".into());
        req.headers.push("Upgrade: websocket".into());
        let expect = expected(&req);
        self.sent(&req);
        let segments = req.segments();
        let (written, read) =
            tokio::join!(write_segments(&mut wr, &segments), reader.response(&expect));
        read.map_err(|f| format!("upgrade offer {} ({:?}): {f}", req.line(), req.body))?;
        self.answered(&req);
        ensure(written.is_ok(), || {
            format!("upgrade offer write: {written:?}")
        })?;
        let (next, expect) = self.request(0, 64 * 1024);
        self.sent(&next);
        let segments = next.segments();
        let (_, read) = tokio::join!(write_segments(&mut wr, &segments), reader.response(&expect));
        match read {
            Ok(_) => {
                self.answered(&next);
                Ok(())
            }
            // An answer other than 101 is an ordinary response: a drainable
            // body keeps the connection.
            Err(Failure::Eof { got: 0 }) if !surely_drained(&req) => Ok(()),
            Err(failure) => Err(format!(
                "after upgrade offer {} ({:?}): {failure}",
                req.line(),
                req.body
            )),
        }
    }

    /// A head hyper cannot parse, with more bytes behind it still arriving:
    /// hyper answers 400 and drops the connection (the drop path), and the
    /// 400 must still arrive whole, followed by a clean EOF.
    async fn bad_head(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let path = self.path("ignore", 0);
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: chaos\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
        );
        let trailing: &'static [u8] = &SMUGGLE[..self.rng.usize(0, 256 * 1024)];
        let send = async {
            wr.write_all(head.as_bytes()).await?;
            // No FIN: the server has to linger for this peer's end.
            wr.write_all(trailing).await
        };
        let read = async {
            let head = reader.head().await?;
            reader.body(&head, None).await?;
            Ok::<_, Failure>(head)
        };
        let (_sent, read) = tokio::join!(send, read);
        let head = read.map_err(|f| format!("bad head ({} bytes behind): {f}", trailing.len()))?;
        ensure(head.status == 400, || {
            format!("bad head: status {}", head.status)
        })?;
        let end = reader.end().await;
        ensure(end == End::Eof, || {
            format!("bad head ({} bytes behind): {end:?}", trailing.len())
        })
    }

    /// A request whose service fails (hyper set-up only; axum handlers cannot
    /// fail) while its body is still arriving: hyper drops the connection
    /// without a response, and the client sees a clean EOF, not a reset.
    async fn service_error(&mut self) -> Outcome {
        if self.fleet.name != "hyper" {
            return self.bad_head().await;
        }
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let len = self.rng.usize(0, 256 * 1024);
        let req = Req {
            method: "POST",
            path: self.path("fail", 0),
            version: "HTTP/1.1",
            headers: Vec::new(),
            body: BodySpec::Length(len),
        };
        self.sent(&req);
        let segments = req.segments();
        let (_sent, read) = tokio::join!(write_segments(&mut wr, &segments), reader.head());
        match read {
            Err(Failure::Eof { got: 0 }) => Ok(()),
            Err(failure) => Err(format!("failing service ({len} bytes): {failure}")),
            Ok(head) => Err(format!(
                "failing service: a response, status {}",
                head.status
            )),
        }
    }

    /// A prefix of a request, then FIN: whatever comes back is one whole
    /// response or nothing, then a clean EOF.
    async fn prefix_then_fin(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let (req, expect) = self.request(SURELY_DRAINED, 64 * 1024);
        let segments = req.segments();
        let total = total_len(&segments);
        let cut = self.rng.usize(0, total.saturating_sub(1));
        if cut > 0 {
            self.sent(&req);
        }
        write_segments(&mut wr, &prefix(&segments, cut))
            .await
            .map_err(|e| e.to_string())?;
        wr.shutdown().await.map_err(|e| e.to_string())?;
        let context = || {
            format!(
                "prefix {} ({:?}, {cut} of {total} bytes)",
                req.line(),
                req.body
            )
        };
        let head = match reader.head().await {
            Ok(head) => head,
            Err(Failure::Eof { got: 0 }) => return Ok(()),
            Err(failure) => return Err(format!("{}: {failure}", context())),
        };
        // 400: hyper's own answer to a broken head, or `consume` failing on
        // the cut body; either must still arrive whole.
        let expected = (head.status == expect.status).then(|| expect.bytes());
        ensure(expected.is_some() || head.status == 400, || {
            format!("{}: status {}", context(), head.status)
        })?;
        reader
            .body(&head, expected)
            .await
            .map_err(|failure| format!("{}: {failure}", context()))?;
        if expected.is_some() {
            self.answered(&req);
        }
        let end = reader.end().await;
        ensure(end == End::Eof, || format!("{}: {end:?}", context()))
    }
}

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
        let mut session = Session {
            ledger: &ledger,
            fleet,
            rng: Rng::new(rng.next_u64()),
            tag: format!("{}{id}x{number}", &fleet.name[..1]),
            requests: 0,
        };
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
    let mut fleets = vec![start_hyper().await];
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
