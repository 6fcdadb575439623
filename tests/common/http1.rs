//! The one reader of raw HTTP/1 responses, shared by the tests (`tests/common`, the
//! chaos fleet) and the benches (`benches/common` loads this file with `#[path]`).
//!
//! It parses what a server really sent, byte by byte: the head (status line and header
//! lines, bounded by [`MAX_HEAD`]), then the body as its framing says (`Content-Length`,
//! chunked without trailers, or up to the close), handing the body bytes to the caller
//! as they arrive so that a check can run on a stream of any length without holding it.
//! Every way a read can go wrong is a [`Failure`], never a panic: the tests panic with
//! context, the chaos fleet records the failure, the benches count it.
//!
//! The head is parsed in place ([`RawHead`]) so that the benches' client allocates
//! nothing per response; [`Head`] is the owned copy the tests keep.

// Each test binary and bench uses part of it.
#![allow(dead_code)]

use std::fmt;
use std::io;
use std::time::Duration;

use bytes::BufMut;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes asked for by each read, unless the reader is told otherwise.
pub const READ_CHUNK: usize = 16 * 1024;
/// A response head longer than this is malformed (hyper's are a few hundred bytes).
pub const MAX_HEAD: usize = 16 * 1024;

/// The first position of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Length of the message head at the start of `buf`, blank line included, once it is
/// all there.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    find(buf, b"\r\n\r\n").map(|at| at + 4)
}

// ---------------------------------------------------------------- failures --

/// Why a response could not be read whole.
#[derive(Debug)]
pub enum Failure {
    /// The connection ended cleanly; `got` bytes of the response had arrived.
    Eof {
        got: usize,
    },
    /// The connection was reset; `got` bytes of the response had arrived.
    Reset {
        got: usize,
    },
    /// Another read error (`TimedOut` for a read past the reader's timeout).
    Io(io::Error),
    Malformed(String),
    /// The response is well formed but not the expected one (the caller's check).
    Mismatch(String),
}

impl Failure {
    /// Nothing of a response had arrived when the connection ended.
    pub fn nothing_arrived(&self) -> bool {
        matches!(self, Self::Eof { got: 0 } | Self::Reset { got: 0 })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Eof { got } => write!(f, "EOF after {got} bytes of the response"),
            Self::Reset { got } => write!(f, "reset after {got} bytes of the response"),
            Self::Io(e) => write!(f, "read error: {e}"),
            Self::Malformed(what) => write!(f, "malformed response: {what}"),
            Self::Mismatch(what) => write!(f, "wrong response: {what}"),
        }
    }
}

/// For callers that count `io::Error` kinds (the benches' client).
impl From<Failure> for io::Error {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Eof { .. } => io::ErrorKind::UnexpectedEof.into(),
            Failure::Reset { .. } => io::ErrorKind::ConnectionReset.into(),
            Failure::Io(e) => e,
            Failure::Malformed(what) | Failure::Mismatch(what) => {
                io::Error::new(io::ErrorKind::InvalidData, what)
            }
        }
    }
}

/// How a connection ended after the last response.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    Eof,
    Reset,
    /// More bytes arrived (the first of them).
    Data(String),
    Error(io::ErrorKind),
}

// -------------------------------------------------------------------- head --

/// How the body of a response is delimited (RFC 9112 §6.3, for a request that was not
/// `HEAD`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `1xx`, `204`, `304`: no body.
    Empty,
    Length(usize),
    Chunked,
    /// Up to the end of the connection (HTTP/1.0 without a length).
    UntilClose,
}

/// A response head parsed in place: the status line and the header lines of `raw`.
pub struct RawHead<'a> {
    status_line: &'a str,
    /// The header lines, CRLF-separated, without the blank line.
    fields: &'a str,
    version: &'a str,
    status: u16,
}

impl<'a> RawHead<'a> {
    /// Parses a whole head (as [`head_end`] measures it): a status line with a numeric
    /// status, then header lines that each have a colon.
    pub fn parse(raw: &'a [u8]) -> Result<Self, Failure> {
        let text = std::str::from_utf8(raw)
            .map_err(|_| Failure::Malformed("head not UTF-8".into()))?
            .trim_end();
        let (status_line, fields) = text.split_once("\r\n").unwrap_or((text, ""));
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let status = parts
            .next()
            .and_then(|status| status.parse().ok())
            .ok_or_else(|| Failure::Malformed(format!("status line {status_line:?}")))?;
        let head = Self {
            status_line,
            fields,
            version,
            status,
        };
        if let Some(line) = head.lines().find(|line| !line.contains(':')) {
            return Err(Failure::Malformed(format!("header line {line:?}")));
        }
        Ok(head)
    }

