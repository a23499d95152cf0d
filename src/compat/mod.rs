//! The Rust ecosystem's I/O traits on evloop's stream types:
//! `futures_io` always, tokio's (feature `tokio-io`) and hyper's runtime
//! traits (feature `hyper`) on request.
//!
//! | type | futures-io | tokio-io | hyper |
//! |---|---|---|---|
//! | [`TcpStream`](crate::TcpStream) | `AsyncRead`, `AsyncWrite` | `AsyncRead`, `AsyncWrite` | `rt::Read`, `rt::Write` |
//! | [`StreamReader`](crate::StreamReader) | `AsyncRead`, `AsyncBufRead` | `AsyncRead`, `AsyncBufRead` | `rt::Read` |
//! | [`StreamWriter`](crate::StreamWriter) | `AsyncWrite` | `AsyncWrite` | `rt::Write` |
//!
//! A `StreamWriter`'s `poll_write` waits while the transport is above its
//! high-water mark (the back-pressure of `drain`), `poll_flush` until the
//! transport's buffer is empty, and `poll_close` until the connection is
//! closed.

/// Implements a write trait shaped like tokio's `AsyncWrite` (tokio's,
/// hyper's `rt::Write`: the same five methods) for [`TcpStream`] and
/// [`StreamWriter`].
///
/// [`TcpStream`]: crate::TcpStream
/// [`StreamWriter`]: crate::StreamWriter
#[cfg(any(feature = "tokio-io", feature = "hyper"))]
macro_rules! impl_shutdown_write {
    ($trait:path) => {
        impl $trait for crate::net::tcp::TcpStream {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                crate::net::tcp::TcpStream::poll_write(self.get_mut(), cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                crate::net::tcp::TcpStream::poll_write_vectored(self.get_mut(), cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            /// Nothing is buffered: every write went to the socket.
            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(
                    self.shutdown(std::net::Shutdown::Write)
                        .map_err(crate::net::tcp::to_io),
                )
            }
        }

        impl $trait for crate::net::streams::StreamWriter {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.poll_write_io(cx, &[buf])
            }

            fn poll_write_vectored(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let bufs: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
                self.poll_write_io(cx, &bufs)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                self.poll_flushed(cx).map_err(crate::net::tcp::to_io)
            }

            /// Sends EOF once the buffer is flushed: the write half closes,
            /// the read half stays open (as for `TcpStream`).
            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                self.poll_shutdown_io(cx)
            }
        }
    };
}

mod futures_io;
#[cfg(feature = "hyper")]
pub(crate) mod hyper;
#[cfg(feature = "tokio-io")]
mod tokio_io;
