//! One connection, several streams: a body beyond the limit, a stalled one, many
//! ignored ones, and what the layer leaves alone (a body the handler still
//! streams, `Connection: close` from the handler, `CONNECT`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use linger::DrainStats;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::body::{channel_body, no_body, ChannelBody};
use super::server::{ignore_or_consume, serve, serve_with, Options, Transport};
use super::wire::NO_ERROR;
use super::{readme_layer, settled, step_within, KIB, STEP};
use crate::common::{counted, layer_enabled, TestRequest};

// ----------------------------------------------------- beyond the limit --

/// Above the HTTP/2 limit (64 KiB here, for a 2 MiB upload with its
/// `content-length`), the documented behaviour: nothing is read, the `413`
/// is released whole, then the server resets the stream with
/// `RST_STREAM(NO_ERROR)`; hyper's client keeps the response, and the
/// connection serves the next request. Counted as `over_limit`. The same as
/// plain hyper, by design. (Larger than hyper's 1 MiB stream window, so that
/// the client cannot finish before the reset.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_the_limit_the_response_goes_then_the_stream_is_reset() {
    for transport in [Transport::H2c, Transport::Tls] {
        let (layer, counters) = counted(readme_layer().http2_limit(64 * KIB));
        let server = serve(transport, layer, ignore_or_consume).await;
        let (mut send, _client_conn) = server.h2_client::<Full<Bytes>>().await;
        let mut conn = server.next_conn().await;

        let req = Request::post(server.url("/upload"))
            .body(Full::new(Bytes::from(vec![b'u'; 2048 * KIB])))
            .unwrap();
        let res = step_within(STEP, "413", send.send_request(req))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = step_within(STEP, "413 body", res.into_body().collect())
            .await
            .unwrap();
        assert_eq!(body.to_bytes(), "upload too large\n");

        let wire = conn.until("reset", |wire| !wire.resets().is_empty()).await;
        assert_eq!(wire.resets(), [(1, NO_ERROR)], "{transport:?}");
        assert!(wire.response_ended_before_reset(1), "{wire:?}");

        step_within(STEP, "ready", send.ready()).await.unwrap();
        let res = step_within(
            STEP,
            "GET",
            send.send_request(Request::get(server.url("/")).body(Full::default()).unwrap()),
        )
        .await
        .unwrap();
        let body = step_within(STEP, "GET body", res.into_body().collect())
            .await
            .unwrap();
        assert_eq!(body.to_bytes(), "hello");
        if layer_enabled() {
            let stats = settled(&counters, 1).await;
            assert_eq!(
                (stats.over_limit, stats.settled(), stats.bytes_drained),
                (1, 1, 0)
            );
        }
    }
}

