//! asyncio's "Working with socket objects directly": `sock_recv`,
//! `sock_sendall`, `sock_connect`, `sock_accept` and the rest, as async
//! methods of the loop on the caller's own non-blocking sockets.
//!
//! Each call first tries its system call; only if that would block does
//! it wait for readiness. The socket is registered with the loop's poller
//! at its first wait and the registration is kept for the next
//! (`IoSet::borrow_socket`): a later wait on the same socket costs one
//! `getsockopt(SO_COOKIE)`, which tells it from another socket that got
//! the same fd number, instead of a `dup`, two `epoll_ctl`s and a
//! `close`. The socket itself is registered, so its owner's `close` closes
//! the connection; the kernel then drops it from the poller. Any number
//! of calls may wait on one socket at once (a waiter list per direction),
//! and a call dropped while waiting (cancelled) leaves nothing behind. A
//! socket that is also watched otherwise (`add_reader`, a transport), or
//! that has no cookie, is waited on through a registered duplicate of its
//! fd for the duration of one call, as before.

use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::readiness::{Direction, Registration};
use socket2::{SockAddr, SockRef, Socket};
use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::task::Context;

/// asyncio's refusal of a blocking socket.
fn must_be_non_blocking(fd: BorrowedFd<'_>) -> Result<(), Error> {
    // Safety: fcntl(F_GETFL) on a borrowed, open fd.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(Error::Io(io::Error::last_os_error()));
    }
    if flags & libc::O_NONBLOCK == 0 {
        return Err(Error::InvalidArgument(
            "the socket must be non-blocking".into(),
        ));
    }
    Ok(())
}

/// A socket's temporary registration with the loop: a `dup` of its fd,
/// registered for the duration of one operation.
struct Waiter {
    dup: OwnedFd,
    registration: Registration,
}

impl Waiter {
    /// Registers a duplicate of `fd` with the loop running on this thread
    /// (which must be `event_loop`).
    fn new(event_loop: &EventLoop, fd: BorrowedFd<'_>) -> Result<Waiter, Error> {
        let dup = fd.try_clone_to_owned()?;
        let raw = dup.as_raw_fd();
        let registration = event_loop.register_source(raw)?;
        Ok(Waiter { dup, registration })
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        // Out of the poller before the duplicate closes.
        let raw = self.dup.as_raw_fd();
        self.registration.deregister(&mut mio::unix::SourceFd(&raw));
    }
}

/// Runs `op` until it does not block: at once if it can, otherwise after
/// readiness in `direction`, registering the socket on first need.
async fn io_op<R>(
    event_loop: &EventLoop,
    fd: BorrowedFd<'_>,
    direction: Direction,
    mut op: impl FnMut() -> io::Result<R>,
) -> Result<R, Error> {
    if event_loop.is_closed() {
        return Err(Error::Closed);
    }
    must_be_non_blocking(fd)?;
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.map_err(Error::Io),
        }
    }
    if let Some(io) = crate::readiness::socket_cookie(fd.as_raw_fd())
        .and_then(|cookie| event_loop.borrow_socket(fd.as_raw_fd(), cookie).ok())
    {
        let mut wait = SharedWait {
            io,
            direction,
            id: None,
        };
        return poll_fn(|cx: &mut Context<'_>| {
            wait.io
                .poll_op_shared(direction, cx, &mut wait.id, &mut op, |_| false)
        })
        .await
        .map_err(Error::Io);
    }
    let waiter = Waiter::new(event_loop, fd)?;
    poll_fn(|cx: &mut Context<'_>| waiter.registration.poll_io(direction, cx, &mut op))
        .await
        .map_err(Error::Io)
}

/// A wait on a kept registration; its waiter entry goes when it drops.
struct SharedWait {
    io: std::sync::Arc<crate::readiness::ScheduledIo>,
    direction: Direction,
    id: Option<u64>,
}

impl Drop for SharedWait {
    fn drop(&mut self) {
        self.io.forget_shared(self.direction, &mut self.id);
    }
}

/// Reads into `buf` as `MaybeUninit` (socket2's calling convention).
fn as_uninit(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // Safety: an initialised byte is a valid `MaybeUninit<u8>`, and the
    // callee only writes bytes into it.
    unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) }
}

