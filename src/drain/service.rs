use std::task::{Context, Poll};

use http::{header, Method, Request, Response, Version};
use http_body::Body;
use tower_service::Service;

use super::counters::Outcome;
use super::future::Watch;
use super::{DrainBody, DrainBodyLayer, ResponseFuture};

/// The service made by [`DrainBodyLayer`]: hands the inner service a
/// [`DrainBody`] and drains what it leaves unread.
#[derive(Clone, Debug)]
pub struct DrainBodyService<S> {
    inner: S,
    config: DrainBodyLayer,
}

impl<S> DrainBodyService<S> {
    /// Wraps `inner` with the settings of `config`.
    pub fn new(inner: S, config: DrainBodyLayer) -> Self {
        Self { inner, config }
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

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // An empty body has nothing left: the fast path, no allocation.
        let has_body = !request.body().is_end_stream();
        if !has_body || request.version() >= Version::HTTP_2 {
            // HTTP/2 and later end a stream without touching the connection.
            if let (true, Some(counters)) = (has_body, &self.config.counters) {
                counters.tally().record(Outcome::PassedThrough, 0);
            }
            let request = request.map(DrainBody::untracked);
            return ResponseFuture::untracked(self.inner.call(request));
        }
        // `Upgrade` and `CONNECT` requests are watched too: whether the
        // connection is handed over depends on the response.
        let expects_continue = expects_continue(&request);
        let connect = request.method() == Method::CONNECT;
        let version = request.version();
        let (parts, body) = request.into_parts();
        let (body, handoff) = DrainBody::tracked(body);
        let watch = Watch::new(handoff, &self.config, expects_continue, connect, version);
        ResponseFuture::watched(self.inner.call(Request::from_parts(parts, body)), watch)
    }
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
