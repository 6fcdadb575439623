//! Before and after, measured: the same small app served by plain hyper and
//! by hyper with `linger` (`DrainBodyLayer` and `LingeringIo`), with the
//! failing scenarios replayed against both by a raw TCP client, plus a
//! control that both servers handle.
//!
//! Run with `cargo run --example demo`. Everything happens on 127.0.0.1 and
//! takes a few seconds. Outcomes are measured on every run, never assumed.
//!
//! The raw client writes each request whole before it reads, so the early 413
//! shows as a broken pipe; which real clients each failure reaches is measured
//! by `tests/stack/real_clients.rs` and summed up in the README.

use std::convert::Infallible;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use linger::{DrainBodyLayer, LingeringListener};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceBuilder;

const MIB: usize = 1024 * 1024;
const BIG_RESPONSE: usize = 8 * MIB;
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// The app: `/consume` reads the body, `/upload` rejects it unread with 413,
/// `/big` answers 8 MiB, anything else answers without reading the body.
async fn app<B: http_body::Body>(request: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
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
            let mut response = Response::new(Full::from("upload too large\n"));
            *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            response
        }
        "/big" => Response::new(Full::from(vec![b'x'; BIG_RESPONSE])),
        _ => Response::new(Full::from("ignored the body\n")),
    };
    Ok(response)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    PlainHyper,
    Linger,
}

async fn serve(server: Server) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let listener = LingeringListener::new(listener);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let http = hyper::server::conn::http1::Builder::new();
            tokio::spawn(async move {
                match server {
                    Server::PlainHyper => {
                        // The plain server gets the bare socket back.
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
    Ok(addr)
}

/// What the client saw of one response.
struct Seen {
    status: Option<u16>,
    says_close: bool,
    body_bytes: usize,
    expected_bytes: usize,
    end: End,
}

/// How the client's read of a response ended.
#[derive(PartialEq, Eq)]
enum End {
    /// The whole response arrived; the connection is still open.
    Complete,
    /// The peer closed cleanly (FIN) before or after the response.
    Eof,
    Reset,
    TimedOut,
}

impl Seen {
    fn complete(&self) -> bool {
        self.status.is_some() && self.body_bytes == self.expected_bytes && self.end != End::Reset
    }

    fn describe(&self) -> String {
        match (&self.end, self.status) {
            (End::Reset, _) if self.body_bytes > 0 => format!(
                "reset: got {:.1} of {:.1} MiB",
                self.body_bytes as f64 / MIB as f64,
                self.expected_bytes as f64 / MIB as f64
            ),
            (End::Reset, None) => "reset: no response at all".to_owned(),
            (End::Reset, Some(status)) => format!("{status} head, then reset"),
            (End::TimedOut, _) => "no answer (timed out)".to_owned(),
            (_, None) => "connection closed, no response".to_owned(),
            (_, Some(status)) if self.body_bytes < self.expected_bytes => {
                format!("{status}, body cut short")
            }
            (_, Some(status)) => format!("{status} complete"),
        }
    }
}

/// Reads one response (Content-Length framed) and notes how the read ended.
async fn read_response<R>(stream: &mut R, pace: Option<Duration>) -> Seen
where
    R: AsyncRead + Unpin,
{
    let mut seen = Seen {
        status: None,
        says_close: false,
        body_bytes: 0,
        expected_bytes: 0,
        end: End::Complete,
    };
    let mut head = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut body_start = None;
    let read = async {
        loop {
            if let Some(pace) = pace {
                tokio::time::sleep(pace).await;
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(End::Eof);
            }
            if body_start.is_none() {
                head.extend_from_slice(&chunk[..n]);
                if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    parse_head(&head[..end], &mut seen);
                    seen.body_bytes = head.len() - end - 4;
                    body_start = Some(());
                }
            } else {
                seen.body_bytes += n;
            }
            if body_start.is_some() && seen.body_bytes >= seen.expected_bytes {
                return io::Result::Ok(End::Complete);
            }
        }
    };
    seen.end = match tokio::time::timeout(STEP_TIMEOUT, read).await {
        Ok(Ok(end)) => end,
        // Reset, or broken pipe: the connection was torn down, not closed.
        Ok(Err(_)) => End::Reset,
        Err(_) => End::TimedOut,
    };
    seen
}

fn parse_head(head: &[u8], seen: &mut Seen) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    seen.status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok());
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            seen.expected_bytes = value.parse().unwrap_or(0);
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            seen.says_close = true;
        }
    }
}

/// After a first response: is the connection still good for a second request?
async fn second_request(stream: &mut TcpStream) -> Seen {
    let request = b"POST /consume HTTP/1.1\r\nHost: demo\r\nContent-Length: 7\r\n\r\na=b&x=y";
    // A failed write shows up as a failed read just after.
    let _ = stream.write_all(request).await;
    read_response(stream, None).await
}

