//! Property tests of `DrainBodyLayer` through its public API.
//!
//! Each case wraps a `tower::service_fn` handler in the layer and feeds it a
//! scripted `http_body::Body`: proptest chooses the frames (sizes, trailers,
//! errors), when each one arrives (gaps, and peers that stall for good), the
//! framing (`Content-Length` or chunked), the request (HTTP version, `CONNECT`,
//! `Upgrade`, `Expect: 100-continue`), the layer's limit, timeout and mode, and
//! what the handler does with the body (ignore it, read k frames then drop it,
//! move it into a task, fail), the answer (status, `Connection` tokens) and
//! whether the server drops the response future early. Every case runs on its
//! own current-thread runtime with paused time, so timeouts of seconds cost
//! nothing and every run is deterministic.
//!
//! "The connection will not be reused" means the body did not reach its end:
//! hyper reuses an HTTP/1 connection only when the request body was read to
//! its end. The invariants, checked once every timer of the case has run out:
//!
//! - nothing panics, in the layer's future or in its drain task;
//! - the response is always released: at once in the default mode, within the
//!   timeout with `wait_for_drain(true)`; a response future dropped early
//!   (the connection died) lets go of the body at once;
//! - the layer reads at most `limit` + one frame beyond what the handler read
//!   (the case's limit is given to `http2_limit` as well), nothing at all
//!   when the declared remainder is above the limit or an unpolled
//!   `Expect: 100-continue` body would be invited, and nothing of exchanges
//!   that hand the connection over (`101`, a `2xx` to `CONNECT`) or of an
//!   HTTP/2 `CONNECT` stream, whatever the answer;
//! - HTTP/2 responses are released at once, `wait_for_drain` or not, and
//!   never get `Connection: close`;
//! - the body is let go within the timeout counted from the response (the
//!   drain never outlives it), a body held by a task when it drops it or by
//!   that deadline;
//! - `Connection: close` implies that the body did not reach its end; with
//!   `wait_for_drain(true)` it is present exactly when the body did not;
//! - a body the layer can drain (no error, remainder within the limit, all of
//!   it arriving before the deadline) is drained to its end and keeps the
//!   connection;
//! - the `Connection` tokens the handler set survive, except a `keep-alive`
//!   contradicting the layer's `close`;
//! - `DrainCounters` record exactly one outcome per body, consistent with
//!   what happened to it, no drain left in progress, and the bytes the layer
//!   read.
//!
//! `PROPTEST_CASES` raises the number of cases (512 per mode by default).

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Once};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use linger::{DrainBody, DrainBodyLayer, DrainCounters, DrainStats};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tokio::time::{Instant, Sleep};
use tower::{Layer, ServiceExt};

/// Largest data frame a script may hold; hyper's own frames are smaller.
const MAX_FRAME: usize = 64 * 1024;
static ZEROS: [u8; MAX_FRAME] = [0; MAX_FRAME];

/// Slack for tokio's millisecond timer resolution.
const TICK: Duration = Duration::from_millis(2);
/// A response not released after this much virtual time never will be.
const NEVER: Duration = Duration::from_secs(3600);

// ------------------------------------------------------------------ script --

/// When a step becomes available, counted from the previous step.
#[derive(Clone, Copy, Debug)]
enum Gap {
    Ms(u64),
    /// The peer never sends it (nor anything after it).
    Never,
}

#[derive(Clone, Copy, Debug)]
enum Event {
    Data(usize),
    Trailers,
    /// The body fails (bad chunk, peer gone); it stays failed.
    Error,
    /// Chunked only: the last chunk, after which the body yields `None`.
    End,
}

#[derive(Clone, Copy, Debug)]
struct Step {
    gap: Gap,
    event: Event,
}

#[derive(Clone, Debug)]
struct Script {
    /// `Some(length)`: `Content-Length` framing; `None`: chunked.
    declared: Option<u64>,
    steps: Vec<Step>,
    /// The script ends with the body's end (no error, no stall).
    completes: bool,
}

