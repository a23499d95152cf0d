//! `loop.sendfile`: a file sent over a stream transport, with
//! `sendfile(2)` where the kernel allows it.
//!
//! The transport's buffer is drained first and its writes refused while
//! the file goes (asyncio: "unable to write; sendfile is in progress"),
//! so the file's bytes never interleave with the protocol's; reading is
//! paused meanwhile and resumed after, as asyncio does. The bytes go
//! through a duplicate of the transport's socket with
//! [`EventLoop::sock_sendfile`], which also provides the read/write
//! fallback.

use super::transport::Transport;
use crate::error::Error;
use crate::event_loop::EventLoop;

/// Hands the transport's write side back however `sendfile` ends
/// (completed, failed or cancelled).
struct Release<'a> {
    transport: &'a Transport,
    resume_reading: bool,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.transport.end_sendfile(self.resume_reading);
    }
}

impl EventLoop {
    /// Sends `count` bytes of `file` from `offset` (to its end with
    /// `None`) over `transport` (asyncio: `loop.sendfile`), and returns
    /// the bytes sent. Whatever the transport had buffered is sent first.
    /// Uses `sendfile(2)`; with `fallback` (asyncio's default) a file the
    /// kernel cannot send that way is read and written instead, without
    /// it that is [`Error::SendfileNotAvailable`]. The file's offset ends
    /// just past the bytes sent. Await it on the loop's thread.
    ///
    /// Errors: [`Error::InvalidState`] for a closing transport ("Transport
    /// is closing") or one already sending a file; [`Error::Io`] if the
    /// connection fails or ends meanwhile; [`Error::InvalidArgument`] for
    /// a `count` of 0; [`Error::WrongThread`].
    pub async fn sendfile(
        &self,
        transport: &Transport,
        file: &std::fs::File,
        offset: u64,
        count: Option<u64>,
        fallback: bool,
    ) -> Result<u64, Error> {
        if count == Some(0) {
            return Err(Error::InvalidArgument(
                "count must be a positive integer (got 0)".into(),
            ));
        }
        let (sock, was_reading) = transport.begin_sendfile()?;
        let _release = Release {
            transport,
            resume_reading: was_reading,
        };
        transport.drained().await?;
        self.sock_sendfile(&sock, file, offset, count, fallback)
            .await
    }
}
