//! Well-behaved keep-alive clients: requests one after the other, pipelined, or
//! dripped in tiny pieces; every response arrives whole and in order, and a body the
//! layer can drain keeps the connection.

use super::{ensure, expected, surely_drained, Outcome, Session};
use crate::expect::Reader;
use crate::http1::End;
use crate::servers::LIMIT;
use crate::wire::{drip, write_segments, BodySpec, Req, MAX_BODY};

impl Session<'_> {
    /// Keep-alive: requests one after the other, each written while its
    /// response is read, as a real client does.
    pub(super) async fn sequential(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let count = self.rng.usize(1, 6);
        let mut previous: Option<Req> = None;
        for i in 0..count {
            let (req, expect) = self.request(MAX_BODY, MAX_BODY);
            self.sent(&req);
            let segments = req.segments();
            let (written, read) =
                tokio::join!(write_segments(&mut wr, &segments), reader.response(&expect));
            let head = match read {
                Ok(head) => head,
                // The previous body could not be drained: hyper closes after
                // its response without saying so (default mode). Fine, once.
                Err(failure)
                    if failure.nothing_arrived()
                        && previous.as_ref().is_some_and(|p| !surely_drained(p)) =>
                {
                    return Ok(());
                }
                Err(failure) => {
                    return Err(format!(
                        "request {i} {} ({:?}) after {:?}: {failure}",
                        req.line(),
                        req.body,
                        previous.as_ref().map(|p| (p.line(), p.body))
                    ))
                }
            };
            self.answered(&req);
            if surely_drained(&req) {
                ensure(written.is_ok(), || {
                    format!("{}: write failed: {written:?}", req.line())
                })?;
            }
            if head.has_close() {
                ensure(!surely_drained(&req), || {
                    format!(
                        "{} ({:?}): Connection: close on a drainable body",
                        req.line(),
                        req.body
                    )
                })?;
                let end = reader.end().await;
                return ensure(end == End::Eof, || {
                    format!("{}: after Connection: close: {end:?}", req.line())
                });
            }
            previous = Some(req);
        }
        Ok(())
    }

    /// Several requests in one write; responses must come back in order. One
    /// of them may carry a body above the limit (the stopper): declared, the
    /// connection ends after its response and nothing behind it may be
    /// served; chunked, hyper may still get past the rest of it on its own,
    /// so the requests behind it are answered whole or not at all.
    pub(super) async fn pipelined(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let count = self.rng.usize(2, 5);
        let close_last = self.rng.chance(50);
        let stopper = self.rng.chance(30).then(|| self.rng.usize(0, count - 2));
        let declared_stopper = self.rng.chance(50);
        let mut plan = Vec::new();
        for i in 0..count {
            let (mut req, mut expect) = self.request(16 * 1024, 64 * 1024);
            if stopper == Some(i) {
                let len = self.rng.usize(LIMIT as usize + 1, MAX_BODY);
                req.method = "POST";
                req.path = self.path("ignore", 0);
                req.body = if declared_stopper {
                    BodySpec::Length(len)
                } else {
                    BodySpec::Chunked {
                        len,
                        chunk: 16 * 1024,
                    }
                };
                expect = expected(&req);
            }
            if close_last && i == count - 1 {
                req.headers.push("Connection: close".into());
            }
            plan.push((req, expect));
        }
        let mut segments = Vec::new();
        for (i, (req, _)) in plan.iter().enumerate() {
            self.sent(req);
            if declared_stopper && stopper.is_some_and(|stop| i > stop) {
                self.ledger.not_served.lock().unwrap().insert(req.line());
            }
            segments.extend(req.segments());
        }
        let must_answer = match stopper {
            Some(stop) => stop + 1,
            None => count,
        };
        let may_answer = if declared_stopper { must_answer } else { count };
        let read_all = async {
            let mut heads = Vec::new();
            for (i, (req, expect)) in plan[..may_answer].iter().enumerate() {
                match reader.response(expect).await {
                    Ok(head) => heads.push(head),
                    Err(failure) if i >= must_answer && failure.nothing_arrived() => break,
                    Err(failure) => {
                        return Err(format!(
                            "pipelined {} ({:?}): {failure}",
                            req.line(),
                            req.body
                        ))
                    }
                }
                self.answered(req);
            }
            Ok::<_, String>(heads)
        };
        let (written, heads) = tokio::join!(write_segments(&mut wr, &segments), read_all);
        let heads = heads?;
        if stopper.is_none() {
            ensure(written.is_ok(), || format!("pipelined write: {written:?}"))?;
        }
        let describe = || {
            let plan: Vec<_> = plan
                .iter()
                .map(|(req, _)| (req.line(), req.body, &req.headers))
                .collect();
            format!("pipelined {plan:?}, stopper {stopper:?}")
        };
        for (i, head) in heads.iter().enumerate() {
            let says_close = if stopper == Some(i) {
                // Chunked: the response leaves before the drain gives up.
                declared_stopper
            } else {
                close_last && i == count - 1
            };
            ensure(head.has_close() == says_close, || {
                format!("{}: response {i}: close {}", describe(), head.has_close())
            })?;
        }
        if close_last || heads.len() < count {
            let end = reader.end().await;
            ensure(end == End::Eof, || format!("{}: {end:?}", describe()))?;
        }
        Ok(())
    }

    /// A small request in tiny pieces; the connection must stay usable.
    pub(super) async fn slow_drip(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let (req, expect) = self.request(8 * 1024, 64 * 1024);
        let segments = req.segments();
        let pieces: Vec<_> = (0..self.rng.usize(2, 25))
            .map(|_| (self.rng.usize(1, 700), self.rng.millis(1, 20)))
            .collect();
        self.sent(&req);
        let (written, read) =
            tokio::join!(drip(&mut wr, &segments, &pieces), reader.response(&expect));
        read.map_err(|failure| format!("drip {} ({:?}): {failure}", req.line(), req.body))?;
        self.answered(&req);
        ensure(written.is_ok(), || format!("drip write: {written:?}"))?;
        let (next, expect) = self.request(0, 64 * 1024);
        self.sent(&next);
        let segments = next.segments();
        let (written, read) =
            tokio::join!(write_segments(&mut wr, &segments), reader.response(&expect));
        read.map_err(|failure| format!("after drip {}: {failure}", req.line()))?;
        self.answered(&next);
        ensure(written.is_ok(), || format!("write after drip: {written:?}"))
    }
}
