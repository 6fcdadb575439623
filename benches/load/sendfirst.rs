//! `load sendfirst`: a client that sends the whole request body before it
//! reads anything, as Python's `http.client`/`requests` and Java's
//! `HttpURLConnection` in fixed-length mode do (issue 11, item 2).
//!
//! Each round opens a connection, writes `POST /big` with `Content-Length:
//! <body_bytes>` and the whole body, then reads the response (8 MiB from every
//! server of the harness) and waits for the connection to end. A server that
//! stops reading an ignored body while it writes a response larger than the
//! socket buffers deadlocks with such a client: the client's write, then its
//! read, hit the round's deadline, reported as `timeout`; after a write
//! that timed out the client reads nothing, as a real one would have failed.
//!
//! One line per round on stdout, `SENDFIRST key=value ...`:
//!
//! - `whole_ms`: from the connect to the last byte of the response body
//!   (`-` if it never came whole);
//! - `sent_ms`: from the connect to the last byte of the request (`-` if the
//!   body was not sent whole), and `write`: `ok`, `timeout`, `reset`, `pipe`
//!   or another error kind;
//! - `status`, `close` (whether the response announced `Connection: close`),
//!   `received` (body bytes read), `whole` (1 when all of them came);
//! - `end`: how the connection ended, `eof` (a FIN), `reset`, `open` (still
//!   open `END_WAIT` after a whole response: the server kept it alive) or
//!   `timeout` (the deadline passed before a whole response).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long a whole response may be followed by silence before the
/// connection counts as kept alive (`end=open`) rather than closed.
const END_WAIT: Duration = Duration::from_secs(1);

/// What one round saw.
#[derive(Debug, Default)]
struct Round {
    sent: Option<Duration>,
    write: &'static str,
    status: Option<u16>,
    close: bool,
    length: Option<usize>,
    received: usize,
    whole: Option<Duration>,
    end: &'static str,
}

impl Round {
    fn line(&self, round: u64, body_bytes: usize) -> String {
        let ms = |d: Option<Duration>| {
            d.map_or_else(
                || "-".to_owned(),
                |d| format!("{:.3}", d.as_secs_f64() * 1e3),
            )
        };
        format!(
            "SENDFIRST round={round} body={body_bytes} status={} close={} whole={} \
             whole_ms={} sent_ms={} write={} received={} end={}",
            self.status
                .map_or_else(|| "-".to_owned(), |s| s.to_string()),
            u8::from(self.close),
            u8::from(self.whole.is_some()),
            ms(self.whole),
            ms(self.sent),
            self.write,
            self.received,
            self.end,
        )
    }
}

/// The name a failed step goes by in the report.
fn kind(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timeout",
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => "reset",
        io::ErrorKind::BrokenPipe => "pipe",
        io::ErrorKind::UnexpectedEof => "eof",
        _ => "error",
    }
}

/// The time left before `deadline`, never zero (a zero timeout is refused).
fn left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

/// One request: connect, send everything, then read.
fn round(addr: SocketAddr, body_bytes: usize, timeout: Duration) -> Round {
    let mut out = Round {
        write: "ok",
        end: "timeout",
        ..Round::default()
    };
    let start = Instant::now();
    let deadline = start + timeout;
    let mut conn = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(conn) => conn,
        Err(e) => {
            out.write = "connect";
            out.end = kind(&e);
            return out;
        }
    };
    let _ = conn.set_nodelay(true);

    // The whole request before any read, as http.client's `request()` does.
    // A write the server ended (reset, broken pipe) does not end the round:
    // the response may already wait in the receive buffer, and urllib3 (under
    // `requests`) reads it too. A write that timed out does: the server
    // stopped reading, and a real client gives up there with an error.
    let head = format!(
        "POST /big HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {body_bytes}\r\n\r\n"
    );
    let chunk = vec![b'x'; 64 * 1024];
    let mut write = || -> io::Result<()> {
        conn.set_write_timeout(Some(left(deadline)))?;
        conn.write_all(head.as_bytes())?;
        let mut sent = 0;
        while sent < body_bytes {
            let n = chunk.len().min(body_bytes - sent);
            conn.set_write_timeout(Some(left(deadline)))?;
            conn.write_all(&chunk[..n])?;
            sent += n;
        }
        Ok(())
    };
    match write() {
        Ok(()) => out.sent = Some(start.elapsed()),
        Err(e) => {
            out.write = kind(&e);
            if out.write == "timeout" {
                return out;
            }
        }
    }

    match read_response(&mut conn, deadline, &mut out) {
        Ok(()) => {
            out.whole = Some(start.elapsed());
            out.end = wait_end(&mut conn, deadline);
        }
        Err(e) => out.end = kind(&e),
    }
    out
}

/// Reads the head and then the body by its `Content-Length` (to EOF without
/// one); `Ok` once the body came whole.
fn read_response(conn: &mut TcpStream, deadline: Instant, out: &mut Round) -> io::Result<()> {
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 256 * 1024];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
        }
        conn.set_read_timeout(Some(left(deadline)))?;
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    out.status = head
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok());
    out.close = head
        .lines()
        .any(|l| l.starts_with("connection:") && l.contains("close"));
    out.length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok());
    out.received = buf.len() - head_end;
    loop {
        if out.length.is_some_and(|length| out.received >= length) {
            return Ok(());
        }
        conn.set_read_timeout(Some(left(deadline)))?;
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            // Without a length, the body ends with the connection.
            return match out.length {
                None => Ok(()),
                Some(_) => Err(io::ErrorKind::UnexpectedEof.into()),
            };
        }
        out.received += n;
    }
}

/// After a whole response: how the connection ends (`eof`, `reset`), or
/// `open` if it is still open `END_WAIT` later.
fn wait_end(conn: &mut TcpStream, deadline: Instant) -> &'static str {
    let mut chunk = [0u8; 4096];
    let until = (Instant::now() + END_WAIT).min(deadline);
    loop {
        if conn.set_read_timeout(Some(left(until))).is_err() {
            return "error";
        }
        match conn.read(&mut chunk) {
            Ok(0) => return "eof",
            // Bytes after the response: not ours to judge; wait for the end.
            Ok(_) => {}
            Err(e) => {
                return match kind(&e) {
                    "timeout" => "open",
                    other => other,
                }
            }
        }
    }
}

pub fn sendfirst_main(args: &[&str]) -> ExitCode {
    let usage = || {
        eprintln!("load: usage: load sendfirst <addr> <body_bytes> <rounds> [timeout_s]");
        ExitCode::from(2)
    };
    let (addr, body_bytes, rounds, timeout) = match args {
        [addr, body, rounds] => (addr, body, rounds, "20"),
        [addr, body, rounds, timeout] => (addr, body, rounds, *timeout),
        _ => return usage(),
    };
    let (Ok(addr), Ok(body_bytes), Ok(rounds), Ok(timeout)) = (
        addr.parse::<SocketAddr>(),
        body_bytes.parse::<usize>(),
        rounds.parse::<u64>(),
        timeout.parse::<f64>(),
    ) else {
        return usage();
    };
    if !(timeout > 0.0 && timeout < 3600.0) {
        return usage();
    }
    let timeout = Duration::from_secs_f64(timeout);
    for n in 1..=rounds {
        println!("{}", round(addr, body_bytes, timeout).line(n, body_bytes));
    }
    ExitCode::SUCCESS
}