impl Script {
    fn data_total(&self) -> u64 {
        self.steps
            .iter()
            .map(|step| match step.event {
                Event::Data(n) => n as u64,
                _ => 0,
            })
            .sum()
    }

    fn max_frame(&self) -> u64 {
        self.steps
            .iter()
            .map(|step| match step.event {
                Event::Data(n) => n as u64,
                _ => 0,
            })
            .max()
            .unwrap_or(0)
    }

    /// When each step arrives, counted from `start`; `None`: never.
    fn arrivals(&self, start: Instant) -> Vec<Option<Instant>> {
        let mut at = Some(start);
        self.steps
            .iter()
            .map(|step| {
                at = match (at, step.gap) {
                    (Some(at), Gap::Ms(ms)) => Some(at + Duration::from_millis(ms)),
                    _ => None,
                };
                at
            })
            .collect()
    }
}

/// What the body went through, seen from outside the layer.
#[derive(Debug, Default)]
struct Probe {
    /// Data bytes handed out, to the handler and to the layer.
    delivered: u64,
    reached_end: bool,
    dropped_at: Option<Instant>,
}

type SharedProbe = Arc<Mutex<Probe>>;

#[derive(Debug)]
struct ScriptError;

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("scripted body error")
    }
}

impl std::error::Error for ScriptError {}

/// A request body that plays a script against tokio's (paused) clock, as a
/// network would: a frame is ready once its arrival time has passed, whether
/// or not anyone was polling.
struct ScriptedBody {
    steps: Vec<Step>,
    arrivals: Vec<Option<Instant>>,
    next: usize,
    /// `Content-Length` framing: bytes still to come.
    remaining: Option<u64>,
    ended: bool,
    failed: bool,
    timer: Option<Pin<Box<Sleep>>>,
    probe: SharedProbe,
}

impl ScriptedBody {
    fn new(script: &Script, start: Instant, probe: SharedProbe) -> Self {
        let ended = script.declared == Some(0);
        probe.lock().unwrap().reached_end = ended;
        Self {
            steps: script.steps.clone(),
            arrivals: script.arrivals(start),
            next: 0,
            remaining: script.declared,
            ended,
            failed: false,
            timer: None,
            probe,
        }
    }
}

impl Body for ScriptedBody {
    type Data = Bytes;
    type Error = ScriptError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ScriptError>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(Some(Err(ScriptError)));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        let Some(step) = this.steps.get(this.next).copied() else {
            // A stalled peer: nothing more will come, and nothing will wake us.
            return Poll::Pending;
        };
        let Some(arrival) = this.arrivals[this.next] else {
            return Poll::Pending;
        };
        if Instant::now() < arrival {
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(arrival)));
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        this.timer = None;
        this.next += 1;
        let mut probe = this.probe.lock().unwrap();
        match step.event {
            Event::Data(n) => {
                probe.delivered += n as u64;
                if let Some(remaining) = &mut this.remaining {
                    *remaining -= n as u64;
                    if *remaining == 0 {
                        this.ended = true;
                        probe.reached_end = true;
                    }
                }
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&ZEROS[..n])))))
            }
            Event::Trailers => {
                let mut trailers = HeaderMap::new();
                trailers.insert("x-checksum", HeaderValue::from_static("0"));
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            Event::Error => {
                this.failed = true;
                Poll::Ready(Some(Err(ScriptError)))
            }
            Event::End => {
                this.ended = true;
                probe.reached_end = true;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && !self.failed
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(remaining) => SizeHint::with_exact(remaining),
            None => SizeHint::default(),
        }
    }
}

impl Drop for ScriptedBody {
    fn drop(&mut self) {
        if let Ok(mut probe) = self.probe.lock() {
            probe.dropped_at = Some(Instant::now());
        }
    }
}

// ----------------------------------------------------------------- handler --

#[derive(Clone, Copy, Debug)]
enum Handling {
    /// Drops the body unread.
    Ignore,
    /// Reads up to `frames` frames (0: never polls), for at most `patience_ms`,
    /// then drops the body.
    Read { frames: usize, patience_ms: u64 },
    /// Answers at once and moves the body into a task that waits `wait_ms`,
    /// then reads as `Read` does and drops it.
    MoveToTask {
        wait_ms: u64,
        frames: usize,
        patience_ms: u64,
    },
    /// Reads as `Read` does, then fails instead of answering.
    Fail { frames: usize, patience_ms: u64 },
}

