//! `LingeringIo` on its own: stage order, every way a linger ends, and the shared cap.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use linger::{LingerConfig, LingerGroup, LingeringIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::common::{step, tcp_pair};

/// Waits, without sleeping, until `cond` holds; bounded by `STEP`.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    step(what, async {
        while !cond() {
            tokio::task::yield_now().await;
        }
    })
    .await
}

/// The staged close as hyper runs it: `poll_shutdown` (flush and FIN), then the drop, after
/// which the linger goes on in the background until `wait_idle` sees it end.
async fn close_like_hyper<T>(mut io: LingeringIo<T>) -> io::Result<()>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let group = io.group().clone();
    step("poll_shutdown", io.shutdown()).await?;
    drop(io);
    step("linger", group.wait_idle()).await;
    Ok(())
}

/// Writes until the peer stops accepting bytes or `stop` fires.
async fn flood(mut stream: TcpStream, mut stop: tokio::sync::oneshot::Receiver<()>) -> TcpStream {
    let chunk = vec![7u8; 64 * 1024];
    loop {
        tokio::select! {
            _ = &mut stop => return stream,
            res = stream.write_all(&chunk) => if res.is_err() { return stream },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Write,
    Flush,
    Shutdown,
    Read(usize),
}

/// Records the calls `LingeringIo` makes on the inner IO.
struct Recording<T> {
    inner: T,
    log: Arc<Mutex<Vec<Event>>>,
}

impl<T> Recording<T> {
    fn push(&self, event: Event) {
        self.log.lock().unwrap().push(event);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Recording<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            self.push(Event::Read(buf.filled().len() - before));
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Recording<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if res.is_ready() {
            self.push(Event::Write);
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.inner).poll_flush(cx);
        if res.is_ready() {
            self.push(Event::Flush);
        }
        res
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.inner).poll_shutdown(cx);
        if res.is_ready() {
            self.push(Event::Shutdown);
        }
        res
    }
}

/// flush → shutdown (FIN) → reads until EOF → Ready, on an in-memory duplex.
/// A plain IO would make no read at all after shutdown.
#[tokio::test]
async fn stages_run_in_order_on_duplex() {
    let (server, mut client) = tokio::io::duplex(1024);
    let log = Arc::new(Mutex::new(Vec::new()));
    let group = LingerGroup::new(LingerConfig::new().idle_timeout(Duration::from_secs(30)));
    let mut io = group.wrap(Recording {
        inner: server,
        log: log.clone(),
    });

    step("write", io.write_all(b"response")).await.unwrap();
    let closing = tokio::spawn(close_like_hyper(io));

    // The client sees our FIN only after flush and shutdown ran.
    let mut got = Vec::new();
    step("client reads response", client.read_to_end(&mut got))
        .await
        .unwrap();
    assert_eq!(got, b"response");
    step("client writes leftovers", client.write_all(b"abc"))
        .await
        .unwrap();
    drop(client);

    step("shutdown", closing).await.unwrap().unwrap();
    let log = log.lock().unwrap().clone();
    let after_write: Vec<_> = log.into_iter().filter(|e| *e != Event::Write).collect();
    assert_eq!(
        after_write,
        [
            Event::Flush,
            Event::Shutdown,
            Event::Read(3),
            Event::Read(0)
        ]
    );
    let stats = group.stats();
    assert_eq!((stats.peer_eof, stats.bytes_discarded), (1, 3));
    assert_eq!(stats.lingering, 0);
}

/// A peer that closes at once ends the linger at once, with a 30 s idle timeout configured.
#[tokio::test]
async fn prompt_peer_close_costs_no_wait() {
    let (server, mut client) = tcp_pair().await;
    let group = LingerGroup::new(
        LingerConfig::new()
            .idle_timeout(Duration::from_secs(30))
            .total_timeout(Duration::from_secs(60)),
    );
    let io = group.wrap(server);
    step("client writes", client.write_all(&[1u8; 1000]))
        .await
        .unwrap();
    step("client half-closes", client.shutdown()).await.unwrap();

    let start = Instant::now();
    close_like_hyper(io).await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    let stats = group.stats();
    assert_eq!((stats.peer_eof, stats.bytes_discarded), (1, 1000));

    // And an EOF the server already read needs no slot and no read.
    let (server, mut client) = tcp_pair().await;
    let mut io = group.wrap(server);
    step("client half-closes", client.shutdown()).await.unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(step("read eof", io.read(&mut buf)).await.unwrap(), 0);
    close_like_hyper(io).await.unwrap();
    assert_eq!(group.stats().peer_eof, 2);
    let mut rest = Vec::new();
    step("client sees FIN", client.read_to_end(&mut rest))
        .await
        .unwrap();
}

/// A peer that stays open without sending ends the linger at the idle timeout, and still
/// gets our FIN.
#[tokio::test]
async fn silent_peer_ends_at_idle_timeout() {
    let (server, mut client) = tcp_pair().await;
    let idle = Duration::from_millis(200);
    let group = LingerGroup::new(LingerConfig::new().idle_timeout(idle));
    let io = group.wrap(server);
    step("client writes", client.write_all(b"pipelined"))
        .await
        .unwrap();

    let start = Instant::now();
    close_like_hyper(io).await.unwrap();
    let elapsed = start.elapsed();
    assert!(
        elapsed >= idle && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    let stats = group.stats();
    assert_eq!((stats.idle_timeout, stats.bytes_discarded), (1, 9));
    let mut rest = Vec::new();
    step("client sees FIN", client.read_to_end(&mut rest))
        .await
        .unwrap();
}

/// A peer that keeps sending ends the linger at the byte cap, exactly.
#[tokio::test]
async fn flooding_peer_ends_at_byte_cap() {
    let (server, client) = tcp_pair().await;
    let cap = 1024 * 1024 + 123;
    let group = LingerGroup::new(
        LingerConfig::new()
            .max_bytes(cap)
            .total_timeout(Duration::from_secs(30)),
    );
    let io = group.wrap(server);
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let flooder = tokio::spawn(flood(client, stopped));

    close_like_hyper(io).await.unwrap();
    let stats = group.stats();
    assert_eq!((stats.byte_cap, stats.bytes_discarded), (1, cap));
    let _ = stop.send(());
    step("flooder", flooder).await.unwrap();
}

/// A peer that keeps sending ends the linger at the total time cap.
#[tokio::test]
async fn flooding_peer_ends_at_total_timeout() {
    let (server, client) = tcp_pair().await;
    let total = Duration::from_millis(300);
    let group = LingerGroup::new(
        LingerConfig::new()
            .max_bytes(u64::MAX)
            .idle_timeout(Duration::from_secs(10))
            .total_timeout(total),
    );
    let io = group.wrap(server);
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let flooder = tokio::spawn(flood(client, stopped));

    let start = Instant::now();
    close_like_hyper(io).await.unwrap();
    let elapsed = start.elapsed();
    assert!(
        elapsed >= total && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    let stats = group.stats();
    assert_eq!(stats.total_timeout, 1);
    assert!(stats.bytes_discarded > 0);
    let _ = stop.send(());
    step("flooder", flooder).await.unwrap();
}

/// With a cap of N and N + 5 peers that never close, N linger and 5 close at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_limits_concurrent_lingering() {
    const N: usize = 3;
    let group = LingerGroup::new(
        LingerConfig::new()
            .max_lingering(N)
            .idle_timeout(Duration::from_secs(30)),
    );
    let mut clients = Vec::new();
    let mut closes = Vec::new();
    for _ in 0..N + 5 {
        let (server, mut client) = tcp_pair().await;
        step("client writes", client.write_all(b"x")).await.unwrap();
        clients.push(client);
        let io = group.wrap(server);
        closes.push(tokio::spawn(close_like_hyper(io)));
    }
    wait_until("N lingering, 5 skipped", || {
        let s = group.stats();
        s.lingering == N && s.skipped == 5
    })
    .await;
    assert!(group.stats().lingering <= N);

    drop(clients);
    for close in closes {
        step("close", close).await.unwrap().unwrap();
    }
    let stats = group.stats();
    assert_eq!(
        (stats.peer_eof, stats.skipped, stats.lingering),
        (N as u64, 5, 0)
    );
}

/// `into_inner` gives the stream back untouched and starts no background close; it counts
/// as `released`, so that every `LingeringIo` that goes away counts one outcome (issue 11,
/// item 4: before, it counted nothing and `closes()` stayed 0).
#[tokio::test]
async fn into_inner_skips_drop_path() {
    let (server, mut client) = tcp_pair().await;
    let group = LingerGroup::default();
    let io = group.wrap(server);
    // hyper picks its write strategy from this; tokio's TcpStream says true.
    assert!(io.is_write_vectored());
    let mut server = io.into_inner();
    step("write", server.write_all(b"still mine"))
        .await
        .unwrap();
    drop(server);
    let mut got = Vec::new();
    step("read", client.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"still mine");
    let stats = group.stats();
    assert_eq!((stats.released, stats.closes()), (1, 1), "{stats:?}");
    assert_eq!((stats.lingering, stats.background), (0, 0), "{stats:?}");
}

/// `LingeringIo::local` takes IO that is neither `Send` nor `'static`.
#[tokio::test]
async fn local_wraps_borrowed_io() {
    let (mut server, mut client) = tokio::io::duplex(64);
    let mut io = LingeringIo::local(&mut server);
    client.shutdown().await.unwrap();
    step("shutdown", io.shutdown()).await.unwrap();
    assert_eq!(io.group().stats().peer_eof, 1);
}

/// A dropped connection lingers in a background task within the same bounds, and beyond
/// the cap it is closed plainly without spawning anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_path_respects_bounds_and_cap() {
    let group = LingerGroup::new(
        LingerConfig::new()
            .max_lingering(1)
            .idle_timeout(Duration::from_millis(200)),
    );
    let (server, mut stuck) = tcp_pair().await;
    step("client writes", stuck.write_all(b"unread"))
        .await
        .unwrap();
    drop(group.wrap(server));
    assert_eq!(group.stats().background, 1);

    // The one slot is taken: the next drop closes at once.
    let (server, mut other) = tcp_pair().await;
    step("client writes", other.write_all(b"unread"))
        .await
        .unwrap();
    drop(group.wrap(server));
    let stats = group.stats();
    assert_eq!((stats.skipped, stats.background), (1, 1));

    // The stuck peer still gets a FIN, and the background close ends at the idle timeout.
    let mut rest = Vec::new();
    step("stuck client sees FIN", stuck.read_to_end(&mut rest))
        .await
        .unwrap();
    wait_until("background close ends", || group.stats().background == 0).await;
    let stats = group.stats();
    assert_eq!(
        (stats.idle_timeout, stats.bytes_discarded, stats.lingering),
        (1, 6, 0)
    );
}
