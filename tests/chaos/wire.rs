//! Requests of the chaos fleet, written as exact bytes from shared static
//! buffers (so a fleet of clients sending MiB bodies costs no memory).

use std::borrow::Cow;
use std::io;
use std::sync::LazyLock;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;

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
