//! The README's graceful-shutdown recipe, as written, against both README setups, with
//! lingering closes still receiving bytes when the shutdown starts (issue 23):
//!
//! ```text
//! server's graceful shutdown returns        // axum's, or hyper-util's (bounded)
//! timeout(total_timeout + MARGIN, group.wait_idle())
//! // the runtime ends, as at the end of `main`
//! ```
//!
//! Before, the recipe bounded `wait_idle` with `total_timeout` itself, and `wait_idle`
//! only looked at closes already lingering. A close's `total_timeout` counts from the
//! drop of its IO, which both servers do a little after reporting the connection done
//! (axum drops its `close_rx` before the connection): the two equal bounds raced, the
//! bound fired with closes still lingering, and the runtime's end cut them short
//! (`aborted`). Now `wait_idle` also waits for the IO of the group that is still open, so
//! it ends exactly when the last close ends, and the bound carries a margin for IO the
//! server never drops.
//!
//! Each round runs the server as a program of its own (a runtime that is dropped at the
//! end, as `#[tokio::main]` does) with 20 clients that keep sending bytes of a 64 MiB
//! body they declared:
//!
//! - 6 asked `/early`, which answers at once: their closes linger (the client read the
//!   response and the server's FIN) when the shutdown starts, and end at `total_timeout`;
//! - 14 asked `/held`, whose handler answers only once the shutdown has started, so that
//!   their closes start with it. 7 send their FIN once they read the server's
//!   (`peer_eof`), 7 keep sending until `total_timeout`.
//!
//! The idle timeout is above the total one, so a client paused by a loaded machine
//! still ends at `total_timeout`: every close has one outcome it must end with.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use linger::{DrainBody, DrainBodyLayer, LingerConfig, LingerGroup};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tower::ServiceBuilder;

use crate::common::{http1, step, step_within, tcp_pair};

/// The recipe's margin over `total_timeout`, as in the README and the examples.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(1);
/// Short bounds, so that a round lasts about half a second.
const TOTAL: Duration = Duration::from_millis(500);
/// Above `TOTAL`: a client that keeps sending ends at `total_timeout`, even when a loaded
/// machine pauses it.
const IDLE: Duration = Duration::from_secs(1);
/// Rounds per setup. Before, the race showed in about half the runs.
const ROUNDS: usize = 10;
const EARLY: usize = 6;
const HELD_FINISHING: usize = 7;
const HELD_SENDING: usize = 7;
const CLIENTS: usize = EARLY + HELD_FINISHING + HELD_SENDING;
/// Declared, never all sent: far above the drain limit, so every response closes.
const DECLARED: usize = 64 * 1024 * 1024;
const DRAIN_LIMIT: usize = 256 * 1024;
/// How often a client sends its next bytes: pacing, not synchronisation.
const TRICKLE: Duration = Duration::from_millis(10);
const CHUNK: usize = 1024;
const ANSWER: &str = "answered";

fn config() -> LingerConfig {
    LingerConfig::new().idle_timeout(IDLE).total_timeout(TOTAL)
}

/// The README's recipe, once the server's own graceful shutdown has returned: whether
/// `wait_idle` ended within its bound.
async fn wait_for_the_lingering_closes(group: &LingerGroup) -> bool {
    tokio::time::timeout(
        group.config().get_total_timeout() + SHUTDOWN_MARGIN,
        group.wait_idle(),
    )
    .await
    .is_ok()
}

/// What the test hands the server program: the shutdown signal, and the handlers' side
/// of `/held` (each arrival is reported, the answer waits for `release`).
struct Scene {
    stop: oneshot::Receiver<()>,
    arrived: mpsc::UnboundedSender<()>,
    release: watch::Receiver<bool>,
}

#[derive(Clone)]
struct Held {
    arrived: mpsc::UnboundedSender<()>,
    release: watch::Receiver<bool>,
}

