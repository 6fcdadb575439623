//! A raw HTTP/1 client over a `TcpStream`: exact bytes out, responses read by the shared
//! [`http1::Reader`](super::http1::Reader); every failure to read is a panic that says
//! what was being read and what was left unread.

use std::io;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::http1::{End, Failure, Head, Reader, WholeResponse};
use super::server::BIG;
use super::step;

/// A parsed HTTP/1 response: its head (`status`, `version`, `headers`, `header()`,
/// `has_close()` through `Deref`) and its body.
#[derive(Debug)]
pub struct Parsed {
    pub head: Head,
    pub body: Vec<u8>,
}

impl Deref for Parsed {
    type Target = Head;

    fn deref(&self) -> &Head {
        &self.head
    }
}

impl Parsed {
    pub fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }
}

/// How the server ended the connection, as the client sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// `read` returned 0: FIN after all data.
    Eof,
    /// `read` failed with `ConnectionReset`.
    Reset,
}

/// A raw HTTP/1 client: exact bytes out, hand-parsed responses in.
pub struct Client {
    reader: Reader<OwnedReadHalf>,
    wr: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        let tcp = step("connect", TcpStream::connect(addr)).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let (rd, wr) = tcp.into_split();
        Self {
            reader: Reader::new(rd),
            wr: Arc::new(tokio::sync::Mutex::new(wr)),
        }
    }

    /// Writes all of `bytes` (panics on error or timeout).
    pub async fn send(&self, bytes: impl AsRef<[u8]>) {
        let bytes = bytes.as_ref();
        step("send", async {
            let mut wr = self.wr.lock().await;
            wr.write_all(bytes).await?;
            wr.flush().await
        })
        .await
        .expect("send");
    }

    /// Writes `bytes` in a background task, so the client can read while the
    /// server is still receiving; the task yields the write result.
    pub fn send_in_background(
        &self,
        bytes: impl Into<Vec<u8>>,
    ) -> tokio::task::JoinHandle<io::Result<()>> {
        let wr = self.wr.clone();
        let bytes = bytes.into();
        tokio::spawn(async move {
            let mut wr = wr.lock().await;
            wr.write_all(&bytes).await?;
            wr.flush().await
        })
    }

    /// Panics with what was being read, why it failed and what is left unread.
    fn failed(&self, what: &str, failure: Failure) -> ! {
        panic!(
            "reading {what}: {failure}; unread: {:?}",
            String::from_utf8_lossy(self.reader.buffered())
        )
    }

    /// Reads exactly `n` raw bytes.
    pub async fn read_exact_raw(&mut self, n: usize) -> Vec<u8> {
        step("read raw bytes", async {
            match self.reader.take(n).await {
                Ok(bytes) => bytes,
                Err(failure) => self.failed("raw bytes", failure),
            }
        })
        .await
    }

    /// Reads one response (1xx included), for a request that was not `HEAD`.
    pub async fn response(&mut self) -> Parsed {
        step("read response", async {
            let whole = self.whole_response().await;
            Parsed {
                head: whole.head,
                body: whole.body,
            }
        })
        .await
    }

    /// Reads one response like [`response`](Self::response), and returns its
    /// head as it was on the wire too (status line and header lines, up to
    /// and including the blank line).
    pub async fn response_with_raw_head(&mut self) -> (String, Parsed) {
        step("read response", async {
            let whole = self.whole_response().await;
            let parsed = Parsed {
                head: whole.head,
                body: whole.body,
            };
            (whole.raw_head, parsed)
        })
        .await
    }

    /// Reads only a response head (for a `2xx` answer to `CONNECT`, which
    /// has no body framing).
    pub async fn response_head(&mut self) -> Parsed {
        step("read response head", async {
            Parsed {
                head: self.head().await,
                body: Vec::new(),
            }
        })
        .await
    }

    async fn head(&mut self) -> Head {
        match self.reader.head().await {
            Ok(head) => head,
            Err(failure) => self.failed("response head", failure),
        }
    }

    async fn whole_response(&mut self) -> WholeResponse {
        match self.reader.whole_response().await {
            Ok(whole) => whole,
            Err(failure) => self.failed("response", failure),
        }
    }

    /// Expects the server to end the connection with nothing more sent:
    /// returns whether it was a clean EOF or a reset.
    pub async fn closed(&mut self) -> Closed {
        assert!(
            self.reader.buffered().is_empty(),
            "unexpected bytes before close: {:?}",
            String::from_utf8_lossy(self.reader.buffered())
        );
        step("wait for close", async {
            match self.reader.end().await {
                End::Eof => Closed::Eof,
                End::Reset => Closed::Reset,
                End::Data(bytes) => {
                    panic!("expected the connection to end, got bytes: {bytes:?}")
                }
                End::Error(kind) => panic!("expected EOF or reset, got {kind}"),
            }
        })
        .await
    }

    /// Asserts nothing arrives (and the connection stays open) for `dur`.
    pub async fn assert_quiet_for(&mut self, dur: Duration) {
        if let Ok(res) = tokio::time::timeout(dur, self.reader.fill()).await {
            panic!(
                "expected silence, got {res:?} (buffer {:?})",
                String::from_utf8_lossy(self.reader.buffered())
            );
        }
    }
}

/// Sends `head` + 64 KiB of body at once, waits 200 ms (pacing: the server
/// answers and would close meanwhile), then reads the `/big` response:
/// expects all of it and a clean EOF.
pub async fn big_response_then_clean_eof(client: &mut Client, head: &str) -> Parsed {
    let mut req = head.as_bytes().to_vec();
    req.extend_from_slice(&[b'x'; 64 * 1024]);
    client.send(req).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let res = client.response().await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(res.body.len(), BIG);
    assert!(res.body.iter().all(|&b| b == b'r'));
    assert_eq!(client.closed().await, Closed::Eof);
    res
}

/// A `Content-Length` request head.
pub fn post_head(path: &str, content_length: usize) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {content_length}\r\n\r\n")
}

/// A complete `Content-Length` request.
pub fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut req = post_head(path, body.len()).into_bytes();
    req.extend_from_slice(body);
    req
}

/// A chunked request head.
pub fn chunked_head(path: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n")
}

/// `body` encoded as chunks of at most `chunk` bytes, with the last chunk.
pub fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in body.chunks(chunk) {
        out.extend(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend(part);
        out.extend(b"\r\n");
    }
    out.extend(b"0\r\n\r\n");
    out
}

pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

/// Asserts a plain `200 ignored` keep-alive response.
pub fn assert_ok(res: &Parsed, body: &str) {
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(res.body_str(), body, "{res:?}");
}
