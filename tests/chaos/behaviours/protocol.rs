//! The protocol's corners: `Expect: 100-continue` (waiting for the invitation or
//! not), HTTP/1.0 with and without keep-alive, and `Upgrade` offers answered without
//! `101`.

use tokio::io::AsyncWriteExt;

use super::{ensure, expected, surely_drained, Outcome, Session, SURELY_DRAINED};
use crate::expect::Reader;
use crate::http1::{End, Failure};
use crate::wire::{write_segments, BodySpec, Req, MAX_BODY};

impl Session<'_> {
    /// `Expect: 100-continue`: the body goes only after `100 Continue`; an
    /// answer without reading gets `Connection: close` and a clean EOF; a
    /// body that was read keeps the connection.
    pub(super) async fn expect_continue(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let kind = self.rng.weighted(&[
            (2, "consume"),
            (2, "partial"),
            (2, "ignore"),
            (1, "reject"),
            (1, "big"),
        ]);
        let len = self.rng.usize(1, SURELY_DRAINED);
        let arg = match kind {
            "partial" => self.rng.usize(1, len),
            "big" => self.rng.usize(1, 64 * 1024),
            _ => 0,
        };
        let path = self.path(kind, arg);
        let body = if self.rng.chance(30) {
            BodySpec::Chunked {
                len,
                chunk: self.rng.usize(1024, 16 * 1024),
            }
        } else {
            BodySpec::Length(len)
        };
        let req = Req {
            method: "POST",
            path,
            version: "HTTP/1.1",
            headers: vec!["Expect: 100-continue".into()],
            body,
        };
        let line = req.line();
        let expect = expected(&req);
        let reads_body = matches!(kind, "consume" | "partial");
        self.sent(&req);
        if self.rng.chance(30) {
            // RFC 9110 §10.1.1 lets a client send the body without waiting:
            // a handler that never asks for it still gets `Connection: close`,
            // and the body must not turn the close into a reset.
            let segments = req.segments();
            let read = async {
                let mut head = reader.head().await?;
                if head.status == 100 {
                    head = reader.head().await?;
                }
                reader.body(&head, Some(expect.bytes())).await?;
                Ok::<_, Failure>(head)
            };
            let (written, read) = tokio::join!(write_segments(&mut wr, &segments), read);
            let head = read.map_err(|f| format!("eager {line} ({:?}): {f}", req.body))?;
            ensure(
                head.status == expect.status && head.has_close() != reads_body,
                || {
                    format!(
                        "eager {line}: status {}, close {}",
                        head.status,
                        head.has_close()
                    )
                },
            )?;
            self.answered(&req);
            if !reads_body {
                let end = reader.end().await;
                return ensure(end == End::Eof, || format!("eager {line}: {end:?}"));
            }
            return ensure(written.is_ok(), || format!("eager {line}: {written:?}"));
        }
        wr.write_all(&req.head()).await.map_err(|e| e.to_string())?;
        let head = reader.head().await.map_err(|f| format!("{line}: {f}"))?;
        if reads_body {
            ensure(head.status == 100, || {
                format!("{line}: {} instead of 100", head.status)
            })?;
            let body = req.body_segments();
            let (written, read) =
                tokio::join!(write_segments(&mut wr, &body), reader.response(&expect));
            let head = read.map_err(|f| format!("{line} ({:?}) after 100: {f}", req.body))?;
            self.answered(&req);
            ensure(written.is_ok() && !head.has_close(), || {
                format!("{line}: {written:?}, close {}", head.has_close())
            })?;
            // The body was invited and drained: the connection goes on.
            let (next, expect) = self.request(0, 64 * 1024);
            self.sent(&next);
            let segments = next.segments();
            let (written, read) =
                tokio::join!(write_segments(&mut wr, &segments), reader.response(&expect));
            read.map_err(|f| format!("after 100-continue {line} ({:?}): {f}", req.body))?;
            self.answered(&next);
            return ensure(written.is_ok(), || format!("{line}: {written:?}"));
        }
        ensure(head.status == expect.status, || {
            format!("{line}: status {} (the body was never read)", head.status)
        })?;
        reader
            .body(&head, Some(expect.bytes()))
            .await
            .map_err(|f| format!("{line}: {f}"))?;
        self.answered(&req);
        ensure(head.has_close(), || {
            format!("{line}: no Connection: close for an uninvited body")
        })?;
        let end = reader.end().await;
        ensure(end == End::Eof, || format!("{line}: after close: {end:?}"))
    }

    /// HTTP/1.0 without keep-alive: one response, then a clean EOF.
    pub(super) async fn http10(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let (mut req, _) = self.request(300 * 1024, MAX_BODY);
        // HTTP/1.0 has no chunked requests.
        if let BodySpec::Chunked { len, .. } = req.body {
            req.body = BodySpec::Length(len);
        }
        req.version = "HTTP/1.0";
        let keep_alive = surely_drained(&req) && self.rng.chance(40);
        if keep_alive {
            req.headers.push("Connection: keep-alive".into());
        }
        let expect = expected(&req);
        self.sent(&req);
        let segments = req.segments();
        let (_written, read) =
            tokio::join!(write_segments(&mut wr, &segments), reader.response(&expect));
        let head = read.map_err(|f| format!("HTTP/1.0 {} ({:?}): {f}", req.line(), req.body))?;
        self.answered(&req);
        if keep_alive {
            ensure(!head.has_close(), || {
                format!("HTTP/1.0 keep-alive {}: close", req.line())
            })?;
            let (mut next, _) = self.request(0, 64 * 1024);
            next.version = "HTTP/1.0";
            if let BodySpec::Chunked { len, .. } = next.body {
                next.body = BodySpec::Length(len);
            }
            let expect = expected(&next);
            self.sent(&next);
            let segments = next.segments();
            let (_written, read) =
                tokio::join!(write_segments(&mut wr, &segments), reader.response(&expect));
            read.map_err(|f| format!("HTTP/1.0 after keep-alive {}: {f}", req.line()))?;
            self.answered(&next);
        }
        let end = reader.end().await;
        ensure(end == End::Eof, || {
            format!("HTTP/1.0 {}: {end:?}", req.line())
        })
    }

    /// An `Upgrade` offer with a body, answered without switching: the
    /// response arrives whole, and the connection ends cleanly or goes on.
    pub(super) async fn upgrade_offer(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let (mut req, _) = self.request(16 * 1024, 64 * 1024);
        req.headers.push("Connection: upgrade".into());
        req.headers.push("Upgrade: websocket".into());
        let expect = expected(&req);
        self.sent(&req);
        let segments = req.segments();
        let (written, read) =
            tokio::join!(write_segments(&mut wr, &segments), reader.response(&expect));
        read.map_err(|f| format!("upgrade offer {} ({:?}): {f}", req.line(), req.body))?;
        self.answered(&req);
        ensure(written.is_ok(), || {
            format!("upgrade offer write: {written:?}")
        })?;
        let (next, expect) = self.request(0, 64 * 1024);
        self.sent(&next);
        let segments = next.segments();
        let (_, read) = tokio::join!(write_segments(&mut wr, &segments), reader.response(&expect));
        match read {
            Ok(_) => {
                self.answered(&next);
                Ok(())
            }
            // An answer other than 101 is an ordinary response: a drainable
            // body keeps the connection.
            Err(Failure::Eof { got: 0 }) if !surely_drained(&req) => Ok(()),
            Err(failure) => Err(format!(
                "after upgrade offer {} ({:?}): {failure}",
                req.line(),
                req.body
            )),
        }
    }
}
