//! The rarer ways a connection ends (issue 11): a handler that panics, a tunnel that
//! half-closes one way and keeps forwarding the other, runtimes without timers, and
//! clients that send their whole body before reading.
//!
//! Every server here is built the way the README builds it, on real sockets.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use linger::{DrainBody, DrainBodyLayer, LingerConfig, LingerGroup, LingeringListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tower::ServiceBuilder;

use crate::common::step_within;

const STEP: Duration = Duration::from_secs(5);

const UPLOAD: usize = 256 * 1024;

/// The README's hyper accept loop, around `handle`, with `listener`'s group.
async fn readme_hyper<F, Fut>(listener: LingeringListener, handle: F) -> SocketAddr
where
    F: Fn(Request<DrainBody<Incoming>>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<String>, Infallible>> + Send + 'static,
{
    readme_hyper_with(listener, DrainBodyLayer::new(256 * 1024), handle).await
}

/// The same loop with `layer` as the drain layer.
async fn readme_hyper_with<F, Fut>(
    listener: LingeringListener,
    layer: DrainBodyLayer,
    handle: F,
) -> SocketAddr
where
    F: Fn(Request<DrainBody<Incoming>>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<String>, Infallible>> + Send + 'static,
{
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _peer)) = listener.accept().await else {
                return;
            };
            let service = ServiceBuilder::new()
                .layer(layer.clone())
                .service_fn(handle.clone());
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

// ------------------------------------------------------------ handler panics --

async fn panics(_request: Request<DrainBody<Incoming>>) -> Result<Response<String>, Infallible> {
    panic!("the handler panics (a test of connection_ends)")
}

/// Sends a POST with a 256 KiB body to a handler that panics without reading it, and
/// checks that the connection ends with a FIN, not a reset, and lingers until the
/// client's own FIN.
///
/// The connection's task unwinds with the panic and tokio drops the connection inside
/// its panic guard. Before (d39598f), a drop while panicking closed plainly: Linux
/// answered the unread upload with RST, 0 clean closes out of 10.
async fn panic_mid_upload(addr: SocketAddr, group: &LingerGroup) {
    let mut stream = step_within(STEP, "connect", TcpStream::connect(addr))
        .await
        .unwrap();
    let head = format!("POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: {UPLOAD}\r\n\r\n");
    step_within(STEP, "head", stream.write_all(head.as_bytes()))
        .await
        .unwrap();
    // The write itself may meet the reset (broken pipe) before the read does.
    let sent = step_within(STEP, "body", stream.write_all(&vec![b'u'; UPLOAD])).await;
    let mut buf = vec![0u8; 64 * 1024];
    let read = timeout(Duration::from_millis(500), stream.read(&mut buf))
        .await
        .expect("the FIN arrives within 0.5 s");
    assert!(
        matches!(read, Ok(0)) && sent.is_ok(),
        "expected a FIN and no response (the handler panicked), got {read:?} (sent: {sent:?})"
    );
    // The server still reads and discards: what follows meets no reset.
    assert_eq!(group.stats().lingering, 1, "{:?}", group.stats());
    step_within(STEP, "more", stream.write_all(&[b'm'; 4096]))
        .await
        .unwrap();
    assert_eq!(
        step_within(STEP, "read again", stream.read(&mut buf))
            .await
            .unwrap(),
        0
    );
    drop(stream);
    step_within(STEP, "linger ends", group.wait_idle()).await;
}

/// Ten rounds of [`panic_mid_upload`], each a staged close ending at the client's FIN.
async fn ten_panics_mid_upload(addr: SocketAddr, group: &LingerGroup) {
    for round in 1..=10 {
        panic_mid_upload(addr, group).await;
        let stats = group.stats();
        assert_eq!(
            (stats.peer_eof, stats.closes()),
            (round, round),
            "{stats:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_hyper_handler_gets_a_staged_close() {
    let listener = LingeringListener::new(bind().await);
    let group = listener.group().clone();
    let addr = readme_hyper(listener, panics).await;
    ten_panics_mid_upload(addr, &group).await;
}

/// A router whose `/upload` handler panics, and a `LingeringListener` to serve it on.
#[cfg(feature = "axum")]
async fn panicking_axum() -> (axum::Router, LingeringListener, SocketAddr) {
    use axum::routing::post;

    async fn panics() -> &'static str {
        panic!("the handler panics (a test of connection_ends)")
    }
    let tcp = bind().await;
    let addr = tcp.local_addr().unwrap();
    let routes = axum::Router::new().route("/upload", post(panics));
    (routes, LingeringListener::new(tcp), addr)
}

/// The README's axum quick start (the layer around the router), without
/// `CatchPanicLayer`.
#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_axum_handler_gets_a_staged_close() {
    use tower::Layer as _;

    let (routes, listener, addr) = panicking_axum().await;
    let group = listener.group().clone();
    let app = DrainBodyLayer::new(256 * 1024).axum().layer(routes);
    tokio::spawn(async move { axum::serve(listener, app).await });
    ten_panics_mid_upload(addr, &group).await;
}

/// The same with the layer on the router (`Router::layer`).
#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_axum_handler_under_router_layer_gets_a_staged_close() {
    let (routes, listener, addr) = panicking_axum().await;
    let group = listener.group().clone();
    let app = routes.layer(DrainBodyLayer::new(256 * 1024));
    tokio::spawn(async move { axum::serve(listener, app).await });
    ten_panics_mid_upload(addr, &group).await;
}

