//! Raw HTTP/1 client pieces for the chaos fleet: requests written as exact
//! bytes (from shared static buffers, so a fleet of clients sending MiB bodies
//! costs no memory), responses parsed and checked byte by byte as they stream
//! in, and a small seeded random generator.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::sync::LazyLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Request body bytes: requests, over and over. A server that ever parses a
/// leftover of a body as a request records a `/smuggled` path, which no client
/// sends.
pub static SMUGGLE: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let unit = b"GET /smuggled HTTP/1.1\r\nHost: s\r\n\r\nPOST /smuggled HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    unit.iter()
        .copied()
        .cycle()
        .take(MAX_BODY + 64 * 1024)
        .collect()
});

/// Response body of `/big/{n}`: byte `i` is `PATTERN[i]`.
pub static PATTERN: LazyLock<Vec<u8>> =
    LazyLock::new(|| (0..MAX_BODY).map(|i| b'a' + (i % 23) as u8).collect());

/// Largest body a client sends or a server answers (endless senders repeat).
pub const MAX_BODY: usize = 1024 * 1024;

// --------------------------------------------------------------------- rng --

/// splitmix64: tiny, seedable, good enough to pick behaviours.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn usize(&mut self, lo: usize, hi: usize) -> usize {
        self.range(lo as u64, hi as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }

    /// Picks an item by weight.
    pub fn weighted<T: Copy>(&mut self, items: &[(u64, T)]) -> T {
        let total: u64 = items.iter().map(|(weight, _)| weight).sum();
        let mut roll = self.next_u64() % total;
        for &(weight, item) in items {
            if roll < weight {
                return item;
            }
            roll -= weight;
        }
        items[items.len() - 1].1
    }
}

// ----------------------------------------------------------------- request --

#[derive(Clone, Copy, Debug)]
pub enum BodySpec {
    None,
    Length(usize),
    Chunked { len: usize, chunk: usize },
}