#[derive(Clone, Debug)]
struct Case {
    script: Script,
    handling: Handling,
    /// Virtual time the handler takes after letting go of the body.
    respond_after_ms: u64,
    /// The server drops the response future this long after the call (a
    /// connection that died), if it has not finished by then.
    cancel_after_ms: Option<u64>,
    version: Version,
    connect: bool,
    upgrade: bool,
    expect_continue: bool,
    /// The handler's answer: 101 hands the connection over, and so does a
    /// 2xx to `CONNECT`; anything else is an ordinary response.
    status: StatusCode,
    /// A `Connection` header the handler sets itself.
    response_connection: Option<&'static str>,
    limit: u64,
    timeout_ms: u64,
    wait_for_drain: bool,
}

/// What the handler (and its task) did.
#[derive(Debug, Default)]
struct HandlerLog {
    bytes_read: u64,
    polled: bool,
    saw_error: bool,
    answered_at: Option<Instant>,
    task_dropped_at: Option<Instant>,
    /// The handler's task still held the body when the handler answered.
    held_at_answer: bool,
}

type SharedLog = Arc<Mutex<HandlerLog>>;

#[derive(Debug)]
struct HandlerFailed;

type TestBody = DrainBody<ScriptedBody>;

/// Reads up to `frames` frames within `patience_ms`; stops at the end or an error.
async fn read_frames(body: &mut TestBody, frames: usize, patience_ms: u64, log: &SharedLog) {
    let deadline = Instant::now() + Duration::from_millis(patience_ms);
    for _ in 0..frames {
        log.lock().unwrap().polled = true;
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    log.lock().unwrap().bytes_read += data.len() as u64;
                }
            }
            Ok(Some(Err(_))) => {
                log.lock().unwrap().saw_error = true;
                return;
            }
            Ok(None) | Err(_) => return,
        }
    }
}

async fn handle(
    request: Request<TestBody>,
    case: Arc<Case>,
    log: SharedLog,
) -> Result<Response<String>, HandlerFailed> {
    let mut body = request.into_body();
    match case.handling {
        Handling::Ignore => drop(body),
        Handling::Read {
            frames,
            patience_ms,
        } => {
            read_frames(&mut body, frames, patience_ms, &log).await;
            drop(body);
        }
        Handling::MoveToTask {
            wait_ms,
            frames,
            patience_ms,
        } => {
            let log = log.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                read_frames(&mut body, frames, patience_ms, &log).await;
                drop(body);
                log.lock().unwrap().task_dropped_at = Some(Instant::now());
            });
        }
        Handling::Fail {
            frames,
            patience_ms,
        } => {
            read_frames(&mut body, frames, patience_ms, &log).await;
            drop(body);
            tokio::time::sleep(Duration::from_millis(case.respond_after_ms)).await;
            log.lock().unwrap().answered_at = Some(Instant::now());
            return Err(HandlerFailed);
        }
    }
    tokio::time::sleep(Duration::from_millis(case.respond_after_ms)).await;
    let mut response = Response::new("answer".to_owned());
    *response.status_mut() = case.status;
    if let Some(connection) = case.response_connection {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static(connection));
    }
    let mut log = log.lock().unwrap();
    log.answered_at = Some(Instant::now());
    log.held_at_answer =
        matches!(case.handling, Handling::MoveToTask { .. }) && log.task_dropped_at.is_none();
    drop(log);
    Ok(response)
}

// -------------------------------------------------------------------- run --

thread_local! {
    /// Panics on this thread; a current-thread runtime runs the drain task here too.
    static PANICS: Cell<u64> = const { Cell::new(0) };
}

/// Counts every panic, including those tokio catches in spawned tasks.
fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.with(|panics| panics.set(panics.get() + 1));
            previous(info);
        }));
    });
}