impl EventLoop {
    /// Receives up to `nbytes` bytes from `sock` (asyncio:
    /// `loop.sock_recv`); an empty vector means the peer closed. `sock`
    /// must be a non-blocking socket (`socket2::Socket`, or a std socket
    /// type); await it on this loop's thread.
    ///
    /// Errors: [`Error::InvalidArgument`] ("the socket must be
    /// non-blocking"), [`Error::Closed`], [`Error::Io`] for the system
    /// call's error (a reset peer, say), [`Error::WrongThread`].
    ///
    /// ```
    /// use evloop::EventLoop;
    /// use std::io::Write;
    ///
    /// let lp = EventLoop::new()?;
    /// let (a, mut b) = std::os::unix::net::UnixStream::pair()?;
    /// a.set_nonblocking(true)?;
    /// b.write_all(b"ping")?;
    /// let got = lp.run_until_complete(async { lp.sock_recv(&a, 1024).await })??;
    /// assert_eq!(got, b"ping");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn sock_recv<S: AsFd + ?Sized>(
        &self,
        sock: &S,
        nbytes: usize,
    ) -> Result<Vec<u8>, Error> {
        let mut buf = vec![0u8; nbytes];
        let n = self.sock_recv_into(sock, &mut buf).await?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Receives into `buf` (asyncio: `loop.sock_recv_into`); returns how
    /// many bytes came (0: the peer closed). See [`EventLoop::sock_recv`].
    pub async fn sock_recv_into<S: AsFd + ?Sized>(
        &self,
        sock: &S,
        buf: &mut [u8],
    ) -> Result<usize, Error> {
        let fd = sock.as_fd();
        if buf.is_empty() {
            // recv(2) of nothing would block until data came: like
            // CPython's socket module, answer 0 without a system call
            // (after the same checks).
            if self.is_closed() {
                return Err(Error::Closed);
            }
            must_be_non_blocking(fd)?;
            return Ok(0);
        }
        io_op(self, fd, Direction::Read, || {
            SockRef::from(&fd).recv(as_uninit(buf))
        })
        .await
    }

    /// Receives a datagram of up to `bufsize` bytes and its sender's
    /// address (asyncio: `loop.sock_recvfrom`). See
    /// [`EventLoop::sock_recv`].
    pub async fn sock_recvfrom<S: AsFd + ?Sized>(
        &self,
        sock: &S,
        bufsize: usize,
    ) -> Result<(Vec<u8>, SockAddr), Error> {
        let mut buf = vec![0u8; bufsize];
        let (n, addr) = self.sock_recvfrom_into(sock, &mut buf).await?;
        buf.truncate(n);
        Ok((buf, addr))
    }

    /// Receives a datagram into `buf` (asyncio: `loop.sock_recvfrom_into`);
    /// returns its length and the sender's address. See
    /// [`EventLoop::sock_recv`].
    pub async fn sock_recvfrom_into<S: AsFd + ?Sized>(
        &self,
        sock: &S,
        buf: &mut [u8],
    ) -> Result<(usize, SockAddr), Error> {
        let fd = sock.as_fd();
        io_op(self, fd, Direction::Read, || {
            SockRef::from(&fd).recv_from(as_uninit(buf))
        })
        .await
    }

    /// Sends all of `data` (asyncio: `loop.sock_sendall`), waiting for room
    /// in the socket's buffer as needed. If the call is cancelled part of
    /// the data may have been sent (as in asyncio). See
    /// [`EventLoop::sock_recv`]; a peer that is gone gives
    /// [`Error::Io`] (`BrokenPipe`, never a `SIGPIPE`).
    pub async fn sock_sendall<S: AsFd + ?Sized>(&self, sock: &S, data: &[u8]) -> Result<(), Error> {
        let fd = sock.as_fd();
        let mut sent = 0;
        while sent < data.len() {
            let n = io_op(self, fd, Direction::Write, || send(fd, &data[sent..])).await?;
            sent += n;
        }
        Ok(())
    }

    /// Sends a datagram to `addr` (asyncio: `loop.sock_sendto`); returns
    /// the bytes sent. See [`EventLoop::sock_recv`].
    pub async fn sock_sendto<S: AsFd + ?Sized>(
        &self,
        sock: &S,
        data: &[u8],
        addr: &SockAddr,
    ) -> Result<usize, Error> {
        let fd = sock.as_fd();
        io_op(self, fd, Direction::Write, || {
            SockRef::from(&fd).send_to_with_flags(data, addr, libc::MSG_NOSIGNAL)
        })
        .await
    }

    /// Connects `sock` to `addr` (asyncio: `loop.sock_connect`), waiting
    /// for the connection to complete. Errors as [`EventLoop::sock_recv`];
    /// a refused connection is [`Error::Io`] with `ConnectionRefused`.
    pub async fn sock_connect<S: AsFd + ?Sized>(
        &self,
        sock: &S,
        addr: &SockAddr,
    ) -> Result<(), Error> {
        let fd = sock.as_fd();
        if self.is_closed() {
            return Err(Error::Closed);
        }
        must_be_non_blocking(fd)?;
        match SockRef::from(&fd).connect(addr) {
            Ok(()) => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EINPROGRESS)
                    || e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(Error::Io(e)),
        }
        let waiter = Waiter::new(self, fd)?;
        poll_fn(|cx| waiter.registration.poll_ready(Direction::Write, cx))
            .await
            .map_err(Error::Io)?;
        match SockRef::from(&fd).take_error()? {
            Some(e) => Err(Error::Io(e)),
            None => Ok(()),
        }
    }

    /// Accepts a connection on the listening `sock` (asyncio:
    /// `loop.sock_accept`): the new socket, non-blocking, and the peer's
    /// address. See [`EventLoop::sock_recv`].
    pub async fn sock_accept<S: AsFd + ?Sized>(
        &self,
        sock: &S,
    ) -> Result<(Socket, SockAddr), Error> {
        let fd = sock.as_fd();
        let (conn, addr) = io_op(self, fd, Direction::Read, || SockRef::from(&fd).accept()).await?;
        conn.set_nonblocking(true)?;
        Ok((conn, addr))
    }

    /// Sends `count` bytes of `file` from `offset` (all of it to the end
    /// with `None`) over the connected stream socket `sock` (asyncio:
    /// `loop.sock_sendfile`), with `sendfile(2)`: the bytes go from the
    /// page cache to the socket without passing through user space. With
    /// `fallback` (asyncio's default), a file or socket `sendfile(2)`
    /// refuses is sent by reading and writing instead; without it that is
    /// an error. Returns the bytes sent; as in asyncio, the file's offset
    /// is left just past them (at `offset + sent`) when any were sent.
    ///
    /// Errors: [`Error::InvalidArgument`] for a `count` of 0 or a socket
    /// that is not a stream socket (asyncio's wording), and as
    /// [`EventLoop::sock_sendall`].
    pub async fn sock_sendfile<S: AsFd + ?Sized>(
        &self,
        sock: &S,
        file: &std::fs::File,
        offset: u64,
        count: Option<u64>,
        fallback: bool,
    ) -> Result<u64, Error> {
        let fd = sock.as_fd();
        if count == Some(0) {
            return Err(Error::InvalidArgument(
                "count must be a positive integer (got 0)".into(),
            ));
        }
        if SockRef::from(&fd).r#type()? != socket2::Type::STREAM {
            return Err(Error::InvalidArgument(
                "only SOCK_STREAM type sockets are supported".into(),
            ));
        }
        // The file's offset follows what was sent, also when the call is
        // cancelled (asyncio does it in a `finally`).
        struct MoveOffset<'a> {
            file: &'a std::fs::File,
            start: u64,
            pos: AtomicU64,
        }
        impl Drop for MoveOffset<'_> {
            fn drop(&mut self) {
                use std::io::Seek;
                if self.pos.load(Relaxed) > self.start {
                    let mut f = self.file;
                    let _ = f.seek(io::SeekFrom::Start(self.pos.load(Relaxed)));
                }
            }
        }
        let progress = MoveOffset {
            file,
            start: offset,
            pos: AtomicU64::new(offset),
        };
        self.sendfile_range(sock, file, &progress.pos, count, fallback)
            .await?;
        Ok(progress.pos.load(Relaxed) - offset)
    }

    /// `sock_sendfile`'s loop: advances `pos` as bytes go.
    async fn sendfile_range<S: AsFd + ?Sized>(
        &self,
        sock: &S,
        file: &std::fs::File,
        pos: &AtomicU64,
        count: Option<u64>,
        fallback: bool,
    ) -> Result<(), Error> {
        let fd = sock.as_fd();
        let offset = pos.load(Relaxed);
        let end = match count {
            Some(c) => offset.saturating_add(c),
            None => file.metadata()?.len(),
        };
        let mut native = true;
        while pos.load(Relaxed) < end {
            let want = usize::try_from(end - pos.load(Relaxed))
                .unwrap_or(usize::MAX)
                .min(1 << 30);
            if native {
                let r = io_op(self, fd, Direction::Write, || {
                    sendfile(fd, file.as_fd(), pos.load(Relaxed), want)
                })
                .await;
                match r {
                    Ok(0) => break, // the file is shorter than said
                    Ok(n) => {
                        pos.fetch_add(n as u64, Relaxed);
                    }
                    Err(Error::Io(e))
                        if pos.load(Relaxed) == offset
                            && matches!(
                                e.raw_os_error(),
                                Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
                            ) =>
                    {
                        if !fallback {
                            return Err(Error::SendfileNotAvailable(e.to_string()));
                        }
                        native = false;
                    }
                    Err(e) => return Err(e),
                }
            } else {
                let buf = self.read_file_chunk(file, pos.load(Relaxed), want).await?;
                if buf.is_empty() {
                    break;
                }
                self.sock_sendall(sock, &buf).await?;
                pos.fetch_add(buf.len() as u64, Relaxed);
            }
        }
        Ok(())
    }
}