impl Held {
    async fn answer(mut self) -> &'static str {
        let _ = self.arrived.send(());
        // An error means the test is gone: answer anyway.
        let _ = self.release.wait_for(|released| *released).await;
        ANSWER
    }
}

/// The README's axum setup: `axum::serve(LingeringListener, app.layer(DrainBodyLayer))`
/// with a graceful shutdown, then the recipe.
#[cfg(feature = "axum")]
async fn axum_program(tcp: TcpListener, group: LingerGroup, scene: Scene) -> bool {
    use axum::routing::post;

    let Scene {
        stop,
        arrived,
        release,
    } = scene;
    let held = Held { arrived, release };
    let app = axum::Router::new()
        .route("/early", post(|| async { ANSWER }))
        .route("/held", post(move || held.clone().answer()))
        .layer(DrainBodyLayer::new(DRAIN_LIMIT));
    axum::serve(
        linger::LingeringListener::with_group(tcp, group.clone()),
        app,
    )
    .with_graceful_shutdown(async {
        let _ = stop.await;
    })
    .await
    .unwrap();
    wait_for_the_lingering_closes(&group).await
}

/// The README's hyper setup: an accept loop with `group.wrap(stream)`, `http1::Builder`,
/// the drain layer, hyper-util's `GracefulShutdown` (bounded), then the recipe.
async fn hyper_program(tcp: TcpListener, group: LingerGroup, scene: Scene) -> bool {
    let Scene {
        mut stop,
        arrived,
        release,
    } = scene;
    let held = Held { arrived, release };
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = tcp.accept() => accepted.unwrap(),
            _ = &mut stop => break,
        };
        let held = held.clone();
        let service = ServiceBuilder::new()
            .layer(DrainBodyLayer::new(DRAIN_LIMIT))
            .service_fn(move |request: Request<DrainBody<Incoming>>| {
                let held = held.clone();
                async move {
                    let answer = match request.uri().path() {
                        "/held" => held.answer().await,
                        _ => ANSWER,
                    };
                    Ok::<_, Infallible>(Response::new(answer.to_owned()))
                }
            });
        let connection = hyper::server::conn::http1::Builder::new().serve_connection(
            TokioIo::new(group.wrap(stream)),
            TowerToHyperService::new(service),
        );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    drop(tcp);
    // hyper-util does not bound its graceful shutdown; the README's recipe does.
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    wait_for_the_lingering_closes(&group).await
}

