//! The layer for axum (feature `axum`): the same behaviour, axum's own
//! `Body` on both sides.

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::Router;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use super::layer::DrainBodyLayer;
use super::service::{call_tracking_body, Settings};

impl DrainBodyLayer {
    /// The same layer, for axum only (feature `axum`): it hands the inner
    /// service axum's own `Body` rather than a [`DrainBody`](crate::DrainBody),
    /// so that axum does not box the body again on every request.
    ///
    /// Handlers see the same thing either way (axum always gives them its
    /// `Body`); only the cost differs. Around a whole router served by
    /// `axum::serve`, a request without a body then costs no allocation at all
    /// (a `router.with_state(())` for other ways of serving it); through
    /// `Router::layer`, axum's own wrapping of each route costs two, whatever
    /// the layer (BENCHMARKS.md, section 6).
    ///
    /// # Example
    ///
    /// ```
    /// use axum::{routing::post, Router};
    /// use linger::DrainBodyLayer;
    /// use tower::Layer;
    ///
    /// let routes = Router::new().route("/upload", post(|| async { "ignored" }));
    /// // On the router, as `DrainBodyLayer` itself:
    /// let app: Router = routes.clone().layer(DrainBodyLayer::new(256 * 1024).axum());
    /// // Or around it: `axum::serve(listener, app)` takes either.
    /// let app = DrainBodyLayer::new(256 * 1024).axum().layer(routes);
    /// # let _ = app;
    /// ```
    #[must_use]
    pub fn axum(self) -> AxumDrainBodyLayer {
        AxumDrainBodyLayer(self.settings)
    }
}

/// [`DrainBodyLayer`] for axum, made by [`DrainBodyLayer::axum`]: same
/// settings, same behaviour, axum's `Body` on both sides.
///
/// Use it to wrap a whole router yourself, where it saves axum's boxing of the
/// body on every request and the two allocations of `Router::layer`'s own
/// wrapping of each route; on `Router::layer`, it saves the boxing of bodies the
/// layer does not track. `axum::serve` takes the wrapped router as it is
/// ([`into_make_service_with_connect_info`](AxumDrainBodyService::into_make_service_with_connect_info)
/// for `ConnectInfo`).
///
/// # Example
///
/// ```no_run
/// use axum::routing::post;
/// use axum::Router;
/// use linger::{DrainBodyLayer, LingeringListener};
/// use tower::Layer as _; // `.layer(router)`
///
/// #[tokio::main]
/// async fn main() -> std::io::Result<()> {
///     let router = Router::new().route("/upload", post(|| async { "rejected unread" }));
///     let app = DrainBodyLayer::new(256 * 1024).axum().layer(router);
///     let tcp = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
///     axum::serve(LingeringListener::new(tcp), app).await
/// }
/// ```
#[derive(Clone, Debug)]
pub struct AxumDrainBodyLayer(Settings);

impl<S> Layer<S> for AxumDrainBodyLayer {
    type Service = AxumDrainBodyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AxumDrainBodyService {
            inner,
            settings: self.0.clone(),
        }
    }
}

/// [`DrainBodyService`](crate::DrainBodyService) for axum, made by
/// [`DrainBodyLayer::axum`]: the inner service gets axum's own [`Body`], so
/// that a request the layer does not track (every GET) passes through as it
/// is, instead of being boxed again by axum's `Body::new`, which only
/// recognises its own type.
#[derive(Clone, Debug)]
pub struct AxumDrainBodyService<S> {
    inner: S,
    settings: Settings,
}

impl<S> AxumDrainBodyService<S> {
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

impl<S, ResBody> Service<Request<Body>> for AxumDrainBodyService<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, Body>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<Body>) -> Self::Future {
        call_tracking_body(
            &mut self.inner,
            &self.settings,
            request,
            |body| body,
            Body::new,
        )
    }
}

impl AxumDrainBodyService<Router> {
    /// As axum's `Router::into_make_service`; `axum::serve(listener, app)` needs
    /// neither.
    ///
    /// (axum's `ServiceExt` has the same, but the method is ambiguous on a type
    /// that `axum::serve` also takes as it is.)
    #[must_use]
    pub fn into_make_service(self) -> axum::routing::IntoMakeService<Self> {
        axum::ServiceExt::<Request<Body>>::into_make_service(self.with_routes())
    }

    /// As axum's `Router::into_make_service_with_connect_info`, for handlers that
    /// extract `ConnectInfo<C>`:
    /// `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())`.
    ///
    #[must_use]
    pub fn into_make_service_with_connect_info<C>(
        self,
    ) -> axum::extract::connect_info::IntoMakeServiceWithConnectInfo<Self, C> {
        axum::ServiceExt::<Request<Body>>::into_make_service_with_connect_info(self.with_routes())
    }

    /// The handlers turned into routes once, as axum does when it serves a
    /// `Router`, rather than on every request.
    fn with_routes(self) -> Self {
        Self {
            inner: self.inner.with_state(()),
            settings: self.settings,
        }
    }
}

/// Lets `axum::serve` take a wrapped router as it takes a bare one:
/// `axum::serve(listener, DrainBodyLayer::new(limit).axum().layer(router))`.
///
/// As axum does for its `Router`, each connection gets the router with its
/// handlers turned into routes once (`with_state(())`), not on every request.
impl<L> Service<axum::serve::IncomingStream<'_, L>> for AxumDrainBodyService<Router>
where
    L: axum::serve::Listener,
{
    type Response = Self;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _stream: axum::serve::IncomingStream<'_, L>) -> Self::Future {
        std::future::ready(Ok(self.clone().with_routes()))
    }
}
