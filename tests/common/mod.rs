//! What the test binaries share. Each loads this tree with
//! `#[path = "../common/mod.rs"] mod common;` and uses part of it:
//!
//! - `server`: a real hyper server, with or without `DrainBodyLayer`, and the
//!   handlers most drain tests use;
//! - `client`: a raw HTTP/1 client over a `TcpStream` that writes exact bytes;
//! - `http1`: the one reader of raw HTTP/1 responses (the benches and the
//!   chaos fleet load this file too);
//! - `upload`: a large upload that reads the response meanwhile;
//! - `tls`: a self-signed certificate and the client of hyper issue #3944;
//! - `counters`: a layer with `DrainCounters`, and waiting for its drains to
//!   settle.
//!
//! Set `LINGER_TEST_WITHOUT_LAYER=1` to build every server *without* the
//! layer (plain hyper / plain axum); the tests that document "fails on plain
//! hyper" must then fail.
#![allow(dead_code)]

pub mod client;
pub mod counters;
pub mod http1;
pub mod server;
pub mod tls;
pub mod upload;

use std::future::Future;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

// Not every binary uses all of them.
#[allow(unused_imports)]
pub use {client::*, counters::*, server::*, upload::*};

/// Upper bound for any single client step; nothing in the suite may hang.
pub const STEP: Duration = Duration::from_secs(5);

/// Whether servers are built with the layer (default) or as plain hyper.
pub fn layer_enabled() -> bool {
    std::env::var_os("LINGER_TEST_WITHOUT_LAYER").is_none()
}

/// `tokio::time::timeout` with [`STEP`] and a panic naming the step.
pub async fn step<F: Future>(what: &str, fut: F) -> F::Output {
    step_within(STEP, what, fut).await
}

/// [`step`] with a bound of its own, for tests whose steps are slower by
/// nature (TLS handshakes, a real client's whole run).
pub async fn step_within<F: Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(out) => out,
        Err(_) => panic!("step timed out after {limit:?}: {what}"),
    }
}

/// Whether `curl` is on PATH; the tests with curl skip (saying so) without it.
pub fn curl_available() -> bool {
    let found = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        eprintln!("curl not found on PATH: skipping");
    }
    found
}

/// A connected pair of real sockets on 127.0.0.1: (server side, client side).
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (accepted.unwrap().0, client.unwrap())
}