/// A client that stalls within the limit: the response is released at
/// once, the drain gives up at the deadline (300 ms here) and the server
/// resets the stream with `RST_STREAM(NO_ERROR)`; counted as `deadline`.
/// The connection goes on. (The layer's response never waits, even with
/// `wait_for_drain(true)`: that is for HTTP/1.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_reset_at_the_deadline_after_an_immediate_response() {
    let layer = readme_layer()
        .timeout(Duration::from_millis(300))
        .wait_for_drain(true);
    let (layer, counters) = counted(layer);
    let server = serve(Transport::H2c, layer, ignore_or_consume).await;
    let (mut send, _client_conn) = server.h2_client::<ChannelBody>().await;
    let mut conn = server.next_conn().await;

    let (body_tx, body) = channel_body(100 * 1024);
    body_tx.send(Ok(Bytes::from(vec![b's'; 16 * KIB]))).unwrap();
    let req = Request::post(server.url("/ignore")).body(body).unwrap();
    let start = Instant::now();
    let res = step_within(STEP, "response", send.send_request(req))
        .await
        .unwrap();
    let body = step_within(STEP, "body", res.into_body().collect())
        .await
        .unwrap();
    assert_eq!(body.to_bytes(), "ignored");
    assert!(
        start.elapsed() < Duration::from_millis(300),
        "the response waited: {:?}",
        start.elapsed()
    );
    let wire = conn
        .until("reset at the deadline", |wire| !wire.resets().is_empty())
        .await;
    assert_eq!(wire.resets(), [(1, NO_ERROR)]);
    if layer_enabled() {
        // Before the deadline the stream was still being drained, not reset.
        assert!(start.elapsed() >= Duration::from_millis(300));
        let stats = settled(&counters, 1).await;
        assert_eq!(
            (stats.deadline, stats.bytes_drained),
            (1, 16 * 1024),
            "{stats:?}"
        );
    }

    step_within(STEP, "ready", send.ready()).await.unwrap();
    let res = step_within(
        STEP,
        "GET",
        send.send_request(Request::get(server.url("/")).body(no_body()).unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    drop(body_tx);
}

// --------------------------------------------------- connection health --

/// Many ignored streams on one connection (50 concurrent uploads: 40 of
/// 64 KiB, 10 of 300 KiB, above the HTTP/1 limit of the README's
/// `new(256 * 1024)` but within the HTTP/2 default), then a GET on the same
/// connection, answered at once. No `RST_STREAM`; every body drained.
///
/// Plain hyper: the GET is answered as well (the connection was never at
/// stake), but every upload stream is reset (50/50 here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_ignored_streams_then_a_get_answered_at_once() {
    for transport in [Transport::H2c, Transport::Tls] {
        let (layer, counters) = counted(readme_layer());
        let server = serve(transport, layer, ignore_or_consume).await;
        let (send, client_conn) = server.h2_client::<Full<Bytes>>().await;
        let mut conn = server.next_conn().await;

        let sizes: Vec<usize> = (0..50)
            .map(|i| if i % 5 == 4 { 300 * KIB } else { 64 * KIB })
            .collect();
        let mut uploads = tokio::task::JoinSet::new();
        for &size in &sizes {
            let mut send = send.clone();
            let req = Request::post(server.url("/ignore"))
                .body(Full::new(Bytes::from(vec![b'm'; size])))
                .unwrap();
            uploads.spawn(async move {
                send.ready().await.unwrap();
                let res = send.send_request(req).await.unwrap();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(body, "ignored");
            });
        }
        step_within(STEP, "50 uploads", uploads.join_all()).await;

        let mut get = send.clone();
        let start = Instant::now();
        step_within(STEP, "ready", get.ready()).await.unwrap();
        let res = step_within(
            STEP,
            "GET",
            get.send_request(Request::get(server.url("/")).body(Full::default()).unwrap()),
        )
        .await
        .unwrap();
        let body = step_within(STEP, "GET body", res.into_body().collect())
            .await
            .unwrap();
        assert_eq!(body.to_bytes(), "hello");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );

        if layer_enabled() {
            // Before the client closes: it would abandon what it has queued.
            let stats = settled(&counters, 50).await;
            assert_eq!(stats.drained + stats.drained_inline, 50, "{stats:?}");
            let total: usize = sizes.iter().sum();
            assert_eq!(stats.bytes_drained, u64::try_from(total).unwrap());
        }
        drop((send, get));
        assert!(
            client_conn.closed().await,
            "{transport:?}: client connection failed"
        );
        let wire = conn.ended().await;
        assert_eq!(wire.resets(), [], "{transport:?}");
    }
}

// ---------------------------------------------- what the layer leaves --

/// A body the handler is still streaming when its response goes out (moved
/// into a task that reads it to the end, slowly) is untouched: the task
/// reads all of it, counted as `read`, and nothing is reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_still_streamed_by_the_handler_is_left_to_it() {
    let (read_tx, mut read_rx) = mpsc::unbounded_channel();
    let (layer, counters) = counted(readme_layer());
    let server = serve(Transport::H2c, layer, move |req: TestRequest| {
        let read_tx = read_tx.clone();
        async move {
            let mut body = req.into_body();
            tokio::spawn(async move {
                let mut read = 0;
                while let Some(frame) = body.frame().await {
                    read += frame.unwrap().data_ref().map_or(0, Bytes::len);
                }
                let _ = read_tx.send(read);
            });
            Response::new(Full::new(Bytes::from_static(b"streaming")))
        }
    })
    .await;
    let (mut send, client_conn) = server.h2_client::<ChannelBody>().await;
    let mut conn = server.next_conn().await;

    let (body_tx, body) = channel_body(3 * 64 * 1024);
    body_tx.send(Ok(Bytes::from(vec![b'a'; 64 * KIB]))).unwrap();
    let res = step_within(
        STEP,
        "response",
        send.send_request(Request::post(server.url("/stream")).body(body).unwrap()),
    )
    .await
    .unwrap();
    let body = step_within(STEP, "body", res.into_body().collect())
        .await
        .unwrap();
    assert_eq!(body.to_bytes(), "streaming");
    // The rest comes after the response.
    body_tx.send(Ok(Bytes::from(vec![b'b'; 64 * KIB]))).unwrap();
    body_tx.send(Ok(Bytes::from(vec![b'c'; 64 * KIB]))).unwrap();
    drop(body_tx);
    assert_eq!(
        step_within(STEP, "task read", read_rx.recv()).await,
        Some(3 * 64 * KIB)
    );
    if layer_enabled() {
        let stats = settled(&counters, 1).await;
        assert_eq!(
            (stats.read, stats.settled(), stats.bytes_drained),
            (1, 1, 0)
        );
    }
    drop(send);
    client_conn.closed().await;
    let wire = conn.ended().await;
    assert!(wire.response_ended_before_reset(1), "{wire:?}");
    assert_eq!(wire.resets(), []);
}

