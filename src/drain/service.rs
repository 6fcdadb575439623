use std::task::{Context, Poll};

use http::{header, Method, Request, Response, Version};
use http_body::Body;
use tower_service::Service;

use std::time::Duration;

use super::body::{DrainBody, Handoff};
use super::close_header::ends_connection;
use super::counters::{DrainCounters, Outcome, PendingOutcome};
use super::decision::DrainPolicy;
use super::future::{ResponseFuture, TrackedBody};
use crate::discard_signal;

/// The settings of a [`DrainBodyLayer`](crate::DrainBodyLayer), which every
/// service it makes keeps a copy of.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) limit: usize,
    pub(crate) http2_limit: usize,
    pub(crate) timeout: Duration,
    pub(crate) wait_for_drain: bool,
    pub(crate) counters: Option<DrainCounters>,
}

/// The service made by [`DrainBodyLayer`](crate::DrainBodyLayer): hands the
/// inner service a [`DrainBody`] and drains what it leaves unread.
#[derive(Clone, Debug)]
pub struct DrainBodyService<S> {
    inner: S,
    settings: Settings,
}

impl<S> DrainBodyService<S> {
    pub(crate) fn new(inner: S, settings: Settings) -> Self {
        Self { inner, settings }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for DrainBodyService<S>
where
    S: Service<Request<DrainBody<B>>, Response = Response<ResBody>>,
    B: Body + Unpin + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<B>) -> Self::Future {
        call_tracking_body(
            &mut self.inner,
            &self.settings,
            request,
            DrainBody::untracked,
            |body| body,
        )
    }
}

/// What both services (this one and the axum one) do: `untracked` or
/// `tracked` turn the body into the inner service's body type, depending on
/// whether the layer watches it.
///
/// Inline: the response future it returns is built in place inside
/// the caller's (hyper's) state only when the call is inlined there.
#[inline]
pub(crate) fn call_tracking_body<S, B, InnerBody, ResBody>(
    inner: &mut S,
    settings: &Settings,
    request: Request<B>,
    untracked: impl FnOnce(B) -> InnerBody,
    tracked: impl FnOnce(DrainBody<B>) -> InnerBody,
) -> ResponseFuture<S::Future, B>
where
    S: Service<Request<InnerBody>, Response = Response<ResBody>>,
    B: Body + Unpin + Send + 'static,
{
    // An empty body has nothing left: the fast path, no allocation.
    let has_body = !request.body().is_end_stream();
    // HTTP/2 and later: the body is one stream of a multiplexed connection.
    let multiplexed = request.version() >= Version::HTTP_2;
    // A `CONNECT` stream is a tunnel whatever the answer, and extended
    // `CONNECT` (RFC 8441, the `:protocol` pseudo-header, which h2 accepts
    // only with this method) as well: its data is not a body to drain.
    if !has_body || (multiplexed && request.method() == Method::CONNECT) {
        if let (true, Some(counters)) = (has_body, &settings.counters) {
            counters
                .pending_outcome()
                .record(Outcome::PassedThrough, 0, Duration::ZERO);
        }
        let request = request.map(untracked);
        return ResponseFuture::untracked(inner.call(request));
    }
    // HTTP/1 `Upgrade` and `CONNECT` requests are tracked too: whether the
    // connection is handed over depends on the response.
    let limit = if multiplexed {
        settings.http2_limit
    } else {
        settings.limit
    };
    // Neither matters on a stream: `Expect` is read on HTTP/1.1 only, and a
    // stream never ends its connection (`io_beneath`).
    let (expects_continue, request_closes) = if multiplexed {
        (false, false)
    } else {
        connection_facts(&request)
    };
    let policy = DrainPolicy {
        limit: u64::try_from(limit).unwrap_or(u64::MAX),
        timeout: settings.timeout,
        wait_for_drain: settings.wait_for_drain,
        expects_continue,
        request_closes,
        multiplexed,
    };
    let connect = request.method() == Method::CONNECT;
    let version = request.version();
    let handoff = Handoff::for_request();
    let (parts, body) = request.into_parts();
    let body = tracked(DrainBody::tracked(body, &handoff));
    let pending_outcome = settings
        .counters
        .as_ref()
        .map_or_else(PendingOutcome::uncounted, |counters| {
            counters.pending_outcome()
        });
    let body_state = TrackedBody {
        handoff,
        policy,
        connect,
        version,
        pending_outcome,
        called_from: discard_signal::calling_task(),
    };
    ResponseFuture::tracked(inner.call(Request::from_parts(parts, body)), body_state)
}

/// Of an HTTP/1 request: whether it expects `100 Continue`
/// ([`expects_continue`]) and whether it ends its connection
/// ([`ends_connection`]).
///
/// One pass over the header names first: most requests carry neither
/// `Expect` nor `Connection`, and comparing a few names costs less than
/// looking both up in the map.
fn connection_facts<B>(request: &Request<B>) -> (bool, bool) {
    let (mut expect, mut connection) = (false, false);
    for name in request.headers().keys() {
        if name == header::EXPECT {
            expect = true;
        } else if name == header::CONNECTION {
            connection = true;
        }
    }
    let expects_continue = expect && expects_continue(request);
    // Without a `Connection` header, only HTTP/1.0 ends its connection.
    let request_closes = if connection {
        ends_connection(request.version(), request.headers())
    } else {
        request.version() == Version::HTTP_10
    };
    (expects_continue, request_closes)
}

