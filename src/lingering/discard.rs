//! Reading bytes only to throw them away.

use std::io;
use std::mem::MaybeUninit;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// Scratch space for the portable path; small, as Apache (512 B) and nginx (4 KiB) show
/// that lingering needs no throughput.
const PORTABLE_CHUNK: usize = 16 * 1024;

/// Reads and discards at most `limit` bytes; `Ok(0)` means EOF.
pub(crate) type DiscardFn<T> =
    fn(&mut T, &mut Scratch, usize, &mut Context<'_>) -> Poll<io::Result<usize>>;

/// Memory for discarded bytes, allocated when lingering starts and freed with the close.
#[derive(Default)]
pub(crate) struct Scratch {
    buf: Vec<u8>,
}

impl Scratch {
    /// At least `len` bytes of uninitialised space.
    fn get(&mut self, len: usize) -> &mut [MaybeUninit<u8>] {
        if self.buf.capacity() < len {
            self.buf = Vec::with_capacity(len);
        }
        // Spare capacity is never written by us, so an untouched allocation stays
        // non-resident when the kernel discards for us.
        &mut self.buf.spare_capacity_mut()[..len]
    }
}

/// Discards through a scratch buffer; works for every `AsyncRead`.
pub(crate) fn portable<T: AsyncRead + Unpin>(
    io: &mut T,
    scratch: &mut Scratch,
    limit: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let mut buf = ReadBuf::uninit(scratch.get(limit.min(PORTABLE_CHUNK)));
    match std::pin::Pin::new(io).poll_read(cx, &mut buf) {
        Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().len())),
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

/// Discards without copying when `T` is a `tokio::net::TcpStream` on Linux, else
/// falls back to [`portable`].
pub(crate) fn best<T: AsyncRead + Unpin + 'static>(
    io: &mut T,
    scratch: &mut Scratch,
    limit: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    #[cfg(target_os = "linux")]
    if let Some(tcp) = (io as &mut dyn std::any::Any).downcast_mut::<tokio::net::TcpStream>() {
        return zero_copy::discard(tcp, scratch, limit, cx);
    }
    portable(io, scratch, limit, cx)
}

#[cfg(target_os = "linux")]
mod zero_copy {
    use super::Scratch;
    use std::io;
    use std::task::{ready, Context, Poll};
    use tokio::io::Interest;
    use tokio::net::TcpStream;

    /// `MSG_TRUNC` from `<sys/socket.h>` (the same value on every Linux architecture);
    /// socket2 0.6 keeps its copy private and the crate takes no `libc` dependency. On TCP
    /// it makes `recv` drop up to `len` queued bytes without copying them (tcp(7)).
    const MSG_TRUNC: i32 = 0x20;

    /// The kernel never writes this memory; the window only sets how much one syscall
    /// may drop. Kept as small as the portable buffer so that thousands of lingering
    /// connections do not reserve much address space either.
    const ZERO_COPY_CHUNK: usize = super::PORTABLE_CHUNK;

    pub(super) fn discard(
        tcp: &TcpStream,
        scratch: &mut Scratch,
        limit: usize,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        let window = scratch.get(limit.min(ZERO_COPY_CHUNK));
        loop {
            ready!(tcp.poll_read_ready(cx))?;
            let sock = socket2::SockRef::from(tcp);
            match tcp.try_io(Interest::READABLE, || {
                sock.recv_with_flags(&mut *window, MSG_TRUNC)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }
}