/// Over a `LingeringIo` (as in `examples/hyper_auto_tls.rs`), a handler that
/// ignores the body and says `Connection: close` on its HTTP/2 response: the
/// connection does not close (hyper strips the header), so the body is
/// drained as any other, not left to the `LingeringIo` (which would throw
/// away the other streams' bytes), and the next request on the connection
/// is answered. (hyper serves each stream from a task of its own, where the
/// layer cannot find the connection's `LingeringIo` anyway; the layer does
/// not even look for HTTP/2.) Plain hyper: the stream is reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_close_from_the_handler_changes_nothing_on_http2() {
    for transport in [Transport::H2c, Transport::Tls] {
        let (layer, counters) = counted(readme_layer());
        let options = Options {
            lingering: true,
            ..Options::default()
        };
        let server = serve_with(transport, layer, options, |req: TestRequest| async move {
            let mut res = ignore_or_consume(req).await;
            res.headers_mut()
                .insert(header::CONNECTION, "close".parse().unwrap());
            res
        })
        .await;
        let (mut send, client_conn) = server.h2_client::<Full<Bytes>>().await;
        let mut conn = server.next_conn().await;

        let req = Request::post(server.url("/ignore"))
            .body(Full::new(Bytes::from(vec![b'l'; 250_000])))
            .unwrap();
        let res = step_within(STEP, "response", send.send_request(req))
            .await
            .unwrap();
        assert!(res.headers().get(header::CONNECTION).is_none());
        let body = step_within(STEP, "body", res.into_body().collect())
            .await
            .unwrap();
        assert_eq!(body.to_bytes(), "ignored");
        if layer_enabled() {
            let stats = settled(&counters, 1).await;
            assert_eq!(
                (stats.drained + stats.drained_inline, stats.left_to_linger),
                (1, 0),
                "{stats:?}"
            );
        }
        step_within(STEP, "ready", send.ready()).await.unwrap();
        let req = Request::post(server.url("/consume"))
            .body(Full::new(Bytes::from_static(b"a=b&x=y")))
            .unwrap();
        let res = step_within(STEP, "next", send.send_request(req))
            .await
            .unwrap();
        let body = step_within(STEP, "next body", res.into_body().collect())
            .await
            .unwrap();
        assert_eq!(body.to_bytes(), "consumed 7");

        drop(send);
        assert!(client_conn.closed().await, "{transport:?}");
        let wire = conn.ended().await;
        assert_eq!(wire.resets(), [], "{transport:?}");
    }
}

/// `CONNECT` and extended `CONNECT` (RFC 8441: `:protocol`, which h2 allows
/// only with `CONNECT`) through the layer: hyper hands the handler an
/// empty body, the layer lets it and the tunnel be (nothing counted), the
/// `:protocol` reaches the handler (hyper's `Protocol` extension), and the
/// upgraded stream echoes both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_streams_are_left_alone() {
    let (layer, counters) = counted(readme_layer());
    let options = Options {
        connect_protocol: true,
        ..Options::default()
    };
    let server = serve_with(
        Transport::H2c,
        layer,
        options,
        |mut req: TestRequest| async move {
            assert_eq!(req.method(), Method::CONNECT);
            let protocol = req
                .extensions()
                .get::<hyper::ext::Protocol>()
                .map(|p| p.as_str().to_owned());
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let mut io = TokioIo::new(on_upgrade.await.expect("upgrade"));
                let mut buf = [0; 4];
                io.read_exact(&mut buf).await.unwrap();
                io.write_all(&buf).await.unwrap();
                io.shutdown().await.unwrap();
            });
            let mut res = Response::new(Full::default());
            if let Some(protocol) = protocol {
                res.headers_mut()
                    .insert("x-protocol", protocol.parse().unwrap());
            }
            res
        },
    )
    .await;
    let (mut send, _client_conn) = server.h2_client::<Full<Bytes>>().await;
    let _conn = server.next_conn().await;

    for extended in [false, true] {
        step_within(STEP, "ready", send.ready()).await.unwrap();
        let mut req = if extended {
            Request::builder()
                .method(Method::CONNECT)
                .uri(server.url("/chat"))
                .extension(hyper::ext::Protocol::from_static("websocket"))
        } else {
            Request::builder()
                .method(Method::CONNECT)
                .uri(server.addr.to_string())
        }
        .body(Full::default())
        .unwrap();
        req.headers_mut().remove(header::CONTENT_LENGTH);
        let mut res = step_within(STEP, "CONNECT", send.send_request(req))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let protocol = res.headers().get("x-protocol").cloned();
        assert_eq!(protocol.is_some(), extended, "{:?}", res.headers());
        let upgraded = step_within(STEP, "upgrade", hyper::upgrade::on(&mut res))
            .await
            .unwrap();
        let mut io = TokioIo::new(upgraded);
        step_within(STEP, "write", io.write_all(b"ping"))
            .await
            .unwrap();
        let mut echo = Vec::new();
        step_within(STEP, "echo", io.read_to_end(&mut echo))
            .await
            .unwrap();
        assert_eq!(echo, b"ping");
    }
    assert_eq!(counters.snapshot(), DrainStats::default());
}
