//! Which real clients the demo's failures reach, measured: the demo's scenarios
//! (`examples/demo.rs`, minus its control row) replayed by the clients people use,
//! against the demo's app served by plain hyper and by hyper with `linger`. The README's
//! client table (between `<!-- clients -->` and `<!-- /clients -->`) and its list of
//! client errors ("Do you need it?") come from here.
//!
//! Clients: hyper's own (in process, always there), curl, wget, Python's `requests`,
//! `httpx` and `aiohttp`, Node's `fetch` and `http` module, Go's `net/http`. Each one
//! that is not installed is skipped, saying so. The scripts live in `clients/`.
//!
//! On plain hyper the outcome of a scenario varies from run to run (it is a race between
//! the client's writes and reads and the server's reset), so each README cell lists what
//! 20 runs gave, separated by `, or `.
//!
//! - `readme_client_table_matches_real_clients` runs the quick clients once (hyper, curl,
//!   requests, Node `fetch`; about two seconds, part of `cargo test --all-features`). It
//!   asserts that with `linger` every client gets every answer whole, and compares each
//!   plain-hyper outcome with the README, printing (not failing on) a mismatch: one run
//!   may meet an outcome that 20 runs did not.
//! - `all_real_clients` (`#[ignore]`d: Go compiles its client first, Python's libraries
//!   take a while to import; about 3 s a run) does the same for every client,
//!   `LINGER_CLIENT_RUNS` times (default 1), and asserts the README's cells, and (over
//!   10 runs or more, with every client installed) its list of client errors. It prints
//!   the table it measured, with counts:
//!
//! ```text
//! LINGER_CLIENT_RUNS=20 cargo test --all-features --test stack all_real_clients -- --ignored --nocapture
//! ```
//!
//! Installing the clients on Debian: `apt-get install curl wget nodejs golang-go`,
//! `pip install requests httpx aiohttp`. Measured for the README with curl 7.88.1, wget
//! 1.21.3, Python 3.11 with requests 2.34, httpx 0.29 and aiohttp 3.14, Node 20.20, Go
//! 1.19, on Linux over loopback.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use linger::{DrainBodyLayer, LingeringListener};
use tokio::net::TcpListener;
use tower::ServiceBuilder;

const MIB: usize = 1024 * 1024;
const BIG_RESPONSE: usize = 8 * MIB;
/// The bound on one client's whole run (all its scenarios, both servers).
const CLIENT_RUN: Duration = Duration::from_secs(60);
const IGNORED: &str = "ignored the body\n";
const CONSUMED: &str = "read 7 bytes\n";
const TOO_LARGE: &str = "upload too large\n";

// ---------------------------------------------------------------- servers

/// The demo's app: `/consume` reads the body, `/upload` answers 413 unread, `/big`
/// answers 8 MiB, anything else answers without reading the body.
async fn app<B: Body>(request: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match request.uri().path() {
        "/consume" => {
            let read = request
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes().len());
            Response::new(Full::from(format!("read {} bytes\n", read.unwrap_or(0))))
        }
        "/upload" => {
            let mut response = Response::new(Full::from(TOO_LARGE));
            *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            response
        }
        "/big" => Response::new(Full::from(vec![b'x'; BIG_RESPONSE])),
        _ => Response::new(Full::from(IGNORED)),
    };
    Ok(response)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    PlainHyper,
    Linger,
}

/// One server for one scenario of one client, counting the connections it accepts.
struct Served {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

async fn serve(server: Server) -> Served {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let listener = LingeringListener::new(tcp);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let http = hyper::server::conn::http1::Builder::new();
            tokio::spawn(async move {
                match server {
                    Server::PlainHyper => {
                        let io = TokioIo::new(stream.into_inner());
                        let _ = http.serve_connection(io, service_fn(app)).await;
                    }
                    Server::Linger => {
                        let service = ServiceBuilder::new()
                            .layer(DrainBodyLayer::new(256 * 1024))
                            .service_fn(app);
                        let service = TowerToHyperService::new(service);
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            });
        }
    });
    Served { addr, connections }
}

