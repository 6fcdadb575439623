//! Clients that end a connection their own way: FIN after a whole request or after a
//! prefix of one, silence in the middle of a body, RST at any byte, or no FIN at all;
//! what the server sends must still be whole responses and a clean EOF.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::{timeout, Instant};

use super::{ensure, expected, Outcome, Session, STEP, SURELY_DRAINED};
use crate::expect::{Expect, Reader};
use crate::http1::{End, Failure};
use crate::servers::{DRAIN_TIMEOUT, LIMIT};
use crate::wire::{prefix, total_len, write_segments, BodySpec, Req, MAX_BODY};

impl Session<'_> {
    /// A whole request, then FIN: the response comes whole or not at all,
    /// and the connection ends cleanly.
    pub(super) async fn half_close(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let (req, expect) = self.request(SURELY_DRAINED, 64 * 1024);
        self.sent(&req);
        write_segments(&mut wr, &req.segments())
            .await
            .map_err(|e| e.to_string())?;
        wr.shutdown().await.map_err(|e| e.to_string())?;
        match reader.response(&expect).await {
            Ok(_) => {
                self.answered(&req);
                let end = reader.end().await;
                ensure(end == End::Eof, || {
                    format!("half-close {}: {end:?}", req.line())
                })
            }
            Err(Failure::Eof { got: 0 }) => Ok(()),
            Err(failure) => Err(format!(
                "half-close {} ({:?}): {failure}",
                req.line(),
                req.body
            )),
        }
    }

    /// A prefix of a request, then FIN: whatever comes back is one whole
    /// response or nothing, then a clean EOF.
    pub(super) async fn prefix_then_fin(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let (req, expect) = self.request(SURELY_DRAINED, 64 * 1024);
        let segments = req.segments();
        let total = total_len(&segments);
        let cut = self.rng.usize(0, total.saturating_sub(1));
        if cut > 0 {
            self.sent(&req);
        }
        write_segments(&mut wr, &prefix(&segments, cut))
            .await
            .map_err(|e| e.to_string())?;
        wr.shutdown().await.map_err(|e| e.to_string())?;
        let context = || {
            format!(
                "prefix {} ({:?}, {cut} of {total} bytes)",
                req.line(),
                req.body
            )
        };
        let head = match reader.head().await {
            Ok(head) => head,
            Err(Failure::Eof { got: 0 }) => return Ok(()),
            Err(failure) => return Err(format!("{}: {failure}", context())),
        };
        // 400: hyper's own answer to a broken head, or `consume` failing on
        // the cut body; either must still arrive whole.
        let expected = (head.status == expect.status).then(|| expect.bytes());
        ensure(expected.is_some() || head.status == 400, || {
            format!("{}: status {}", context(), head.status)
        })?;
        reader
            .body(&head, expected)
            .await
            .map_err(|failure| format!("{}: {failure}", context()))?;
        if expected.is_some() {
            self.answered(&req);
        }
        let end = reader.end().await;
        ensure(end == End::Eof, || format!("{}: {end:?}", context()))
    }

    /// Part of a body, then silence: the response comes at once, the
    /// connection ends cleanly once the drain deadline passes.
    pub(super) async fn stall_mid_body(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let len = self.rng.usize(2, SURELY_DRAINED);
        let kind = self.rng.weighted(&[(3, "ignore"), (1, "reject")]);
        let path = self.path(kind, 0);
        let req = Req {
            method: "POST",
            path,
            version: "HTTP/1.1",
            headers: Vec::new(),
            body: BodySpec::Length(len),
        };
        let line = req.line();
        let expect = Expect::text(if kind == "reject" { 413 } else { 200 }, line.clone());
        let segments = req.segments();
        let cut = req.head().len() + self.rng.usize(0, len - 1);
        self.sent(&req);
        write_segments(&mut wr, &prefix(&segments, cut))
            .await
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let head = reader
            .response(&expect)
            .await
            .map_err(|f| format!("stalled {line}: {f}"))?;
        self.answered(&req);
        ensure(!head.has_close(), || {
            format!("stalled {line}: closed before the drain gave up")
        })?;
        let end = reader.end().await;
        ensure(end == End::Eof, || format!("stalled {line}: {end:?}"))?;
        ensure(
            started.elapsed() + Duration::from_millis(100) >= DRAIN_TIMEOUT,
            || format!("stalled {line}: closed after {:?}", started.elapsed()),
        )
    }

    /// A prefix of a request (maybe all of it, maybe a response read), then RST.
    pub(super) async fn abort_rst(&mut self) -> Outcome {
        let stream = self.connect().await?;
        stream.set_zero_linger().map_err(|e| e.to_string())?;
        let (rd, mut wr) = stream.into_split();
        let mut reader = Reader::new(rd);
        let (req, expect) = self.request(MAX_BODY, MAX_BODY);
        let segments = req.segments();
        let cut = self.rng.usize(0, total_len(&segments));
        self.sent(&req);
        let _ = write_segments(&mut wr, &prefix(&segments, cut)).await;
        if self.rng.chance(30) {
            let _ = timeout(self.rng.millis(0, 100), reader.response(&expect)).await;
        }
        // SO_LINGER 0: dropping both halves resets the connection.
        drop(wr);
        drop(reader);
        Ok(())
    }

    /// A request the server answers and closes; the client reads it (or
    /// not) but never sends FIN until it goes away.
    pub(super) async fn never_fin(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let (mut req, _) = self.request(MAX_BODY, MAX_BODY);
        match self.rng.usize(0, 2) {
            0 => req.headers.push("Connection: close".into()),
            1 => {
                req.version = "HTTP/1.0";
                if let BodySpec::Chunked { len, .. } = req.body {
                    req.body = BodySpec::Length(len);
                }
            }
            _ => {
                // Declared above the limit: the layer refuses and says close.
                req.body = BodySpec::Length(self.rng.usize(LIMIT as usize + 1, MAX_BODY));
                req.method = "POST";
                if req.path.starts_with("/consume/") || req.path.starts_with("/partial/") {
                    req.path = self.path("ignore", 0);
                }
            }
        }
        let expect = expected(&req);
        let reads = self.rng.chance(70);
        let hold = self.rng.millis(50, 1200);
        self.sent(&req);
        if reads {
            let segments = req.segments();
            let exchange = async {
                tokio::join!(write_segments(&mut wr, &segments), reader.response(&expect))
            };
            let (written, read) = timeout(STEP, exchange).await.map_err(|_| {
                format!("never-FIN {} ({:?}): exchange stuck", req.line(), req.body)
            })?;
            read.map_err(|f| {
                format!(
                    "never-FIN {} ({:?}): {f}, write {written:?}",
                    req.line(),
                    req.body
                )
            })?;
            self.answered(&req);
            let end = timeout(STEP, reader.end()).await.map_err(|_| {
                format!(
                    "never-FIN {} ({:?}): no EOF, write {written:?}",
                    req.line(),
                    req.body
                )
            })?;
            ensure(end == End::Eof, || {
                format!("never-FIN {}: {end:?}", req.line())
            })?;
        } else {
            // Neither side reads while the other writes once buffers fill: the
            // peer gives up after its hold time, as such a peer would.
            let _ = timeout(hold, write_segments(&mut wr, &req.segments())).await;
        }
        // Holding the socket open without FIN is the behaviour under test.
        tokio::time::sleep(hold).await;
        Ok(())
    }
}
