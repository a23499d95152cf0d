//! `loop.sendfile`: a file sent over a stream transport, with
//! `sendfile(2)` where the kernel allows it.
//!
//! The transport's buffer is drained first and its writes refused while
//! the file goes (asyncio: "unable to write; sendfile is in progress"),
//! so the file's bytes never interleave with the protocol's; reading is
//! paused meanwhile and resumed after, as asyncio does. The bytes go
//! through a duplicate of the transport's socket with
//! [`EventLoop::sock_sendfile`], which also provides the read/write
//! fallback. A TLS or pipe transport cannot take `sendfile(2)` (TLS must
//! encrypt every byte): there the file is read in chunks and written
//! through the transport, asyncio's `_sendfile_fallback`.

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
    /// kernel cannot send that way, or a transport that cannot take it
    /// (TLS, a pipe), is read and written instead; without it a file the
    /// kernel refuses is [`Error::SendfileNotAvailable`], a transport that
    /// cannot take `sendfile(2)` an [`Error::Runtime`] (as asyncio). The
    /// file's offset ends just past the bytes sent. Await it on the loop's
    /// thread.
    ///
    /// Errors: [`Error::Runtime`] (asyncio's `RuntimeError`) for a
    /// closing transport ("Transport is closing"), one already sending a
    /// file, and `fallback` refused where `sendfile(2)` cannot serve
    /// ("fallback is disabled and native sendfile is not supported for
    /// transport ..."); [`Error::Io`] if the connection fails or ends
    /// meanwhile; [`Error::InvalidArgument`] for a `count` of 0;
    /// [`Error::WrongThread`].
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
        if !transport.sendfile_native() {
            // TLS (the bytes must be encrypted) or a pipe: asyncio's
            // fallback, or its refusal.
            if !fallback {
                return Err(Error::Runtime(format!(
                    "fallback is disabled and native sendfile is not supported for \
                     transport {transport:?}"
                )));
            }
            return self
                .sendfile_by_writes(transport, file, offset, count)
                .await;
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

impl EventLoop {
    /// asyncio's `_sendfile_fallback` for a transport that cannot take
    /// `sendfile(2)`: the file read in chunks on the executor, each
    /// written through the transport and drained before the next. The
    /// file's offset ends just past the bytes sent, as asyncio leaves it.
    async fn sendfile_by_writes(
        &self,
        transport: &Transport,
        file: &std::fs::File,
        offset: u64,
        count: Option<u64>,
    ) -> Result<u64, Error> {
        use std::io::{Seek, SeekFrom};
        if transport.is_closing() {
            return Err(super::transport::closing());
        }
        transport.drained().await?;
        let end = match count {
            Some(c) => offset.saturating_add(c),
            None => file.metadata()?.len(),
        };
        let mut pos = offset;
        let sent = async {
            while pos < end {
                let want = usize::try_from(end - pos).unwrap_or(usize::MAX);
                let buf = self.read_file_chunk(file, pos, want).await?;
                if buf.is_empty() {
                    break;
                }
                transport.write(&buf)?;
                pos += buf.len() as u64;
                transport.drained().await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        if pos > offset {
            (&*file).seek(SeekFrom::Start(pos))?;
        }
        sent.map(|()| pos - offset)
    }
}
