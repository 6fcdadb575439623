//! What a response must be, and the shared HTTP/1 reader checking each response
//! against it byte by byte as it streams in (a fleet of clients reading MiB bodies
//! holds none of them).

use std::time::Duration;

use tokio::net::tcp::OwnedReadHalf;

use crate::http1::{self, End, Failure, Head};
use crate::wire::PATTERN;

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

/// The shared reader, with responses checked against an [`Expect`].
pub struct Reader(http1::Reader<OwnedReadHalf>);

impl Reader {
    pub fn new(rd: OwnedReadHalf) -> Self {
        Self(http1::Reader::new(rd))
    }

    /// Pauses `pace` before every read from now on.
    pub fn pace(&mut self, pace: Duration) {
        self.0.pace(pace);
    }

    /// Reads one response head (a `1xx` included).
    pub async fn head(&mut self) -> Result<Head, Failure> {
        self.0.head().await
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
        let mut checked = 0;
        self.0
            .body(head.framing()?, |bytes| {
                if let Some(expected) = expected {
                    if expected.get(checked..checked + bytes.len()) != Some(bytes) {
                        return Err(Failure::Mismatch(format!(
                            "body differs at or after byte {checked} (expected {} bytes)",
                            expected.len()
                        )));
                    }
                }
                checked += bytes.len();
                Ok(())
            })
            .await?;
        match expected {
            Some(expected) if checked != expected.len() => Err(Failure::Mismatch(format!(
                "body of {checked} bytes instead of {}",
                expected.len()
            ))),
            _ => Ok(()),
        }
    }

    /// How the connection ends, once the expected responses were read.
    pub async fn end(&mut self) -> End {
        self.0.end().await
    }
}