fn build_request(case: &Case, body: ScriptedBody) -> Request<ScriptedBody> {
    let mut builder = Request::builder()
        .method(if case.connect {
            Method::CONNECT
        } else {
            Method::POST
        })
        .uri(if case.connect {
            "example.com:443"
        } else {
            "/upload"
        })
        .version(case.version);
    if let Some(length) = case.script.declared {
        builder = builder.header(header::CONTENT_LENGTH, length);
    } else if case.version != Version::HTTP_2 {
        builder = builder.header(header::TRANSFER_ENCODING, "chunked");
    }
    if case.upgrade {
        builder = builder
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket");
    }
    if case.expect_continue {
        builder = builder.header(header::EXPECT, "100-continue");
    }
    builder.body(body).unwrap()
}

fn run_case(case: Case) -> Result<(), TestCaseError> {
    count_panics();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let panics_before = PANICS.with(Cell::get);
    let result = runtime.block_on(exercise(Arc::new(case)));
    drop(runtime);
    let panics = PANICS.with(Cell::get) - panics_before;
    prop_assert_eq!(panics, 0, "something panicked");
    result
}

async fn exercise(case: Arc<Case>) -> Result<(), TestCaseError> {
    let start = Instant::now();
    let probe = SharedProbe::default();
    let log = SharedLog::default();
    let request = build_request(&case, ScriptedBody::new(&case.script, start, probe.clone()));
    let counters = DrainCounters::new();
    let limit = usize::try_from(case.limit).expect("limit fits usize");
    let layer = DrainBodyLayer::new(limit)
        .http2_limit(limit)
        .timeout(Duration::from_millis(case.timeout_ms))
        .wait_for_drain(case.wait_for_drain)
        .counters(counters.clone());
    let handler = {
        let (case, log) = (case.clone(), log.clone());
        tower::service_fn(move |request| handle(request, case.clone(), log.clone()))
    };
    let call = layer.layer(handler).oneshot(request);
    let patience = case.cancel_after_ms.map_or(NEVER, Duration::from_millis);
    let answer = tokio::time::timeout(patience, call).await;
    let released_at = Instant::now();
    let Ok(answer) = answer else {
        if case.cancel_after_ms.is_none() {
            return Err(TestCaseError::fail("the response was never released"));
        }
        let task_held_at_cancel = log.lock().unwrap().task_dropped_at.is_none();
        tokio::time::sleep(NEVER).await;
        let probe = probe.lock().unwrap();
        let log = log.lock().unwrap();
        check_counters_settled(&case, &counters.snapshot(), &probe, &log)?;
        return check_cancelled(
            &case,
            released_at,
            task_held_at_cancel,
            &counters.snapshot(),
            &probe,
            &log,
        );
    };
    // Virtual time: every gap, drain deadline and task of the case runs out
    // before this timer fires, and nothing else is left to run.
    tokio::time::sleep(NEVER).await;

    let probe = probe.lock().unwrap();
    let log = log.lock().unwrap();
    let drains = counters.snapshot();
    check_counters_settled(&case, &drains, &probe, &log)?;
    check(&case, &answer, start, released_at, &drains, &probe, &log)
}

// -------------------------------------------------------------- invariants --

/// The response future was dropped at `cancelled_at` before it finished.
fn check_cancelled(
    case: &Case,
    cancelled_at: Instant,
    task_held_at_cancel: bool,
    drains: &DrainStats,
    probe: &Probe,
    log: &HandlerLog,
) -> Result<(), TestCaseError> {
    let drained = probe.delivered - log.bytes_read;
    prop_assert!(
        drained <= case.limit + case.script.max_frame(),
        "drained {} bytes after a cancel (limit {})",
        drained,
        case.limit
    );
    let Some(dropped_at) = probe.dropped_at else {
        return Err(TestCaseError::fail("the body outlived a cancelled call"));
    };
    let task = matches!(case.handling, Handling::MoveToTask { .. }) && task_held_at_cancel;
    if tracked(case) && !task && !http2_connect(case) {
        prop_assert_eq!(
            drains.abandoned,
            1,
            "a cancelled call is abandoned: {:?}",
            drains
        );
    }
    let bound = match (task, log.task_dropped_at) {
        (true, Some(task_dropped_at)) => {
            task_dropped_at + Duration::from_millis(case.timeout_ms) + TICK
        }
        (true, None) => return Err(TestCaseError::fail("the handler's task never finished")),
        (false, _) => cancelled_at,
    };
    prop_assert!(
        dropped_at <= bound,
        "body dropped {:?} after it should have been",
        dropped_at - bound
    );
    Ok(())
}

