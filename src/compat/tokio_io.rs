//! tokio's I/O traits for the stream types (feature `tokio-io`).

use crate::net::streams::StreamReader;
use crate::net::tcp::{TcpStream, to_io};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};

impl_shutdown_write!(tokio::io::AsyncWrite);

impl AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Safety: recv writes only initialised bytes into the unfilled part,
        // and never de-initialises any.
        let unfilled = unsafe { buf.unfilled_mut() };
        let n = ready!(self.get_mut().poll_read_uninit(cx, unfilled))?;
        // Safety: recv initialised the first `n` bytes of the unfilled part.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for StreamReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let room = buf.remaining();
        self.get_mut()
            .poll_read_io(cx, room, |data| buf.put_slice(data))
    }
}

impl AsyncBufRead for StreamReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        self.get_mut().poll_fill_buf(cx).map_err(to_io)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        self.get_mut().consume_front(amt);
    }
}
