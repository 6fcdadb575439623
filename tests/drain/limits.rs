//! The drain stays bounded: byte limit, deadline, `Expect: 100-continue`,
//! broken framing.
//!
//! "Fails on plain hyper" was checked with `LINGER_TEST_WITHOUT_LAYER=1`.

use std::time::{Duration, Instant};

use linger::DrainBodyLayer;

use crate::common::*;

const KIB: usize = 1024;

/// Declared remainder (1 MiB) above the limit (256 KiB), client sends the
/// head and 1000 bytes, then nothing: in both modes the response comes at
/// once (well before the 2 s deadline) with `Connection: close`, the layer
/// reads nothing more, and the connection ends with a clean EOF (all that
/// was sent had been read with the head).
/// Plain hyper: answers at once but without `Connection: close` — fails.
#[tokio::test]
async fn declared_remainder_over_limit_closes_at_once() {
    for wait in [false, true] {
        let deadline = Duration::from_secs(2);
        let layer = DrainBodyLayer::new(256 * KIB)
            .timeout(deadline)
            .wait_for_drain(wait);
        let server = serve(layer, ignore_or_consume).await;
        let mut client = Client::connect(server.addr).await;

        let start = Instant::now();
        let mut req = post_head("/ignore", 1024 * KIB).into_bytes();
        req.extend_from_slice(&[b'x'; 1000]);
        client.send(&req).await;
        let res = client.response().await;
        assert!(
            start.elapsed() < deadline / 2,
            "late: {:?}",
            start.elapsed()
        );
        assert_ok(&res, "ignored");
        assert!(
            res.has_close(),
            "wait={wait}: no Connection: close: {res:?}"
        );
        assert_eq!(client.closed().await, Closed::Eof, "wait={wait}");
        assert_eq!(server.bytes_read(), req.len() as u64, "wait={wait}");
    }
}

/// Sends a chunked body far larger than the limit (8 MiB in 16 KiB chunks)
/// in the background; returns the response and how the connection ended.
async fn chunked_flood(layer: DrainBodyLayer) -> (Server, Parsed, Closed) {
    let server = serve(layer, ignore_or_consume).await;
    let mut client = Client::connect(server.addr).await;
    let mut req = chunked_head("/ignore").into_bytes();
    req.extend(chunked(&vec![b'x'; 8 * 1024 * KIB], 16 * KIB));
    // Fails with EPIPE/ECONNRESET once the server gives up: expected.
    let _writer = client.send_in_background(req);
    let res = client.response().await;
    let closed = client.closed().await;
    (server, res, closed)
}

/// Chunked body larger than the 64 KiB limit, waiting mode: the drain gives
/// up at the limit, the response carries `Connection: close`, the
/// connection is closed, and the server read far less than was sent
/// (limit plus hyper's read-ahead buffer, < 1 MiB of the 8 MiB).
/// Plain hyper: no `Connection: close` — fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_over_limit_waiting_mode_says_close() {
    let layer = DrainBodyLayer::new(64 * KIB)
        .timeout(Duration::from_secs(4))
        .wait_for_drain(true);
    let (server, res, _closed) = chunked_flood(layer).await;
    assert_ok(&res, "ignored");
    assert!(res.has_close(), "no Connection: close: {res:?}");
    assert!(
        server.bytes_read() < 1024 * KIB as u64,
        "{}",
        server.bytes_read()
    );
}

/// Same in the default mode: the response goes out at once (no
/// `Connection: close`, the layer cannot know yet), then the drain stops at
/// the limit and hyper closes the connection; the server read < 1 MiB.
/// Plain hyper also closes (without reading): passes there too; this guards
/// against an unbounded drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_over_limit_default_mode_closes() {
    let layer = DrainBodyLayer::new(64 * KIB).timeout(Duration::from_secs(4));
    let (server, res, _closed) = chunked_flood(layer).await;
    assert_ok(&res, "ignored");
    assert!(
        server.bytes_read() < 1024 * KIB as u64,
        "{}",
        server.bytes_read()
    );
}

