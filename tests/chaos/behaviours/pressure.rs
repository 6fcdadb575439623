//! Clients that push the linger's bounds: a body that never ends (fast into the byte
//! cap, trickling into the total timeout) and a reader slower than the idle timeout
//! behind a small receive window.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::{ensure, expected, Outcome, Session, SURELY_DRAINED};
use crate::expect::{Expect, Reader};
use crate::http1::{End, READ_CHUNK};
use crate::wire::{write_segments, BodySpec, Req, MAX_BODY, SMUGGLE};

impl Session<'_> {
    /// A body that never ends, sent as fast as possible for a while, with the
    /// response read alongside: it must arrive whole before any reset.
    pub(super) async fn endless_sender(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let kind = self.rng.weighted(&[(3, "ignore"), (1, "reject")]);
        let path = self.path(kind, 0);
        let chunked = self.rng.chance(50);
        let req = Req {
            method: "POST",
            path,
            version: "HTTP/1.1",
            headers: if chunked {
                vec!["Transfer-Encoding: chunked".into()]
            } else {
                vec![format!("Content-Length: {}", 1u64 << 40)]
            },
            body: BodySpec::None,
        };
        let line = req.line();
        let expect = Expect::text(if kind == "reject" { 413 } else { 200 }, line.clone());
        // Fast: into the linger's byte cap. Slow (a trickle that is never
        // idle for long): into its total timeout.
        let slow = self.rng.chance(30);
        let (budget, block_len, pause) = if slow {
            (self.rng.millis(2200, 2600), 512, self.rng.millis(50, 250))
        } else {
            (self.rng.millis(100, 800), 64 * 1024, Duration::ZERO)
        };
        let max_bytes = 32 * 1024 * 1024;
        self.sent(&req);
        let send = async {
            wr.write_all(&req.head()).await?;
            let started = Instant::now();
            let block: &'static [u8] = &SMUGGLE[..block_len];
            let chunk_head = format!("{:x}\r\n", block.len());
            let mut sent = 0;
            while sent < max_bytes && started.elapsed() < budget {
                if chunked {
                    wr.write_all(chunk_head.as_bytes()).await?;
                    wr.write_all(block).await?;
                    wr.write_all(b"\r\n").await?;
                } else {
                    wr.write_all(block).await?;
                }
                sent += block.len();
                if slow {
                    // The trickle is the behaviour, not synchronisation.
                    tokio::time::sleep(pause).await;
                }
            }
            Ok::<_, std::io::Error>(())
        };
        let (_sent, read) = tokio::join!(send, reader.response(&expect));
        read.map_err(|f| format!("endless {line} (chunked {chunked}, slow {slow}): {f}"))?;
        self.answered(&req);
        Ok(())
    }

    /// A large response read slowly through a small receive window, so that
    /// the server is still sending when it would close.
    pub(super) async fn slow_reader(&mut self) -> Outcome {
        let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket
            .set_recv_buffer_size(16 * 1024)
            .map_err(|e| e.to_string())?;
        let stream = socket
            .connect(self.fleet.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (rd, mut wr) = stream.into_split();
        let mut reader = Reader::new(rd);
        let len = self.rng.usize(256 * 1024, MAX_BODY);
        let close = self.rng.chance(50);
        let body = self.body(SURELY_DRAINED);
        let req = Req {
            method: "POST",
            path: self.path("big", len),
            version: "HTTP/1.1",
            headers: if close {
                vec!["Connection: close".into()]
            } else {
                Vec::new()
            },
            body,
        };
        let expect = expected(&req);
        // About a second for the whole response, longer than the idle timeout.
        reader.pace(Duration::from_millis(1000 * READ_CHUNK as u64 / len as u64));
        self.sent(&req);
        let segments = req.segments();
        let (written, read) =
            tokio::join!(write_segments(&mut wr, &segments), reader.response(&expect));
        let head = read.map_err(|f| format!("slow reader {} ({:?}): {f}", req.line(), req.body))?;
        self.answered(&req);
        ensure(written.is_ok() && head.has_close() == close, || {
            format!(
                "slow reader {}: {written:?}, close {}",
                req.line(),
                head.has_close()
            )
        })?;
        reader.pace(Duration::ZERO);
        if close {
            let end = reader.end().await;
            return ensure(end == End::Eof, || {
                format!("slow reader {}: {end:?}", req.line())
            });
        }
        let (next, expect) = self.request(0, 64 * 1024);
        self.sent(&next);
        let segments = next.segments();
        let (written, read) =
            tokio::join!(write_segments(&mut wr, &segments), reader.response(&expect));
        read.map_err(|f| format!("after slow reader {}: {f}", req.line()))?;
        self.answered(&next);
        ensure(written.is_ok(), || {
            format!("after slow reader: {written:?}")
        })
    }
}
