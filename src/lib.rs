//! linger: keep HTTP/1.1 connections usable and responses intact.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod drain;
pub mod lingering;

// lingering re-exports (owned by the lingering work):
#[cfg(feature = "axum")]
pub use lingering::PeerAddr;
pub use lingering::{LingerConfig, LingerGroup, LingerStats, LingeringIo, LingeringListener};
