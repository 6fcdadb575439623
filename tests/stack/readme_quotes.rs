//! Every log line and metric line quoted in README.md and in the crate's docs is one the
//! code produces.
//!
//! The test runs the README's hyper set-up (the quick start's loop with
//! `examples/hyper.rs`' span per connection, `info_span!("conn", %peer)`) under a
//! `tracing-subscriber` fmt layer without time stamps or colours, drives the cases the
//! docs quote, and renders both counters' metrics as Prometheus text. Then every line of
//! a ```` ```text ```` block in README.md, or in a doc comment anywhere under `src/`,
//! that reads as a log line (`DEBUG ...`, `TRACE ...`) or as a metric line
//! (`linger_... 3`) must match a line captured here, digits aside (ports, byte counts
//! and times change from run to run). Event messages named in prose are listed in
//! [`PROSE_MESSAGES`]: each must be in the docs and in the code.
//!
//! The lines are produced in a child process of this test binary, so that no other
//! test's thread can race the capturing subscriber. When a quote fails, the panic
//! shows the lines the code produced: copy the right one.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use linger::{DrainBody, DrainBodyLayer, DrainCounters, LingeringListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceBuilder;
use tracing::Instrument as _;

use crate::common::{step, upload_over};

/// Event messages the docs name in prose rather than in a sample line (events that
/// only failures produce): each must appear in the docs and, as a string literal, in
/// the code.
const PROSE_MESSAGES: [&str; 2] = ["staged close failed", "read failed while lingering"];

/// A `MakeWriter` that keeps everything written, for the lines to compare.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Digits out: ports, byte counts and milliseconds differ from run to run.
fn shape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.trim().chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn is_log_line(line: &str) -> bool {
    [
        "TRACE ", "DEBUG ", " INFO ", "INFO ", " WARN ", "WARN ", "ERROR ",
    ]
    .iter()
    .any(|level| line.starts_with(level))
}

fn is_metric_line(line: &str) -> bool {
    line.starts_with("linger_")
        && line.rsplit_once(' ').is_some_and(|(_, value)| {
            !value.is_empty() && value.chars().all(|c| c.is_ascii_digit())
        })
}

/// The lines of the ```text blocks of a Markdown text, with where they come from.
fn text_blocks(source: &str, text: &str) -> Vec<(String, String)> {
    let mut quoted = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            inside = !inside && trimmed.trim_start_matches('`').starts_with("text");
            continue;
        }
        if inside {
            quoted.push((source.to_owned(), trimmed.to_owned()));
        }
    }
    quoted
}

/// The doc comments (`//!` and `///`) of one source file, as Markdown.
fn doc_text(code: &str) -> String {
    code.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            line.strip_prefix("//!")
                .or_else(|| line.strip_prefix("///"))
                .map(|doc| doc.strip_prefix(' ').unwrap_or(doc))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// README.md and the doc comments of every file under `src/`, as `(where, Markdown)`.
fn docs() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let code = std::fs::read_to_string(&path).unwrap();
                out.push((path.display().to_string(), doc_text(&code)));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = vec![(
        "README.md".to_owned(),
        std::fs::read_to_string(root.join("README.md")).unwrap(),
    )];
    walk(&root.join("src"), &mut out);
    out
}

async fn handle(
    _request: Request<DrainBody<Incoming>>,
) -> Result<Response<String>, std::convert::Infallible> {
    Ok(Response::new("body ignored".to_owned()))
}

