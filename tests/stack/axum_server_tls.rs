//! axum-server with rustls, and `LingeringIo` under the TLS layer through an acceptor a
//! user writes in a dozen lines (`LingeringAcceptor` below): `RustlsAcceptor` runs its
//! inner acceptor on the raw TCP stream first, so `LingeringIo` sits between TLS and TCP,
//! close_notify goes out before the FIN, and the linger throws away raw bytes without
//! decrypting them.
//!
//! ```text
//! let acceptor = RustlsAcceptor::new(rustls_config).acceptor(LingeringAcceptor(group));
//! axum_server::bind(addr).acceptor(acceptor).serve(app.into_make_service()).await?;
//! ```

use std::future::Ready;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use linger::{LingerGroup, LingeringIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_rustls::rustls::ServerConfig;

use crate::common::step_within;
use crate::common::tls;

const STEP: Duration = Duration::from_secs(10);

/// An axum-server acceptor that wraps every accepted stream in a [`LingeringIo`] of one
/// [`LingerGroup`]. Give it to `RustlsAcceptor::acceptor` so that it runs beneath TLS; on
/// its own (`Server::acceptor(LingeringAcceptor(group))`) it serves plain HTTP.
#[derive(Clone, Debug)]
struct LingeringAcceptor(LingerGroup);

impl<I, S> Accept<I, S> for LingeringAcceptor
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = LingeringIo<I>;
    type Service = S;
    type Future = Ready<io::Result<(LingeringIo<I>, S)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        std::future::ready(Ok((self.0.wrap(stream), service)))
    }
}

/// An axum app whose `/` waits for `ready`, ignores the body and answers 4 MiB.
fn app(ready: Arc<Notify>) -> Router {
    let body = vec![b'r'; tls::RESPONSE_LEN];
    Router::new().route(
        "/",
        get(move || {
            let (ready, body) = (ready.clone(), body.clone());
            async move {
                ready.notified().await;
                body
            }
        }),
    )
}

/// Serves `app` over HTTPS with axum-server on 127.0.0.1:0, with `LingeringAcceptor`
/// under rustls when `group` is given, plain `RustlsAcceptor` otherwise.
fn serve(config: Arc<ServerConfig>, group: Option<LingerGroup>, app: Router) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = axum_server::from_tcp(listener).unwrap();
    let rustls = RustlsAcceptor::new(RustlsConfig::from_config(config));
    let make_service = app.into_make_service();
    match group {
        Some(group) => {
            let server = server.acceptor(rustls.acceptor(LingeringAcceptor(group)));
            tokio::spawn(server.serve(make_service));
        }
        None => {
            tokio::spawn(server.acceptor(rustls).serve(make_service));
        }
    }
    addr
}

/// The #3944 client (see tests/common/tls.rs) against a fresh axum-server, with `LingeringIo` under
/// rustls when `group` is given.
async fn get_with_ignored_body(group: Option<LingerGroup>) -> io::Result<Vec<u8>> {
    let (server_config, connector) = tls::self_signed();
    let ready = Arc::new(Notify::new());
    let addr = serve(server_config, group, app(ready.clone()));
    tls::get_with_ignored_body(addr, &connector, &ready).await
}

/// hyper issue #3944 through axum-server and rustls. With plain `RustlsAcceptor` hyper's
/// close with the body unread resets the connection: the client gets neither the whole
/// response nor close_notify. With `LingeringAcceptor` beneath rustls it gets the whole
/// 4 MiB and then close_notify (tokio-rustls reports an EOF without close_notify as
/// `UnexpectedEof`, so `Ok` proves it came), and the linger ends at the client's FIN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rustls_large_response_survives_an_ignored_body() {
    // Plain TCP under TLS: the close with the body unread resets the connection.
    tls::assert_cut_short(get_with_ignored_body(None).await);
    let group = LingerGroup::default();
    tls::assert_whole_then_lingered(get_with_ignored_body(Some(group.clone())).await, &group).await;
}

/// Without TLS, `LingeringAcceptor` alone: an early 413 to a 16 MiB upload reaches the
/// client, which sends its whole body and reads a clean EOF; the linger ends at its FIN.
/// With axum-server's `DefaultAcceptor` instead, hyper closes with the upload arriving
/// and the client's upload fails with a broken pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_early_413_reaches_a_large_upload() {
    let app = Router::new().route(
        "/upload",
        axum::routing::post(|| async { (axum::http::StatusCode::PAYLOAD_TOO_LARGE, "too large") }),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let group = LingerGroup::default();
    let server = axum_server::from_tcp(listener)
        .unwrap()
        .acceptor(LingeringAcceptor(group.clone()));
    tokio::spawn(server.serve(app.into_make_service()));

    let upload_len = 16 * 1024 * 1024;
    let stream = step_within(STEP, "connect", tokio::net::TcpStream::connect(addr))
        .await
        .unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let head =
            format!("POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: {upload_len}\r\n\r\n");
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![b'u'; 64 * 1024];
        for _ in 0..upload_len / chunk.len() {
            wr.write_all(&chunk).await?;
        }
        wr.shutdown().await
    });
    let mut raw = Vec::new();
    step_within(STEP, "read to EOF", rd.read_to_end(&mut raw))
        .await
        .expect("clean EOF");
    assert!(
        raw.starts_with(b"HTTP/1.1 413") && raw.ends_with(b"too large"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    step_within(STEP, "upload", writer)
        .await
        .unwrap()
        .expect("whole upload sent");
    step_within(STEP, "linger ends at the client's FIN", group.wait_idle()).await;
    assert_eq!(group.stats().peer_eof, 1, "{:?}", group.stats());
}
