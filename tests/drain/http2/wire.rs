//! The frames the server wrote on a connection: its IO is wrapped in [`Sniffed`],
//! which parses what hyper writes (above TLS) and publishes it as a [`Wire`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use super::STEP;
use crate::common::step_within;

/// HTTP/2 frame types and the error code we look for.
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const END_STREAM: u8 = 0x1;
pub const NO_ERROR: u32 = 0x0;

/// A frame the server wrote: its type, flags and stream, and for
/// `RST_STREAM` the error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    kind: u8,
    flags: u8,
    stream: u32,
    code: Option<u32>,
}

/// What the server wrote on one connection, and whether it has ended.
#[derive(Clone, Debug, Default)]
pub struct Wire {
    frames: Vec<Seen>,
    pub ended: bool,
}

impl Wire {
    /// `(stream, error code)` of every `RST_STREAM` the server sent.
    pub fn resets(&self) -> Vec<(u32, u32)> {
        self.frames
            .iter()
            .filter(|f| f.kind == RST_STREAM)
            .map(|f| (f.stream, f.code.unwrap_or(u32::MAX)))
            .collect()
    }

    /// Whether the server ended `stream`'s response (`END_STREAM` on a
    /// `HEADERS` or `DATA` frame) before any reset of it.
    pub fn response_ended_before_reset(&self, stream: u32) -> bool {
        let of_stream = || self.frames.iter().filter(|f| f.stream == stream);
        let end = of_stream()
            .position(|f| (f.kind == DATA || f.kind == HEADERS) && f.flags & END_STREAM != 0);
        let reset = of_stream().position(|f| f.kind == RST_STREAM);
        match (end, reset) {
            (Some(end), Some(reset)) => end < reset,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// Incremental parser of the frames in a server's output (which, unlike the
/// client's, starts with a frame: there is no preface).
#[derive(Default)]
struct FrameParser {
    head: Vec<u8>,
    payload_left: usize,
    /// The first 4 payload bytes of a `RST_STREAM`.
    code: Vec<u8>,
    current: Option<Seen>,
}

impl FrameParser {
    fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Seen>) {
        while !bytes.is_empty() {
            if let Some(mut seen) = self.current {
                let n = bytes.len().min(self.payload_left);
                if seen.kind == RST_STREAM {
                    let want = 4usize.saturating_sub(self.code.len()).min(n);
                    self.code.extend_from_slice(&bytes[..want]);
                }
                bytes = &bytes[n..];
                self.payload_left -= n;
                if self.payload_left == 0 {
                    if seen.kind == RST_STREAM && self.code.len() == 4 {
                        seen.code = Some(u32::from_be_bytes(self.code[..4].try_into().unwrap()));
                    }
                    out.push(seen);
                    self.current = None;
                    self.code.clear();
                }
                continue;
            }
            let want = (9 - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..want]);
            bytes = &bytes[want..];
            if self.head.len() < 9 {
                continue;
            }
            let h = std::mem::take(&mut self.head);
            let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
            let seen = Seen {
                kind: h[3],
                flags: h[4],
                stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
                code: None,
            };
            if len == 0 {
                out.push(seen);
            } else {
                self.payload_left = len;
                self.current = Some(seen);
            }
        }
    }
}

/// The server's side of a connection, under hyper (above TLS): what hyper
/// writes is parsed into frames and published.
pub struct Sniffed<T> {
    inner: T,
    parser: FrameParser,
    wire: watch::Sender<Wire>,
}

impl<T> Sniffed<T> {
    /// `inner`, whose output is published on `wire`.
    pub fn new(inner: T, wire: watch::Sender<Wire>) -> Self {
        Self {
            inner,
            parser: FrameParser::default(),
            wire,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Sniffed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Sniffed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            let mut frames = Vec::new();
            this.parser.feed(&buf[..n], &mut frames);
            if !frames.is_empty() {
                this.wire.send_modify(|wire| wire.frames.extend(frames));
            }
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One server connection, watched from the test.
pub struct Conn(pub watch::Receiver<Wire>);

impl Conn {
    /// What the server wrote, once the connection has ended.
    pub async fn ended(&mut self) -> Wire {
        step_within(
            STEP,
            "server connection ends",
            self.0.wait_for(|wire| wire.ended),
        )
        .await
        .expect("wire")
        .clone()
    }

    /// What the server wrote, once `what` holds.
    pub async fn until(&mut self, what: &str, pred: impl FnMut(&Wire) -> bool) -> Wire {
        step_within(STEP, what, self.0.wait_for(pred))
            .await
            .expect("wire")
            .clone()
    }
}