fn reuse_outcome(first: &Seen, second: &Seen) -> String {
    if !first.complete() {
        return first.describe();
    }
    if second.complete() {
        return "complete, connection reused".to_owned();
    }
    if first.says_close {
        "complete, then closed as announced".to_owned()
    } else {
        "connection closed, client must reconnect".to_owned()
    }
}

/// Sends `head` and `body` while reading the answer, then a second request.
async fn ignored_then_reuse(addr: SocketAddr, head: String, body: Vec<u8>) -> io::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    let (mut reader, mut writer) = stream.split();
    // One write, as curl sends a small request.
    let request = [head.as_bytes(), &body].concat();
    let write = writer.write_all(&request);
    let (written, first) = tokio::join!(write, read_response(&mut reader, None));
    if written.is_err() && !first.complete() {
        return Ok(format!("upload failed: {}", first.describe()));
    }
    let second = second_request(&mut stream).await;
    Ok(reuse_outcome(&first, &second))
}

fn request_head(path: &str, framing: &str, extra: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: demo\r\n{framing}{extra}\r\n")
}

fn chunked(total: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(total + total / 1000 + 16);
    for piece in vec![b'a'; total].chunks(4096) {
        body.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        body.extend_from_slice(piece);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    body
}

/// The control: a body small enough that plain hyper finds it all at once
/// and keeps the connection too.
async fn small_body_control(addr: SocketAddr) -> io::Result<String> {
    let head = request_head("/ignore", "Content-Length: 7\r\n", "");
    ignored_then_reuse(addr, head, b"foo=bar".to_vec()).await
}

async fn chunked_64k(addr: SocketAddr) -> io::Result<String> {
    let head = request_head("/ignore", "Transfer-Encoding: chunked\r\n", "");
    ignored_then_reuse(addr, head, chunked(64 * 1024)).await
}

async fn over_limit(addr: SocketAddr) -> io::Result<String> {
    let head = request_head("/ignore", &format!("Content-Length: {}\r\n", MIB), "");
    ignored_then_reuse(addr, head, vec![b'a'; MIB]).await
}

/// The client uploads everything first, then reads: a 413 sent early must survive.
async fn early_413(addr: SocketAddr) -> io::Result<String> {
    let size = 16 * MIB;
    let mut stream = TcpStream::connect(addr).await?;
    let head = request_head("/upload", &format!("Content-Length: {size}\r\n"), "");
    let upload = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&vec![b'u'; size]).await
    };
    match tokio::time::timeout(STEP_TIMEOUT, upload).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Ok(format!("upload cut off: {}", error.kind())),
        Err(_) => return Ok("upload stalled (timed out)".to_owned()),
    }
    Ok(read_response(&mut stream, None).await.describe())
}

/// `Connection: close`, an ignored body, 8 MiB read slowly.
async fn big_response_then_close(addr: SocketAddr) -> io::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    let body = vec![b'b'; 64 * 1024];
    let head = request_head(
        "/big",
        &format!("Content-Length: {}\r\n", body.len()),
        "Connection: close\r\n",
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    // The client is busy for a moment before it reads, as a real one may be.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(read_response(&mut stream, Some(Duration::from_millis(1)))
        .await
        .describe())
}

type Scenario =
    fn(
        SocketAddr,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<String>> + Send>>;

#[tokio::main]
async fn main() -> io::Result<()> {
    let plain = serve(Server::PlainHyper).await?;
    let linger = serve(Server::Linger).await?;
    let scenarios: [(&str, Scenario); 5] = [
        ("control: 7-byte body ignored, next request", |a| {
            Box::pin(small_body_control(a))
        }),
        ("64 KiB chunked body ignored, next request", |a| {
            Box::pin(chunked_64k(a))
        }),
        ("1 MiB body ignored (drain limit 256 KiB)", |a| {
            Box::pin(over_limit(a))
        }),
        ("16 MiB upload answered early with 413", |a| {
            Box::pin(early_413(a))
        }),
        ("8 MiB response with Connection: close", |a| {
            Box::pin(big_response_then_close(a))
        }),
    ];
    let mut rows = Vec::new();
    for (index, (name, scenario)) in scenarios.iter().enumerate() {
        eprint!("\r[{}/{}] {name:<50}", index + 1, scenarios.len());
        io::stderr().flush()?;
        let before = scenario(plain)
            .await
            .unwrap_or_else(|e| format!("error: {e}"));
        let after = scenario(linger)
            .await
            .unwrap_or_else(|e| format!("error: {e}"));
        rows.push((name, before, after));
    }
    eprintln!("\r{:<70}", "");
    println!(
        "The same requests, from a raw TCP client, to both servers; each cell says what the \
         client got. The first row is a control: both servers handle it."
    );
    println!();
    println!("{:<46} | {:<40} | with linger", "scenario", "plain hyper");
    println!("{:-<46}-+-{:-<40}-+-{:-<40}", "", "", "");
    for (name, before, after) in rows {
        println!("{name:<46} | {before:<40} | {after}");
    }
    println!();
    println!(
        "This client sends each request whole before it reads. What curl, wget, Python, \
         Node, Go and hyper's own client get: README.md, the table below this one."
    );
    Ok(())
}