/// The cases the docs quote, under a capturing subscriber: the README's 1 MB upload
/// rejected unread (`over_limit`, then a staged close that ends at the client's FIN);
/// a body that has all arrived when the response is ready (`drained_inline`); and a
/// body whose rest comes after the response (`draining`, then `drained`). Returns the
/// log lines and the metric lines.
async fn produce() -> (Vec<String>, Vec<String>) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .without_time()
        .with_max_level(tracing::Level::TRACE)
        .finish();
    // This thread only: the test runs on a current-thread runtime, so the server, its
    // background drains and closes all run here, and other tests stay out.
    let _guard = tracing::subscriber::set_default(subscriber);

    let counters = DrainCounters::new();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = LingeringListener::new(tcp);
    let group = listener.group().clone();
    let layer = DrainBodyLayer::new(256 * 1024).counters(counters.clone());
    tokio::spawn(async move {
        // The README's hyper loop, with the span per connection of `examples/hyper.rs`.
        while let Ok((stream, peer)) = listener.accept().await {
            let service = ServiceBuilder::new()
                .layer(layer.clone())
                .service_fn(handle);
            let connection = async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                    .await;
            };
            tokio::spawn(connection.instrument(tracing::info_span!("conn", %peer)));
        }
    });

    // 1 MB rejected unread: over the limit, `Connection: close`, discarded by the close.
    let stream = step("connect", TcpStream::connect(addr)).await.unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        1_000_000
    );
    let upload = upload_over(stream, head.into_bytes(), 1_000_000).await;
    let response = upload.clean();
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response)
    );

    // A small body, all there at the response: taken at once. Then a body whose rest
    // comes only after the response: drained in the background.
    let mut client = step("connect", TcpStream::connect(addr)).await.unwrap();
    step(
        "small body",
        client.write_all(b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\nfoo=bar"),
    )
    .await
    .unwrap();
    read_one_response(&mut client).await;
    step(
        "half a body",
        client.write_all(b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n"),
    )
    .await
    .unwrap();
    read_one_response(&mut client).await;
    step("rest of the body", client.write_all(&[b'a'; 20_000]))
        .await
        .unwrap();
    let counted = crate::common::settled(&counters, 3).await;
    assert_eq!(
        (counted.over_limit, counted.drained_inline, counted.drained),
        (1, 1, 1),
        "{counted:?}"
    );
    drop(client);
    step("every close ends", group.wait_idle()).await;

    let mut metrics = Vec::new();
    for metric in group.stats().metrics().chain(counters.snapshot().metrics()) {
        metrics.push(match metric.label {
            Some((key, value)) => format!("{}{{{key}=\"{value}\"}} {}", metric.name, metric.value),
            None => format!("{} {}", metric.name, metric.value),
        });
    }
    (captured.lines(), metrics)
}

/// Reads one short response ("body ignored", 12 bytes) off a kept-alive connection.
async fn read_one_response(client: &mut TcpStream) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"body ignored") {
        let n = step("response", client.read(&mut buf)).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}

/// Set in the child process that produces the lines.
const CHILD: &str = "LINGER_README_QUOTES_CHILD";

/// The producing half, alone in a process of its own (see
/// [`every_quoted_log_and_metric_line_is_produced`]); does nothing otherwise.
#[tokio::test]
async fn produce_in_a_process_of_its_own() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let (logs, metrics) = produce().await;
    for line in logs {
        println!("LOG {line}");
    }
    for line in metrics {
        println!("METRIC {line}");
    }
}

/// Runs [`produce`] in a child process of this test binary, alone: a subscriber set for
/// one thread misses events whose call sites another test's thread registers at the
/// same moment (tracing caches each call site's interest once, process-wide).
async fn produce_alone() -> (Vec<String>, Vec<String>) {
    let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "readme_quotes::produce_in_a_process_of_its_own",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .kill_on_drop(true);
    let output = crate::common::step_within(Duration::from_secs(30), "the child", command.output())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pick = |prefix: &str| -> Vec<String> {
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(str::to_owned)
            .collect()
    };
    (pick("LOG "), pick("METRIC "))
}