// ------------------------------------------------------------------ tunnels --

/// An upstream that greets, ends its side at once (EOF into the tunnel), and returns
/// everything it then receives until the client's EOF.
async fn upstream() -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    let tcp = bind().await;
    let addr = tcp.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut stream, _) = tcp.accept().await.unwrap();
        stream.write_all(b"hello from upstream").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        got
    });
    (addr, task)
}

/// A `CONNECT` tunnel (`copy_bidirectional` over hyper's `Upgraded`) whose upstream ends
/// its side first: the tunnel half-closes towards the client (`poll_shutdown`, FIN) and
/// keeps forwarding the client's bytes for longer than `total_timeout`, until the client
/// ends. Nothing lingers meanwhile: no slot (the IO counts as open, which `wait_idle`
/// waits for), and the client's EOF counts as `peer_eof`.
///
/// Before (d39598f): the FIN took a lingering slot and kept it for the tunnel's life
/// (`lingering == 1`, `wait_idle` pending), and the client's later EOF was counted as
/// `total_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_tunnel_is_not_lingering() {
    let total = Duration::from_millis(300);
    let listener =
        LingeringListener::with_config(bind().await, LingerConfig::new().total_timeout(total));
    let group = listener.group().clone();
    let (upstream_addr, upstream_got) = upstream().await;
    let addr = readme_hyper(
        listener,
        move |mut request: Request<DrainBody<Incoming>>| async move {
            assert_eq!(request.method(), Method::CONNECT);
            let on_upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                let upgraded = on_upgrade.await.expect("upgraded");
                let mut client = TokioIo::new(upgraded);
                let mut upstream = TcpStream::connect(upstream_addr).await.unwrap();
                tokio::io::copy_bidirectional(&mut client, &mut upstream)
                    .await
                    .expect("tunnel");
            });
            Ok(Response::new(String::new()))
        },
    )
    .await;

    let mut stream = step_within(STEP, "connect", TcpStream::connect(addr))
        .await
        .unwrap();
    let connect = format!("CONNECT {upstream_addr} HTTP/1.1\r\nHost: {upstream_addr}\r\n\r\n");
    step_within(STEP, "CONNECT", stream.write_all(connect.as_bytes()))
        .await
        .unwrap();
    // The 200, then what upstream said, then the tunnel's FIN.
    let mut got = Vec::new();
    step_within(
        STEP,
        "read to the tunnel's FIN",
        stream.read_to_end(&mut got),
    )
    .await
    .unwrap();
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.ends_with("\r\n\r\nhello from upstream"), "{got}");

    // Still forwarding the client's bytes, for longer than total_timeout.
    let started = tokio::time::Instant::now();
    let mut sent = 0;
    while started.elapsed() < total + Duration::from_millis(200) {
        step_within(STEP, "forward", stream.write_all(b"client data;"))
            .await
            .unwrap();
        sent += 1;
        let stats = group.stats();
        // Open, not lingering: `wait_idle` waits for the tunnel's IO, not for a linger.
        assert_eq!(
            (stats.open, stats.lingering, stats.closes()),
            (1, 0, 0),
            "{stats:?}"
        );
        // Pacing the scenario, not synchronising: the tunnel must outlive total_timeout.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    step_within(STEP, "client ends", stream.shutdown())
        .await
        .unwrap();
    let forwarded = step_within(STEP, "upstream got it all", upstream_got)
        .await
        .unwrap();
    assert_eq!(forwarded, b"client data;".repeat(sent));
    // The tunnel's task drops the IO once both directions are done.
    let mut rest = Vec::new();
    step_within(STEP, "EOF", stream.read_to_end(&mut rest))
        .await
        .unwrap();
    step_within(STEP, "closes", async {
        while group.stats().closes() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    step_within(STEP, "wait_idle", group.wait_idle()).await;
    let stats = group.stats();
    assert_eq!(
        (stats.peer_eof, stats.total_timeout, stats.closes()),
        (1, 0, 1),
        "{stats:?}"
    );
}

// -------------------------------------------------- runtimes without timers --

/// Two runtimes built without timers, used in turn for six connections: the crate asks
/// each runtime once whether it has timers, so tokio's "timers are disabled" panic
/// reaches the application's panic hook twice, not once per connection. Every
/// connection still closes (plainly: nothing can be bounded in time), counted as skipped.
///
/// Before (d39598f): a one-slot cache, so the hook ran on every close, 6 times.
#[test]
fn runtimes_without_timers_are_asked_once_each() {
    let this_thread = std::thread::current().id();
    let asked = Arc::new(AtomicUsize::new(0));
    let previous = std::panic::take_hook();
    let counted = Arc::clone(&asked);
    std::panic::set_hook(Box::new(move |info| {
        let timers = info.to_string().contains("timers are disabled");
        if timers && std::thread::current().id() == this_thread {
            counted.fetch_add(1, Ordering::Relaxed);
        } else {
            previous(info);
        }
    }));
    let without_timers = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap()
    };
    let runtimes = [without_timers(), without_timers()];
    let group = LingerGroup::default();
    for _ in 0..3 {
        for runtime in &runtimes {
            runtime.block_on(async {
                let tcp = bind().await;
                let (client, accepted) =
                    tokio::join!(TcpStream::connect(tcp.local_addr().unwrap()), tcp.accept());
                let (mut client, server) = (client.unwrap(), accepted.unwrap().0);
                let mut io = group.wrap(server);
                io.write_all(b"bye").await.unwrap();
                io.shutdown().await.unwrap();
                drop(io);
                let mut got = Vec::new();
                client.read_to_end(&mut got).await.unwrap();
                assert_eq!(got, b"bye");
            });
        }
    }
    assert_eq!(asked.load(Ordering::Relaxed), 2);
    let stats = group.stats();
    assert_eq!((stats.skipped, stats.closes()), (6, 6), "{stats:?}");
}

// ------------------------------------------------------ clients that send first --

const RESPONSE: usize = 8 * 1024 * 1024;

/// How a client frames the body it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// `Content-Length`: the layer knows at once that the body is over its limit.
    Length,
    /// `Transfer-Encoding: chunked` (Python's `requests` with a generator, Java's
    /// `HttpURLConnection` in chunked streaming mode): the layer learns it only while
    /// draining, after the response has started.
    Chunked,
}

