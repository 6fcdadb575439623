//! Keep HTTP/1.1 connections usable and responses intact in hyper, tower and
//! axum servers.
//!
//! Two moments quietly break HTTP/1.1 servers:
//!
//! - **A handler answers without reading the whole request body.** hyper
//!   then drops keep-alive and closes the connection, often with a reset that
//!   destroys the response. [`DrainBodyLayer`] reads and discards the rest,
//!   bounded in bytes and time, so the connection stays usable. Over HTTP/2
//!   it does the same within a limit of its own, so that the stream ends
//!   without the reset that makes curl and httpx drop the response.
//! - **The server closes while the client still has data in flight.** Linux
//!   answers unread input with a reset and throws away the unsent response.
//!   [`LingeringIo`] closes in stages (FIN, read until the client's FIN or a
//!   bound, then close), and [`LingeringListener`] applies it to every
//!   accepted connection.
//!
//! Use both together:
//!
//! ```no_run
//! # #[cfg(feature = "axum")]
//! # async fn run() -> std::io::Result<()> {
//! use axum::{routing::post, Router};
//! use linger::{DrainBodyLayer, LingeringListener};
//! use tower::Layer as _;
//!
//! let router = Router::new()
//!     .route("/upload", post(|| async { "rejected without reading the body" }));
//! let app = DrainBodyLayer::new(256 * 1024).axum().layer(router);
//! let tcp = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(LingeringListener::new(tcp), app).await
//! # }
//! ```
//!
//! The [`drain`] and [`lingering`] modules are guides that explain each part in
//! detail; every type has one path, at the crate root (`linger::DrainBodyLayer`, not
//! `linger::drain::DrainBodyLayer`). The `axum` feature implements
//! `axum::serve::Listener` for [`LingeringListener`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod discard_signal;
pub mod drain;
pub mod lingering;
mod metrics;
mod outcome_table;
mod timers;

#[cfg(feature = "axum")]
pub use drain::axum::{AxumDrainBodyLayer, AxumDrainBodyService};
pub use drain::body::DrainBody;
pub use drain::counters::{DrainCounters, DrainStats};
pub use drain::future::ResponseFuture;
pub use drain::layer::DrainBodyLayer;
pub use drain::service::DrainBodyService;
pub use lingering::config::LingerConfig;
#[cfg(feature = "axum")]
pub use lingering::connect_info::PeerAddr;
pub use lingering::group::LingerGroup;
pub use lingering::io::LingeringIo;
pub use lingering::listener::LingeringListener;
pub use lingering::stats::LingerStats;
pub use metrics::{Metric, MetricKind};

#[cfg(all(doctest, feature = "axum"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
