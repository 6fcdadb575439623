use std::time::Duration;

use tower_layer::Layer;

use super::{DrainBodyService, DrainCounters};

/// Drains what a handler left unread of a request body, so that HTTP/1.1
/// connections stay usable.
///
/// Apply it around any tower service that takes `http::Request<B>` and
/// answers with `http::Response<_>`: an axum `Router`, a `service_fn` served
/// by hyper, and so on. See the [module documentation](crate::drain) for what
/// happens to each request.
///
/// | setting | default | builder |
/// |---|---|---|
/// | bytes drained at most after the response | 256 KiB (Go: 256 KiB, gunicorn: 64 KiB) | [`new`](Self::new) |
/// | total time spent draining | 5 s (nginx `lingering_timeout`: 5 s) | [`timeout`](Self::timeout) |
/// | response waits for the drain | no (nginx); yes in Go | [`wait_for_drain`](Self::wait_for_drain) |
/// | counters of outcomes | none | [`counters`](Self::counters) |
///
/// The layer is `Clone` (cheap: the counters, if any, are shared) but not
/// `Copy`, since it may hold counters. Two layers are equal when their
/// settings are and they share the same counters, or neither has any.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use linger::DrainBodyLayer;
///
/// let layer = DrainBodyLayer::new(256 * 1024).timeout(Duration::from_secs(2));
/// # let _ = layer;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrainBodyLayer {
    pub(crate) limit: u64,
    pub(crate) timeout: Duration,
    pub(crate) wait_for_drain: bool,
    pub(crate) counters: Option<DrainCounters>,
}

impl DrainBodyLayer {
    /// The default byte limit: 256 KiB, the same as Go's `net/http`.
    pub const DEFAULT_LIMIT: u64 = 256 * 1024;
    /// The default drain deadline: 5 s, nginx's `lingering_timeout`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// Drains at most `limit` bytes of what the handler left unread.
    ///
    /// A body whose declared remainder is larger is not read at all: the
    /// response gets `Connection: close` instead, as in Go. With `0` nothing
    /// is ever drained, not even what has already arrived: every request
    /// whose body was left unfinished is answered with `Connection: close`
    /// at once.
    pub const fn new(limit: u64) -> Self {
        Self {
            limit,
            timeout: Self::DEFAULT_TIMEOUT,
            wait_for_drain: false,
            counters: None,
        }
    }

    /// Total time allowed for draining one request body, counted from the
    /// moment the inner service has produced its response (also for a body
    /// the service holds past the response and drops later).
    ///
    /// Any value works: `Duration::MAX` means about a year, the longest
    /// tokio's timers take.
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Hold the response back until the drain has finished or given up
    /// (Go's behaviour), instead of releasing it at once and draining
    /// alongside (nginx's behaviour, the default).
    ///
    /// Waiting lets the layer add `Connection: close` when the drain gives up,
    /// as RFC 9110 §10.1.1 recommends, at the price of delaying early answers
    /// to slow clients by up to the [`timeout`](Self::timeout).
    pub const fn wait_for_drain(mut self, wait: bool) -> Self {
        self.wait_for_drain = wait;
        self
    }

    /// Counts the outcome of every request body in `counters`, which any
    /// number of layers may share; see [`DrainStats`](super::DrainStats).
    /// Without it nothing is counted.
    ///
    /// ```
    /// use linger::{DrainBodyLayer, DrainCounters};
    ///
    /// let counters = DrainCounters::new();
    /// let layer = DrainBodyLayer::new(256 * 1024).counters(counters.clone());
    /// # let _ = layer;
    /// // later, from a metrics endpoint:
    /// let stats = counters.snapshot();
    /// println!("drained {} bodies in the background", stats.drained);
    /// ```
    pub fn counters(mut self, counters: DrainCounters) -> Self {
        self.counters = Some(counters);
        self
    }
}

#[cfg(feature = "axum")]
impl DrainBodyLayer {
    /// The same layer, for axum only (feature `axum`): it hands the inner
    /// service axum's own `Body` rather than a [`DrainBody`](super::DrainBody),
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
    pub fn axum(self) -> AxumDrainBodyLayer {
        AxumDrainBodyLayer(self)
    }
}

/// [`DrainBodyLayer`] for axum, made by [`DrainBodyLayer::axum`]: same
/// settings, same behaviour, axum's `Body` on both sides.
#[cfg(feature = "axum")]
#[derive(Clone, Debug)]
pub struct AxumDrainBodyLayer(DrainBodyLayer);

#[cfg(feature = "axum")]
impl<S> Layer<S> for AxumDrainBodyLayer {
    type Service = super::service::AxumDrainBodyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        super::service::AxumDrainBodyService::new(inner, self.0.clone())
    }
}

impl Default for DrainBodyLayer {
    /// 256 KiB within 5 s, response released at once.
    fn default() -> Self {
        Self::new(Self::DEFAULT_LIMIT)
    }
}

impl<S> Layer<S> for DrainBodyLayer {
    type Service = DrainBodyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DrainBodyService::new(inner, self.clone())
    }
}
