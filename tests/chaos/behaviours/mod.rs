//! The clients of the fleet: a [`Session`] runs one [`Behaviour`] on one connection (or
//! a few) against one server, and says how it went. The behaviours live in the modules
//! below by theme; this module holds what they share: random requests with their exact
//! expected responses, and the ledger of what clients sent and received.

mod endings;
mod failures;
mod keep_alive;
mod pressure;
mod protocol;

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::expect::{Expect, ExpectBody};
use crate::rng::Rng;
use crate::servers::Fleet;
use crate::wire::{BodySpec, Req, MAX_BODY};

/// Bodies at most this large, sent at once, must always be drained.
const SURELY_DRAINED: usize = 64 * 1024;
/// No single exchange may take longer.
const STEP: Duration = Duration::from_secs(8);

/// What a client does in a session: `keep_alive` (`Sequential`, `Pipelined`,
/// `SlowDrip`), `protocol` (`ExpectContinue`, `Http10`, `UpgradeOffer`), `endings`
/// (`HalfClose`, `PrefixThenFin`, `StallMidBody`, `AbortRst`, `NeverFin`), `pressure`
/// (`EndlessSender`, `SlowReader`), `failures` (`BadHead`, `ServiceError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Behaviour {
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

/// Every behaviour with its weight in the random picks.
pub const BEHAVIOURS: [(u64, Behaviour); 15] = [
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
pub struct Ledger {
    /// Request lines clients wrote (or began to write).
    pub sent: Mutex<HashSet<String>>,
    /// Request lines written after one whose answer closes the connection:
    /// the server must not process them (RFC 9112 §9.6).
    pub not_served: Mutex<HashSet<String>>,
    /// Request lines whose response a client received whole.
    pub answered: Mutex<Vec<String>>,
    pub failures: Mutex<Vec<String>>,
    pub sessions: Mutex<BTreeMap<(Behaviour, &'static str), usize>>,
}

/// A session's verdict: what went wrong, if anything.
pub type Outcome = Result<(), String>;

/// One client session against one server.
pub struct Session<'a> {
    ledger: &'a Ledger,
    fleet: &'a Fleet,
    rng: Rng,
    /// Makes the session's request paths unique: `{server}{client}x{session}-{n}`.
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

impl<'a> Session<'a> {
    pub fn new(ledger: &'a Ledger, fleet: &'a Fleet, rng: Rng, tag: String) -> Self {
        Self {
            ledger,
            fleet,
            rng,
            tag,
            requests: 0,
        }
    }

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
            _ => MAX_BODY,
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
                    _ => MAX_BODY,
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

    /// Runs `behaviour` to its end; `Err` says what went wrong.
    pub async fn run(&mut self, behaviour: Behaviour) -> Outcome {
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
}