/// Runs `program` the way a binary runs `main`: on a runtime of its own, dropped when the
/// program returns (which cuts short, as `aborted`, whatever close still runs on it).
/// Yields what the program returned, once its runtime is gone.
fn run_as_main<P, Fut>(listener: std::net::TcpListener, program: P) -> JoinHandle<bool>
where
    P: FnOnce(TcpListener) -> Fut + Send + 'static,
    Fut: Future<Output = bool>,
{
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let in_time = runtime
            .block_on(async move { program(TcpListener::from_std(listener).unwrap()).await });
        drop(runtime);
        in_time
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ending {
    /// Sends its FIN as soon as it has read the server's.
    Finishes,
    /// Keeps sending until the server's socket is gone.
    KeepsSending,
}

/// One client: what it read, and how its sending ended.
struct ClientRun {
    /// Fires once the whole response and the server's FIN have arrived.
    answered: oneshot::Receiver<()>,
    done: JoinHandle<(io::Result<Vec<u8>>, io::Result<()>)>,
    ending: Ending,
}

/// Connects, sends the head of a POST to `path` declaring [`DECLARED`] bytes and then
/// [`CHUNK`] bytes of it every [`TRICKLE`], while reading the response to the end.
async fn client(addr: SocketAddr, path: &'static str, ending: Ending) -> ClientRun {
    let stream = step("connect", TcpStream::connect(addr)).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let (answered_tx, answered) = oneshot::channel();
    let (fin_tx, mut fin) = oneshot::channel::<()>();
    let writer = async move {
        let head = format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {DECLARED}\r\n\r\n");
        step("send the head", wr.write_all(head.as_bytes())).await?;
        let chunk = [b'u'; CHUNK];
        loop {
            step("send more", wr.write_all(&chunk)).await?;
            tokio::select! {
                () = tokio::time::sleep(TRICKLE) => {}
                // Also when the reader failed (and dropped `fin_tx`): that is reported.
                _ = &mut fin, if ending == Ending::Finishes => {
                    return step("send the FIN", wr.shutdown()).await;
                }
            }
        }
    };
    let reader = async move {
        let mut raw = Vec::new();
        step("read to EOF", rd.read_to_end(&mut raw)).await?;
        let _ = fin_tx.send(());
        let _ = answered_tx.send(());
        Ok(raw)
    };
    let done = tokio::spawn(async move {
        let (read, sent) = tokio::join!(reader, writer);
        (read, sent)
    });
    ClientRun {
        answered,
        done,
        ending,
    }
}

/// The whole answer, marked as the connection's last.
fn assert_answered(raw: &[u8]) {
    let head_end = http1::head_end(raw).expect("a whole head");
    let head = http1::RawHead::parse(&raw[..head_end]).unwrap();
    assert_eq!(head.status(), 200, "{}", String::from_utf8_lossy(raw));
    assert!(head.has_close(), "{}", String::from_utf8_lossy(raw));
    assert_eq!(&raw[head_end..], ANSWER.as_bytes());
}

#[derive(Clone, Copy, Debug)]
enum Setup {
    #[cfg(feature = "axum")]
    Axum,
    Hyper,
}

/// One round: the clients, the shutdown once the early closes linger and the held
/// requests wait, the program's end, then every close under its own outcome.
async fn round(setup: Setup, round: usize) -> Duration {
    let group = LingerGroup::new(config());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stop_rx) = oneshot::channel();
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel();
    let (release, release_rx) = watch::channel(false);
    let scene = Scene {
        stop: stop_rx,
        arrived: arrived_tx,
        release: release_rx,
    };
    let program = {
        let group = group.clone();
        match setup {
            #[cfg(feature = "axum")]
            Setup::Axum => run_as_main(listener, move |tcp| axum_program(tcp, group, scene)),
            Setup::Hyper => run_as_main(listener, move |tcp| hyper_program(tcp, group, scene)),
        }
    };

    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..EARLY {
        clients.push(client(addr, "/early", Ending::KeepsSending).await);
    }
    for _ in 0..HELD_FINISHING {
        clients.push(client(addr, "/held", Ending::Finishes).await);
    }
    for _ in 0..HELD_SENDING {
        clients.push(client(addr, "/held", Ending::KeepsSending).await);
    }
    // The early ones have their answer and the server's FIN: their closes linger, and
    // the clients go on sending.
    for early in &mut clients[..EARLY] {
        step("an early answer", &mut early.answered).await.unwrap();
    }
    for _ in EARLY..CLIENTS {
        step("a held request reaches its handler", arrived.recv())
            .await
            .unwrap();
    }

    let started = Instant::now();
    stop.send(()).unwrap();
    release.send(true).unwrap();
    let in_time = step_within(
        TOTAL + SHUTDOWN_MARGIN + Duration::from_secs(5),
        "the program ends",
        program,
    )
    .await
    .unwrap();
    let shutdown = started.elapsed();
    // The runtime is gone: every close has its outcome.
    let stats = group.stats();
    assert!(
        in_time,
        "{setup:?}, round {round}: wait_idle still waiting after total_timeout + margin: {stats:?}"
    );
    assert_eq!(
        (
            stats.aborted,
            stats.peer_eof,
            stats.total_timeout,
            stats.closes()
        ),
        (
            0,
            HELD_FINISHING as u64,
            (EARLY + HELD_SENDING) as u64,
            CLIENTS as u64
        ),
        "{setup:?}, round {round}: (aborted, peer_eof, total_timeout, closes): {stats:?}"
    );

    for run in clients {
        let (read, sent) = step("the client ends", run.done).await.unwrap();
        assert_answered(&read.expect("the whole answer, then a clean EOF"));
        match run.ending {
            Ending::Finishes => sent.expect("sent until the FIN"),
            Ending::KeepsSending => {
                // It sent until the server's socket was gone.
                let error = sent.expect_err("the server's socket closes");
                assert!(
                    matches!(
                        error.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                    ),
                    "{error}"
                );
            }
        }
    }
    shutdown
}

