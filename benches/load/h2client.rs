//! The HTTP/2 counterpart of `client.rs` for `load count`: hyper's HTTP/2
//! client (h2c, prior knowledge) on one connection, one request at a time,
//! driven on the calling thread, so that callgrind and the counting
//! allocator see the server's work apart from the client's.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::client::Tally;

/// Every request must be answered within this.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// The HTTP/2 workloads of `h2.sh` that `load count` makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum H2Workload {
    /// `GET /`.
    Get,
    /// `POST /read` with 16 KiB the handler reads whole.
    Read16,
    /// `POST /ignore` with 64 KiB the handler never reads.
    Ignore64,
}

impl H2Workload {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "h2_get" => Self::Get,
            "h2_read16" => Self::Read16,
            "h2_ignore64" => Self::Ignore64,
            _ => return None,
        })
    }

    fn request(self) -> Request<Full<Bytes>> {
        let (method, path, len) = match self {
            Self::Get => (Method::GET, "/", 0),
            Self::Read16 => (Method::POST, "/read", 16 * 1024),
            Self::Ignore64 => (Method::POST, "/ignore", 64 * 1024),
        };
        Request::builder()
            .method(method)
            .uri(format!("http://bench{path}"))
            .body(Full::new(Bytes::from(vec![b'x'; len])))
            .expect("request")
    }
}

/// One HTTP/2 connection to the server, reopened if it ends.
pub struct H2Client {
    addr: SocketAddr,
    workload: H2Workload,
    runtime: tokio::runtime::Runtime,
    sender: Option<http2::SendRequest<Full<Bytes>>>,
    pub tally: Tally,
}

impl H2Client {
    pub fn new(addr: SocketAddr, workload: H2Workload) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("client runtime");
        Self {
            addr,
            workload,
            runtime,
            sender: None,
            tally: Tally::default(),
        }
    }

    /// Makes `n` requests, one at a time, each answered and read whole
    /// before the next.
    pub fn run(&mut self, n: u64) {
        for _ in 0..n {
            let answered = self.runtime.block_on(async {
                if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
                    self.sender = connect(self.addr).await;
                    self.tally.connections += 1;
                }
                let sender = self.sender.as_mut()?;
                let exchange = async {
                    sender.ready().await.ok()?;
                    let response = sender.send_request(self.workload.request()).await.ok()?;
                    response.into_body().collect().await.ok()
                };
                tokio::time::timeout(STEP_TIMEOUT, exchange).await.ok()?
            });
            match answered {
                Some(_) => self.tally.responses += 1,
                None => {
                    self.tally.lost += 1;
                    self.sender = None;
                }
            }
        }
    }
}

async fn connect(addr: SocketAddr) -> Option<http2::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(connection);
    Some(sender)
}
