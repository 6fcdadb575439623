//! What the TLS tests share: a self-signed certificate for `localhost` with the rustls
//! configurations of both ends (ring provider), and the client of hyper issue #3944.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::Notify;
use tokio_rustls::rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName,
};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::TlsConnector;

/// The response of the servers of the scenario.
pub const RESPONSE_LEN: usize = 4 * 1024 * 1024;
/// The request body the handler ignores.
const BODY_LEN: usize = 1024 * 1024;
/// Body bytes sent before the handler may answer, so that the server holds unread input
/// when it closes (hyper reads at most a few KiB of it).
const HEAD_START: usize = 32 * 1024;

/// The server's configuration, and a connector that trusts its certificate.
pub fn self_signed() -> (Arc<ServerConfig>, TlsConnector) {
    let SelfSigned { server, client, .. } = SelfSigned::new();
    (Arc::new(server), TlsConnector::from(Arc::new(client)))
}

/// A self-signed certificate for `localhost`, as rustls configurations still open
/// to changes (ALPN, say), and as PEM (for `curl --cacert`).
pub struct SelfSigned {
    /// Serves the certificate; no client authentication.
    pub server: ServerConfig,
    /// Trusts the certificate, and only it.
    pub client: ClientConfig,
    /// The certificate.
    pub pem: String,
}

impl SelfSigned {
    /// A fresh certificate; each call makes another.
    pub fn new() -> Self {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert: CertificateDer<'static> = certified.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            server,
            client,
            pem: certified.cert.pem(),
        }
    }
}

/// hyper issue #3944 over TLS: a GET with `Connection: close` and a 1 MiB body that the
/// handler ignores, read through a small receive buffer, so that the tail of the 4 MiB
/// response is still in the server's send queue when hyper closes. The handler answers
/// once `ready` is notified, after the first 32 KiB of the body. Returns what the read
/// gave; the client ends with close_notify and FIN, which ends a linger.
pub async fn get_with_ignored_body(
    addr: SocketAddr,
    connector: &TlsConnector,
    ready: &Notify,
) -> io::Result<Vec<u8>> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let tcp = super::step_within(Duration::from_secs(10), "connect", socket.connect(addr))
        .await
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = super::step_within(
        Duration::from_secs(10),
        "handshake",
        connector.connect(name, tcp),
    )
    .await
    .unwrap();
    let (mut rd, mut wr) = tokio::io::split(tls);

    let mut first = format!(
        "GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {BODY_LEN}\r\n\r\n"
    )
    .into_bytes();
    first.extend(std::iter::repeat_n(b'a', HEAD_START));
    super::step_within(
        Duration::from_secs(10),
        "head and body start",
        wr.write_all(&first),
    )
    .await
    .unwrap();
    super::step_within(Duration::from_secs(10), "flush", wr.flush())
        .await
        .unwrap();
    ready.notify_one();
    let writer = tokio::spawn(async move {
        wr.write_all(&vec![b'a'; BODY_LEN - HEAD_START]).await?;
        wr.shutdown().await
    });
    let mut got = Vec::new();
    let read = super::step_within(
        Duration::from_secs(10),
        "read response",
        rd.read_to_end(&mut got),
    )
    .await
    .map(|_| got);
    if read.is_ok() {
        super::step_within(Duration::from_secs(10), "writer", writer)
            .await
            .unwrap()
            .expect("whole body sent");
    } else {
        writer.abort();
    }
    read
}

/// The body length of a `200` response, head included in `raw`.
pub fn body_len(raw: &[u8]) -> usize {
    let head_end = super::http1::head_end(raw).unwrap();
    assert!(raw.starts_with(b"HTTP/1.1 200"));
    raw.len() - head_end
}

/// What the client of the scenario gets over plain TCP (no linger beneath TLS): hyper's
/// close with the body unread resets the connection, so neither the whole response nor
/// a close_notify arrives.
pub fn assert_cut_short(got: io::Result<Vec<u8>>) {
    match got {
        Ok(raw) => assert_ne!(body_len(&raw), RESPONSE_LEN, "plain TCP delivered it all"),
        Err(e) => assert!(
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
            ),
            "{e}"
        ),
    }
}

/// What it gets with a `LingeringIo` of `group` beneath TLS: the whole response, then
/// close_notify (tokio-rustls reports an EOF without close_notify as `UnexpectedEof`, so
/// `Ok` proves it came), and the linger ends at the client's FIN, having discarded the
/// ignored body.
pub async fn assert_whole_then_lingered(got: io::Result<Vec<u8>>, group: &linger::LingerGroup) {
    let raw = got.expect("clean TLS EOF");
    assert_eq!(body_len(&raw), RESPONSE_LEN);
    // Counted when it ends, which may be after the client saw its EOF: hyper drops the IO,
    // and so starts the linger, only after `poll_shutdown` (`wait_idle` alone could
    // return before).
    super::step_within(
        Duration::from_secs(10),
        "linger ends at the client's FIN",
        async {
            while group.stats().closes() == 0 {
                tokio::task::yield_now().await;
            }
        },
    )
    .await;
    let stats = group.stats();
    assert_eq!(stats.peer_eof, 1, "{stats:?}");
    assert!(stats.bytes_discarded > 0, "{stats:?}");
}
