//! Staged close of connections.