// ---------------------------------------------------------------- scenarios

/// The demo's rows, by the name the client scripts know them by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    /// 64 KiB chunked body ignored, then a 7-byte POST that is read.
    Chunked64,
    /// 1 MiB body ignored (drain limit 256 KiB), then a 7-byte POST.
    OverLimit,
    /// 16 MiB upload answered early with 413.
    Early413,
    /// 64 KiB body ignored, `Connection: close`, 8 MiB response.
    BigClose,
}

const SCENARIOS: [Scenario; 4] = [
    Scenario::Chunked64,
    Scenario::OverLimit,
    Scenario::Early413,
    Scenario::BigClose,
];

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Chunked64 => "chunked64",
            Scenario::OverLimit => "over_limit",
            Scenario::Early413 => "early413",
            Scenario::BigClose => "big_close",
        }
    }

    /// The README table's column for it.
    fn column(self) -> usize {
        match self {
            Scenario::Chunked64 => 1,
            Scenario::OverLimit => 2,
            Scenario::Early413 => 3,
            Scenario::BigClose => 4,
        }
    }

    /// `(status, body bytes)` each request must get when all goes well.
    fn expected(self) -> Vec<(u16, usize)> {
        match self {
            Scenario::Chunked64 | Scenario::OverLimit => {
                vec![(200, IGNORED.len()), (200, CONSUMED.len())]
            }
            Scenario::Early413 => vec![(413, TOO_LARGE.len())],
            Scenario::BigClose => vec![(200, BIG_RESPONSE)],
        }
    }
}

/// What one client reported for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    Got { status: u16, bytes: usize },
    Error(String),
}

impl Answer {
    fn parse(field: &str) -> Answer {
        let field = field.trim();
        if let Some(text) = field.strip_prefix("error ") {
            return Answer::Error(text.to_owned());
        }
        let mut parts = field.split(' ');
        let status = parts.next().and_then(|s| s.parse().ok());
        let bytes = parts.next().and_then(|s| s.parse().ok());
        match (status, bytes) {
            (Some(status), Some(bytes)) => Answer::Got { status, bytes },
            _ => Answer::Error(format!("unreadable report {field:?}")),
        }
    }
}

/// What a scenario came to for one client, in the README's words.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// Every answer whole, on one connection (or, for a single request, whole).
    Whole,
    /// Every answer whole, but the next request needed a new connection.
    NewConnection,
    /// A client error (its text), or an answer cut short.
    Failed(String),
    /// The client cannot run this scenario (wget has no chunked uploads).
    NotRun,
}

fn outcome(scenario: Scenario, answers: &[Answer], connections: usize) -> Outcome {
    let expected = scenario.expected();
    for (index, (answer, (status, bytes))) in answers.iter().zip(&expected).enumerate() {
        // A failure of the second request is the lost keep-alive, not a lost answer.
        let which = if index > 0 { "next request: " } else { "" };
        match answer {
            Answer::Error(text) => return Outcome::Failed(format!("{which}{text}")),
            Answer::Got {
                status: s,
                bytes: b,
            } if (s, b) != (status, bytes) => {
                return Outcome::Failed(format!("{which}got {s} with {b} of {bytes} bytes"));
            }
            Answer::Got { .. } => {}
        }
    }
    if answers.len() != expected.len() {
        return Outcome::Failed(format!("{} answers reported", answers.len()));
    }
    if answers.len() > 1 && connections > 1 {
        Outcome::NewConnection
    } else {
        Outcome::Whole
    }
}

// ---------------------------------------------------------------- clients

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    Hyper,
    Curl,
    Wget,
    Requests,
    Httpx,
    Aiohttp,
    NodeFetch,
    NodeHttp,
    Go,
}

