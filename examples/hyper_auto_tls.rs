//! HTTP/1.1 and HTTP/2 on one TLS port with hyper-util's `auto::Builder`, with
//! both fixes in place:
//!
//! - [`LingeringIo`] wraps the TCP stream *under* the TLS stream, so on close
//!   rustls sends `close_notify` first and the staged close then discards the
//!   raw bytes that follow without decrypting them.
//! - [`DrainBodyLayer`] drains unread request bodies: HTTP/1.1 ones within
//!   256 KiB, so that the connection stays usable; HTTP/2 ones within the
//!   HTTP/2 limit (1 MiB by default), so that the stream ends cleanly instead
//!   of with the `RST_STREAM` that makes curl drop the response.
//!
//! The certificate is self-signed, made at start with rcgen for `localhost`
//! and `127.0.0.1`; its PEM is written to the temp directory so that curl can
//! trust it.
//!
//! Run it (the address defaults to `127.0.0.1:3443`; pass another as the first
//! argument or in `LINGER_ADDR`, and set `RUST_LOG` to change the logging):
//!
//! ```text
//! cargo run --example hyper_auto_tls
//! ```
//!
//! It prints the exact commands; they look like this:
//!
//! ```text
//! CA=/tmp/linger-hyper-auto-tls.pem
//! # ALPN picks the protocol; the answer names it.
//! curl -s --cacert $CA --http2 https://localhost:3443/
//! curl -s --cacert $CA --http1.1 https://localhost:3443/
//!
//! # An ignored 100 KB body over HTTP/1.1, then a second request: `1 0`
//! # means the drained connection was reused.
//! head -c 100000 /dev/zero | curl -s --cacert $CA --http1.1 -H 'Expect:' \
//!     --data-binary @- -w ' %{num_connects}\n' https://localhost:3443/ignore \
//!     --next -s --cacert $CA --http1.1 -w ' %{num_connects}\n' https://localhost:3443/
//!
//! # An ignored 250 KB body over HTTP/2: drained, so the stream ends cleanly
//! # and curl prints the answer (without the drain: `curl: (92)`, mostly).
//! head -c 250000 /dev/zero | curl -s --cacert $CA --http2 \
//!     --data-binary @- https://localhost:3443/ignore
//!
//! # 1 MB rejected unread with 413, over both protocols: HTTP/1.1 closes the
//! # connection after it, HTTP/2 drains the stream (within its 1 MiB limit).
//! head -c 1000000 /dev/zero | curl -si --cacert $CA --http1.1 -H 'Expect:' \
//!     --data-binary @- https://localhost:3443/upload
//! head -c 1000000 /dev/zero | curl -si --cacert $CA --http2 \
//!     --data-binary @- https://localhost:3443/upload
//! ```
//!
//! Ctrl-C stops accepting and prints the counters. It is a plain stop:
//! connections still open are dropped with the runtime.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use linger::{DrainBody, DrainBodyLayer, LingeringListener};
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tower::ServiceBuilder;
use tracing_subscriber::EnvFilter;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> io::Result<()> {
    // `linger=debug` shows what happened to each unread body and each close;
    // `info` the rest, spans and warnings included.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,linger=debug")),
        )
        .init();

    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("LINGER_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:3443".to_owned());

    // Only `ring` is compiled in, but installing it explicitly keeps
    // `ServerConfig::builder` working if another crate enables a second
    // provider. An error just means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let (acceptor, ca_path) = tls_acceptor()?;

    // Default bounds: 2 s idle, 30 s in all, 64 MiB, 1024 lingering at once.
    let listener = LingeringListener::new(tokio::net::TcpListener::bind(&addr).await?);
    let port = listener.local_addr()?.port();
    let ca = ca_path.display();
    println!("listening on https://localhost:{port} (HTTP/1.1 and HTTP/2)");
    println!("try: curl -s --cacert {ca} --http2 https://localhost:{port}/");
    println!("     curl -s --cacert {ca} --http1.1 https://localhost:{port}/");

    let service = ServiceBuilder::new()
        .layer(DrainBodyLayer::new(256 * 1024))
        .service_fn(handle);

    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        // `io` is a `LingeringIo<TcpStream>`: the TLS stream goes on top of it.
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Usually out of file descriptors: pause rather than spin.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut ctrl_c => break,
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            // The handshake runs in the connection's task, and within a bound,
            // so that a slow client holds up neither the loop nor a task forever.
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    tracing::info!(%peer, %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            // `auto` reads the connection preface and serves HTTP/1 or HTTP/2;
            // HTTP/2 runs its streams as tasks on the executor.
            let result = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
            if let Err(err) = result {
                tracing::info!(%peer, %err, "connection ended with an error");
            }
        });
    }

    println!("stopped; {:?}", listener.stats());
    Ok(())
}

/// A TLS acceptor with a fresh self-signed certificate and ALPN for h2 and
/// http/1.1, and the path of the certificate's PEM for `curl --cacert`.
fn tls_acceptor() -> io::Result<(TlsAcceptor, std::path::PathBuf)> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(names).map_err(io::Error::other)?;

    let ca_path = std::env::temp_dir().join("linger-hyper-auto-tls.pem");
    std::fs::write(&ca_path, cert.pem())?;

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(signing_key.serialize_der()));
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .map_err(io::Error::other)?;
    // Without ALPN, clients would fall back to HTTP/1.1 over TLS.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), ca_path))
}

/// `/upload` rejects the body unread, `/echo` reads it, anything else ignores
/// it and names the protocol in use.
async fn handle(req: Request<DrainBody<Incoming>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match req.uri().path() {
        "/upload" => reply(StatusCode::PAYLOAD_TOO_LARGE, "upload too large\n"),
        "/echo" => match req.into_body().collect().await {
            Ok(body) => reply(StatusCode::OK, body.to_bytes()),
            Err(err) => reply(StatusCode::BAD_REQUEST, format!("bad body: {err}\n")),
        },
        _ => reply(StatusCode::OK, format!("hello over {:?}\n", req.version())),
    })
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}
