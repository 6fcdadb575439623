//! TLS over `LingeringIo<TcpStream>` (hyper issue #3944: a GET with a body the handler
//! ignores and a large response). The TLS layer sends close_notify, then calls our
//! `poll_shutdown`, which lingers on the raw TCP bytes.

mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use linger::LingerGroup;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Notify;
use tokio::time::timeout;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};

const STEP: Duration = Duration::from_secs(10);
const RESPONSE_LEN: usize = 4 * 1024 * 1024;
const BODY_LEN: usize = 1024 * 1024;
const HEAD_START: usize = 32 * 1024;

async fn step<F: Future>(what: &str, fut: F) -> F::Output {
    timeout(STEP, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn tls_configs() -> (TlsAcceptor, TlsConnector) {
    let (server, connector) = tls::self_signed();
    (TlsAcceptor::from(server), connector)
}

/// An HTTPS server whose handler waits for `ready`, ignores the body and answers 4 MiB.
async fn serve(
    acceptor: TlsAcceptor,
    group: Option<LingerGroup>,
    ready: Arc<Notify>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = Bytes::from(vec![b'r'; RESPONSE_LEN]);
    tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let svc = service_fn(move |_req| {
            let ready = ready.clone();
            let body = body.clone();
            async move {
                ready.notified().await;
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(body)))
            }
        });
        let http = hyper::server::conn::http1::Builder::new();
        match group {
            Some(group) => {
                let tls = acceptor.accept(group.wrap(stream)).await.unwrap();
                let _ = http.serve_connection(TokioIo::new(tls), svc).await;
            }
            None => {
                let tls = acceptor.accept(stream).await.unwrap();
                let _ = http.serve_connection(TokioIo::new(tls), svc).await;
            }
        }
    });
    addr
}

/// GET with a 1 MiB body and `Connection: close`; the client reads 200 ms later through a
/// small receive buffer. Returns what the read gave.
async fn get_with_body(group: Option<LingerGroup>) -> std::io::Result<Vec<u8>> {
    let (acceptor, connector) = tls_configs();
    let ready = Arc::new(Notify::new());
    let addr = serve(acceptor, group, ready.clone()).await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let tcp = step("connect", socket.connect(addr)).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = step("handshake", connector.connect(name, tcp))
        .await
        .unwrap();
    let (mut rd, mut wr) = tokio::io::split(tls);

    let mut first =
        format!("GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {BODY_LEN}\r\n\r\n")
            .into_bytes();
    first.extend(std::iter::repeat_n(b'a', HEAD_START));
    step("head and body start", wr.write_all(&first))
        .await
        .unwrap();
    step("flush", wr.flush()).await.unwrap();
    ready.notify_one();
    let writer = tokio::spawn(async move {
        wr.write_all(&vec![b'a'; BODY_LEN - HEAD_START]).await?;
        // close_notify and FIN: what ends the server's linger.
        wr.shutdown().await
    });
    // Part of the scenario: a client that reads a little later.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut got = Vec::new();
    let read = step("read response", rd.read_to_end(&mut got))
        .await
        .map(|_| got);
    if read.is_ok() {
        step("writer", writer)
            .await
            .unwrap()
            .expect("whole body sent");
    } else {
        writer.abort();
    }
    read
}

fn body_len(raw: &[u8]) -> usize {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(raw.starts_with(b"HTTP/1.1 200"));
    raw.len() - head_end
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_large_response_survives_ignored_body() {
    // Plain TCP under TLS: the close with the body unread resets the connection; the
    // client gets neither the whole response nor a close_notify.
    match get_with_body(None).await {
        Ok(raw) => assert_ne!(body_len(&raw), RESPONSE_LEN, "plain TCP delivered it all"),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
            ),
            "{e}"
        ),
    }

    // LingeringIo below TLS: the whole response, then close_notify (tokio-rustls reports
    // an EOF without close_notify as an UnexpectedEof error, so Ok proves it came first).
    let group = LingerGroup::default();
    let raw = get_with_body(Some(group.clone()))
        .await
        .expect("clean TLS EOF");
    assert_eq!(body_len(&raw), RESPONSE_LEN);
    step("linger ends at the client's EOF", async {
        while group.stats().peer_eof != 1 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(group.stats().bytes_discarded > 0);
}
