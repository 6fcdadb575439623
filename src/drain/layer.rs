use std::time::Duration;

use tower_layer::Layer;

use super::counters::DrainCounters;
use super::service::{DrainBodyService, Settings};

/// The default byte limit: 256 KiB, the same as Go's `net/http`.
const DEFAULT_LIMIT: usize = 256 * 1024;
/// The default byte limit for HTTP/2 and later: 1 MiB, hyper's default
/// initial stream window, which a client may fill before the server says
/// anything.
const DEFAULT_HTTP2_LIMIT: usize = 1024 * 1024;
/// The default drain deadline: 5 s, nginx's `lingering_timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Drains what a handler left unread of a request body, so that HTTP/1.1
/// connections stay usable and HTTP/2 streams end without a reset.
///
/// Apply it around any tower service that takes `http::Request<B>` and
/// answers with `http::Response<_>`: an axum `Router`, a `service_fn` served
/// by hyper, and so on. See the [module documentation](crate::drain) for what
/// happens to each request.
///
/// | setting | default | builder | getter |
/// |---|---|---|---|
/// | bytes drained at most after the response | 256 KiB (Go: 256 KiB, gunicorn: 64 KiB) | [`new`](Self::new) | [`get_limit`](Self::get_limit) |
/// | the same, for HTTP/2 and later | 1 MiB (hyper's initial stream window) | [`http2_limit`](Self::http2_limit) | [`get_http2_limit`](Self::get_http2_limit) |
/// | total time spent draining | 5 s (nginx `lingering_timeout`: 5 s) | [`timeout`](Self::timeout) | [`get_timeout`](Self::get_timeout) |
/// | response waits for the drain | no (nginx); yes in Go | [`wait_for_drain`](Self::wait_for_drain) | [`get_wait_for_drain`](Self::get_wait_for_drain) |
/// | counters of outcomes | none | [`counters`](Self::counters) | [`get_counters`](Self::get_counters) |
///
/// The layer is `Clone`, cheaply: clones share the counters, if any.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use linger::DrainBodyLayer;
///
/// let layer = DrainBodyLayer::new(256 * 1024).timeout(Duration::from_secs(2));
/// assert_eq!(layer.get_limit(), 256 * 1024);
/// ```
#[derive(Clone, Debug)]
pub struct DrainBodyLayer {
    pub(crate) settings: Settings,
}

impl DrainBodyLayer {
    /// Drains at most `limit` bytes of what the handler left unread of an
    /// HTTP/1 request body; HTTP/2 has its own limit,
    /// [`http2_limit`](Self::http2_limit), 1 MiB unless set.
    ///
    /// A `usize`, as tower-http's `RequestBodyLimitLayer::new` takes, so that
    /// one constant can serve both. A body whose declared remainder is larger
    /// is not read at all: the response gets `Connection: close` instead, as
    /// in Go. With `0` nothing is ever drained, not even what has already
    /// arrived: every request whose body was left unfinished is answered
    /// with `Connection: close` at once.
    #[must_use]
    pub const fn new(limit: usize) -> Self {
        Self {
            settings: Settings {
                limit,
                http2_limit: DEFAULT_HTTP2_LIMIT,
                timeout: DEFAULT_TIMEOUT,
                wait_for_drain: false,
                counters: None,
            },
        }
    }

