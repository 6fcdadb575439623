//! `DrainBodyLayer`: real hyper and axum servers with raw clients, and property tests of
//! the layer on its own.
//!
//! One test binary for the whole drain half, one module per theme. Nothing here touches
//! process-wide state that another test could disturb: `props` installs a panic hook,
//! but the hook counts panics per thread (every case runs on a current-thread runtime on
//! its test's own thread, so panics of tests running alongside are not counted) and
//! hands every panic on to the previous hook, so the HTTP/2 property of `http2`, on
//! multi-thread runtimes of its own, is neither counted nor silenced; the runtimes
//! without timers of `edges` are local to their tests.
//!
//! Set `LINGER_TEST_WITHOUT_LAYER=1` to build the servers of `tests/common` without the
//! layer: the tests that document "fails on plain hyper" must then fail.

#[path = "../common/mod.rs"]
mod common;

mod axum_router;
mod counters;
mod edges;
mod http2;
mod keepalive;
mod limits;
mod props;
mod protocols;
