//! Servers and a counting client for the side-by-side load benchmark.
//!
//! Not a criterion bench: `benches/load/run.sh` drives it (see
//! `benches/load/README.md`). Run without arguments, or with the `--bench`
//! that `cargo bench` passes, it does nothing and exits 0, so that
//! `cargo bench` and `cargo bench --no-run` stay as they were.
//!
//! ```text
//! load serve  <server> <addr>                  serve until killed
//! load count  <server> <workload> <n> [warm]   in-process: server + client, allocations per request
//!                                              (workloads `h2_get`, `h2_read16`, `h2_ignore64`: HTTP/2,
//!                                              servers `auto*`, and `axum*` built with `axum/http2`)
//! load client <workload> <addr> <n>            the same client against any server (strace -c)
//! load sendfirst <addr> <body_bytes> <rounds> [timeout_s]
//!                                              POST /big, the whole body sent before reading
//! ```
//!
//! Servers: `plain` (hyper, no linger), `drain` (`DrainBodyLayer` only),
//! `linger` (`LingeringListener` only), `both` (the README's hyper quick
//! start), `axum` (the README's axum quick start; needs `--features axum`),
//! `axum-bare` (the same router without linger; `--features axum`).
//!
//! Routes, the same on every server (and on the nginx and Go servers of the
//! script): `GET /` answers `hello`; `POST /ignore` answers `200` without
//! reading the body; `POST /reject` answers `413` without reading it; `POST
//! /big` answers `200` with 8 MiB without reading the body (`sendfirst.sh`).

mod client;
mod count;
mod h2client;
mod sendfirst;
mod server;

use std::process::ExitCode;

/// Counts allocation calls of the threads marked as server threads, only in
/// `count` mode; elsewhere every call costs one relaxed load more than the
/// system allocator.
#[global_allocator]
static ALLOCATOR: count::CountingAlloc = count::CountingAlloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["serve", server, addr] => server::serve_main(server, addr),
        ["count", server, workload, n] => count::count_main(server, workload, n, "200"),
        ["count", server, workload, n, warm_up] => count::count_main(server, workload, n, warm_up),
        ["client", workload, addr, n] => client::client_main(workload, addr, n),
        ["sendfirst", rest @ ..] => sendfirst::sendfirst_main(rest),
        _ => {
            // `cargo bench` (with `--bench` and perhaps a filter) and a bare
            // run land here: nothing to do outside run.sh.
            println!(
                "load: driven by benches/load/run.sh (see benches/load/README.md); nothing to do"
            );
            ExitCode::SUCCESS
        }
    }
}