/// The tokens of every `Connection` header of `response`, lowercased.
fn connection_tokens(response: &Response<String>) -> Vec<String> {
    response
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|value| value.to_str().unwrap_or_default().split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| !token.is_empty())
        .collect()
}

/// An HTTP/2 `CONNECT` stream: left alone whatever the answer.
fn http2_connect(case: &Case) -> bool {
    case.connect && case.version >= Version::HTTP_2
}

/// Whether the request came with a body that had not ended: the layer
/// counts exactly those.
fn tracked(case: &Case) -> bool {
    case.script.declared != Some(0)
}

/// Checks that hold for every case once everything has run out.
fn check_counters_settled(
    case: &Case,
    drains: &DrainStats,
    probe: &Probe,
    log: &HandlerLog,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(drains.draining, 0, "a drain is still counted: {:?}", drains);
    if tracked(case) && http2_connect(case) {
        // Counted as the request goes in, whatever happens next.
        prop_assert_eq!(drains.passed_through, 1, "HTTP/2 CONNECT: {:?}", drains);
    }
    prop_assert_eq!(
        drains.settled(),
        u64::from(tracked(case)),
        "one outcome per body: {:?}",
        drains
    );
    let drained = probe.delivered - log.bytes_read;
    prop_assert_eq!(
        drains.bytes_drained,
        drained,
        "bytes_drained is what the layer read, abandoned drains included: {:?}",
        drains
    );
    if drains.drained_inline + drains.drained == 1 {
        prop_assert!(
            probe.reached_end,
            "counted as drained, did not end: {:?}",
            drains
        );
    }
    Ok(())
}

