//! A request body the test feeds through a channel: it may stall (the sender
//! kept, silent), fail (an error sent) or end (the sender dropped), and declares
//! its length.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// A request body fed through a channel; it ends when the sender is
/// dropped, and declares `declared` bytes.
pub struct ChannelBody {
    rx: mpsc::UnboundedReceiver<Result<Bytes, io::Error>>,
    declared: u64,
    /// Says it is over before it is polled: hyper's client then ends the
    /// stream with its headers.
    empty: bool,
}

pub fn channel_body(
    declared: u64,
) -> (mpsc::UnboundedSender<Result<Bytes, io::Error>>, ChannelBody) {
    let (tx, rx) = mpsc::unbounded_channel();
    let body = ChannelBody {
        rx,
        declared,
        empty: false,
    };
    (tx, body)
}

/// A body that ends with the request's headers.
pub fn no_body() -> ChannelBody {
    let (_, mut body) = channel_body(0);
    body.empty = true;
    body
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|data| data.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.empty
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.declared)
    }
}
