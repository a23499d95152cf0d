//! What a stream transport reads and writes: a connected socket, or a
//! pipe-like descriptor (a pipe or FIFO end, a character device such as a
//! tty). One transport serves both; only the system calls differ, and
//! they differ here.
//!
//! Sockets are written with `send(MSG_NOSIGNAL)`, so a vanished peer is an
//! `EPIPE` error and never a `SIGPIPE` (`sendfile(2)`, which has no such
//! flag, blocks `SIGPIPE` around the call: see `net::sock::sendfile`). A
//! pipe has no such flag either: writing to one whose reader is gone
//! raises `SIGPIPE`, which Rust programs ignore from `main` on (the
//! standard library sets it to `SIG_IGN` at start-up, as CPython does),
//! so the write fails with `BrokenPipe`. A host program written in
//! another language must ignore `SIGPIPE` for pipes (asyncio's pipes have
//! the same need, which CPython meets by ignoring it at start-up).

use socket2::Socket;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// The most buffers one `writev` takes (Linux's `IOV_MAX`).
const IOV_MAX: usize = 1024;

pub(crate) enum Endpoint {
    Socket(Socket),
    /// A pipe or FIFO end.
    Pipe(OwnedFd),
    /// A character device (a tty): read and written as a pipe, but
    /// readable on a write end means input, not a closed peer.
    Device(OwnedFd),
}

impl From<Socket> for Endpoint {
    fn from(sock: Socket) -> Self {
        Endpoint::Socket(sock)
    }
}

impl Endpoint {
    pub(crate) fn raw_fd(&self) -> RawFd {
        match self {
            Endpoint::Socket(s) => s.as_raw_fd(),
            Endpoint::Pipe(fd) | Endpoint::Device(fd) => fd.as_raw_fd(),
        }
    }

    /// Whether readiness to read on a write end means the reader closed
    /// (asyncio watches sockets and FIFOs that way, not devices).
    pub(crate) fn reports_peer_close(&self) -> bool {
        !matches!(self, Endpoint::Device(_))
    }

    /// A duplicate of the descriptor (`get_extra_info`'s handle lends it).
    pub(crate) fn dup_fd(&self) -> io::Result<OwnedFd> {
        match self {
            Endpoint::Socket(s) => s.try_clone().map(OwnedFd::from),
            Endpoint::Pipe(fd) | Endpoint::Device(fd) => fd.try_clone(),
        }
    }

    pub(crate) fn socket(&self) -> Option<&Socket> {
        match self {
            Endpoint::Socket(s) => Some(s),
            Endpoint::Pipe(_) | Endpoint::Device(_) => None,
        }
    }

    /// One read into `buf`; `Ok(0)` is the end of the stream.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Endpoint::Socket(s) => {
                // Safety: initialised bytes are valid `MaybeUninit<u8>`,
                // and recv only writes into them.
                let uninit =
                    unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
                s.recv(uninit)
            }
            Endpoint::Pipe(fd) | Endpoint::Device(fd) => {
                // Safety: `buf` is valid for writes of `buf.len()` bytes
                // for the duration of the call, and `fd` is open (owned).
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }
        }
    }

    /// One vectored write; returns the bytes taken.
    pub(crate) fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            // One buffer (the common write): `send`, which spares the
            // kernel `sendmsg`'s header and iovec copies.
            Endpoint::Socket(s) if bufs.len() == 1 => {
                s.send_with_flags(&bufs[0], libc::MSG_NOSIGNAL)
            }
            Endpoint::Socket(s) => s.send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL),
            Endpoint::Pipe(fd) | Endpoint::Device(fd) => {
                let count = bufs.len().min(IOV_MAX) as libc::c_int;
                // Safety: `IoSlice` is guaranteed ABI-compatible with
                // `struct iovec` on Unix; the slices and the buffers they
                // point to outlive the call, which only reads them; `fd`
                // is open (owned).
                let n = unsafe { libc::writev(fd.as_raw_fd(), bufs.as_ptr().cast(), count) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }
        }
    }
}
