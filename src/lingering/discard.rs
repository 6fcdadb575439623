//! Reading bytes only to throw them away.
//!
//! Every read here completes within one call, so the memory the bytes pass through is
//! one window per thread, shared by all the connections lingering on it, rather than a
//! buffer per connection: thousands of stuck peers then cost no process memory for it.
//! Linux `TcpStream`s use a larger window that the kernel never writes to.

use std::cell::Cell;
use std::io;
use std::mem::MaybeUninit;
use std::task::{Context, Poll};
use std::thread::LocalKey;

use tokio::io::{AsyncRead, ReadBuf};

/// The window of reads that copy; small, as Apache (512 B) and nginx (4 KiB) show that
/// lingering needs no throughput.
const COPY_WINDOW: usize = 16 * 1024;

/// The window of `recv(MSG_TRUNC)`, which drops the bytes without writing them: its pages
/// are never touched, so it costs address space only, and a larger one drops a whole
/// ignored upload in fewer system calls.
#[cfg(target_os = "linux")]
const TRUNC_WINDOW: usize = 256 * 1024;

/// Reads and discards at most `limit` bytes; `Ok(0)` means EOF.
pub(crate) type Discard<T> = fn(&mut T, usize, &mut Context<'_>) -> Poll<io::Result<usize>>;

/// A window of one thread. Only its capacity is used: spare capacity is never
/// initialised by us.
type Window = Cell<Vec<u8>>;

thread_local! {
    static COPY: Window = const { Cell::new(Vec::new()) };
    #[cfg(target_os = "linux")]
    static TRUNC: Window = const { Cell::new(Vec::new()) };
}

/// Runs `read` with at most `len` bytes of the thread's uninitialised `window` of `size`.
fn with_window<R>(
    window: &'static LocalKey<Window>,
    size: usize,
    len: usize,
    read: impl FnOnce(&mut [MaybeUninit<u8>]) -> R,
) -> R {
    // Taken out while in use: a nested read on the same thread (an IO whose own
    // `poll_read` lingers, say) finds it empty and uses a window of its own.
    let mut scratch = window.try_with(Cell::take).unwrap_or_default();
    if scratch.capacity() < size {
        scratch = Vec::with_capacity(size);
    }
    let out = read(&mut scratch.spare_capacity_mut()[..len.min(size)]);
    let _ = window.try_with(|slot| slot.set(scratch));
    out
}

/// Discards through the thread's window; works for every `AsyncRead`.
pub(crate) fn portable<T: AsyncRead + Unpin>(
    io: &mut T,
    limit: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    with_window(&COPY, COPY_WINDOW, limit, |window| {
        let mut buf = ReadBuf::uninit(window);
        match std::pin::Pin::new(io).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
}

/// Discards without copying when `T` is a `tokio::net::TcpStream` on Linux, else
/// falls back to [`portable`].
pub(crate) fn best<T: AsyncRead + Unpin + 'static>(
    io: &mut T,
    limit: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    #[cfg(target_os = "linux")]
    if let Some(tcp) = (io as &mut dyn std::any::Any).downcast_mut::<tokio::net::TcpStream>() {
        return zero_copy::discard(tcp, limit, cx);
    }
    portable(io, limit, cx)
}

#[cfg(target_os = "linux")]
mod zero_copy {
    use std::io;
    use std::task::{ready, Context, Poll};

    use tokio::io::Interest;
    use tokio::net::TcpStream;

    /// `MSG_TRUNC` from `<sys/socket.h>` (the same value on every Linux architecture);
    /// socket2 0.6 keeps its copy private and the crate takes no `libc` dependency. On TCP
    /// it makes `recv` drop up to `len` queued bytes without copying them (tcp(7)), so the
    /// window only sets how much one call may drop.
    const MSG_TRUNC: i32 = 0x20;

    pub(super) fn discard(
        tcp: &TcpStream,
        limit: usize,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(tcp.poll_read_ready(cx))?;
            let sock = socket2::SockRef::from(tcp);
            let mut dropped = 0;
            let res = super::with_window(&super::TRUNC, super::TRUNC_WINDOW, limit, |window| {
                tcp.try_io(Interest::READABLE, || {
                    let n = sock.recv_with_flags(window, MSG_TRUNC)?;
                    dropped = n;
                    if n > 0 && n < window.len() {
                        // Less than asked: the queue is empty now. Saying so as
                        // `WouldBlock` has tokio clear the readiness (unless an event
                        // came meanwhile), which spares the `recv` that would only
                        // find the queue empty.
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    Ok(n)
                })
            });
            match res {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && dropped > 0 => {
                    return Poll::Ready(Ok(dropped))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }
}