const QUICK: [Tool; 4] = [Tool::Hyper, Tool::Curl, Tool::Requests, Tool::NodeFetch];
const ALL: [Tool; 9] = [
    Tool::Hyper,
    Tool::Curl,
    Tool::Wget,
    Tool::Requests,
    Tool::Httpx,
    Tool::Aiohttp,
    Tool::NodeFetch,
    Tool::NodeHttp,
    Tool::Go,
];

impl Tool {
    /// The README table's row name.
    fn name(self) -> &'static str {
        match self {
            Tool::Hyper => "hyper (client)",
            Tool::Curl => "curl",
            Tool::Wget => "wget (`--tries=1`)",
            Tool::Requests => "Python requests",
            Tool::Httpx => "Python httpx",
            Tool::Aiohttp => "Python aiohttp",
            Tool::NodeFetch => "Node fetch",
            Tool::NodeHttp => "Node http",
            Tool::Go => "Go net/http",
        }
    }
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stack/clients")
}

/// A scratch directory for curl's and wget's upload files, one per run.
fn scratch() -> PathBuf {
    static RUN: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "linger-clients-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn upload_file(dir: &Path, name: &str, len: usize, byte: u8) -> String {
    let path = dir.join(name);
    std::fs::write(&path, vec![byte; len]).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Runs a command to its end within [`CLIENT_RUN`]; `None` when it is not installed
/// (or, for the scripts, when the library is missing: exit code 3).
async fn run(program: &str, args: &[String]) -> Option<(String, String)> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let output = match tokio::time::timeout(CLIENT_RUN, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(_)) => return None,
        Err(_) => panic!("{program} {args:?}: no end within {CLIENT_RUN:?}"),
    };
    if output.status.code() == Some(3) {
        return None;
    }
    Some((
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// One request per scenario step, from curl: `%{http_code} %{size_download}` per
/// transfer, and curl's own error line (`curl: (NN) ...`) for a failed one.
async fn curl(scenario: Scenario, base: &str, dir: &Path) -> Option<Vec<Answer>> {
    let write_out = "%{http_code} %{size_download} %{exitcode} %{errormsg}\\n".to_owned();
    let common = |path: &str| -> Vec<String> {
        [
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            &write_out,
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("{base}{path}")])
        .collect()
    };
    let second = || -> Vec<String> {
        let mut args = vec!["--next".to_owned()];
        args.extend(common("/consume"));
        args.extend(["--data-binary".to_owned(), "a=b&x=y".to_owned()]);
        args
    };
    let mut args = Vec::new();
    match scenario {
        Scenario::Chunked64 => {
            let file = upload_file(dir, "64k", 64 * 1024, b'a');
            args.extend(common("/ignore"));
            args.extend(["-H", "Transfer-Encoding: chunked", "--data-binary"].map(String::from));
            args.push(format!("@{file}"));
            args.extend(second());
        }
        Scenario::OverLimit => {
            let file = upload_file(dir, "1m", MIB, b'a');
            args.extend(common("/ignore"));
            args.extend(["--data-binary".to_owned(), format!("@{file}")]);
            args.extend(second());
        }
        Scenario::Early413 => {
            let file = upload_file(dir, "16m", 16 * MIB, b'u');
            args.extend(common("/upload"));
            args.extend(["--data-binary".to_owned(), format!("@{file}")]);
        }
        Scenario::BigClose => {
            let file = upload_file(dir, "64k", 64 * 1024, b'b');
            args.extend(common("/big"));
            args.extend(["-H", "Connection: close", "--data-binary"].map(String::from));
            args.push(format!("@{file}"));
        }
    }
    let (stdout, _) = run("curl", &args).await?;
    Some(
        stdout
            .lines()
            .map(|line| {
                let mut parts = line.splitn(4, ' ');
                let (status, bytes) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let code = parts.next().unwrap_or("");
                let message = parts.next().unwrap_or("").trim();
                if code == "0" {
                    Answer::parse(&format!("{status} {bytes}"))
                } else {
                    // As curl prints it on stderr.
                    Answer::Error(format!("curl: ({code}) {message}"))
                }
            })
            .collect(),
    )
}

/// wget, for the single-request scenarios: `-S` prints the status line, `-O -` the body.
async fn wget(scenario: Scenario, base: &str, dir: &Path) -> Option<Vec<Answer>> {
    let (path, file, close) = match scenario {
        Scenario::Early413 => ("/upload", upload_file(dir, "16m", 16 * MIB, b'u'), false),
        Scenario::BigClose => ("/big", upload_file(dir, "64k", 64 * 1024, b'b'), true),
        Scenario::Chunked64 | Scenario::OverLimit => return Some(Vec::new()),
    };
    let mut args: Vec<String> = [
        "-S",
        "--progress=dot:mega",
        "--tries=1",
        "--timeout=10",
        "--content-on-error",
        "-O",
        "-",
    ]
    .map(String::from)
    .to_vec();
    args.push(format!("--post-file={file}"));
    if close {
        args.push("--header=Connection: close".to_owned());
    }
    args.push(format!("{base}{path}"));
    let mut command = tokio::process::Command::new("wget");
    command.args(&args).kill_on_drop(true);
    let output = match tokio::time::timeout(CLIENT_RUN, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(_)) => return None,
        Err(_) => panic!("wget: no end within {CLIENT_RUN:?}"),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    let status = stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("HTTP/1.1 "))
        .filter_map(|l| l.get(..3)?.parse::<u16>().ok())
        .next_back();
    // wget's own words for a failure ("Read error at byte ...", "Giving up.").
    let error: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| l.contains("error") || l.contains("failed") || l.starts_with("Giving up"))
        .filter(|l| !l.contains("ERROR 413"))
        .collect();
    let error = (!error.is_empty()).then(|| error.join(" "));
    Some(vec![match (status, error) {
        (_, Some(error)) => Answer::Error(error.trim().to_owned()),
        (Some(status), None) => Answer::Got {
            status,
            bytes: output.stdout.len(),
        },
        (None, None) => Answer::Error(format!("wget: no status: {stderr}")),
    }])
}