/// Stalled body (head + 100 of 1000 declared bytes, then silence), default
/// mode with a 400 ms deadline: the response arrives at once (< 200 ms);
/// the layer keeps the connection open for the rest until the deadline,
/// then gives up and hyper closes it cleanly (EOF, not before the deadline).
/// Plain hyper: closes right after the response, long before 400 ms — fails.
#[tokio::test]
async fn stalled_body_default_mode_closes_at_deadline() {
    let deadline = Duration::from_millis(400);
    let server = serve(
        DrainBodyLayer::default().timeout(deadline),
        ignore_or_consume,
    )
    .await;
    let mut client = Client::connect(server.addr).await;

    let start = Instant::now();
    let mut req = post_head("/ignore", 1000).into_bytes();
    req.extend_from_slice(&[b'x'; 100]);
    client.send(req).await;
    let res = client.response().await;
    assert!(
        start.elapsed() < deadline / 2,
        "late: {:?}",
        start.elapsed()
    );
    assert_ok(&res, "ignored");
    assert!(!res.has_close(), "{res:?}");
    assert_eq!(client.closed().await, Closed::Eof);
    let closed_after = start.elapsed();
    assert!(closed_after >= deadline, "closed early: {closed_after:?}");
    assert!(
        closed_after < deadline + Duration::from_secs(2),
        "{closed_after:?}"
    );
}

/// Stalled body, waiting mode, 400 ms deadline: the response is held until
/// the deadline and then carries `Connection: close`; clean EOF after it.
/// Plain hyper: answers at once without `Connection: close` — fails.
#[tokio::test]
async fn stalled_body_waiting_mode_answers_at_deadline_with_close() {
    let deadline = Duration::from_millis(400);
    let layer = DrainBodyLayer::default()
        .timeout(deadline)
        .wait_for_drain(true);
    let server = serve(layer, ignore_or_consume).await;
    let mut client = Client::connect(server.addr).await;

    let start = Instant::now();
    let mut req = post_head("/ignore", 1000).into_bytes();
    req.extend_from_slice(&[b'x'; 100]);
    client.send(req).await;
    let res = client.response().await;
    let answered_after = start.elapsed();
    assert!(answered_after >= deadline, "early: {answered_after:?}");
    assert!(answered_after < deadline + Duration::from_secs(2));
    assert_ok(&res, "ignored");
    assert!(res.has_close(), "no Connection: close: {res:?}");
    assert_eq!(client.closed().await, Closed::Eof);
}

fn expect_head(content_length: usize) -> String {
    format!(
        "POST /ignore HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\n\
         Content-Length: {content_length}\r\n\r\n"
    )
}

/// `Expect: 100-continue`, handler never touches the body: the first bytes
/// on the wire are the final response (no `100 Continue`), it carries
/// `Connection: close`, the server read only the head, and the connection
/// ends with a clean EOF. Checked in both modes.
/// Plain hyper: no `100 Continue` either, but no `Connection: close` — fails.
#[tokio::test]
async fn expect_continue_ignored_body_is_not_invited() {
    for wait in [false, true] {
        let layer = DrainBodyLayer::default()
            .timeout(Duration::from_secs(2))
            .wait_for_drain(wait);
        let server = serve(layer, ignore_or_consume).await;
        let mut client = Client::connect(server.addr).await;

        let head = expect_head(5000);
        client.send(&head).await;
        let res = client.response().await;
        assert_eq!(res.status, 200, "wait={wait}: first response must be final");
        assert_eq!(res.body_str(), "ignored");
        assert!(
            res.has_close(),
            "wait={wait}: no Connection: close: {res:?}"
        );
        assert_eq!(client.closed().await, Closed::Eof, "wait={wait}");
        assert_eq!(server.bytes_read(), head.len() as u64, "wait={wait}");
    }
}