impl EventLoop {
    /// Reads up to 256 KiB of `file` at `at` for a sendfile fallback.
    /// Disk reads block: they run on the default executor, as asyncio's
    /// fallback does.
    pub(crate) async fn read_file_chunk(
        &self,
        file: &std::fs::File,
        at: u64,
        want: usize,
    ) -> Result<Vec<u8>, Error> {
        let chunk = want.min(256 * 1024);
        let reader = file.try_clone()?;
        self.run_in_executor(None, move || {
            let mut buf = vec![0u8; chunk];
            read_at(&reader, &mut buf, at).map(|n| {
                buf.truncate(n);
                buf
            })
        })?
        .await
        .map_err(|e| Error::InvalidState(task_failure(&e)))?
        .map_err(Error::Io)
    }
}

/// A file read job that did not return (its pool dropped it).
fn task_failure(e: &crate::TaskError) -> &'static str {
    if e.is_cancelled() {
        "the file read was cancelled"
    } else {
        "the file read did not complete"
    }
}

/// `send` without `SIGPIPE`.
pub(crate) fn send(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    SockRef::from(&fd).send_with_flags(data, libc::MSG_NOSIGNAL)
}

/// One `sendfile(2)` call. `sendfile` has no `MSG_NOSIGNAL`: to a peer
/// that reset the connection it raises `SIGPIPE`, which kills a process
/// whose `SIGPIPE` is at its default (a host that embeds evloop, not a
/// Rust `main`, which ignores it). Unless `SIGPIPE` is ignored, the call
/// runs with it blocked on this thread, and the one it raised is taken
/// back, so the peer's going away is only the `EPIPE` error.
pub(crate) fn sendfile(
    out: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: u64,
    count: usize,
) -> io::Result<usize> {
    let mut off =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    without_sigpipe(|| {
        // Safety: both fds are borrowed and open; `off` is ours.
        let n = unsafe { libc::sendfile(out.as_raw_fd(), file.as_raw_fd(), &mut off, count) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    })
}

/// Runs `call`, a system call that may raise `SIGPIPE`, so that the signal
/// does nothing: at once if `SIGPIPE` is ignored; otherwise with it
/// blocked on this thread, taking back (`sigtimedwait`) a `SIGPIPE` that
/// was not pending before and that the call's `EPIPE` says it raised.
fn without_sigpipe(call: impl FnOnce() -> io::Result<usize>) -> io::Result<usize> {
    // Safety (whole function): the sigset and sigaction values are plain
    // data we own, initialised by sigemptyset / the kernel before use; the
    // mask is restored on this thread before returning.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut action) == 0
            && action.sa_sigaction == libc::SIG_IGN
        {
            return call();
        }
        let mut pipe: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        let mut pending: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pending);
        libc::sigpending(&mut pending);
        let was_pending = libc::sigismember(&pending, libc::SIGPIPE) == 1;
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, &mut old);
        let result = call();
        let raised = matches!(&result, Err(e) if e.raw_os_error() == Some(libc::EPIPE));
        if raised && !was_pending {
            let now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            while libc::sigtimedwait(&pipe, std::ptr::null_mut(), &now) < 0
                && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
            {}
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        result
    }
}

/// `pread`: reads at `offset` without moving the file's own offset.
pub(crate) fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    loop {
        match file.read_at(buf, offset) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