/// What a blocking client that sends its whole body before it reads (Python's
/// `http.client` and `requests`, Java's `HttpURLConnection` in fixed-length mode) gets:
/// the response head and the length of its body, read to EOF.
fn send_then_read(addr: SocketAddr, body: usize, framing: Framing) -> io::Result<(String, usize)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    // A deadlock shows as a timeout here, not as a hung test.
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let length = match framing {
        Framing::Length => format!("Content-Length: {body}"),
        Framing::Chunked => "Transfer-Encoding: chunked".to_owned(),
    };
    let head = format!("POST /ignore HTTP/1.1\r\nHost: test\r\n{length}\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    let chunk = vec![b'u'; 64 * 1024];
    let mut left = body;
    while left > 0 {
        let n = left.min(chunk.len());
        if framing == Framing::Chunked {
            write!(stream, "{n:x}\r\n")?;
        }
        stream.write_all(&chunk[..n])?;
        if framing == Framing::Chunked {
            stream.write_all(b"\r\n")?;
        }
        left -= n;
    }
    if framing == Framing::Chunked {
        stream.write_all(b"0\r\n\r\n")?;
    }
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::other("no response head"))?;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    Ok((head, raw.len() - end - 4))
}

/// Sends 4 MiB and 32 MiB bodies, first, to a handler that ignores them and answers
/// with 8 MiB: the response arrives whole, announced as the connection's last, and the
/// connection then closes cleanly. The declared body is above the drain limit, so the
/// layer does not read it; the `LingeringIo` beneath throws it away, without copying,
/// while the response is written (counted in `bytes_discarded`).
///
/// Before (d39598f), as with plain hyper and Go: the server stopped reading and blocked
/// writing, the client blocked sending, and both waited (here: the client's 10 s write
/// timeout). nginx answers the same requests whole (BENCHMARKS.md).
async fn whole_responses_for_clients_that_send_first(addr: SocketAddr, group: &LingerGroup) {
    for (round, body) in [4 << 20, 32 << 20].into_iter().enumerate() {
        let stats = answered_whole_after_sending_first(addr, group, body, Framing::Length).await;
        assert_eq!(stats.peer_eof, round as u64 + 1, "{stats:?}");
    }
    // What the layer left: most of both bodies, discarded beneath it.
    let discarded = group.stats().bytes_discarded;
    assert!(discarded > 35 << 20, "{discarded} bytes discarded");
}

