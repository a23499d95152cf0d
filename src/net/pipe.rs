//! asyncio's "Working with pipes": `connect_read_pipe` and
//! `connect_write_pipe` wrap one end of a pipe (or a FIFO, a character
//! device such as a tty, or a socket used as one) in the loop's stream
//! [`Transport`], with the pipe behaviour asyncio gives its
//! `_UnixReadPipeTransport` and `_UnixWritePipeTransport`:
//!
//! - a read pipe delivers `data_received`, then at the writer's EOF
//!   `eof_received` (whose answer is ignored: nothing is left to keep
//!   open) and `connection_lost(None)`; it cannot write;
//! - a write pipe has the socket transport's writing and flow control;
//!   `write_eof` closes it, writes after that are dropped; when the
//!   reader closes its end, the transport closes: `connection_lost(None)`
//!   if nothing was waiting to be sent, `BrokenPipe` if bytes were.
//!
//! The descriptor is made non-blocking and owned by the transport from
//! then on: closing the transport closes it.

use super::endpoint::Endpoint;
use super::transport::{Kind, Protocol, StreamProtocol, Transport};
use crate::error::Error;
use crate::event_loop::EventLoop;
use socket2::Socket;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// Checks that `fd` is something a pipe transport can drive, and makes it
/// non-blocking; a socket comes back as a socket endpoint, so that its
/// writes never raise `SIGPIPE`.
fn pipe_endpoint(fd: OwnedFd, kind: Kind) -> Result<Endpoint, Error> {
    // Safety: an all-zero `stat` is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // Safety: `fd` is open (owned here) and `st` is a valid out-pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(Error::Io(io::Error::last_os_error()));
    }
    let mode = st.st_mode & libc::S_IFMT;
    let socket = mode == libc::S_IFSOCK;
    if !(socket || mode == libc::S_IFIFO || mode == libc::S_IFCHR) {
        return Err(Error::InvalidArgument(
            match kind {
                Kind::ReadPipe => "Pipe transport is for pipes/sockets only.",
                _ => "Pipe transport is only for pipes, sockets and character devices",
            }
            .into(),
        ));
    }
    crate::util::set_nonblocking(fd.as_raw_fd())?;
    Ok(match mode {
        libc::S_IFSOCK => Endpoint::Socket(Socket::from(fd)),
        libc::S_IFIFO => Endpoint::Pipe(fd),
        _ => Endpoint::Device(fd),
    })
}

impl EventLoop {
    /// Wraps the read end of a pipe in a transport whose protocol
    /// `protocol_factory` builds (asyncio: `loop.connect_read_pipe`), and
    /// returns it once `connection_made` has run. `pipe` may be anything
    /// that owns a pipe or FIFO end, a socket or a character device
    /// (`std::process::ChildStdout`, `std::fs::File` of a FIFO,
    /// `OwnedFd`, ...); the transport owns it from here on. See the
    /// module docs of pipes for how EOF and closing behave.
    ///
    /// Errors: [`Error::InvalidArgument`] for a regular file or a
    /// directory ("Pipe transport is for pipes/sockets only."),
    /// [`Error::Io`] if the descriptor cannot be watched,
    /// [`Error::WrongThread`] off the loop's thread.
    pub async fn connect_read_pipe<P, F>(
        &self,
        protocol_factory: F,
        pipe: impl Into<OwnedFd>,
    ) -> Result<Transport, Error>
    where
        P: Protocol,
        F: FnOnce() -> P,
    {
        let protocol = StreamProtocol::Plain(Box::new(protocol_factory()));
        self.connect_pipe(protocol, pipe.into(), Kind::ReadPipe, None)
            .await
    }

    /// Wraps the write end of a pipe in a transport (asyncio:
    /// `loop.connect_write_pipe`): `write`, `writelines`, flow control
    /// through `pause_writing` / `resume_writing`, `write_eof` (which
    /// closes the pipe), `close`, `abort`. Returns once `connection_made`
    /// has run. Writing to a pipe whose reader is gone closes the
    /// transport with `BrokenPipe`.
    ///
    /// Errors: [`Error::InvalidArgument`] for a regular file or a
    /// directory ("Pipe transport is only for pipes, sockets and
    /// character devices"), [`Error::Io`] if the descriptor cannot be
    /// watched, [`Error::WrongThread`] off the loop's thread.
    pub async fn connect_write_pipe<P, F>(
        &self,
        protocol_factory: F,
        pipe: impl Into<OwnedFd>,
    ) -> Result<Transport, Error>
    where
        P: Protocol,
        F: FnOnce() -> P,
    {
        let protocol = StreamProtocol::Plain(Box::new(protocol_factory()));
        self.connect_pipe(protocol, pipe.into(), Kind::WritePipe, None)
            .await
    }

    /// A pipe transport of `kind` driving `protocol`; `on_lost` runs once
    /// after its `connection_lost` (the subprocess layer's hook).
    pub(crate) async fn connect_pipe(
        &self,
        protocol: StreamProtocol,
        pipe: OwnedFd,
        kind: Kind,
        on_lost: Option<Box<dyn FnOnce() + Send>>,
    ) -> Result<Transport, Error> {
        let endpoint = pipe_endpoint(pipe, kind)?;
        self.start_endpoint(endpoint, kind, protocol, on_lost, None)
            .await
    }
}
