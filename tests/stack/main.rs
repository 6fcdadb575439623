//! Both halves together in the stacks users build: tower-http layers, axum (with its
//! `DefaultBodyLimit`, over TCP and Unix sockets), axum-server with rustls, hyper-util's
//! graceful shutdown, the README's graceful-shutdown recipe on both README set-ups, the
//! README's axum set-up under load, the README's quoted log and metric lines
//! (`readme_quotes`) and the real clients of its table (`real_clients`).
//!
//! One test binary, one module per stack. `graceful` builds a server runtime of its own
//! and ends it, and `graceful_recipe` runs each server as a program on a runtime of its
//! own: local to those tests.

#[path = "../common/mod.rs"]
mod common;

#[cfg(feature = "axum")]
mod axum_body_limit;
mod axum_server_tls;
mod graceful;
mod graceful_recipe;
mod readme_quotes;
#[cfg(feature = "axum")]
mod readme_under_load;
#[cfg(unix)]
mod real_clients;
mod tower_http_layers;
#[cfg(all(unix, feature = "axum"))]
mod unix;
