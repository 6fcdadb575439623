//! The signal from the drain layer to the `LingeringIo` of the same connection: "throw
//! the client's input away from now on", found through the tokio task that serves both.
//!
//! hyper gives a service no handle on its connection's IO, but serves an HTTP/1
//! connection from one tokio task: the task that reads the request head from the IO
//! calls the service and polls its response future. A [`LingeringIo`] therefore files
//! its signal under the id of each task that reads from it, and the drain
//! layer finds it under the id of the task that called it.
//!
//! That tie holds only while a task serves one connection. A task that has read two
//! `LingeringIo`s (several connections driven from one task with `tokio::join!` or
//! `FuturesUnordered`, a handler that opens one of its own) has no signal at all until
//! every IO it read is gone, and a response future polled on another task than the
//! one that called the service finds none either: there the layer does without the IO,
//! as it would with none beneath, rather than risk signalling another connection's IO.
//!
//! [`LingeringIo`]: crate::LingeringIo

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::task;

/// Shards of the registry, so that connections on different threads rarely meet on one
/// lock.
const SHARDS: usize = 16;

type Hasher = BuildHasherDefault<IdHasher>;

/// What is filed under one task.
#[derive(Debug)]
struct Filed {
    /// The signal of the one IO the task read; `None` once it read two.
    signal: Option<Arc<DiscardSignal>>,
    /// How many IOs filed here are still alive.
    ios: usize,
}

/// Hashes a task id, which tokio hands out unique, with one multiplication: the
/// registry is on every connection's path, where SipHash would cost more than the rest.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: spreads consecutive ids over the high bits.
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The signals of the `LingeringIo`s being read, by the id of the task reading them.
static REGISTRY: [Mutex<HashMap<task::Id, Filed, Hasher>>; SHARDS] =
    [const { Mutex::new(HashMap::with_hasher(BuildHasherDefault::new())) }; SHARDS];

fn shard(task: task::Id) -> std::sync::MutexGuard<'static, HashMap<task::Id, Filed, Hasher>> {
    let index = usize::from(Hasher::default().hash_one(task).to_be_bytes()[0]) % SHARDS;
    REGISTRY[index]
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Files `signal` under `task`, a task now reading its IO. A second IO filed under the
/// same task takes the signal away from both: the task's requests can no longer be told
/// apart by task.
pub(crate) fn file(task: task::Id, signal: &Arc<DiscardSignal>) {
    match shard(task).entry(task) {
        Entry::Occupied(mut filed) => {
            let filed = filed.get_mut();
            filed.ios += 1;
            if filed.signal.take().is_some() {
                tracing::debug!(
                    ?task,
                    "a task serves several LingeringIo: its requests are drained without them"
                );
            }
        }
        Entry::Vacant(vacant) => {
            vacant.insert(Filed {
                signal: Some(Arc::clone(signal)),
                ios: 1,
            });
        }
    }
}

/// Undoes one [`file`] of an IO under `task`: the IO moved to another task or is gone.
pub(crate) fn withdraw(task: task::Id) {
    let mut shard = shard(task);
    if let Entry::Occupied(mut filed) = shard.entry(task) {
        filed.get_mut().ios -= 1;
        if filed.get().ios == 0 {
            filed.remove();
        }
    }
}

/// The id of the running task, to be compared by [`for_request`] when the response is
/// ready.
#[inline]
pub(crate) fn calling_task() -> Option<task::Id> {
    task::try_id()
}

/// The signal of the one `LingeringIo` of the connection whose service was called from
/// `called_from`, if the running task is that task and touches that IO alone.
pub(crate) fn for_request(called_from: Option<task::Id>) -> Option<Arc<DiscardSignal>> {
    let task = task::try_id()?;
    if called_from != Some(task) {
        tracing::debug!(
            "the response future runs on another task than its service call: draining without the connection's LingeringIo"
        );
        return None;
    }
    let found = of_task(task);
    if found.is_none() {
        tracing::debug!("no LingeringIo of this connection found: draining without it");
    }
    found
}

fn of_task(task: task::Id) -> Option<Arc<DiscardSignal>> {
    shard(task)
        .get(&task)
        .and_then(|filed| filed.signal.clone())
}

/// Whether the response being written ends the connection with its request unread:
/// then nothing will read the client's input any more, and the `LingeringIo` throws it
/// away while it writes.
///
/// Raised in two cases: the response ends the connection anyway (`Connection: close`)
/// and the layer leaves the rest of the body to the IO; or the layer gave up on the body
/// (over its limit, past its deadline, failed), which makes hyper close after the
/// response. From then on the IO also shows hyper the end of the input, so that hyper
/// never parses a byte that came after the ones thrown away.
#[derive(Debug, Default)]
pub(crate) struct DiscardSignal {
    raised: AtomicBool,
}

impl DiscardSignal {
    /// Tells the IO to throw the client's input away from now on.
    #[inline]
    pub(crate) fn raise(&self) {
        self.raised.store(true, Ordering::Release);
    }

    // Inline: asked on every read and write of a `LingeringIo`, whose code is
    // generated in the user's crate.
    #[inline]
    pub(crate) fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::LingerGroup;

    /// The task that reads a `LingeringIo` finds its signal, until the IO goes away: the
    /// registry holds no more entries than there are IOs.
    #[tokio::test]
    async fn a_signal_is_found_from_its_task_until_the_io_goes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(b"x").await.unwrap();
        tokio::spawn(async move {
            let mut io = LingerGroup::default().wrap(server);
            let called_from = calling_task();
            assert!(for_request(called_from).is_none());
            let mut buf = [0u8; 1];
            io.read_exact(&mut buf).await.unwrap();
            let signal = for_request(called_from).expect("found from the task reading the IO");
            assert!(!signal.is_raised());
            signal.raise();
            drop(io);
            assert!(for_request(called_from).is_none());
            assert_eq!(Arc::strong_count(&signal), 1);
        })
        .await
        .unwrap();
    }

    /// A task that reads two IOs finds no signal until both are gone; then the next IO
    /// it reads is found again.
    #[tokio::test]
    async fn a_task_reading_two_ios_finds_neither() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        let mut servers = Vec::new();
        for _ in 0..3 {
            let mut client = TcpStream::connect(addr).await.unwrap();
            client.write_all(b"x").await.unwrap();
            clients.push(client);
            servers.push(LingerGroup::default().wrap(listener.accept().await.unwrap().0));
        }
        tokio::spawn(async move {
            let called_from = calling_task();
            let mut buf = [0u8; 1];
            let mut third = servers.pop().unwrap();
            let mut second = servers.pop().unwrap();
            let mut first = servers.pop().unwrap();
            first.read_exact(&mut buf).await.unwrap();
            assert!(for_request(called_from).is_some());
            second.read_exact(&mut buf).await.unwrap();
            assert!(for_request(called_from).is_none(), "two IOs: neither");
            drop(first);
            assert!(
                for_request(called_from).is_none(),
                "one of two left: still neither"
            );
            drop(second);
            third.read_exact(&mut buf).await.unwrap();
            assert!(
                for_request(called_from).is_some(),
                "a task serving one IO again"
            );
        })
        .await
        .unwrap();
        drop(clients);
    }
}