fn check(
    case: &Case,
    answer: &Result<Response<String>, HandlerFailed>,
    start: Instant,
    released_at: Instant,
    drains: &DrainStats,
    probe: &Probe,
    log: &HandlerLog,
) -> Result<(), TestCaseError> {
    let timeout = Duration::from_millis(case.timeout_ms);
    let Some(answered_at) = log.answered_at else {
        return Err(TestCaseError::fail("released before the handler answered"));
    };
    let drained = probe.delivered - log.bytes_read;
    // A task that dropped the body before the answer let go of it like a handler.
    let held = log.held_at_answer;
    let http1 = case.version < Version::HTTP_2;
    // Exchanges whose connection is handed over, and HTTP/2 `CONNECT`
    // streams: the layer leaves the body alone. Other answers to `Upgrade`
    // and to an HTTP/1 `CONNECT` are ordinary responses.
    let handed_over = http2_connect(case)
        || answer.as_ref().is_ok_and(|_| {
            case.status == StatusCode::SWITCHING_PROTOCOLS
                || (case.connect && case.status.is_success())
        });
    let never_drained = handed_over;
    let plain = !never_drained;

    // Released, at once unless told to wait.
    let release_bound = if case.wait_for_drain && http1 {
        timeout + TICK
    } else {
        Duration::ZERO
    };
    prop_assert!(
        released_at - answered_at <= release_bound,
        "released {:?} after the answer (bound {:?})",
        released_at - answered_at,
        release_bound
    );

    // Bounded reading.
    prop_assert!(
        drained <= case.limit + case.script.max_frame(),
        "drained {} bytes: more than limit {} + one frame {}",
        drained,
        case.limit,
        case.script.max_frame()
    );
    if never_drained {
        prop_assert_eq!(drained, 0, "read a body it must leave alone");
        if tracked(case) && answer.is_ok() {
            prop_assert_eq!(drains.passed_through, 1, "{:?}", drains);
        }
    }

    // The body is let go within the timeout (and not leaked).
    let Some(dropped_at) = probe.dropped_at else {
        return Err(TestCaseError::fail("the body was never dropped"));
    };
    // A held body is drained from when the task drops it, by the deadline
    // counted from the response.
    let drop_bound = if held {
        let Some(at) = log.task_dropped_at else {
            return Err(TestCaseError::fail("the handler's task never finished"));
        };
        at.max(answered_at + timeout) + TICK
    } else {
        answered_at + timeout + TICK
    };
    prop_assert!(
        dropped_at <= drop_bound,
        "body dropped {:?} too late (timeout {:?}, held {})",
        dropped_at - drop_bound,
        timeout,
        held
    );

    let Ok(response) = answer else {
        // A failed handler: hyper closes the connection itself.
        if tracked(case) && !http2_connect(case) {
            prop_assert_eq!(
                drains.abandoned,
                1,
                "a failed service is abandoned: {:?}",
                drains
            );
        }
        return Ok(());
    };
    let tokens = connection_tokens(response);
    let close = tokens.iter().any(|token| token == "close");
    prop_assert!(
        response
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .count()
            <= 1,
        "several Connection headers: {:?}",
        response.headers()
    );
    // The handler never says close: a close is the layer's, which keeps the
    // handler's other tokens and drops only a contradicting keep-alive.
    let mut expected_tokens: Vec<String> = case
        .response_connection
        .iter()
        .map(|token| token.to_string())
        .filter(|token| !(close && token == "keep-alive"))
        .collect();
    if close {
        expected_tokens.push("close".into());
    }
    prop_assert_eq!(&tokens, &expected_tokens, "Connection tokens");
    if close {
        let refused =
            drains.over_limit + drains.deadline + drains.body_error + drains.expect_continue;
        prop_assert_eq!(
            refused + drains.no_timers,
            1,
            "close without a reason: {:?}",
            drains
        );
    }
    if case.wait_for_drain && http1 && !held {
        prop_assert!(dropped_at <= released_at, "drain outlived a held response");
    }
    if !http1 {
        prop_assert!(!close, "Connection: close on HTTP/2");
    }

    // `Connection: close` promises a connection that will not be reused.
    prop_assert!(
        !(close && probe.reached_end),
        "Connection: close although the body reached its end"
    );
    if never_drained || held {
        // A held body is drained once dropped, after the response has gone.
        prop_assert!(!close, "Connection: close on an exchange left alone");
    }
    if !plain || held {
        return Ok(());
    }
    if probe.reached_end && !close && tracked(case) {
        prop_assert_eq!(
            drains.read + drains.drained_inline + drains.drained,
            1,
            "a body that ended counts as read or drained: {:?}",
            drains
        );
    }

    let remainder_declared = case
        .script
        .declared
        .map(|declared| declared - log.bytes_read);
    let continue_unpolled = case.expect_continue && case.version == Version::HTTP_11 && !log.polled;
    let body_pending = !ended_when_let_go(case, log);
    if body_pending && (continue_unpolled || remainder_declared.is_some_and(|r| r > case.limit)) {
        prop_assert_eq!(close, http1, "refused to drain: close on HTTP/1 only");
        prop_assert_eq!(drained, 0, "read a body it refused to drain");
    }
    if case.wait_for_drain && http1 {
        prop_assert_eq!(
            close,
            !probe.reached_end,
            "wait_for_drain: Connection: close must match whether the body reached its end"
        );
    }
    if drainable(case, log, start, answered_at) {
        if case.limit > 0 {
            prop_assert!(probe.reached_end, "a drainable body was not drained");
            prop_assert!(!close, "Connection: close on a drainable body");
        } else {
            // `new(0)` may refuse at once or take what is there: either way it
            // must say so on HTTP/1.
            prop_assert_eq!(close, http1 && !probe.reached_end, "limit 0");
        }
    }
    Ok(())
}

/// Whether the body had already reached its end when the handler let go.
fn ended_when_let_go(case: &Case, log: &HandlerLog) -> bool {
    match case.script.declared {
        Some(declared) => log.bytes_read == declared,
        // A chunked body ends only at the `None` the handler would have to see;
        // the handlers here stop at data counts, so treat it as pending.
        None => false,
    }
}

