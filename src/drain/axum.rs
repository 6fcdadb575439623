//! The layer for axum (feature `axum`): the same behaviour, axum's own
//! `Body` on both sides.

use std::task::{Context, Poll};

use axum::body::Body;
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
    /// `Body`); only the cost differs. Around a whole `router.with_state(())`
    /// a request without a body then costs no allocation at all; through
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
    /// // Or around it, then `axum::ServiceExt::into_make_service` for `axum::serve`:
    /// let app = DrainBodyLayer::new(256 * 1024).axum().layer(routes.with_state::<()>(()));
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
/// body on every request; on `Router::layer`, plain [`DrainBodyLayer`] costs
/// the same. It needs tower's `Layer` to wrap, and axum's `ServiceExt` to serve
/// the result.
///
/// # Example
///
/// ```no_run
/// use axum::routing::post;
/// use axum::{Router, ServiceExt as _}; // `into_make_service` for any service
/// use linger::{AxumDrainBodyLayer, DrainBodyLayer, LingeringListener};
/// use tower::Layer as _; // `.layer(router)`
///
/// #[tokio::main]
/// async fn main() -> std::io::Result<()> {
///     let router = Router::new().route("/upload", post(|| async { "rejected unread" }));
///     let layer: AxumDrainBodyLayer = DrainBodyLayer::new(256 * 1024).axum();
///     // `with_state(())` turns the handlers into routes once, not on every request.
///     let app = layer.layer(router.with_state(()));
///     let tcp = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
///     axum::serve(LingeringListener::new(tcp), app.into_make_service()).await
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
