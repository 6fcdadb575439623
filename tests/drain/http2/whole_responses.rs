//! Whole responses from real clients: curl and hyper's HTTP/2 client post 64 KiB,
//! 250 KB and 1 MiB to a handler that ignores the body, 20 times each, each on a
//! connection of its own, over h2c and TLS; the server never resets a stream.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use linger::DrainCounters;

use super::server::{ignore_or_consume, serve, Server, TempFile, Transport};
use super::wire::{Wire, NO_ERROR};
use super::{readme_layer, settled, step_within, KIB, STEP};
use crate::common::{counted, curl_available, layer_enabled};

/// The bodies of issue 15: 64 KiB, 250 KB and 1 MiB.
const SIZES: [usize; 3] = [64 * KIB, 250_000, 1024 * KIB];
/// Requests per client, size and transport.
const RUNS: usize = 20;

/// What `RUNS` requests, each on a connection of its own, came to.
#[derive(Debug, Default)]
struct Measured {
    /// Whole responses: exit code 0 (curl), the right status and body.
    whole: usize,
    /// Connections on which the server sent `RST_STREAM(NO_ERROR)`: what
    /// hyper sends when a body is dropped unfinished, and curl fails on.
    reset_no_error: usize,
    /// Connections on which the server sent another `RST_STREAM`.
    reset_other: usize,
    /// What went wrong, for the first few failures.
    failures: Vec<String>,
}

impl Measured {
    fn record(&mut self, whole: Result<(), String>, wire: &Wire) {
        match whole {
            Ok(()) => self.whole += 1,
            Err(why) if self.failures.len() < 3 => self.failures.push(why),
            Err(_) => {}
        }
        let resets = wire.resets();
        if resets.iter().any(|&(_, code)| code == NO_ERROR) {
            self.reset_no_error += 1;
        }
        if resets.iter().any(|&(_, code)| code != NO_ERROR) {
            self.reset_other += 1;
        }
    }

    /// 20/20 whole, and no reset at all (`other_resets` false) or none with
    /// `NO_ERROR`.
    fn assert_clean(&self, what: &str, other_resets: bool) {
        let other = if other_resets { 0 } else { self.reset_other };
        assert_eq!(
            (self.whole, self.reset_no_error, other),
            (RUNS, 0, 0),
            "{what}: {}/{RUNS} whole, reset with NO_ERROR on {}, otherwise on {}: {:?}",
            self.whole,
            self.reset_no_error,
            self.reset_other,
            self.failures
        );
    }
}