/// A request body of `len` bytes, with its length declared or (chunked) not.
struct Upload {
    left: usize,
    declared: bool,
}

impl Body for Upload {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(64 * 1024);
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'a'; n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.declared {
            SizeHint::with_exact(self.left as u64)
        } else {
            SizeHint::default()
        }
    }
}

/// hyper's own client (hyper-util's pooled `Client`), in process.
async fn hyper_client(scenario: Scenario, base: &str) -> Vec<Answer> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Upload>();
    let second = ("/consume", 7, true, false);
    let steps: &[(&str, usize, bool, bool)] = match scenario {
        Scenario::Chunked64 => &[("/ignore", 64 * 1024, false, false), second],
        Scenario::OverLimit => &[("/ignore", MIB, true, false), second],
        Scenario::Early413 => &[("/upload", 16 * MIB, true, false)],
        Scenario::BigClose => &[("/big", 64 * 1024, true, true)],
    };
    let mut answers = Vec::new();
    for &(path, len, declared, close) in steps {
        let mut request = Request::post(format!("{base}{path}"));
        if close {
            request = request.header("connection", "close");
        }
        let request = request
            .body(Upload {
                left: len,
                declared,
            })
            .unwrap();
        let exchange = async {
            let response = client.request(request).await.map_err(chain)?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.map_err(chain)?;
            Ok::<_, String>(Answer::Got {
                status,
                bytes: body.to_bytes().len(),
            })
        };
        let answer = match tokio::time::timeout(Duration::from_secs(10), exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(text)) => Answer::Error(text),
            Err(_) => Answer::Error("timed out".to_owned()),
        };
        answers.push(answer);
    }
    answers
}