/// Whether the layer has all it needs to drain what the handler left: no
/// error, a remainder within the limit, the whole rest arriving before the
/// deadline, and no `100 Continue` it would have to invite.
fn drainable(case: &Case, log: &HandlerLog, start: Instant, answered_at: Instant) -> bool {
    if !case.script.completes || log.saw_error {
        return false;
    }
    if case.expect_continue && case.version == Version::HTTP_11 && !log.polled {
        return false;
    }
    if case.script.data_total() - log.bytes_read > case.limit {
        return false;
    }
    let deadline = answered_at + Duration::from_millis(case.timeout_ms);
    case.script
        .arrivals(start)
        .last()
        .is_none_or(|last| last.is_some_and(|last| last + TICK < deadline))
}

// -------------------------------------------------------------- strategies --

fn gap() -> impl Strategy<Value = u64> {
    prop_oneof![6 => Just(0u64), 3 => 1..50u64, 1 => 50..3_000u64]
}

fn data_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        1 => Just(0usize),
        4 => 1..512usize,
        3 => 512..16 * 1024usize,
        1 => 16 * 1024..=MAX_FRAME,
    ]
}

#[derive(Clone, Copy, Debug)]
enum Terminal {
    Complete { trailers: bool },
    Error { missing: u64 },
    Stall { missing: u64 },
}

fn terminal() -> impl Strategy<Value = Terminal> {
    prop_oneof![
        6 => any::<bool>().prop_map(|trailers| Terminal::Complete { trailers }),
        2 => (1..100_000u64).prop_map(|missing| Terminal::Error { missing }),
        2 => (1..100_000u64).prop_map(|missing| Terminal::Stall { missing }),
    ]
}

fn script() -> impl Strategy<Value = Script> {
    (
        any::<bool>(),
        prop::collection::vec((gap(), data_len()), 0..12),
        terminal(),
        gap(),
        gap(),
    )
        .prop_map(|(chunked, frames, terminal, gap_a, gap_b)| {
            let mut steps: Vec<Step> = frames
                .into_iter()
                .map(|(gap, len)| Step {
                    gap: Gap::Ms(gap),
                    event: Event::Data(len),
                })
                .collect();
            let data: u64 = steps
                .iter()
                .map(|step| match step.event {
                    Event::Data(n) => n as u64,
                    _ => 0,
                })
                .sum();
            let (declared, completes) = match terminal {
                Terminal::Complete { trailers } => {
                    if chunked {
                        if trailers {
                            steps.push(Step {
                                gap: Gap::Ms(gap_a),
                                event: Event::Trailers,
                            });
                        }
                        steps.push(Step {
                            gap: Gap::Ms(gap_b),
                            event: Event::End,
                        });
                    }
                    // A Content-Length body ends with its last byte.
                    (if chunked { None } else { Some(data) }, true)
                }
                Terminal::Error { missing } => {
                    steps.push(Step {
                        gap: Gap::Ms(gap_a),
                        event: Event::Error,
                    });
                    (if chunked { None } else { Some(data + missing) }, false)
                }
                Terminal::Stall { missing } => {
                    // One more frame that never comes.
                    steps.push(Step {
                        gap: Gap::Never,
                        event: Event::Data(0),
                    });
                    (if chunked { None } else { Some(data + missing) }, false)
                }
            };
            Script {
                declared,
                steps,
                completes,
            }
        })
}

fn reads() -> impl Strategy<Value = (usize, u64)> {
    (
        prop_oneof![2 => Just(0usize), 3 => 1..4usize, 1 => 4..20usize],
        prop_oneof![1 => Just(0u64), 2 => 1..100u64, 1 => 100..4_000u64],
    )
}

fn handling() -> impl Strategy<Value = Handling> {
    prop_oneof![
        3 => Just(Handling::Ignore),
        4 => reads().prop_map(|(frames, patience_ms)| Handling::Read { frames, patience_ms }),
        2 => (0..200u64, reads()).prop_map(|(wait_ms, (frames, patience_ms))| {
            Handling::MoveToTask { wait_ms, frames, patience_ms }
        }),
        1 => reads().prop_map(|(frames, patience_ms)| Handling::Fail { frames, patience_ms }),
    ]
}