/// curl posts `size` bytes to `path` `RUNS` times and expects `status` and
/// `body` back, whole.
async fn curl_runs(server: &Server, path: &str, size: usize, status: u16, body: &str) -> Measured {
    let file = TempFile::new(
        &format!("{}-{size}.bin", server.addr.port()),
        &vec![b'c'; size],
    );
    let expected = format!("{body}\n{status} 2");
    let mut measured = Measured::default();
    for _ in 0..RUNS {
        let (out, mut conn) = tokio::join!(server.curl_post(path, file.path()), server.next_conn());
        let wire = conn.ended().await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let whole = if out.status.success() && stdout == expected {
            Ok(())
        } else {
            Err(format!(
                "{:?} {stdout:?} {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        };
        measured.record(whole, &wire);
    }
    measured
}

/// hyper's HTTP/2 client posts `size` bytes to `/ignore` `RUNS` times, each
/// on a new connection, and expects `ignored` back, whole.
async fn hyper_runs(server: &Server, size: usize, counters: &DrainCounters) -> Measured {
    let payload = Bytes::from(vec![b'h'; size]);
    let mut measured = Measured::default();
    let before = counters.snapshot().settled();
    for run in 0..RUNS {
        let (mut send, client_conn) = server.h2_client::<Full<Bytes>>().await;
        let mut conn = server.next_conn().await;
        let req = Request::post(server.url("/ignore"))
            .body(Full::new(payload.clone()))
            .unwrap();
        let whole = async {
            let res = step_within(STEP, "response", send.send_request(req))
                .await
                .map_err(|e| format!("request: {e}"))?;
            let status = res.status();
            let body = step_within(STEP, "response body", res.into_body().collect())
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            if status == StatusCode::OK && body == "ignored" {
                Ok(())
            } else {
                Err(format!("{status} {body:?}"))
            }
        }
        .await;
        // hyper's client abandons data it has queued when it closes, so it
        // closes once the server has the whole upload (the drain ended);
        // the server then ends the connection, and its frames are all in.
        if layer_enabled() {
            settled(counters, before + u64::try_from(run).unwrap() + 1).await;
        }
        drop(send);
        client_conn.closed().await;
        let wire = conn.ended().await;
        measured.record(whole, &wire);
    }
    measured
}

// ----------------------------------------------------------------- curl --

/// curl 7.88 (`--http2-prior-knowledge`) posts 64 KiB, 250 KB and 1 MiB to a
/// handler that ignores the body, 20 times each, each on a connection of its
/// own, with the README's `DrainBodyLayer::new(256 * 1024)`: 20/20 whole
/// responses, and the server never sends `RST_STREAM`.
///
/// Plain hyper (`LINGER_TEST_WITHOUT_LAYER=1`), three runs here: 64 KiB
/// 13 to 19/20, 250 KB 12 to 16/20, 1 MiB 1 to 2/20 whole, the server
/// resetting the stream on 19 or 20 connections of 20; curl fails with
/// `curl: (92) Stream error in the HTTP/2 framing layer` when the
/// `RST_STREAM(NO_ERROR)` comes while it is still uploading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_h2c_gets_every_response() {
    curl_gets_every_response(Transport::H2c).await;
}

/// The same over TLS with ALPN h2 (`curl --http2`), as with
/// `examples/hyper_auto_tls.rs`, plus its "1 MB rejected unread with 413"
/// command (1,000,000 bytes to `/upload`).
///
/// Plain hyper, three runs here: 64 KiB 3 to 14/20, 250 KB 5 to 9/20,
/// 1 MiB 0 to 2/20 whole, and the example's 413 1 to 2/20.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_tls_gets_every_response() {
    curl_gets_every_response(Transport::Tls).await;
}

async fn curl_gets_every_response(transport: Transport) {
    if !curl_available() {
        return;
    }
    let (layer, counters) = counted(readme_layer());
    let server = serve(transport, layer, ignore_or_consume).await;
    let mut report = Vec::new();
    for size in SIZES {
        let measured = curl_runs(&server, "/ignore", size, 200, "ignored").await;
        report.push(("/ignore", size, measured));
    }
    if transport == Transport::Tls {
        let measured = curl_runs(&server, "/upload", 1_000_000, 413, "upload too large\n").await;
        report.push(("/upload", 1_000_000, measured));
    }
    eprintln!("curl {transport:?}: {report:?}");
    for (path, size, measured) in &report {
        // On a `413` curl stops its upload with an empty `END_STREAM`, short
        // of its `content-length`, once it has the response; h2 answers that
        // with `RST_STREAM(PROTOCOL_ERROR)`, which curl does not mind.
        let other_resets = *path == "/upload";
        measured.assert_clean(
            &format!("curl {transport:?}, {size} bytes to {path}"),
            other_resets,
        );
    }
    if layer_enabled() {
        let bodies = u64::try_from(report.len() * RUNS).unwrap();
        let stats = settled(&counters, bodies).await;
        // `body_error`: curl, having its whole response, cut its own upload
        // short (it closes the connection, or ends the stream early on a 4xx).
        assert_eq!(
            stats.drained + stats.drained_inline + stats.body_error,
            bodies,
            "{stats:?}"
        );
        assert_eq!(stats.settled(), bodies, "{stats:?}");
    }
}

// ---------------------------------------------------------------- hyper --

/// hyper's HTTP/2 client, the same three sizes 20 times each, over h2c:
/// 20/20 whole and no `RST_STREAM` from the server.
///
/// Plain hyper, two runs here: hyper's client keeps the response (it reads
/// `RST_STREAM(NO_ERROR)` as "stop sending", as RFC 9113 §8.1 asks), so
/// 20/20 whole, but the server reset the stream on 17 to 20 connections of
/// 20 for each size: what curl and httpx fail on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_client_h2c_sees_no_reset() {
    hyper_client_sees_no_reset(Transport::H2c).await;
}

/// The same over TLS with ALPN h2.
///
/// Plain hyper, two runs here: 20/20 whole, resets on 18 to 20 connections
/// of 20 for each size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_client_tls_sees_no_reset() {
    hyper_client_sees_no_reset(Transport::Tls).await;
}

async fn hyper_client_sees_no_reset(transport: Transport) {
    let (layer, counters) = counted(readme_layer());
    let server = serve(transport, layer, ignore_or_consume).await;
    let mut report = Vec::new();
    for size in SIZES {
        report.push((size, hyper_runs(&server, size, &counters).await));
    }
    eprintln!("hyper client {transport:?}: {report:?}");
    for (size, measured) in &report {
        measured.assert_clean(&format!("hyper client {transport:?}, {size} bytes"), false);
    }
    if layer_enabled() {
        let bodies = u64::try_from(SIZES.len() * RUNS).unwrap();
        let stats = settled(&counters, bodies).await;
        assert_eq!(stats.drained + stats.drained_inline, bodies, "{stats:?}");
        let total: usize = SIZES.iter().sum::<usize>() * RUNS;
        assert_eq!(stats.bytes_drained, u64::try_from(total).unwrap());
    }
}
