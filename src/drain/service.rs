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
        watch_and_call(
            &mut self.inner,
            &self.config,
            request,
            DrainBody::untracked,
            |body| body,
        )
    }
}

/// What both services do: `untracked` or `tracked` turn the body into the
/// inner service's body type, depending on whether the layer watches it.
fn watch_and_call<S, B, InnerBody, ResBody>(
    inner: &mut S,
    config: &DrainBodyLayer,
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
    if !has_body || request.version() >= Version::HTTP_2 {
        // HTTP/2 and later end a stream without touching the connection.
        if let (true, Some(counters)) = (has_body, &config.counters) {
            counters.tally().record(Outcome::PassedThrough, 0);
        }
        let request = request.map(untracked);
        return ResponseFuture::untracked(inner.call(request));
    }
    // `Upgrade` and `CONNECT` requests are watched too: whether the
    // connection is handed over depends on the response.
    let expects_continue = expects_continue(&request);
    let connect = request.method() == Method::CONNECT;
    let version = request.version();
    let (parts, body) = request.into_parts();
    let (body, handoff) = DrainBody::tracked(body);
    let watch = Watch::new(handoff, config, expects_continue, connect, version);
    ResponseFuture::watched(inner.call(Request::from_parts(parts, tracked(body))), watch)
}

/// [`DrainBodyService`] for axum, made by [`DrainBodyLayer::axum`]: the inner
/// service gets axum's own [`Body`](axum::body::Body), so that a request the
/// layer does not watch (every GET) passes through as it is, instead of being
/// boxed again by axum's `Body::new`, which only recognises its own type.
#[cfg(feature = "axum")]
#[derive(Clone, Debug)]
pub struct AxumDrainBodyService<S> {
    inner: S,
    config: DrainBodyLayer,
}

#[cfg(feature = "axum")]
impl<S> AxumDrainBodyService<S> {
    pub(crate) fn new(inner: S, config: DrainBodyLayer) -> Self {
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

#[cfg(feature = "axum")]
impl<S, ResBody> Service<Request<axum::body::Body>> for AxumDrainBodyService<S>
where
    S: Service<Request<axum::body::Body>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, axum::body::Body>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<axum::body::Body>) -> Self::Future {
        watch_and_call(
            &mut self.inner,
            &self.config,
            request,
            |body| body,
            axum::body::Body::new,
        )
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
