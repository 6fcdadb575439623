//! `LingeringIo` at its edges: settings that mean "no limit", runtimes without timers,
//! honest `poll_shutdown` results, and closes that are cut short. Each test names what
//! the crate did before (panic, abort, a silent `Ok`, a close counted nowhere).

use std::future::Future;
use std::io;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use linger::{LingerConfig, LingerGroup, LingerStats, LingeringListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use crate::common::{step, tcp_pair};

/// Reads until EOF; true if it was a clean EOF (not a reset).
async fn clean_eof(client: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    step("client reads to EOF", client.read_to_end(&mut rest))
        .await
        .is_ok()
}

/// `Duration::MAX` as every bound, on both close paths. Before: `Instant + Duration`
/// overflowed, in `poll_shutdown` and again in `Drop` while unwinding: the process aborted.
#[tokio::test]
async fn duration_max_means_no_limit() {
    let group = LingerGroup::new(
        LingerConfig::new()
            .idle_timeout(Duration::MAX)
            .total_timeout(Duration::MAX),
    );

    // poll_shutdown: the peer sends after our FIN (the idle timer is reset), then closes.
    let (server, mut client) = tcp_pair().await;
    let mut io = group.wrap(server);
    step("shutdown", io.shutdown()).await.unwrap();
    drop(io);
    step("client writes after FIN", client.write_all(b"late bytes"))
        .await
        .unwrap();
    assert!(clean_eof(&mut client).await);
    drop(client);
    step("linger ends", group.wait_idle()).await;

    // The drop path, with unread input.
    let (server, mut client) = tcp_pair().await;
    step("client writes", client.write_all(b"unread"))
        .await
        .unwrap();
    drop(group.wrap(server));
    assert!(clean_eof(&mut client).await);
    drop(client);
    step("linger ends", group.wait_idle()).await;

    let stats = group.stats();
    assert_eq!((stats.peer_eof, stats.closes()), (2, 2), "{stats:?}");
    assert_eq!(stats.bytes_discarded, 16, "{stats:?}");
}

/// Zero bounds mean "do not linger", not "do not close": what the IO takes at once and
/// the FIN still go out, and `poll_shutdown` succeeds.
#[tokio::test]
async fn zero_bounds_still_send_the_response_and_fin() {
    let group = LingerGroup::new(
        LingerConfig::new()
            .idle_timeout(Duration::ZERO)
            .total_timeout(Duration::ZERO),
    );
    let (server, mut client) = tcp_pair().await;
    let mut io = group.wrap(server);
    step("write", io.write_all(b"response")).await.unwrap();
    step("shutdown", io.shutdown()).await.unwrap();
    drop(io);
    let mut got = Vec::new();
    step("client reads", client.read_to_end(&mut got))
        .await
        .unwrap();
    assert_eq!(got, b"response");
    step("linger ends", group.wait_idle()).await;
    let stats = group.stats();
    assert_eq!(stats.total_timeout + stats.idle_timeout, 1, "{stats:?}");
}

/// Runs `body` on a current-thread runtime that has IO but no timers, as
/// `Builder::new_current_thread().enable_io()` makes.
fn on_runtime_without_timers<F: Future>(body: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    runtime.block_on(body)
}

/// Without timers nothing can be bounded, so nothing lingers: `poll_shutdown` flushes and
/// half-closes like the inner IO, a drop closes plainly, both counted as skipped. Before:
/// `drop(group.wrap(tcp))` panicked in `Drop` and `shutdown()` aborted the process.
#[test]
fn runtime_without_timers_closes_plainly() {
    let group = LingerGroup::default();
    let stats = on_runtime_without_timers(async {
        let (server, mut client) = tcp_pair().await;
        let mut io = group.wrap(server);
        io.write_all(b"response").await.unwrap();
        io.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"response");
        drop(io);

        let (server, mut client) = tcp_pair().await;
        drop(group.wrap(server));
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty());
        group.stats()
    });
    assert_eq!((stats.skipped, stats.closes()), (2, 2), "{stats:?}");
    assert_eq!((stats.lingering, stats.background), (0, 0));
}

