//! `LingeringIo`, `LingerGroup` and `LingeringListener`: the staged close on its own, under
//! hyper servers, under TLS and behind `axum::serve`.
//!
//! One test binary for the whole lingering half, one module per theme. The runtimes
//! without timers that `edges` builds are local to their tests.

#[path = "../common/mod.rs"]
mod common;

#[cfg(feature = "axum")]
mod axum_serve;
mod connection_ends;
mod edges;
mod hyper_servers;
mod io;
mod one_task;
mod tls;
