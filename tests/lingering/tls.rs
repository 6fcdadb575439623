//! TLS over `LingeringIo<TcpStream>` (hyper issue #3944: a GET with a body the handler
//! ignores and a large response). The TLS layer sends close_notify, then calls our
//! `poll_shutdown`, which lingers on the raw TCP bytes.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use linger::LingerGroup;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

use crate::common::tls;

/// An HTTPS server whose handler waits for `ready`, ignores the body and answers 4 MiB.
async fn serve(
    acceptor: TlsAcceptor,
    group: Option<LingerGroup>,
    ready: Arc<Notify>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = Bytes::from(vec![b'r'; tls::RESPONSE_LEN]);
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

/// The #3944 client against a fresh server, with or without `LingeringIo` under TLS.
async fn get_with_body(group: Option<LingerGroup>) -> std::io::Result<Vec<u8>> {
    let (server, connector) = tls::self_signed();
    let ready = Arc::new(Notify::new());
    let addr = serve(TlsAcceptor::from(server), group, ready.clone()).await;
    tls::get_with_ignored_body(addr, &connector, &ready).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_large_response_survives_ignored_body() {
    // Plain TCP under TLS: the close with the body unread resets the connection.
    tls::assert_cut_short(get_with_body(None).await);
    let group = LingerGroup::default();
    tls::assert_whole_then_lingered(get_with_body(Some(group.clone())).await, &group).await;
}