/// Sends `body` bytes first, framed so, and checks that the 8 MiB answer arrived whole,
/// announced as the connection's last, before the linger ended; then `group`'s stats.
async fn answered_whole_after_sending_first(
    addr: SocketAddr,
    group: &LingerGroup,
    body: usize,
    framing: Framing,
) -> linger::LingerStats {
    let (head, len) = step_within(
        STEP,
        "send, then read",
        tokio::task::spawn_blocking(move || send_then_read(addr, body, framing)),
    )
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("{body} bytes sent first ({framing:?}): {e}"));
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: close"), "{head}");
    assert_eq!(len, RESPONSE);
    step_within(STEP, "linger ends", group.wait_idle()).await;
    group.stats()
}

async fn ignores_and_answers_8_mib(
    _request: Request<DrainBody<Incoming>>,
) -> Result<Response<String>, Infallible> {
    Ok(Response::new("r".repeat(RESPONSE)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_answers_clients_that_send_first_whole() {
    let listener = LingeringListener::new(bind().await);
    let group = listener.group().clone();
    let addr = readme_hyper(listener, ignores_and_answers_8_mib).await;
    whole_responses_for_clients_that_send_first(addr, &group).await;
}

#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_answers_clients_that_send_first_whole() {
    use axum::routing::post;

    let app = axum::Router::new()
        .route("/ignore", post(|| async { "r".repeat(RESPONSE) }))
        .layer(DrainBodyLayer::new(256 * 1024));
    let tcp = bind().await;
    let addr = tcp.local_addr().unwrap();
    let listener = LingeringListener::new(tcp);
    let group = listener.group().clone();
    tokio::spawn(async move { axum::serve(listener, app).await });
    whole_responses_for_clients_that_send_first(addr, &group).await;
}

/// The same client, sending 32 MiB chunked, to a layer built with
/// `wait_for_drain(true)`: the size is unknown until the drain passes the limit, and
/// the response waits for that, so it can still say `Connection: close`; the
/// `LingeringIo` beneath then throws away what the client sends while the response is
/// written. The response arrives whole and the connection closes cleanly after it.
///
/// (The default mode answers it too: see the next tests.) Before (d39598f) the waiting
/// mode deadlocked too:
/// the server stopped reading and blocked writing, the client blocked sending (here:
/// the step's 5 s).
async fn whole_responses_for_chunked_uploads_sent_first(
    addr: SocketAddr,
    group: &LingerGroup,
    counters: &linger::DrainCounters,
) {
    let stats = answered_whole_after_sending_first(addr, group, 32 << 20, Framing::Chunked).await;
    assert_eq!(stats.peer_eof, 1, "{stats:?}");
    assert!(stats.bytes_discarded > 30 << 20, "{stats:?}");
    let drains = counters.snapshot();
    assert_eq!((drains.over_limit, drains.settled()), (1, 1), "{drains:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_waiting_answers_chunked_uploads_sent_first_whole() {
    let counters = linger::DrainCounters::new();
    let listener = LingeringListener::new(bind().await);
    let group = listener.group().clone();
    let layer = DrainBodyLayer::new(256 * 1024)
        .wait_for_drain(true)
        .counters(counters.clone());
    let addr = readme_hyper_with(listener, layer, ignores_and_answers_8_mib).await;
    whole_responses_for_chunked_uploads_sent_first(addr, &group, &counters).await;
}

#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_waiting_answers_chunked_uploads_sent_first_whole() {
    use axum::routing::post;

    let counters = linger::DrainCounters::new();
    let app = axum::Router::new()
        .route("/ignore", post(|| async { "r".repeat(RESPONSE) }))
        .layer(
            DrainBodyLayer::new(256 * 1024)
                .wait_for_drain(true)
                .counters(counters.clone()),
        );
    let tcp = bind().await;
    let addr = tcp.local_addr().unwrap();
    let listener = LingeringListener::new(tcp);
    let group = listener.group().clone();
    tokio::spawn(async move { axum::serve(listener, app).await });
    whole_responses_for_chunked_uploads_sent_first(addr, &group, &counters).await;
}

/// The same client, sending 16 MiB and then 32 MiB chunked, to the README setups with
/// nothing set beyond `DrainBodyLayer::new(256 * 1024)`: the response goes out at once,
/// without `Connection: close`, while the layer drains; when the drain passes the limit
/// it gives up, hyper will close after the response, and the `LingeringIo` beneath takes
/// the input over (hyper sees its end, the IO throws the rest away while the response is
/// written and after the FIN). The 8 MiB answer arrives whole, then a clean EOF.
///
/// Before, as with plain hyper: the drain stopped reading at the limit, the server
/// blocked writing, the client blocked sending, and both waited (here: the client's
/// 10 s write timeout, which fails the step). nginx answers it whole.
async fn default_mode_answers_chunked_uploads_sent_first(
    addr: SocketAddr,
    group: &LingerGroup,
    counters: &linger::DrainCounters,
) {
    for (round, body) in [16 << 20, 32 << 20].into_iter().enumerate() {
        let (head, len) = step_within(
            Duration::from_secs(15),
            "send chunked, then read",
            tokio::task::spawn_blocking(move || send_then_read(addr, body, Framing::Chunked)),
        )
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{body} bytes sent first, chunked: {e}"));
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
        assert_eq!(len, RESPONSE);
        step_within(STEP, "linger ends", group.wait_idle()).await;
        let stats = group.stats();
        assert_eq!(stats.peer_eof, round as u64 + 1, "{stats:?}");
    }
    let drains = counters.snapshot();
    assert_eq!((drains.over_limit, drains.settled()), (2, 2), "{drains:?}");
    // Most of both bodies went beneath hyper, after the drain gave up.
    assert!(
        group.stats().bytes_discarded > 40 << 20,
        "{:?}",
        group.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_answers_chunked_uploads_sent_first_by_default() {
    let counters = linger::DrainCounters::new();
    let listener = LingeringListener::new(bind().await);
    let group = listener.group().clone();
    let layer = DrainBodyLayer::new(256 * 1024).counters(counters.clone());
    let addr = readme_hyper_with(listener, layer, ignores_and_answers_8_mib).await;
    default_mode_answers_chunked_uploads_sent_first(addr, &group, &counters).await;
}

#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_answers_chunked_uploads_sent_first_by_default() {
    use axum::routing::post;

    let counters = linger::DrainCounters::new();
    let app = axum::Router::new()
        .route("/ignore", post(|| async { "r".repeat(RESPONSE) }))
        .layer(DrainBodyLayer::new(256 * 1024).counters(counters.clone()));
    let tcp = bind().await;
    let addr = tcp.local_addr().unwrap();
    let listener = LingeringListener::new(tcp);
    let group = listener.group().clone();
    tokio::spawn(async move { axum::serve(listener, app).await });
    default_mode_answers_chunked_uploads_sent_first(addr, &group, &counters).await;
}

/// An ignored chunked body within the limit with a `GET` pipelined behind it, in one
/// write, on the README hyper setup (where the layer does find the `LingeringIo`): the
/// drain reaches the end, the `GET` is answered on the same connection, and nothing was
/// discarded beneath hyper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_pipelined_after_an_ignored_chunked_body_is_served() {
    use crate::common::client::{assert_ok, chunked, chunked_head, get, Client};

    let counters = linger::DrainCounters::new();
    let listener = LingeringListener::new(bind().await);
    let group = listener.group().clone();
    let layer = DrainBodyLayer::new(256 * 1024).counters(counters.clone());
    let addr = readme_hyper_with(
        listener,
        layer,
        |request: Request<DrainBody<Incoming>>| async move {
            let text = if request.uri().path() == "/ignore" {
                "ignored"
            } else {
                "hello"
            };
            Ok(Response::new(text.to_owned()))
        },
    )
    .await;
    let mut client = Client::connect(addr).await;
    for _ in 0..3 {
        let mut request = chunked_head("/ignore").into_bytes();
        request.extend(chunked(&[b'c'; 200 * 1024], 8 * 1024));
        request.extend_from_slice(get("/").as_bytes());
        client.send(request).await;
        assert_ok(&client.response().await, "ignored");
        assert_ok(&client.response().await, "hello");
    }
    let drains = counters.snapshot();
    assert_eq!(drains.drained + drains.drained_inline, 3, "{drains:?}");
    assert_eq!(group.stats().bytes_discarded, 0);
}

/// A client that neither reads nor stops sending, against a 413-style refusal of a
/// 100 MB declared upload: the `LingeringIo` throws its input away while the 8 MiB
/// answer is written, up to `max_bytes` (256 KiB here); from then on the write cannot go
/// on, and it fails at `total_timeout` (500 ms here), counted as `stalled_write`, and the
/// connection ends.
///
/// Before (af856a0) the write stayed stalled for as long as the client kept the socket:
/// hyper has no write timeout (here: the step's 3 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_neither_reads_nor_stops_sending_is_ended() {
    let config = LingerConfig::new()
        .max_bytes(256 * 1024)
        .total_timeout(Duration::from_millis(500));
    let listener = LingeringListener::with_config(bind().await, config);
    let group = listener.group().clone();
    let addr = readme_hyper(listener, ignores_and_answers_8_mib).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let sender = tokio::spawn(async move {
        stream
            .write_all(b"POST /ignore HTTP/1.1\r\nHost: test\r\nContent-Length: 100000000\r\n\r\n")
            .await?;
        let chunk = vec![b's'; 64 * 1024];
        // Bounded: the server must end this long before.
        for _ in 0..1600 {
            stream.write_all(&chunk).await?;
        }
        Ok::<_, io::Error>(())
    });
    let ended = step_within(
        Duration::from_secs(3),
        "the server ends the connection",
        sender,
    )
    .await
    .unwrap();
    assert!(ended.is_err(), "the client could send all of it: {ended:?}");
    step_within(STEP, "counted", async {
        while group.stats().stalled_write == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let stats = group.stats();
    assert_eq!((stats.stalled_write, stats.closes()), (1, 1), "{stats:?}");
    assert_eq!(stats.bytes_discarded, 256 * 1024, "{stats:?}");
}

// ---------------------------------------------------- connections that close anyway --

/// A request that says `Connection: close` with a 64 KiB body the handler rejects
/// unread: the connection closes after the response anyway, so the layer drains nothing
/// through hyper and leaves the body to the `LingeringIo` beneath (`left_to_linger`),
/// which discards it without copying. The 413 arrives whole, then a clean EOF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closing_connection_leaves_the_body_to_the_linger() {
    let counters = linger::DrainCounters::new();
    let tcp = bind().await;
    let addr = tcp.local_addr().unwrap();
    let listener = LingeringListener::new(tcp);
    let group = listener.group().clone();
    let layer = DrainBodyLayer::new(256 * 1024).counters(counters.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _peer)) = listener.accept().await else {
                return;
            };
            let service = ServiceBuilder::new().layer(layer.clone()).service_fn(
                |_request: Request<DrainBody<Incoming>>| async {
                    let mut response = Response::new("rejected".to_owned());
                    *response.status_mut() = http::StatusCode::PAYLOAD_TOO_LARGE;
                    Ok::<_, Infallible>(response)
                },
            );
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                    .await;
            });
        }
    });
    for round in 1..=5u64 {
        let mut stream = step_within(STEP, "connect", TcpStream::connect(addr))
            .await
            .unwrap();
        let body = 64 * 1024;
        let head = format!(
            "POST /reject HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {body}\r\n\r\n"
        );
        let mut request = head.into_bytes();
        request.extend(std::iter::repeat_n(b'u', body));
        step_within(STEP, "request", stream.write_all(&request))
            .await
            .unwrap();
        let mut got = Vec::new();
        step_within(STEP, "response to EOF", stream.read_to_end(&mut got))
            .await
            .unwrap();
        let got = String::from_utf8_lossy(&got);
        assert!(
            got.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
            "{got}"
        );
        assert!(got.ends_with("\r\n\r\nrejected"), "{got}");
        drop(stream);
        step_within(STEP, "linger ends", group.wait_idle()).await;
        let drains = counters.snapshot();
        assert_eq!(
            (drains.left_to_linger, drains.settled()),
            (round, round),
            "{drains:?}"
        );
        assert_eq!(drains.bytes_drained, 0, "{drains:?}");
        assert_eq!(group.stats().peer_eof, round, "{:?}", group.stats());
    }
}