    pub fn status_line(&self) -> &'a str {
        self.status_line
    }

    pub fn version(&self) -> &'a str {
        self.version
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    fn lines(&self) -> impl Iterator<Item = &'a str> + Clone + 'a {
        let fields = self.fields;
        fields.split("\r\n").filter(|line| !line.is_empty())
    }

    /// Every header as (name, value), trimmed, in order.
    pub fn fields(&self) -> impl Iterator<Item = (&'a str, &'a str)> + Clone + 'a {
        self.lines().map(|line| {
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            (name.trim(), value.trim())
        })
    }

    pub fn framing(&self) -> Result<Framing, Failure> {
        framing(self.status, self.fields())
    }

    /// Whether a `Connection` header lists `close`.
    pub fn has_close(&self) -> bool {
        lists_close(self.fields())
    }

    pub fn to_head(&self) -> Head {
        Head {
            version: self.version.to_owned(),
            status: self.status,
            headers: self
                .fields()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
        }
    }
}

/// A response head of one's own.
#[derive(Clone, Debug)]
pub struct Head {
    pub version: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    fn fields(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// All values of header `name` (case-insensitive), in order.
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.fields()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
            .collect()
    }

    /// Whether a `Connection` header lists `close`.
    pub fn has_close(&self) -> bool {
        lists_close(self.fields())
    }

    pub fn framing(&self) -> Result<Framing, Failure> {
        framing(self.status, self.fields())
    }
}

fn framing<'h>(
    status: u16,
    mut fields: impl Iterator<Item = (&'h str, &'h str)> + Clone,
) -> Result<Framing, Failure> {
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing::Empty);
    }
    let chunked = fields.clone().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        return Ok(Framing::Chunked);
    }
    match fields.find(|(name, _)| name.eq_ignore_ascii_case("content-length")) {
        Some((_, length)) => length
            .parse()
            .map(Framing::Length)
            .map_err(|_| Failure::Malformed(format!("content-length {length:?}"))),
        None => Ok(Framing::UntilClose),
    }
}

fn lists_close<'h>(mut fields: impl Iterator<Item = (&'h str, &'h str)>) -> bool {
    fields.any(|(name, value)| {
        name.eq_ignore_ascii_case("connection")
            && value
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("close"))
    })
}

// ------------------------------------------------------------------ reader --

/// A response read whole.
#[derive(Debug)]
pub struct WholeResponse {
    /// The head as it came: status line and header lines, blank line included.
    pub raw_head: String,
    pub head: Head,
    pub body: Vec<u8>,
}

/// Reads responses from `io`, keeping what arrived beyond the current one.
pub struct Reader<R> {
    io: R,
    buf: Vec<u8>,
    /// Bytes of the current response received so far: from the start of its head (what
    /// was buffered then included) until its body is read whole.
    got: usize,
    read_size: usize,
    /// Pause before each read: a slow reader.
    pace: Duration,
    /// Bound on each read.
    read_timeout: Option<Duration>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(io: R) -> Self {
        Self {
            io,
            buf: Vec::with_capacity(READ_CHUNK),
            got: 0,
            read_size: READ_CHUNK,
            pace: Duration::ZERO,
            read_timeout: None,
        }
    }

    /// Reads at most `size` bytes at a time.
    pub fn with_read_size(mut self, size: usize) -> Self {
        self.read_size = size;
        self
    }

    /// Each read that takes longer fails with `ErrorKind::TimedOut`.
    pub fn with_read_timeout(mut self, limit: Duration) -> Self {
        self.read_timeout = Some(limit);
        self
    }

    /// Pauses `pace` before every read from now on.
    pub fn pace(&mut self, pace: Duration) {
        self.pace = pace;
    }