/// A whole hyper server behind a `LingeringListener` on a runtime without timers still
/// answers and closes cleanly (hyper itself needs no timer unless one is configured).
#[test]
fn hyper_server_on_runtime_without_timers() {
    on_runtime_without_timers(async {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listener = LingeringListener::new(tcp);
        let addr = listener.local_addr().unwrap();
        let group = listener.group().clone();
        let server = tokio::spawn(async move {
            let (io, _) = listener.accept().await.unwrap();
            let service = service_fn(|_req: Request<Incoming>| async {
                Ok::<_, io::Error>(Response::new(Full::new(Bytes::from_static(b"hi"))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(io), service)
                .await;
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nhi"), "{text}");
        server.await.unwrap();
        assert_eq!(group.stats().skipped, 1, "{:?}", group.stats());
    });
}

/// A total timeout reached while flushing means the response never fully left and the
/// FIN never went out: `poll_shutdown` says so with `TimedOut`, and says it again when
/// called again. Before: `Ok(())` both times, and a `BufWriter` under the wrapper lost
/// most of what it held without a word.
#[tokio::test]
async fn total_timeout_during_flush_is_an_error() {
    let (server, client) = tcp_pair().await;
    let group = LingerGroup::new(LingerConfig::new().total_timeout(Duration::from_millis(100)));
    // The client never reads: 32 MiB cannot leave the BufWriter within the timeout.
    let mut io = group.wrap_local(BufWriter::with_capacity(32 << 20, server));
    step("buffer", io.write_all(&vec![b'r'; 32 << 20]))
        .await
        .unwrap();

    let err = step("shutdown", io.shutdown()).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    let again = step("shutdown again", io.shutdown()).await.unwrap_err();
    assert_eq!(again.kind(), io::ErrorKind::TimedOut, "{again}");
    let stats = group.stats();
    assert_eq!((stats.total_timeout, stats.closes()), (1, 1), "{stats:?}");
    drop(client);
}

/// A close the runtime drops before it ends is counted as aborted, so the outcome counters
/// still add up to the closes. Before: counted nowhere.
#[test]
fn runtime_shutdown_counts_background_closes_as_aborted() {
    let group = LingerGroup::new(LingerConfig::new().idle_timeout(Duration::from_secs(60)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = runtime.block_on(async {
        let (server, mut client) = tcp_pair().await;
        client.write_all(b"unread").await.unwrap();
        // Dropped open with a peer that stays silent: a background close starts.
        drop(group.wrap(server));
        // And a close detached by poll_shutdown, whose IO is dropped afterwards.
        let (server, other) = tcp_pair().await;
        let mut io = group.wrap(server);
        io.shutdown().await.unwrap();
        drop(io);
        assert_eq!(group.stats().background, 2);
        (client, other)
    });
    drop(runtime);
    let stats = group.stats();
    assert_eq!((stats.aborted, stats.closes()), (2, 2), "{stats:?}");
    assert_eq!((stats.lingering, stats.background), (0, 0), "{stats:?}");
    drop(client);
}

/// `into_inner` in the middle of a close, and a drop of a local IO in the middle of its
/// linger, end the close as aborted. Before: counted nowhere. An IO taken back after
/// `poll_shutdown` returned (the FIN is out, the linger waits for the drop) is released,
/// not aborted: nothing had started lingering (issue 11, items 4 and 5).
#[tokio::test]
async fn closes_cut_short_by_the_owner_count_as_aborted() {
    let group = LingerGroup::new(LingerConfig::new().idle_timeout(Duration::from_secs(60)));

    let (server, _silent) = tcp_pair().await;
    let mut io = group.wrap(server);
    step("shutdown", io.shutdown()).await.unwrap();
    assert_eq!(group.stats().lingering, 0);
    let _stream: TcpStream = io.into_inner();
    let stats = group.stats();
    assert_eq!((stats.released, stats.aborted), (1, 0), "{stats:?}");

    // The local linger runs inside poll_shutdown: give up on it while it waits.
    let (server, _silent) = tcp_pair().await;
    let mut io = group.wrap_local(server);
    assert!(timeout(Duration::from_millis(50), io.shutdown())
        .await
        .is_err());
    assert_eq!(group.stats().lingering, 1);
    let _stream: TcpStream = io.into_inner();
    assert_eq!(group.stats().aborted, 1);

    let (server, _silent) = tcp_pair().await;
    let mut io = group.wrap_local(server);
    assert!(timeout(Duration::from_millis(50), io.shutdown())
        .await
        .is_err());
    assert_eq!(group.stats().lingering, 1);
    drop(io);

    let stats = group.stats();
    assert_eq!((stats.aborted, stats.closes()), (2, 3), "{stats:?}");
    assert_eq!(stats.lingering, 0);
}

/// Every `LingeringIo` that goes away closes exactly once in the counters, whichever way
/// it ends: shut down, dropped open, dropped with the peer gone, beyond the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcome_counters_add_up_to_closes() {
    let group = LingerGroup::new(
        LingerConfig::new()
            .max_lingering(1)
            .idle_timeout(Duration::from_millis(100)),
    );
    let mut clients = Vec::new();
    for n in 0..6 {
        let (server, mut client) = tcp_pair().await;
        let mut io = group.wrap(server);
        match n % 3 {
            0 => step("shutdown", io.shutdown()).await.unwrap(),
            1 => step("client writes", client.write_all(b"x")).await.unwrap(),
            _ => {
                client.shutdown().await.unwrap();
                let mut buf = [0u8; 1];
                assert_eq!(step("read EOF", io.read(&mut buf)).await.unwrap(), 0);
            }
        }
        drop(io);
        clients.push(client);
    }
    step("lingering closes", group.wait_idle()).await;
    let stats: LingerStats = group.stats();
    assert_eq!(stats.closes(), 6, "{stats:?}");
    assert_eq!((stats.lingering, stats.background), (0, 0), "{stats:?}");
}
