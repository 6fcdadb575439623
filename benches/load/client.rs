//! A blocking HTTP/1.1 client that makes the workloads of `run.sh` one
//! request at a time, for counts per request (allocations, instructions,
//! system calls), not for throughput: wrk does that.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// Every blocking step must finish within this.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// The workloads of `run.sh`, as the wrk scripts under `benches/load/` send them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// `GET /`, keep-alive.
    GetKa,
    /// `GET /` with `Connection: close`.
    GetClose,
    /// Keep-alive `POST /ignore` with a 64 KiB body.
    Ignore64,
    /// Keep-alive `POST /ignore` with a 256 KiB body.
    Ignore256,
    /// `POST /reject` with a 64 KiB body and `Connection: close`.
    Rej64,
    /// Keep-alive `POST /read` with a 16 KiB body the handler reads whole.
    Read16,
}

impl Workload {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "get_ka" => Self::GetKa,
            "get_close" => Self::GetClose,
            "ignore64" => Self::Ignore64,
            "ignore256" => Self::Ignore256,
            "rej64" => Self::Rej64,
            "read16" => Self::Read16,
            _ => {
                eprintln!(
                    "load: unknown workload {name:?} (get_ka, get_close, ignore64, ignore256, rej64, read16)"
                );
                return None;
            }
        })
    }

    /// Whether every request asks for `Connection: close`.
    pub fn closes(self) -> bool {
        matches!(self, Self::GetClose | Self::Rej64)
    }

    /// The request's bytes, head and body.
    pub fn request(self) -> Vec<u8> {
        let (method, path, body, close) = match self {
            Self::GetKa => ("GET", "/", 0, false),
            Self::GetClose => ("GET", "/", 0, true),
            Self::Ignore64 => ("POST", "/ignore", 64 * 1024, false),
            Self::Ignore256 => ("POST", "/ignore", 256 * 1024, false),
            Self::Rej64 => ("POST", "/reject", 64 * 1024, true),
            Self::Read16 => ("POST", "/read", 16 * 1024, false),
        };
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        if body > 0 {
            head.push_str(&format!("Content-Length: {body}\r\n"));
        }
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.resize(bytes.len() + body, b'x');
        bytes
    }
}

/// What the client saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    /// Whole responses read.
    pub responses: u64,
    /// Connections opened.
    pub connections: u64,
    /// Writes that failed (the server had closed or reset).
    pub write_errors: u64,
    /// Reads that failed with a reset.
    pub resets: u64,
    /// Connections that ended (EOF or reset) before a whole response.
    pub lost: u64,
}

/// Makes `n` requests of `workload` to `addr`, one at a time: a closing
/// workload opens a connection per request and reads it to EOF; a keep-alive
/// one reuses its connection until the server closes it.
pub struct Client {
    addr: SocketAddr,
    workload: Workload,
    request: Vec<u8>,
    conn: Option<TcpStream>,
    buf: Vec<u8>,
    pub tally: Tally,
}

impl Client {
    pub fn new(addr: SocketAddr, workload: Workload) -> Self {
        Self {
            addr,
            workload,
            request: workload.request(),
            conn: None,
            buf: Vec::with_capacity(64 * 1024),
            tally: Tally::default(),
        }
    }

    pub fn run(&mut self, n: u64) {
        for _ in 0..n {
            // A request the server lost is tried once more on a new
            // connection (a keep-alive connection it had closed meanwhile).
            if !self.one() {
                self.one();
            }
        }
    }

    /// One request; whether a whole response came back.
    fn one(&mut self) -> bool {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => match self.connect() {
                Ok(conn) => conn,
                Err(e) => {
                    eprintln!("load: connect {}: {e}", self.addr);
                    self.tally.lost += 1;
                    return false;
                }
            },
        };
        // Errors of the write do not end the request: the response may have
        // been sent before the server stopped reading (413).
        if conn.write_all(&self.request).is_err() {
            self.tally.write_errors += 1;
        }
        match self.read_response(&mut conn) {
            Ok(Some(keep)) => {
                self.tally.responses += 1;
                if keep && !self.workload.closes() {
                    self.conn = Some(conn);
                } else {
                    self.read_to_end(&mut conn);
                }
                true
            }
            Ok(None) => {
                self.tally.lost += 1;
                false
            }
            Err(e) => {
                if e.kind() == io::ErrorKind::ConnectionReset {
                    self.tally.resets += 1;
                }
                self.tally.lost += 1;
                false
            }
        }
    }

    fn connect(&mut self) -> io::Result<TcpStream> {
        let conn = TcpStream::connect_timeout(&self.addr, STEP_TIMEOUT)?;
        conn.set_nodelay(true)?;
        conn.set_read_timeout(Some(STEP_TIMEOUT))?;
        conn.set_write_timeout(Some(STEP_TIMEOUT))?;
        self.tally.connections += 1;
        Ok(conn)
    }

    /// Reads one response; `Ok(Some(keep_alive))`, or `Ok(None)` on EOF first.
    fn read_response(&mut self, conn: &mut TcpStream) -> io::Result<Option<bool>> {
        self.buf.clear();
        let mut chunk = [0u8; 16 * 1024];
        let head_end = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at + 4;
            }
            let n = conn.read(&mut chunk)?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let close = head.starts_with("http/1.0")
            || head
                .lines()
                .any(|line| line.starts_with("connection:") && line.contains("close"));
        while self.buf.len() < head_end + length {
            let n = conn.read(&mut chunk)?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        Ok(Some(!close))
    }

    /// Waits for the server's FIN (or reset), then closes, as a browser or
    /// wrk would after a `Connection: close` response.
    fn read_to_end(&mut self, conn: &mut TcpStream) {
        let mut chunk = [0u8; 4096];
        loop {
            match conn.read(&mut chunk) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => {
                    if e.kind() == io::ErrorKind::ConnectionReset {
                        self.tally.resets += 1;
                    }
                    return;
                }
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub fn client_main(workload: &str, addr: &str, n: &str) -> ExitCode {
    let (Some(workload), Ok(addr), Ok(n)) = (
        Workload::from_name(workload),
        addr.parse::<SocketAddr>(),
        n.parse::<u64>(),
    ) else {
        eprintln!("load: usage: load client <workload> <addr> <n>");
        return ExitCode::from(2);
    };
    let mut client = Client::new(addr, workload);
    client.run(n);
    println!("{:?}", client.tally);
    ExitCode::SUCCESS
}
