//! Exchanges the server gives up on: a head hyper rejects with `400`, and a service
//! that fails (the drop path); the client still sees a whole answer, or none, then a
//! clean EOF.

use tokio::io::AsyncWriteExt;

use super::{ensure, Outcome, Session};
use crate::expect::Reader;
use crate::http1::{End, Failure};
use crate::wire::{write_segments, BodySpec, Req, SMUGGLE};

impl Session<'_> {
    /// A head hyper cannot parse, with more bytes behind it still arriving:
    /// hyper answers 400 and drops the connection (the drop path), and the
    /// 400 must still arrive whole, followed by a clean EOF.
    pub(super) async fn bad_head(&mut self) -> Outcome {
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let path = self.path("ignore", 0);
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: chaos\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
        );
        let trailing: &'static [u8] = &SMUGGLE[..self.rng.usize(0, 256 * 1024)];
        let send = async {
            wr.write_all(head.as_bytes()).await?;
            // No FIN: the server has to linger for this peer's end.
            wr.write_all(trailing).await
        };
        let read = async {
            let head = reader.head().await?;
            reader.body(&head, None).await?;
            Ok::<_, Failure>(head)
        };
        let (_sent, read) = tokio::join!(send, read);
        let head = read.map_err(|f| format!("bad head ({} bytes behind): {f}", trailing.len()))?;
        ensure(head.status == 400, || {
            format!("bad head: status {}", head.status)
        })?;
        let end = reader.end().await;
        ensure(end == End::Eof, || {
            format!("bad head ({} bytes behind): {end:?}", trailing.len())
        })
    }

    /// A request whose service fails (hyper set-up only; axum handlers cannot
    /// fail) while its body is still arriving: hyper drops the connection
    /// without a response, and the client sees a clean EOF, not a reset.
    pub(super) async fn service_error(&mut self) -> Outcome {
        if self.fleet.name != "hyper" {
            return self.bad_head().await;
        }
        let (rd, mut wr) = self.connect().await?.into_split();
        let mut reader = Reader::new(rd);
        let len = self.rng.usize(0, 256 * 1024);
        let req = Req {
            method: "POST",
            path: self.path("fail", 0),
            version: "HTTP/1.1",
            headers: Vec::new(),
            body: BodySpec::Length(len),
        };
        self.sent(&req);
        let segments = req.segments();
        let (_sent, read) = tokio::join!(write_segments(&mut wr, &segments), reader.head());
        match read {
            Err(Failure::Eof { got: 0 }) => Ok(()),
            Err(failure) => Err(format!("failing service ({len} bytes): {failure}")),
            Ok(head) => Err(format!(
                "failing service: a response, status {}",
                head.status
            )),
        }
    }
}
