//! The connection a request came on, as the drain layer sees it.
//!
//! hyper gives a service no handle on its connection's IO, but serves an HTTP/1
//! connection from one tokio task: the task that reads the request head from the IO is
//! the task that polls the service's response future. A [`LingeringIo`] therefore
//! registers itself under the id of the task that reads from it, and the drain layer,
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

/// The links of the `LingeringIo`s being read, by the id of the task reading them.
static REGISTRY: [Mutex<HashMap<task::Id, Arc<Link>, Hasher>>; SHARDS] =
    [const { Mutex::new(HashMap::with_hasher(BuildHasherDefault::new())) }; SHARDS];

fn shard(task: task::Id) -> std::sync::MutexGuard<'static, HashMap<task::Id, Arc<Link>, Hasher>> {
    let index = usize::from(Hasher::default().hash_one(task).to_be_bytes()[0]) % SHARDS;
    REGISTRY[index]
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Files `link` under `task`, the task now reading its IO, unless another IO is filed
/// there: the first IO a task reads is the connection it serves (a handler that reads
/// another `LingeringIo` from the connection's task must not take its place).
pub(crate) fn register(task: task::Id, link: &Arc<Link>) -> bool {
    let mut shard = shard(task);
    match shard.entry(task) {
        Entry::Occupied(filed) => Arc::ptr_eq(filed.get(), link),
        Entry::Vacant(vacant) => {
            vacant.insert(Arc::clone(link));
            true
        }
    }
}

/// Takes `link` out from under `task`, unless another IO of that task replaced it.
pub(crate) fn unregister(task: task::Id, link: &Arc<Link>) {
    let mut shard = shard(task);
    if shard
        .get(&task)
        .is_some_and(|filed| Arc::ptr_eq(filed, link))
    {
        shard.remove(&task);
    }
}

/// The link of the `LingeringIo` that the running task reads, if any.
pub(crate) fn current() -> Option<Arc<Link>> {
    let task = task::try_id()?;
    shard(task).get(&task).cloned()
}

/// What the drain layer and a `LingeringIo` share about one connection.
#[derive(Debug, Default)]
pub(crate) struct Link {
    /// The response being written ends the connection, and nothing will read the
    /// request's body any more: the IO discards what the client sends while it writes.
    closing: AtomicBool,
}

impl Link {
    /// Tells the IO that the connection closes after the response being written, and
    /// that what the client still sends is to be thrown away meanwhile.
    pub(crate) fn discard_while_closing(&self) {
        self.closing.store(true, Ordering::Release);
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::LingerGroup;

    /// The task that reads a `LingeringIo` finds its link, until the IO goes away: the
    /// registry holds no more entries than there are IOs.
    #[tokio::test]
    async fn an_io_is_found_from_its_task_until_it_goes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(b"x").await.unwrap();
        tokio::spawn(async move {
            let mut io = LingerGroup::default().wrap(server);
            assert!(current().is_none());
            let mut buf = [0u8; 1];
            io.read_exact(&mut buf).await.unwrap();
            let link = current().expect("found from the task reading the IO");
            assert!(!link.is_closing());
            link.discard_while_closing();
            drop(io);
            assert!(current().is_none());
            assert_eq!(Arc::strong_count(&link), 1);
        })
        .await
        .unwrap();
    }
}