async fn rounds(setup: Setup) {
    let started = Instant::now();
    let mut longest = Duration::ZERO;
    for n in 0..ROUNDS {
        longest = longest.max(round(setup, n).await);
    }
    eprintln!(
        "{setup:?}: {ROUNDS} rounds in {:?}, longest shutdown {longest:?}",
        started.elapsed()
    );
}

/// The README's axum setup: the recipe sees every close end, none `aborted`.
#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_axum_recipe_sees_every_close_end() {
    rounds(Setup::Axum).await;
}

/// The README's hyper setup with hyper-util's `GracefulShutdown`: the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_hyper_recipe_sees_every_close_end() {
    rounds(Setup::Hyper).await;
}

/// Polls `fut` once, without waiting.
async fn poll_once<F: Future + Unpin>(mut fut: F) -> std::task::Poll<F::Output> {
    std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut fut).poll(cx))).await
}

/// The order that raced, made certain: a server reports its connection done (the FIN is
/// out) and drops its IO only later. `wait_idle` waits for that IO, then for its close.
/// Before, with no close lingering yet, it returned at once.
#[tokio::test]
async fn wait_idle_waits_for_an_io_the_server_has_not_dropped() {
    let group = LingerGroup::new(config().total_timeout(Duration::from_secs(10)));
    let (server, mut client) = tcp_pair().await;
    let mut io = group.wrap(server);
    step("client sends", client.write_all(b"unread"))
        .await
        .unwrap();
    step("FIN", io.shutdown()).await.unwrap();
    let stats = group.stats();
    assert_eq!((stats.open, stats.lingering), (1, 0), "{stats:?}");

    let mut idle = std::pin::pin!(group.wait_idle());
    assert!(
        poll_once(idle.as_mut()).await.is_pending(),
        "wait_idle ended with an IO of the group still open"
    );
    drop(io);
    let stats = group.stats();
    assert_eq!((stats.open, stats.lingering), (0, 1), "{stats:?}");
    assert!(
        poll_once(idle.as_mut()).await.is_pending(),
        "wait_idle ended with a close lingering"
    );
    let mut rest = Vec::new();
    step("client reads the FIN", client.read_to_end(&mut rest))
        .await
        .unwrap();
    step("client sends its FIN", client.shutdown())
        .await
        .unwrap();
    step("wait_idle", idle).await;
    let stats = group.stats();
    assert_eq!(
        (stats.peer_eof, stats.closes(), stats.open, stats.lingering),
        (1, 1, 0, 0),
        "{stats:?}"
    );
}

/// Every way an IO leaves the group takes it out of `open`: `into_inner`, and the drop of
/// an IO of either kind (with or without the drop path).
#[tokio::test]
async fn every_io_leaves_the_open_gauge() {
    let group = LingerGroup::new(config());
    let (a, _a_peer) = tcp_pair().await;
    let (b, _b_peer) = tcp_pair().await;
    let (c, c_peer) = tcp_pair().await;
    let a = group.wrap(a);
    let b = group.wrap_local(b);
    let c = group.wrap(c);
    assert_eq!(group.stats().open, 3);
    let _a = a.into_inner();
    assert_eq!(group.stats().open, 2);
    drop(b);
    assert_eq!(group.stats().open, 1);
    // The peer is gone first, so that the close ends at its EOF at once.
    drop(c_peer);
    drop(c);
    step("wait_idle", group.wait_idle()).await;
    let stats = group.stats();
    assert_eq!(
        (stats.open, stats.released, stats.closes()),
        (0, 1, 3),
        "{stats:?}"
    );
}