fn case(wait_for_drain: bool) -> impl Strategy<Value = Case> {
    let request = (
        prop_oneof![
            7 => Just(Version::HTTP_11),
            2 => Just(Version::HTTP_10),
            1 => Just(Version::HTTP_2),
        ],
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.25),
    );
    let answer = (
        prop_oneof![
            12 => Just(StatusCode::OK),
            1 => Just(StatusCode::SWITCHING_PROTOCOLS),
            2 => Just(StatusCode::NOT_FOUND),
            1 => Just(StatusCode::PROXY_AUTHENTICATION_REQUIRED),
        ],
        prop_oneof![
            8 => Just(None),
            1 => Just(Some("keep-alive")),
            1 => Just(Some("upgrade")),
        ],
    );
    let layer = (
        prop_oneof![
            1 => Just(0u64),
            2 => 1..1024u64,
            3 => 1024..=256 * 1024u64,
        ],
        prop_oneof![1 => Just(0u64), 2 => 1..100u64, 3 => 100..5_000u64],
    );
    (
        script(),
        handling(),
        prop_oneof![3 => Just(0u64), 1 => 1..2_000u64],
        prop_oneof![3 => Just(None), 1 => (0..3_000u64).prop_map(Some)],
        request,
        answer,
        layer,
    )
        .prop_map(
            move |(
                script,
                handling,
                respond_after_ms,
                cancel_after_ms,
                (version, connect, upgrade, expect_continue),
                (status, response_connection),
                (limit, timeout_ms),
            )| Case {
                script,
                handling,
                respond_after_ms,
                cancel_after_ms,
                version,
                connect,
                upgrade,
                expect_continue,
                status,
                response_connection,
                limit,
                timeout_ms,
                wait_for_drain,
            },
        )
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(512);
    ProptestConfig {
        cases,
        // Failures print the minimal case; no regression files in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Default mode: the response goes at once, the drain runs alongside.
    #[test]
    fn drain_alongside_the_response(case in case(false)) {
        run_case(case)?;
    }

    /// `wait_for_drain(true)`: `Connection: close` exactly when the body did not end.
    #[test]
    fn drain_before_the_response(case in case(true)) {
        run_case(case)?;
    }
}

/// Minimal reproduction: `wait_for_drain(true)`, one byte of a two-byte body
/// has arrived and the other never does; the layer takes the byte that is
/// there, then the response future is dropped (the connection went away)
/// while it waits. `bytes_drained` must count that byte (it stayed 0 before
/// the drainer carried its own tally).
#[test]
fn abandoned_drain_counts_its_bytes() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let script = Script {
            declared: Some(2),
            steps: vec![
                Step {
                    gap: Gap::Ms(0),
                    event: Event::Data(1),
                },
                Step {
                    gap: Gap::Never,
                    event: Event::Data(1),
                },
            ],
            completes: false,
        };
        let probe = SharedProbe::default();
        let body = ScriptedBody::new(&script, Instant::now(), probe.clone());
        let request = Request::post("/")
            .header(header::CONTENT_LENGTH, 2)
            .body(body)
            .unwrap();
        let counters = DrainCounters::new();
        let layer = DrainBodyLayer::new(1024)
            .wait_for_drain(true)
            .counters(counters.clone());
        let service = layer.layer(tower::service_fn(|request: Request<TestBody>| async move {
            drop(request);
            Ok::<_, HandlerFailed>(Response::new(String::new()))
        }));
        let call = service.oneshot(request);
        assert!(tokio::time::timeout(Duration::from_millis(1), call)
            .await
            .is_err());
        let stats = counters.snapshot();
        assert_eq!(
            probe.lock().unwrap().delivered,
            1,
            "the layer read one byte"
        );
        assert_eq!(stats.abandoned, 1);
        assert_eq!(stats.bytes_drained, 1, "{stats:?}");
    });
}
