//! HTTP/2: a request body the handler leaves unread is drained within the
//! layer's HTTP/2 limit, so that its stream ends cleanly instead of with
//! `RST_STREAM(NO_ERROR)`, which curl 7.88 turns into
//! `curl: (92) Stream error in the HTTP/2 framing layer`, losing the response.
//!
//! Real servers (hyper-util's `auto` builder, as in `examples/hyper_auto_tls.rs`),
//! over h2c with prior knowledge and over TLS with ALPN h2; real clients (curl,
//! hyper's HTTP/2 client). The server's side of each connection goes through
//! [`wire::Sniffed`], which parses the frames hyper writes, so a test sees every
//! `RST_STREAM` the server sent: none means no client could have seen one.
//!
//! - `server`: the server, its connections as the tests watch them, and the
//!   clients that talk to it;
//! - `wire`: the frames the server wrote;
//! - `body`: a request body the test feeds, stalls or fails;
//! - `whole_responses`: curl and hyper's client, 20 runs per size and transport;
//! - `streams`: the limit, stalls, many streams, and what the layer leaves alone;
//! - `props`: one outcome per body, as a property on real connections.
//!
//! `LINGER_TEST_WITHOUT_LAYER=1` builds the servers without the layer (plain
//! hyper); the tests that quote plain hyper's counts then fail with them.
//! The others describe what the layer leaves as hyper does it (beyond the
//! limit, `CONNECT`, a body the handler still streams) and pass either way.

mod body;
mod props;
mod server;
mod streams;
mod whole_responses;
mod wire;

use std::time::Duration;

use linger::{DrainBodyLayer, DrainCounters, DrainStats};

use crate::common;
pub(crate) use crate::common::step_within;

const KIB: usize = 1024;

/// Upper bound for any single step here, twice the suite's [`common::STEP`]:
/// TLS handshakes, curl runs and HTTP/2 connections that end after their
/// streams.
pub(crate) const STEP: Duration = Duration::from_secs(10);

/// [`common::settled`], bounded by this module's [`STEP`].
async fn settled(counters: &DrainCounters, bodies: u64) -> DrainStats {
    common::settled_within(STEP, counters, bodies).await
}

/// The README's setup: 256 KiB for HTTP/1, the default 1 MiB for HTTP/2.
fn readme_layer() -> DrainBodyLayer {
    DrainBodyLayer::new(256 * 1024)
}