    /// The stream, to write requests on it.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.io
    }

    /// What was read and not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Bytes of the current response received so far (0 between responses unless more
    /// arrived behind the last one).
    pub fn got(&self) -> usize {
        self.got
    }

    /// Reads more bytes into the buffer; `Ok(0)` at EOF.
    pub async fn fill(&mut self) -> Result<usize, Failure> {
        if !self.pace.is_zero() {
            // The behaviour of a slow reader, not synchronisation.
            tokio::time::sleep(self.pace).await;
        }
        self.buf.reserve(self.read_size);
        let mut spare = (&mut self.buf).limit(self.read_size);
        let read = self.io.read_buf(&mut spare);
        let read = match self.read_timeout {
            Some(limit) => tokio::time::timeout(limit, read)
                .await
                .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into())),
            None => read.await,
        };
        match read {
            Ok(n) => {
                self.got += n;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                Err(Failure::Reset { got: self.got })
            }
            Err(e) => Err(Failure::Io(e)),
        }
    }

    /// Reads more bytes; the end of the stream is a failure.
    async fn fill_some(&mut self) -> Result<(), Failure> {
        match self.fill().await? {
            0 => Err(Failure::Eof { got: self.got }),
            _ => Ok(()),
        }
    }

    /// Drops the first `n` buffered bytes.
    pub fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
    }

    /// Waits until a whole response head is buffered and returns its length, blank line
    /// included, leaving it in the buffer. Starts a new response.
    pub async fn head_len(&mut self) -> Result<usize, Failure> {
        self.got = self.buf.len();
        loop {
            if let Some(end) = head_end(&self.buf) {
                return Ok(end);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(Failure::Malformed("head too long".into()));
            }
            self.fill_some().await?;
        }
    }

    /// Reads one response head (a `1xx` included).
    pub async fn head(&mut self) -> Result<Head, Failure> {
        let len = self.head_len().await?;
        let head = RawHead::parse(&self.buf[..len])?.to_head();
        self.consume(len);
        Ok(head)
    }

    /// Reads one response whole (for a request that was not `HEAD`).
    pub async fn whole_response(&mut self) -> Result<WholeResponse, Failure> {
        let len = self.head_len().await?;
        let raw_head = String::from_utf8_lossy(&self.buf[..len]).into_owned();
        let head = self.head().await?;
        let mut body = Vec::new();
        self.body(head.framing()?, |bytes| {
            body.extend_from_slice(bytes);
            Ok(())
        })
        .await?;
        Ok(WholeResponse {
            raw_head,
            head,
            body,
        })
    }

    /// Reads a body delimited by `framing`, handing its bytes to `sink` as they arrive;
    /// an error from `sink` stops the read.
    pub async fn body(
        &mut self,
        framing: Framing,
        mut sink: impl FnMut(&[u8]) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        match framing {
            Framing::Empty => {}
            Framing::Length(length) => self.exact(length, &mut sink).await?,
            Framing::Chunked => self.chunks(&mut sink).await?,
            Framing::UntilClose => loop {
                if !self.buf.is_empty() {
                    sink(&self.buf)?;
                    self.buf.clear();
                }
                if self.fill().await? == 0 {
                    break;
                }
            },
        }
        // The response is over: what is left belongs to the next one.
        self.got = self.buf.len();
        Ok(())
    }

    /// Hands exactly `n` body bytes to `sink`.
    async fn exact(
        &mut self,
        mut n: usize,
        sink: &mut impl FnMut(&[u8]) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        while n > 0 {
            if self.buf.is_empty() {
                self.fill_some().await?;
            }
            let take = n.min(self.buf.len());
            sink(&self.buf[..take])?;
            self.consume(take);
            n -= take;
        }
        Ok(())
    }

    /// A chunked body up to its last chunk; trailers are malformed here (none expected).
    async fn chunks(
        &mut self,
        sink: &mut impl FnMut(&[u8]) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        loop {
            let line_end = loop {
                if let Some(at) = find(&self.buf, b"\r\n") {
                    break at;
                }
                self.fill_some().await?;
            };
            let size = std::str::from_utf8(&self.buf[..line_end])
                .ok()
                .and_then(|line| line.split(';').next())
                .and_then(|hex| usize::from_str_radix(hex.trim(), 16).ok())
                .ok_or_else(|| {
                    let line = String::from_utf8_lossy(&self.buf[..line_end]);
                    Failure::Malformed(format!("chunk size {line:?}"))
                })?;
            self.consume(line_end + 2);
            if size > 0 {
                self.exact(size, sink).await?;
            }
            while self.buf.len() < 2 {
                self.fill_some().await?;
            }
            if !self.buf.starts_with(b"\r\n") {
                return Err(Failure::Malformed(if size == 0 {
                    "trailers".into()
                } else {
                    "chunk not followed by CRLF".into()
                }));
            }
            self.consume(2);
            if size == 0 {
                return Ok(());
            }
        }
    }

    /// Reads exactly `n` raw bytes.
    pub async fn take(&mut self, n: usize) -> Result<Vec<u8>, Failure> {
        while self.buf.len() < n {
            self.fill_some().await?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// How the connection ends, once the expected responses were read.
    pub async fn end(&mut self) -> End {
        if self.buf.is_empty() {
            match self.fill().await {
                Ok(0) => return End::Eof,
                Ok(_) => {}
                Err(Failure::Reset { .. }) => return End::Reset,
                Err(Failure::Io(e)) => return End::Error(e.kind()),
                Err(_) => return End::Error(io::ErrorKind::Other),
            }
        }
        let preview = &self.buf[..self.buf.len().min(120)];
        End::Data(String::from_utf8_lossy(preview).into_owned())
    }
}