impl BodySpec {
    pub fn len(self) -> usize {
        match self {
            Self::None => 0,
            Self::Length(len) | Self::Chunked { len, .. } => len,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Req {
    pub method: &'static str,
    pub path: String,
    pub version: &'static str,
    pub headers: Vec<String>,
    pub body: BodySpec,
}

impl Req {
    /// What the server's handler records for it.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    pub fn head(&self) -> Vec<u8> {
        let mut head = format!(
            "{} {} {}\r\nHost: chaos\r\n",
            self.method, self.path, self.version
        );
        match self.body {
            BodySpec::None => {}
            BodySpec::Length(len) => head.push_str(&format!("Content-Length: {len}\r\n")),
            BodySpec::Chunked { .. } => head.push_str("Transfer-Encoding: chunked\r\n"),
        }
        for header in &self.headers {
            head.push_str(header);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        head.into_bytes()
    }

    /// The body as it goes on the wire (chunk-encoded if chunked).
    pub fn body_segments(&self) -> Vec<Cow<'static, [u8]>> {
        let body: &'static [u8] = &SMUGGLE;
        match self.body {
            BodySpec::None => Vec::new(),
            BodySpec::Length(len) => vec![Cow::Borrowed(&body[..len])],
            BodySpec::Chunked { len, chunk } => {
                let mut segments = Vec::new();
                let mut offset = 0;
                while offset < len {
                    let size = chunk.min(len - offset);
                    segments.push(Cow::Owned(format!("{size:x}\r\n").into_bytes()));
                    segments.push(Cow::Borrowed(&body[offset..offset + size]));
                    segments.push(Cow::Borrowed(&b"\r\n"[..]));
                    offset += size;
                }
                segments.push(Cow::Borrowed(&b"0\r\n\r\n"[..]));
                segments
            }
        }
    }

    /// Head and body, as written.
    pub fn segments(&self) -> Vec<Cow<'static, [u8]>> {
        let mut segments = vec![Cow::Owned(self.head())];
        segments.extend(self.body_segments());
        segments
    }
}

pub fn total_len(segments: &[Cow<'static, [u8]>]) -> usize {
    segments.iter().map(|segment| segment.len()).sum()
}

/// The first `n` bytes of `segments`.
pub fn prefix(segments: &[Cow<'static, [u8]>], mut n: usize) -> Vec<Cow<'static, [u8]>> {
    let mut out = Vec::new();
    for segment in segments {
        if n == 0 {
            break;
        }
        let take = n.min(segment.len());
        out.push(match segment {
            Cow::Borrowed(bytes) => Cow::Borrowed(&bytes[..take]),
            Cow::Owned(bytes) => Cow::Owned(bytes[..take].to_vec()),
        });
        n -= take;
    }
    out
}

/// Writes `segments`, gathering small ones so that each write carries up to 64 KiB.
pub async fn write_segments(
    wr: &mut OwnedWriteHalf,
    segments: &[Cow<'static, [u8]>],
) -> io::Result<()> {
    const STAGE: usize = 64 * 1024;
    let mut stage = Vec::with_capacity(STAGE);
    for segment in segments {
        if stage.len() + segment.len() > STAGE && !stage.is_empty() {
            wr.write_all(&stage).await?;
            stage.clear();
        }
        if segment.len() >= STAGE {
            wr.write_all(segment).await?;
        } else {
            stage.extend_from_slice(segment);
        }
    }
    if !stage.is_empty() {
        wr.write_all(&stage).await?;
    }
    wr.flush().await
}

/// Writes `segments` in pieces of `1..=max_piece` bytes, pausing up to
/// `max_pause` between them, like a slow uplink.
pub async fn drip(
    wr: &mut OwnedWriteHalf,
    segments: &[Cow<'static, [u8]>],
    pieces: &[(usize, Duration)],
) -> io::Result<()> {
    let bytes: Vec<u8> = segments.concat();
    let mut offset = 0;
    for &(size, pause) in pieces {
        if offset >= bytes.len() {
            break;
        }
        let end = (offset + size).min(bytes.len());
        wr.write_all(&bytes[offset..end]).await?;
        offset = end;
        // Part of the behaviour (a slow peer), not synchronisation.
        tokio::time::sleep(pause).await;
    }
    wr.write_all(&bytes[offset..]).await
}

// ---------------------------------------------------------------- response --

/// What a response must be.
#[derive(Clone, Debug)]
pub struct Expect {
    pub status: u16,
    pub body: ExpectBody,
}

#[derive(Clone, Debug)]
pub enum ExpectBody {
    Text(String),
    /// `PATTERN[..n]`.
    Pattern(usize),
}

impl Expect {
    pub fn text(status: u16, body: String) -> Self {
        Self {
            status,
            body: ExpectBody::Text(body),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match &self.body {
            ExpectBody::Text(text) => text.as_bytes(),
            ExpectBody::Pattern(len) => &PATTERN[..*len],
        }
    }
}

#[derive(Debug)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the server announced that it closes after this response.
    pub fn close(&self) -> bool {
        self.headers.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("connection")
                && value
                    .split(',')
                    .any(|token| token.trim().eq_ignore_ascii_case("close"))
        })
    }
}

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
    Io(io::Error),
    Malformed(String),
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

/// How a connection ended after the last response.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    Eof,
    Reset,
    /// More bytes arrived (the first of them).
    Data(String),
    Error(io::ErrorKind),
}

pub struct Reader {
    rd: OwnedReadHalf,
    buf: Vec<u8>,
    /// Bytes of the current response received so far.
    got: usize,
    /// Pause before each read: a slow reader.
    pace: Duration,
}

pub const READ_CHUNK: usize = 16 * 1024;
const MAX_HEAD: usize = 16 * 1024;

impl Reader {
    pub fn new(rd: OwnedReadHalf) -> Self {
        Self {
            rd,
            buf: Vec::with_capacity(READ_CHUNK),
            got: 0,
            pace: Duration::ZERO,
        }
    }

    /// Pauses `pace` before every read from now on.
    pub fn pace(&mut self, pace: Duration) {
        self.pace = pace;
    }

    /// Reads more bytes; `Ok(0)` at EOF.
    async fn fill(&mut self) -> Result<usize, Failure> {
        if !self.pace.is_zero() {
            // The behaviour of a slow reader, not synchronisation.
            tokio::time::sleep(self.pace).await;
        }
        let start = self.buf.len();
        self.buf.resize(start + READ_CHUNK, 0);
        let res = self.rd.read(&mut self.buf[start..]).await;
        let n = *res.as_ref().unwrap_or(&0);
        self.buf.truncate(start + n);
        match res {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                Err(Failure::Reset { got: self.got })
            }
            Err(e) => Err(Failure::Io(e)),
        }
    }

    async fn fill_or_fail(&mut self) -> Result<(), Failure> {
        match self.fill().await? {
            0 => Err(Failure::Eof { got: self.got }),
            _ => Ok(()),
        }
    }

    /// Reads one response head (a `1xx` included).
    pub async fn head(&mut self) -> Result<Head, Failure> {
        self.got = self.buf.len();
        let end = loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                break pos;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(Failure::Malformed("head too long".into()));
            }
            let before = self.buf.len();
            self.fill_or_fail().await?;
            self.got += self.buf.len() - before;
        };
        let raw: Vec<u8> = self.buf.drain(..end + 4).collect();
        self.got = raw.len();
        let text = String::from_utf8(raw).map_err(|_| Failure::Malformed("not UTF-8".into()))?;
        let mut lines = text.trim_end().split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|status| status.parse().ok())
            .ok_or_else(|| Failure::Malformed(format!("status line {status_line:?}")))?;
        let headers = lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap_or((line, ""));
                (name.trim().to_owned(), value.trim().to_owned())
            })
            .collect();
        Ok(Head { status, headers })
    }

    /// Reads one final response and checks it against `expect`.
    pub async fn response(&mut self, expect: &Expect) -> Result<Head, Failure> {
        let head = self.head().await?;
        if head.status != expect.status {
            return Err(Failure::Mismatch(format!(
                "status {} instead of {}",
                head.status, expect.status
            )));
        }
        self.body(&head, Some(expect.bytes())).await?;
        Ok(head)
    }

    /// Reads the body of `head` whole and checks it equals `expected` (if given).
    pub async fn body(&mut self, head: &Head, expected: Option<&[u8]>) -> Result<(), Failure> {
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|value| value.eq_ignore_ascii_case("chunked"));
        let mut checked = 0;
        if chunked {
            loop {
                let line_end = loop {
                    if let Some(pos) = find(&self.buf, b"\r\n") {
                        break pos;
                    }
                    self.fill_counted().await?;
                };
                let line: Vec<u8> = self.buf.drain(..line_end + 2).collect();
                self.got += line.len();
                let size_hex = String::from_utf8_lossy(&line);
                let size_hex = size_hex.trim_end().split(';').next().unwrap_or_default();
                let size = usize::from_str_radix(size_hex, 16)
                    .map_err(|_| Failure::Malformed(format!("chunk size {size_hex:?}")))?;
                if size == 0 {
                    while !self.buf.starts_with(b"\r\n") {
                        if self.buf.len() >= 2 {
                            return Err(Failure::Malformed("trailers".into()));
                        }
                        self.fill_counted().await?;
                    }
                    self.buf.drain(..2);
                    break;
                }
                self.check_exact(size, expected, &mut checked).await?;
                while self.buf.len() < 2 {
                    self.fill_counted().await?;
                }
                if !self.buf.starts_with(b"\r\n") {
                    return Err(Failure::Malformed("chunk not followed by CRLF".into()));
                }
                self.buf.drain(..2);
            }
        } else if let Some(length) = head.header("content-length") {
            let length: usize = length
                .parse()
                .map_err(|_| Failure::Malformed(format!("content-length {length:?}")))?;
            self.check_exact(length, expected, &mut checked).await?;
        } else {
            // Close-delimited (HTTP/1.0).
            loop {
                let n = self.buf.len();
                self.compare(expected, &mut checked, n)?;
                if self.fill().await? == 0 {
                    break;
                }
            }
        }
        match expected {
            Some(expected) if checked != expected.len() => Err(Failure::Mismatch(format!(
                "body of {checked} bytes instead of {}",
                expected.len()
            ))),
            _ => Ok(()),
        }
    }

    async fn fill_counted(&mut self) -> Result<(), Failure> {
        self.fill_or_fail().await
    }

    /// Consumes exactly `n` body bytes, comparing them with `expected`.
    async fn check_exact(
        &mut self,
        mut n: usize,
        expected: Option<&[u8]>,
        checked: &mut usize,
    ) -> Result<(), Failure> {
        while n > 0 {
            if self.buf.is_empty() {
                self.fill_counted().await?;
            }
            let take = n.min(self.buf.len());
            self.compare(expected, checked, take)?;
            n -= take;
        }
        Ok(())
    }

    /// Compares and consumes the first `take` buffered bytes.
    fn compare(
        &mut self,
        expected: Option<&[u8]>,
        checked: &mut usize,
        take: usize,
    ) -> Result<(), Failure> {
        if let Some(expected) = expected {
            let got = &self.buf[..take];
            if expected.get(*checked..*checked + take) != Some(got) {
                return Err(Failure::Mismatch(format!(
                    "body differs at or after byte {} (expected {} bytes)",
                    *checked,
                    expected.len()
                )));
            }
        }
        *checked += take;
        self.got += take;
        self.buf.drain(..take);
        Ok(())
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

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Resident memory of this process, from `/proc/self/statm` (Linux).
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // 4 KiB pages: x86_64 and aarch64 Linux defaults.
    Some(resident_pages * 4096)
}
