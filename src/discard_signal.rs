//! The signal from the drain layer to the `LingeringIo` of the same connection: "throw
//! the client's input away from now on", found through the tokio task that serves both.
//!
//! hyper gives a service no handle on its connection's IO, but serves an HTTP/1
//! connection from one tokio task: the task that reads the request head from the IO is
//! the task that polls the service's response future. A [`LingeringIo`] therefore
//! files its signal under the id of the task that reads from it, and the drain layer,
//! when it settles a body in that task, finds the IO under the same id. A lookup that
//! finds nothing (no `LingeringIo` beneath, HTTP/2 streams served from tasks of their
//! own) leaves the layer to do without it.
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
static REGISTRY: [Mutex<HashMap<task::Id, Arc<DiscardSignal>, Hasher>>; SHARDS] =
    [const { Mutex::new(HashMap::with_hasher(BuildHasherDefault::new())) }; SHARDS];

fn shard(
    task: task::Id,
) -> std::sync::MutexGuard<'static, HashMap<task::Id, Arc<DiscardSignal>, Hasher>> {
    let index = usize::from(Hasher::default().hash_one(task).to_be_bytes()[0]) % SHARDS;
    REGISTRY[index]
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Files `signal` under `task`, the task now reading its IO, unless another IO is filed
/// there: the first IO a task reads is the connection it serves (a handler that reads
/// another `LingeringIo` from the connection's task must not take its place).
pub(crate) fn file(task: task::Id, signal: &Arc<DiscardSignal>) -> bool {
    let mut shard = shard(task);
    match shard.entry(task) {
        Entry::Occupied(filed) => Arc::ptr_eq(filed.get(), signal),
        Entry::Vacant(vacant) => {
            vacant.insert(Arc::clone(signal));
            true
        }
    }
}

/// Takes `signal` out from under `task`, unless another IO of that task replaced it.
pub(crate) fn withdraw(task: task::Id, signal: &Arc<DiscardSignal>) {
    let mut shard = shard(task);
    if shard
        .get(&task)
        .is_some_and(|filed| Arc::ptr_eq(filed, signal))
    {
        shard.remove(&task);
    }
}

/// The signal of the `LingeringIo` that the running task reads, if any.
pub(crate) fn of_current_task() -> Option<Arc<DiscardSignal>> {
    let task = task::try_id()?;
    shard(task).get(&task).cloned()
}

/// Whether the response being written ends the connection with its request unread:
/// then nothing will read the client's input any more, and the `LingeringIo` throws it
/// away while it writes.
#[derive(Debug, Default)]
pub(crate) struct DiscardSignal {
    raised: AtomicBool,
}

impl DiscardSignal {
    /// Tells the IO to throw the client's input away from now on.
    pub(crate) fn raise(&self) {
        self.raised.store(true, Ordering::Release);
    }

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
            assert!(of_current_task().is_none());
            let mut buf = [0u8; 1];
            io.read_exact(&mut buf).await.unwrap();
            let signal = of_current_task().expect("found from the task reading the IO");
            assert!(!signal.is_raised());
            signal.raise();
            drop(io);
            assert!(of_current_task().is_none());
            assert_eq!(Arc::strong_count(&signal), 1);
        })
        .await
        .unwrap();
    }
}