    /// Drains at most `limit` bytes of what the handler left unread of an
    /// HTTP/2 (or later) request body. The default is 1 MiB, whatever
    /// [`new`](Self::new) was given.
    ///
    /// On HTTP/2 an unread body costs no connection: the stream ends and the
    /// others go on. What it costs is the response, for many clients: hyper
    /// ends a stream whose body it stopped reading with
    /// `RST_STREAM(NO_ERROR)`, which RFC 9113 §8.1 allows, and which
    /// curl 7.88 (`curl: (92)`) and httpx treat as a failed request, so the
    /// response they had already received is lost. Within this limit (and the
    /// [`timeout`](Self::timeout)) the layer reads the body to its end
    /// instead, so that the stream ends cleanly; past it the body is dropped
    /// after the response and hyper resets the stream, as without the layer.
    ///
    /// The cost is bandwidth: each ignored upload may be received up to this
    /// many bytes, instead of stopping at the reset. With hyper's defaults a
    /// client may send 1 MiB on a stream (its initial window) before the
    /// server says anything, so on a fast link much of that arrives anyway;
    /// above the window each byte drained is one the client would not have
    /// sent. Each drain also keeps its stream open, counting against the
    /// connection's concurrent streams, until the body ends or the timeout.
    /// `0` drains nothing, as without the layer.
    ///
    /// ```
    /// use linger::DrainBodyLayer;
    ///
    /// // Lets a rejected upload of up to 8 MiB end cleanly over HTTP/2.
    /// let layer = DrainBodyLayer::new(256 * 1024).http2_limit(8 * 1024 * 1024);
    /// assert_eq!(layer.get_limit(), 256 * 1024);
    /// assert_eq!(layer.get_http2_limit(), 8 * 1024 * 1024);
    /// assert_eq!(DrainBodyLayer::default().get_http2_limit(), 1024 * 1024);
    /// ```
    #[must_use]
    pub const fn http2_limit(mut self, limit: usize) -> Self {
        self.settings.http2_limit = limit;
        self
    }

    /// Total time allowed for draining one request body, counted from the
    /// moment the inner service has produced its response (also for a body
    /// the service holds past the response and drops later).
    ///
    /// Any value works: `Duration::MAX` means about a year, the longest
    /// tokio's timers take.
    #[must_use]
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Hold the response back until the drain has finished or given up
    /// (Go's behaviour), instead of releasing it at once and draining
    /// alongside (nginx's behaviour, the default).
    ///
    /// Waiting lets the layer add `Connection: close` when the drain gives up,
    /// as RFC 9110 §10.1.1 recommends, at the price of delaying early answers
    /// to slow clients by up to the [`timeout`](Self::timeout). It applies to
    /// HTTP/1 only: an HTTP/2 response is always released at once, since
    /// there is no connection to announce the end of.
    ///
    /// Not needed for clients that send their whole body before they read,
    /// chunked included: without it, a drain that gives up hands the input to
    /// the [`LingeringIo`](crate::LingeringIo) beneath, which discards the
    /// rest while the response is written (see the [module docs](super)).
    #[must_use]
    pub const fn wait_for_drain(mut self, wait: bool) -> Self {
        self.settings.wait_for_drain = wait;
        self
    }

    /// Counts the outcome of every request body in `counters`, which any
    /// number of layers may share; see [`DrainStats`](crate::DrainStats).
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
    #[must_use]
    pub fn counters(mut self, counters: DrainCounters) -> Self {
        self.settings.counters = Some(counters);
        self
    }

    /// The byte limit given to [`new`](Self::new).
    #[must_use]
    pub const fn get_limit(&self) -> usize {
        self.settings.limit
    }

    /// The byte limit for HTTP/2 and later, as set by
    /// [`http2_limit`](Self::http2_limit) (1 MiB by default).
    #[must_use]
    pub const fn get_http2_limit(&self) -> usize {
        self.settings.http2_limit
    }

    /// The drain deadline set by [`timeout`](Self::timeout).
    #[must_use]
    pub const fn get_timeout(&self) -> Duration {
        self.settings.timeout
    }

    /// Whether responses wait for the drain, as set by
    /// [`wait_for_drain`](Self::wait_for_drain).
    #[must_use]
    pub const fn get_wait_for_drain(&self) -> bool {
        self.settings.wait_for_drain
    }

    /// The counters given to [`counters`](Self::counters), if any.
    #[must_use]
    pub const fn get_counters(&self) -> Option<&DrainCounters> {
        self.settings.counters.as_ref()
    }
}

impl Default for DrainBodyLayer {
    /// 256 KiB (1 MiB over HTTP/2) within 5 s, response released at once.
    fn default() -> Self {
        Self::new(DEFAULT_LIMIT)
    }
}

impl<S> Layer<S> for DrainBodyLayer {
    type Service = DrainBodyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DrainBodyService::new(inner, self.settings.clone())
    }
}