/// `Expect: 100-continue`, handler reads the body: exactly
/// `HTTP/1.1 100 Continue\r\n\r\n` comes first, then (after the client sends
/// the body) the final response, and the connection stays usable.
/// Plain hyper behaves the same: guards against the layer breaking it.
#[tokio::test]
async fn expect_continue_read_body_gets_100() {
    let server = serve(DrainBodyLayer::default(), ignore_or_consume).await;
    let mut client = Client::connect(server.addr).await;

    client
        .send(expect_head(5).replace("/ignore", "/consume"))
        .await;
    assert_eq!(
        client.read_exact_raw(25).await,
        b"HTTP/1.1 100 Continue\r\n\r\n"
    );
    client.send("hello").await;
    let res = client.response().await;
    assert_ok(&res, "consumed 5");
    assert!(!res.has_close(), "{res:?}");
    client.send(post("/consume", b"a=b&x=y")).await;
    assert_ok(&client.response().await, "consumed 7");
}

const SMUGGLE: &[u8] = b"5\r\nhello\r\nzz\r\nGET /secret HTTP/1.1\r\nHost: test\r\n\r\n";

/// Invalid chunk framing in an ignored body followed by a smuggled
/// `GET /secret`, all in one write: the drain fails on the framing, the
/// connection is closed, `/secret` is never served.
/// Plain hyper: also closes without serving it (passes); guards against the
/// drain resynchronising on the smuggled request.
#[tokio::test]
async fn invalid_chunked_framing_one_write_no_smuggling() {
    let server = serve(DrainBodyLayer::default(), ignore_or_consume).await;
    let mut client = Client::connect(server.addr).await;

    let mut req = chunked_head("/ignore").into_bytes();
    req.extend_from_slice(SMUGGLE);
    client.send(req).await;
    assert_ok(&client.response().await, "ignored");
    client.closed().await;
    assert_eq!(server.served(), ["POST /ignore"]);
}

/// Same, with the bad framing and the smuggled request sent only after the
/// response (so it is the background drain that meets them).
/// Plain hyper: closes after the response (passes).
#[tokio::test]
async fn invalid_chunked_framing_after_response_no_smuggling() {
    let server = serve(
        DrainBodyLayer::default().timeout(Duration::from_secs(2)),
        ignore_or_consume,
    )
    .await;
    let mut client = Client::connect(server.addr).await;

    client.send(chunked_head("/ignore")).await;
    assert_ok(&client.response().await, "ignored");
    // The server may already have closed (plain hyper): ignore write errors.
    let _ = client.send_in_background(SMUGGLE).await;
    client.closed().await;
    assert_eq!(server.served(), ["POST /ignore"]);
}

/// Waiting mode: head first, then the bad framing and smuggled request while
/// the response is held; the drain fails on `zz`, so the response carries
/// `Connection: close` and `/secret` is never served.
/// Plain hyper: no `Connection: close` — fails.
#[tokio::test]
async fn invalid_chunked_framing_waiting_mode_says_close() {
    let layer = DrainBodyLayer::default()
        .timeout(Duration::from_secs(2))
        .wait_for_drain(true);
    let server = serve(layer, ignore_or_consume).await;
    let mut client = Client::connect(server.addr).await;

    client.send(chunked_head("/ignore")).await;
    let _writer = client.send_in_background(SMUGGLE);
    let res = client.response().await;
    assert_ok(&res, "ignored");
    assert!(res.has_close(), "no Connection: close: {res:?}");
    client.closed().await;
    assert_eq!(server.served(), ["POST /ignore"]);
}

/// `DrainBodyLayer::new(0)` drains nothing: a body left unfinished, even a
/// 7-byte one already sent with its head, is announced with
/// `Connection: close` and the connection closes cleanly after the response.
/// Plain hyper: its one non-blocking read finds the 7 bytes and keeps the
/// connection without saying anything (fails the `Connection: close` check).
#[tokio::test]
async fn limit_zero_announces_close() {
    let server = serve(DrainBodyLayer::new(0), ignore_or_consume).await;
    let mut client = Client::connect(server.addr).await;

    client.send(post("/ignore", b"foo=bar")).await;
    let res = client.response().await;
    assert_ok(&res, "ignored");
    assert!(res.has_close(), "{res:?}");
    assert_eq!(client.closed().await, Closed::Eof);
}
