//! linger: keep HTTP/1.1 connections usable and responses intact.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod drain;
pub mod lingering;

pub use drain::{DrainBody, DrainBodyLayer, DrainBodyService};

// lingering re-exports (owned by the lingering work):

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