#[tokio::test]
async fn every_quoted_log_and_metric_line_is_produced() {
    let (logs, metrics) = produce_alone().await;
    let log_shapes: Vec<String> = logs.iter().map(|l| shape(l)).collect();
    let metric_shapes: Vec<String> = metrics.iter().map(|l| shape(l)).collect();
    let docs = docs();
    let mut checked = 0;
    let mut failures = Vec::new();
    for (source, text) in &docs {
        for (_, line) in text_blocks(source, text) {
            let (kind, produced) = if is_log_line(&line) {
                ("log", &log_shapes)
            } else if is_metric_line(&line) {
                ("metric", &metric_shapes)
            } else {
                continue;
            };
            checked += 1;
            if !produced.contains(&shape(&line)) {
                failures.push(format!(
                    "{source}: {kind} line not produced by the code:\n  {line}"
                ));
            }
        }
    }
    for message in PROSE_MESSAGES {
        if !docs.iter().any(|(_, text)| text.contains(message)) {
            failures.push(format!(
                "no doc names {message:?}: drop it from PROSE_MESSAGES"
            ));
        }
        let literal = format!("\"{message}\"");
        let in_code = docs.iter().any(|(source, _)| {
            source.ends_with(".rs") && std::fs::read_to_string(source).unwrap().contains(&literal)
        });
        if !in_code {
            failures.push(format!("no event of the code says {message:?}"));
        }
    }
    assert!(checked >= 2, "the README's log sample was not found");
    assert!(
        failures.is_empty(),
        "{}\n\nlog lines the code produced:\n{}\n\nmetric lines:\n{}",
        failures.join("\n"),
        logs.join("\n"),
        metrics.join("\n")
    );
}

/// The README's sample is there and is checked: the test above would pass on a README
/// without quotes, so this one makes sure it has the two lines.
#[test]
fn readme_quotes_its_log_lines() {
    let readme = include_str!("../../README.md");
    let quoted: Vec<_> = text_blocks("README.md", readme)
        .into_iter()
        .filter(|(_, line)| is_log_line(line))
        .collect();
    assert!(
        quoted
            .iter()
            .any(|(_, l)| l.contains("request body settled")),
        "{quoted:?}"
    );
    assert!(
        quoted.iter().any(|(_, l)| l.contains("linger finished")),
        "{quoted:?}"
    );
}

/// The lingering module docs say: code that downcasts hyper's `Upgraded` must name
/// `TokioIo<LingeringIo<TcpStream>>`; `TokioIo<TcpStream>` fails.
#[tokio::test]
async fn upgraded_io_downcasts_to_the_lingering_wrapper() {
    use hyper::upgrade::Upgraded;
    use linger::LingeringIo;

    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = LingeringListener::new(tcp);
    let (report, reported) = tokio::sync::oneshot::channel::<(bool, bool)>();
    let report = Arc::new(Mutex::new(Some(report)));
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let report = report.clone();
            async move {
                tokio::spawn(async move {
                    let upgraded: Upgraded = hyper::upgrade::on(&mut request).await.unwrap();
                    let plain = upgraded.downcast::<TokioIo<TcpStream>>();
                    let upgraded = plain.as_ref().err().is_some();
                    let wrapped = plain
                        .err()
                        .map(|u| u.downcast::<TokioIo<LingeringIo<TcpStream>>>().is_ok());
                    let sender = report.lock().unwrap().take().unwrap();
                    let _ = sender.send((upgraded, wrapped.unwrap_or(false)));
                });
                let mut response = Response::new(String::new());
                *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
                response
                    .headers_mut()
                    .insert("connection", "upgrade".parse().unwrap());
                response
                    .headers_mut()
                    .insert("upgrade", "test".parse().unwrap());
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
            .await;
    });
    let mut client = step("connect", TcpStream::connect(addr)).await.unwrap();
    step(
        "upgrade request",
        client.write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: test\r\n\r\n",
        ),
    )
    .await
    .unwrap();
    let (plain_failed, wrapped_ok) = step("downcasts", reported).await.unwrap();
    assert!(plain_failed, "downcast to TokioIo<TcpStream> should fail");
    assert!(
        wrapped_ok,
        "downcast to TokioIo<LingeringIo<TcpStream>> should succeed"
    );
}
