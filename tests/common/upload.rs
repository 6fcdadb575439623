//! A client that uploads a large body while it reads the response, for the scenarios
//! where a server answers early and closes.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::step;

/// What a client uploading a large body saw.
pub struct Upload {
    /// The raw response up to EOF, or the read error.
    pub read: io::Result<Vec<u8>>,
    /// Whether the whole body and the client's FIN went out.
    pub sent: io::Result<()>,
}

impl Upload {
    /// Whether the client saw the connection reset, on reading or on sending.
    pub fn reset_seen(&self) -> bool {
        let reset = |e: &io::Error| {
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            )
        };
        self.read.as_ref().err().is_some_and(reset) || self.sent.as_ref().err().is_some_and(reset)
    }

    /// The response, which must have ended in a clean EOF after the whole body was sent
    /// (the server kept reading it).
    pub fn clean(self) -> Vec<u8> {
        self.sent.expect("whole body sent: the server kept reading");
        self.read.expect("clean EOF")
    }
}

/// Writes `head` and `body_len` bytes of body, then FIN, on `stream`, while reading the
/// response to the end.
pub async fn upload_over<S>(stream: S, head: Vec<u8>, body_len: usize) -> Upload
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        wr.write_all(&head).await?;
        let chunk = vec![b'u'; 64 * 1024];
        let mut left = body_len;
        while left > 0 {
            let n = left.min(chunk.len());
            wr.write_all(&chunk[..n]).await?;
            left -= n;
        }
        wr.shutdown().await
    });
    let mut raw = Vec::new();
    let read = step("read to EOF", rd.read_to_end(&mut raw))
        .await
        .map(|_| raw);
    let sent = step("send the upload", writer).await.unwrap();
    Upload { read, sent }
}