/// An error and its sources, as `a: b: c`.
fn chain(error: impl std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

/// The scripts take every scenario of one run at once: `SCENARIO=BASE ...`.
async fn script(tool: Tool, pairs: &[String]) -> Option<Vec<(String, Vec<Answer>)>> {
    let dir = scripts();
    let (program, mut args): (&str, Vec<String>) = match tool {
        Tool::Requests => (
            "python3",
            vec![
                dir.join("client.py").display().to_string(),
                "requests".into(),
            ],
        ),
        Tool::Httpx => (
            "python3",
            vec![dir.join("client.py").display().to_string(), "httpx".into()],
        ),
        Tool::Aiohttp => (
            "python3",
            vec![
                dir.join("client.py").display().to_string(),
                "aiohttp".into(),
            ],
        ),
        Tool::NodeFetch => (
            "node",
            vec![dir.join("client.mjs").display().to_string(), "fetch".into()],
        ),
        Tool::NodeHttp => (
            "node",
            vec![dir.join("client.mjs").display().to_string(), "http".into()],
        ),
        Tool::Go => (
            "go",
            vec!["run".into(), dir.join("client.go").display().to_string()],
        ),
        _ => unreachable!(),
    };
    args.extend(pairs.iter().cloned());
    let (stdout, stderr) = run(program, &args).await?;
    let lines: Vec<_> = stdout
        .lines()
        .map(|line| {
            let mut fields = line.split('\t');
            let name = fields.next().unwrap_or_default().to_owned();
            (name, fields.map(Answer::parse).collect())
        })
        .collect();
    assert_eq!(
        lines.len(),
        pairs.len(),
        "{tool:?} reported {} of {} scenarios; stderr: {stderr}",
        lines.len(),
        pairs.len()
    );
    Some(lines)
}

/// Every scenario against both servers, for one client: `None` if it is not
/// installed, else `(scenario, plain hyper, linger)` per scenario.
async fn measure(tool: Tool) -> Option<Vec<(Scenario, Outcome, Outcome)>> {
    let mut servers = Vec::new();
    for scenario in SCENARIOS {
        servers.push((
            scenario,
            serve(Server::PlainHyper).await,
            serve(Server::Linger).await,
        ));
    }
    let base = |s: &Served| format!("http://{}", s.addr);
    let answers: Vec<(Vec<Answer>, Vec<Answer>)> = match tool {
        Tool::Hyper | Tool::Curl | Tool::Wget => {
            let dir = scratch();
            let mut all = Vec::new();
            for (scenario, plain, linger) in &servers {
                let one = |server: &Served| {
                    let base = base(server);
                    let dir = dir.clone();
                    let scenario = *scenario;
                    async move {
                        match tool {
                            Tool::Hyper => Some(hyper_client(scenario, &base).await),
                            Tool::Curl => curl(scenario, &base, &dir).await,
                            _ => wget(scenario, &base, &dir).await,
                        }
                    }
                };
                let plain = one(plain).await?;
                let linger = one(linger).await?;
                all.push((plain, linger));
            }
            let _ = std::fs::remove_dir_all(&dir);
            all
        }
        _ => {
            let pairs: Vec<String> = servers
                .iter()
                .flat_map(|(scenario, plain, linger)| {
                    [
                        format!("{}={}", scenario.name(), base(plain)),
                        format!("{}={}", scenario.name(), base(linger)),
                    ]
                })
                .collect();
            let lines = script(tool, &pairs).await?;
            lines
                .chunks(2)
                .map(|pair| (pair[0].1.clone(), pair[1].1.clone()))
                .collect()
        }
    };
    Some(
        servers
            .iter()
            .zip(answers)
            .map(|((scenario, plain, linger), (on_plain, on_linger))| {
                let judged = |answers: &[Answer], served: &Served| {
                    if answers.is_empty() {
                        Outcome::NotRun
                    } else {
                        outcome(
                            *scenario,
                            answers,
                            served.connections.load(Ordering::SeqCst),
                        )
                    }
                };
                (
                    *scenario,
                    judged(&on_plain, plain),
                    judged(&on_linger, linger),
                )
            })
            .collect(),
    )
}

// ---------------------------------------------------------------- the README's table

/// The rows of the README's client table: `(client, [cell per scenario])`.
fn readme_table() -> Vec<(String, Vec<String>)> {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("<!-- clients -->")
        .expect("README: <!-- clients -->");
    let end = readme
        .find("<!-- /clients -->")
        .expect("README: <!-- /clients -->");
    readme[start..end]
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---") && !l.starts_with("| client"))
        .map(|line| {
            let cells: Vec<String> = line
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect();
            (cells[0].clone(), cells[1..].to_vec())
        })
        .collect()
}

/// The backticked quotes in the README's list of client errors (the bullets of
/// "Do you need it?").
fn symptom_quotes() -> Vec<String> {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("## Do you need it?")
        .expect("README: ## Do you need it?");
    let section = &readme[start..];
    let end = section.find("\n\n- ").map_or(0, |at| at + 2);
    let list_end = section[end..]
        .find("\n\n")
        .map_or(section.len(), |at| end + at);
    section[end..list_end]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// A client's error text without what changes from run to run: ports, byte counts,
/// wget's time stamp and rate.
fn normalized(text: &str) -> String {
    let text = match text.find(" - Read error") {
        Some(at) => &text[at + 3..],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let mut digits = String::new();
    for c in text.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if !digits.is_empty() {
            // Ports and byte counts have four digits or more; errno values do not.
            out.push_str(if digits.len() >= 4 { "N" } else { &digits });
            digits.clear();
        }
        if c != '\0' {
            out.push(c);
        }
    }
    out
}

/// A README cell for what was measured: `whole`, `new connection`, `—`, or the
/// client's text in backticks.
fn cell(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Whole => "whole".to_owned(),
        Outcome::NewConnection => "new connection".to_owned(),
        Outcome::NotRun => "—".to_owned(),
        Outcome::Failed(text) => match text.strip_prefix("next request: ") {
            Some(text) => format!("next request: `{}`", normalized(text)),
            None => format!("`{}`", normalized(text)),
        },
    }
}

/// Whether a README cell says what was measured. A cell lists the outcomes seen over
/// many runs, separated by `, or `: `whole`, `new connection`, `—` (not run), or a
/// failure, of the answer or of the next request, quoted in backticks (each quoted part
/// must be in the client's text, ports and byte counts aside).
fn cell_says(cell: &str, measured: &Outcome) -> bool {
    cell.split(", or ").any(|claim| {
        let claim = claim.trim();
        match measured {
            Outcome::Whole => claim == "whole",
            Outcome::NewConnection => claim == "new connection",
            Outcome::NotRun => claim == "—",
            Outcome::Failed(text) => {
                let text = normalized(text);
                let quoted: Vec<&str> = claim.split('`').skip(1).step_by(2).collect();
                claim.starts_with('`')
                    && !quoted.is_empty()
                    && quoted.iter().all(|q| text.contains(q))
            }
        }
    })
}

/// Runs every client of `tools` `runs` times; prints, per client, each scenario's
/// outcomes on plain hyper with how often each came, in the README table's form; then
/// checks that with `linger` every client got every answer, and (when `strict`) that
/// the README lists every outcome measured on plain hyper.
async fn check_against_readme(tools: &[Tool], runs: usize, strict: bool) {
    let table = readme_table();
    let mut failures = Vec::new();
    let mut warnings = Vec::new();
    let mut printed = Vec::new();
    let mut texts = Vec::new();
    let mut all_installed = true;
    for &tool in tools {
        // Per scenario: each distinct README cell measured, with its count.
        let mut seen: Vec<Vec<(String, usize)>> = vec![Vec::new(); SCENARIOS.len()];
        let mut installed = true;
        for _ in 0..runs {
            let Some(measured) = measure(tool).await else {
                eprintln!("{}: not installed, skipped", tool.name());
                installed = false;
                all_installed = false;
                break;
            };
            let row = table.iter().find(|(name, _)| name == tool.name());
            if row.is_none() {
                failures.push(format!("README has no row for {}", tool.name()));
            }
            for (index, (scenario, on_plain, on_linger)) in measured.iter().enumerate() {
                let fine = match scenario {
                    // Every answer whole is what counts. Over the limit the connection
                    // closes, announced. After the chunked upload, hyper's client and
                    // Node's fetch may open a new connection of their own accord: the
                    // answer came while they were still sending (undici then closes the
                    // connection; hyper's pool does not wait for it).
                    Scenario::Chunked64 | Scenario::OverLimit => {
                        matches!(
                            on_linger,
                            Outcome::NewConnection | Outcome::Whole | Outcome::NotRun
                        )
                    }
                    _ => matches!(on_linger, Outcome::Whole | Outcome::NotRun),
                };
                if !fine {
                    failures.push(format!(
                        "{} with linger, {scenario:?}: {on_linger:?}",
                        tool.name()
                    ));
                }
                if let Outcome::Failed(text) = on_plain {
                    texts.push(normalized(text));
                }
                let text = cell(on_plain);
                match seen[index].iter_mut().find(|(c, _)| *c == text) {
                    Some((_, count)) => *count += 1,
                    None => seen[index].push((text, 1)),
                }
                if let Some((_, cells)) = row {
                    let said = &cells[scenario.column() - 1];
                    if !cell_says(said, on_plain) {
                        let note = format!(
                            "{}, {scenario:?}, plain hyper: README says {said:?}, measured {}",
                            tool.name(),
                            cell(on_plain)
                        );
                        if strict {
                            failures.push(note);
                        } else {
                            warnings.push(note);
                        }
                    }
                }
            }
        }
        if installed {
            let cells: Vec<String> = seen
                .iter()
                .map(|outcomes| {
                    outcomes
                        .iter()
                        .map(|(c, n)| format!("{c} ({n}/{runs})"))
                        .collect::<Vec<_>>()
                        .join(", or ")
                })
                .collect();
            printed.push(format!("| {} | {} |", tool.name(), cells.join(" | ")));
        }
    }
    eprintln!("measured on plain hyper:\n{}", printed.join("\n"));
    // The errors the README's "Do you need it?" list quotes: each must be in a text
    // some client reported (asserted when every client was there to report it, over
    // enough runs for the rarer outcomes to show).
    for quote in symptom_quotes() {
        if !texts.iter().any(|text| text.contains(&quote)) {
            let note = format!("README quotes {quote:?}, which no client reported in these runs");
            if strict && all_installed && runs >= 10 {
                failures.push(note);
            } else {
                warnings.push(note);
            }
        }
    }
    failures.sort();
    failures.dedup();
    for warning in &warnings {
        eprintln!("note (outcomes vary from run to run): {warning}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The quick clients, once: with `linger` each gets every answer whole (asserted);
/// on plain hyper each outcome is compared with the README and reported, not
/// asserted, since which of the listed outcomes comes varies from run to run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_client_table_matches_real_clients() {
    check_against_readme(&QUICK, 1, false).await;
}

/// Every client, `LINGER_CLIENT_RUNS` times (default 1), with the README's cells
/// asserted: `cargo test --all-features --test stack all_real_clients -- --ignored
/// --nocapture`, with `LINGER_CLIENT_RUNS=20` for the table in the README.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "every client, Go's compiled first: run with --ignored"]
async fn all_real_clients() {
    let runs = std::env::var("LINGER_CLIENT_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    check_against_readme(&ALL, runs, true).await;
}