/// Whether hyper holds back `100 Continue` until the body is polled.
///
/// Mirrors hyper's reading: HTTP/1.1 only (RFC 9110 §10.1.1 has HTTP/1.0
/// ignore it), the last `Expect` value, compared whole.
fn expects_continue<B>(request: &Request<B>) -> bool {
    request.version() == Version::HTTP_11
        && request
            .headers()
            .get_all(header::EXPECT)
            .iter()
            .next_back()
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DrainCounters;

    fn request(version: Version, expect: &[&str]) -> Request<()> {
        let mut builder = Request::post("/").version(version);
        for value in expect {
            builder = builder.header(header::EXPECT, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn expect_continue_is_read_as_hyper_reads_it() {
        assert!(expects_continue(&request(
            Version::HTTP_11,
            &["100-continue"]
        )));
        assert!(expects_continue(&request(
            Version::HTTP_11,
            &["100-Continue"]
        )));
        // HTTP/1.0 ignores it; only the last value counts, compared whole.
        assert!(!expects_continue(&request(
            Version::HTTP_10,
            &["100-continue"]
        )));
        assert!(!expects_continue(&request(
            Version::HTTP_11,
            &["100-continue", "other"]
        )));
        assert!(!expects_continue(&request(
            Version::HTTP_11,
            &["100-continue, other"]
        )));
        assert!(!expects_continue(&request(Version::HTTP_11, &[])));
    }

    /// The one pass over the names answers as the two lookups it spares.
    #[test]
    fn connection_facts_match_the_lookups() {
        let headers: &[&[(&str, &str)]] = &[
            &[],
            &[("host", "x"), ("content-length", "3")],
            &[("expect", "100-continue")],
            &[("expect", "100-continue"), ("expect", "other")],
            &[("connection", "close")],
            &[("connection", "keep-alive")],
            &[("connection", "upgrade"), ("connection", "Close")],
            &[("connection", "keep-alive"), ("expect", "100-Continue")],
            &[("x-other", "close"), ("expect", "nothing")],
        ];
        for version in [
            Version::HTTP_09,
            Version::HTTP_10,
            Version::HTTP_11,
            Version::HTTP_2,
        ] {
            for list in headers {
                let mut builder = Request::post("/").version(version);
                for (name, value) in *list {
                    builder = builder.header(*name, *value);
                }
                let request = builder.body(()).unwrap();
                assert_eq!(
                    connection_facts(&request),
                    (
                        expects_continue(&request),
                        ends_connection(request.version(), request.headers())
                    ),
                    "{version:?} {list:?}"
                );
            }
        }
    }

    /// Sends `request` through the layer to a handler that ignores the body
    /// and answers `status`; returns the response and the counts.
    async fn ignored(
        layer: crate::DrainBodyLayer,
        request: Request<http_body_util::Full<bytes::Bytes>>,
        status: http::StatusCode,
    ) -> (Response<()>, crate::DrainStats) {
        use tower::{Layer, ServiceExt};

        let counters = DrainCounters::new();
        let service =
            layer
                .counters(counters.clone())
                .layer(tower::service_fn(move |_request| async move {
                    let mut response = Response::new(());
                    *response.status_mut() = status;
                    Ok::<_, std::convert::Infallible>(response)
                }));
        let response = service.oneshot(request).await.unwrap();
        (response, counters.snapshot())
    }

    fn h2(method: Method, body: &'static [u8]) -> Request<http_body_util::Full<bytes::Bytes>> {
        Request::builder()
            .method(method)
            .uri("https://example.com/")
            .version(Version::HTTP_2)
            .body(http_body_util::Full::new(bytes::Bytes::from_static(body)))
            .unwrap()
    }

    #[tokio::test]
    async fn an_http2_connect_stream_is_left_alone_whatever_the_answer() {
        for status in [http::StatusCode::OK, http::StatusCode::NOT_FOUND] {
            let (_, stats) = ignored(
                crate::DrainBodyLayer::default(),
                h2(Method::CONNECT, b"tunnelled bytes"),
                status,
            )
            .await;
            assert_eq!((stats.passed_through, stats.settled()), (1, 1));
            assert_eq!(stats.bytes_drained, 0);
        }
    }

    #[tokio::test]
    async fn an_http2_body_is_drained_within_its_own_limit_and_never_marked() {
        // The HTTP/1 limit (0) does not apply; the response does not wait.
        let layer = crate::DrainBodyLayer::new(0).wait_for_drain(true);
        let (response, stats) =
            ignored(layer, h2(Method::POST, b"a=b"), http::StatusCode::OK).await;
        assert_eq!((stats.drained_inline, stats.bytes_drained), (1, 3));
        assert!(response.headers().get(header::CONNECTION).is_none());
        // Above the HTTP/2 limit: refused, and still no `Connection` header.
        let layer = crate::DrainBodyLayer::new(1024).http2_limit(2);
        let (response, stats) =
            ignored(layer, h2(Method::POST, b"a=b"), http::StatusCode::OK).await;
        assert_eq!((stats.over_limit, stats.bytes_drained), (1, 0));
        assert!(response.headers().get(header::CONNECTION).is_none());
    }
}
