//! [`TcpStream`] and [`TcpListener`]: plain byte streams on the readiness
//! layer, for code written against Rust's I/O traits rather than asyncio's
//! reader (hyper, codecs, TLS libraries). The shape of tokio's types of
//! the same names: reading and writing take `&mut self` (one reader and
//! one writer, as the I/O traits have it), and `readable()` /
//! `writable()` with `try_read` / `try_write` serve any number of tasks
//! sharing one stream by reference; `accept` takes `&self` and any number
//! of tasks may accept on one listener.
//!
//! Each owns its socket and one registration with its loop. A read or
//! write tries the system call first and waits for readiness only when it
//! would block (edge-triggered, see `crate::readiness`), so a busy
//! connection costs one system call per operation and no `epoll_ctl`.

use super::addr_repr;
use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::readiness::{Direction, Registration};
use socket2::{Domain, SockAddr, Socket, Type};
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::task::{Context, Poll};

/// A socket and its registration with a loop.
struct Registered {
    sock: Socket,
    registration: Registration,
}

impl Registered {
    fn new(event_loop: &EventLoop, sock: Socket) -> Result<Registered, Error> {
        sock.set_nonblocking(true)?;
        let raw = sock.as_raw_fd();
        let registration = event_loop.register_source(raw)?;
        Ok(Registered { sock, registration })
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        // Out of the poller before the socket closes.
        let raw = self.sock.as_raw_fd();
        self.registration.deregister(&mut mio::unix::SourceFd(&raw));
    }
}

/// Linux's `IOV_MAX`: the most slices one vectored write takes.
const IOV_MAX: usize = 1024;

fn recv(sock: &Socket, buf: &mut [u8]) -> io::Result<usize> {
    // Safety: initialised bytes are valid `MaybeUninit<u8>`; recv only
    // writes into them.
    let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
    sock.recv(uninit)
}

/// A TCP (or Unix) stream socket driven by a loop: `poll_read` /
/// `poll_write`, and through them `futures_io::AsyncRead` /
/// `AsyncWrite`, `tokio::io::AsyncRead` / `AsyncWrite` (feature
/// `tokio-io`) and hyper's `rt::Read` / `rt::Write` (feature `hyper`).
///
/// Use it on its loop's thread (in the loop's tasks); the waits resolve
/// only while the loop runs. Reading and writing take `&mut self`, as
/// tokio's; tasks sharing one stream by reference wait with
/// [`TcpStream::readable`] / [`TcpStream::writable`] and use
/// [`TcpStream::try_read`] / [`TcpStream::try_write`].
///
/// ```no_run
/// use evloop::{EventLoop, TcpStream};
///
/// let lp = EventLoop::new()?;
/// lp.run_until_complete(async {
///     let mut stream = TcpStream::connect(&lp, "127.0.0.1", 8888).await?;
///     stream.write_all(b"ping").await?;
///     let mut buf = [0u8; 4];
///     let n = stream.read(&mut buf).await?;
///     println!("{:?}", &buf[..n]);
///     Ok::<(), evloop::Error>(())
/// })??;
/// # Ok::<(), evloop::Error>(())
/// ```
pub struct TcpStream {
    io: Registered,
}

impl TcpStream {
    /// Connects to `host`:`port` the way [`EventLoop::create_connection`]
    /// does (resolution, each address in turn), with TCP_NODELAY set.
    /// Await it on the loop `event_loop`. Errors as `create_connection`.
    pub async fn connect(
        event_loop: &EventLoop,
        host: &str,
        port: u16,
    ) -> Result<TcpStream, Error> {
        let sock = event_loop
            .connect_socket(Some(host), port, Default::default())
            .await?;
        let _ = sock.set_tcp_nodelay(true);
        TcpStream::from_socket(event_loop, sock)
    }

    /// Wraps a connected stream socket (made non-blocking) in a stream of
    /// `event_loop`, which must be running on this thread.
    pub fn from_socket(
        event_loop: &EventLoop,
        sock: impl Into<Socket>,
    ) -> Result<TcpStream, Error> {
        let sock = sock.into();
        if sock.r#type()? != Type::STREAM {
            return Err(Error::InvalidArgument(format!(
                "A Stream Socket was expected, got {:?}",
                sock.r#type()?
            )));
        }
        Ok(TcpStream {
            io: Registered::new(event_loop, sock)?,
        })
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Result<SockAddr, Error> {
        Ok(self.io.sock.peer_addr()?)
    }

    /// This end's address.
    pub fn local_addr(&self) -> Result<SockAddr, Error> {
        Ok(self.io.sock.local_addr()?)
    }

    /// Sets TCP_NODELAY.
    pub fn set_nodelay(&self, nodelay: bool) -> Result<(), Error> {
        Ok(self.io.sock.set_tcp_nodelay(nodelay)?)
    }

    /// Shuts down the read, write or both halves.
    pub fn shutdown(&self, how: Shutdown) -> Result<(), Error> {
        Ok(self.io.sock.shutdown(how)?)
    }

    /// Reads into `buf` once it is readable; `Ok(0)` at EOF.
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let sock = &self.io.sock;
        let len = buf.len();
        self.io
            .registration
            .poll_transfer(Direction::Read, cx, len, || recv(sock, buf))
    }

    /// [`TcpStream::poll_read`] into memory that need not be initialised
    /// (tokio's `ReadBuf`, hyper's `ReadBufCursor`); the first `n` bytes
    /// are initialised when it returns `Ok(n)`.
    #[cfg_attr(not(any(feature = "tokio-io", feature = "hyper")), allow(dead_code))]
    pub(crate) fn poll_read_uninit(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [std::mem::MaybeUninit<u8>],
    ) -> Poll<io::Result<usize>> {
        let sock = &self.io.sock;
        let len = buf.len();
        self.io
            .registration
            .poll_transfer(Direction::Read, cx, len, || sock.recv(buf))
    }

    /// Writes from `buf` once it is writable.
    pub fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let sock = &self.io.sock;
        self.io
            .registration
            .poll_transfer(Direction::Write, cx, buf.len(), || {
                sock.send_with_flags(buf, libc::MSG_NOSIGNAL)
            })
    }

    /// Writes from several buffers in one system call.
    pub fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let sock = &self.io.sock;
        // The kernel refuses more than IOV_MAX slices: send the first ones
        // (a short write, as std and tokio do), and count only those.
        let bufs = &bufs[..bufs.len().min(IOV_MAX)];
        let len = bufs.iter().map(|b| b.len()).sum();
        self.io
            .registration
            .poll_transfer(Direction::Write, cx, len, || {
                sock.send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL)
            })
    }

    /// Reads into `buf`; `Ok(0)` at EOF. `&mut self`: one reader at a
    /// time (tasks that share a stream use [`TcpStream::readable`] and
    /// [`TcpStream::try_read`]).
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        Ok(poll_fn(|cx| self.poll_read(cx, buf)).await?)
    }

    /// Writes some of `buf`; returns how much.
    pub async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        Ok(poll_fn(|cx| self.poll_write(cx, buf)).await?)
    }

    /// Writes all of `buf`.
    pub async fn write_all(&mut self, mut buf: &[u8]) -> Result<(), Error> {
        while !buf.is_empty() {
            let n = self.write(buf).await?;
            if n == 0 {
                return Err(Error::Io(io::ErrorKind::WriteZero.into()));
            }
            buf = &buf[n..];
        }
        Ok(())
    }
}

/// Shared use: any number of tasks may wait for readiness on one stream
/// (`&TcpStream`), each woken by the next edge, then try the operation,
/// as with tokio's methods of the same names. A wait that is dropped
/// (a timeout, a lost `select!` branch) leaves nothing behind.
impl TcpStream {
    /// Waits until the stream may be read (data, EOF, or an error to
    /// report); [`TcpStream::try_read`] then reads. The readiness can be
    /// stale (another task read first): `try_read` then says
    /// `WouldBlock`, and the caller waits again. Error: [`Error::Closed`]
    /// if the loop closed.
    ///
    /// ```no_run
    /// use evloop::{EventLoop, TcpStream};
    /// use std::sync::Arc;
    ///
    /// let lp = EventLoop::new()?;
    /// lp.run_until_complete(async {
    ///     let stream = Arc::new(TcpStream::connect(&lp, "127.0.0.1", 8888).await?);
    ///     // Two tasks read one stream; each byte goes to one of them.
    ///     let readers: Vec<_> = (0..2)
    ///         .map(|_| {
    ///             let stream = stream.clone();
    ///             evloop::spawn(async move {
    ///                 let mut buf = [0u8; 1024];
    ///                 loop {
    ///                     stream.readable().await?;
    ///                     match stream.try_read(&mut buf) {
    ///                         Ok(n) => return Ok::<_, evloop::Error>(buf[..n].to_vec()),
    ///                         Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
    ///                         Err(e) => return Err(e.into()),
    ///                     }
    ///                 }
    ///             })
    ///         })
    ///         .collect::<Result<_, _>>()?;
    ///     for r in readers {
    ///         println!("{:?}", r.await);
    ///     }
    ///     Ok::<(), evloop::Error>(())
    /// })??;
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub async fn readable(&self) -> Result<(), Error> {
        self.ready(Direction::Read).await
    }

    /// Waits until the stream may be written; see
    /// [`TcpStream::readable`] and [`TcpStream::try_write`].
    pub async fn writable(&self) -> Result<(), Error> {
        self.ready(Direction::Write).await
    }

    async fn ready(&self, direction: Direction) -> Result<(), Error> {
        let mut wait = SharedWait {
            registration: &self.io.registration,
            direction,
            id: None,
        };
        poll_fn(|cx| wait.poll(cx))
            .await
            .map(drop)
            .map_err(Error::from)
    }

    /// Reads into `buf` if the stream is readable now: `Ok(0)` at EOF,
    /// `WouldBlock` if nothing is there (readiness is cleared, so the next
    /// [`TcpStream::readable`] waits for new data).
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len();
        self.io.registration.try_io(
            Direction::Read,
            || recv(&self.io.sock, buf),
            |&n| n > 0 && n < len,
        )
    }

    /// Writes some of `buf` if the stream is writable now; `WouldBlock`
    /// if it is full (see [`TcpStream::try_read`]).
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.io.registration.try_io(
            Direction::Write,
            || self.io.sock.send_with_flags(buf, libc::MSG_NOSIGNAL),
            |&n| n > 0 && n < buf.len(),
        )
    }
}

/// A wait for readiness among others; its waiter entry goes when it is
/// dropped.
struct SharedWait<'a> {
    registration: &'a Registration,
    direction: Direction,
    id: Option<u64>,
}

impl SharedWait<'_> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<crate::readiness::ReadyEvent>> {
        self.registration
            .poll_ready_shared(self.direction, cx, &mut self.id)
    }
}

impl Drop for SharedWait<'_> {
    fn drop(&mut self) {
        self.registration
            .io()
            .forget_shared(self.direction, &mut self.id);
    }
}

impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.sock.as_fd()
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.io.sock.as_raw_fd()
    }
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let peer = self.io.sock.peer_addr().ok();
        f.debug_struct("TcpStream")
            .field("fd", &self.as_raw_fd())
            .field("peer", &peer.as_ref().map(addr_repr))
            .finish()
    }
}

/// A listening socket driven by a loop; [`TcpListener::accept`] yields
/// [`TcpStream`]s.
pub struct TcpListener {
    io: Registered,
}

impl TcpListener {
    /// Binds `addr` and listens (backlog 100, SO_REUSEADDR, as
    /// [`EventLoop::create_server`]); with `reuse_port`, SO_REUSEPORT too,
    /// so that loops on several threads can each bind the same port.
    /// Call it inside the running loop `event_loop` (a task or callback of
    /// it): [`Error::WrongThread`] elsewhere; [`Error::Os`] with asyncio's
    /// bind wording if the address is taken.
    pub fn bind(
        event_loop: &EventLoop,
        addr: SocketAddr,
        reuse_port: bool,
    ) -> Result<TcpListener, Error> {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        sock.set_reuse_address(true)?;
        if reuse_port {
            sock.set_reuse_port(true)?;
        }
        let sa = SockAddr::from(addr);
        sock.bind(&sa).map_err(|e| super::bind_error(&sa, e))?;
        sock.listen(100)?;
        TcpListener::from_socket(event_loop, sock)
    }

    /// Wraps a listening socket (made non-blocking), inside the running
    /// loop `event_loop`.
    pub fn from_socket(
        event_loop: &EventLoop,
        sock: impl Into<Socket>,
    ) -> Result<TcpListener, Error> {
        Ok(TcpListener {
            io: Registered::new(event_loop, sock.into())?,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SockAddr, Error> {
        Ok(self.io.sock.local_addr()?)
    }

    /// Accepts a connection once one is waiting. As tokio's, only the
    /// task of the last call is woken: tasks that accept together use
    /// [`TcpListener::accept`].
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Socket, SockAddr)>> {
        let sock = &self.io.sock;
        self.io
            .registration
            .poll_io(Direction::Read, cx, || sock.accept())
    }

    /// Accepts a connection, as a stream of `event_loop` (the listener's
    /// loop) with TCP_NODELAY set. Any number of tasks may accept on one
    /// listener at once; each connection goes to one of them.
    pub async fn accept(&self, event_loop: &EventLoop) -> Result<(TcpStream, SockAddr), Error> {
        let mut wait = SharedWait {
            registration: &self.io.registration,
            direction: Direction::Read,
            id: None,
        };
        let (sock, addr) = poll_fn(|cx| {
            let accept = || self.io.sock.accept();
            let io = wait.registration.io();
            io.poll_op_shared(Direction::Read, cx, &mut wait.id, accept, |_| false)
        })
        .await?;
        if addr.is_ipv4() || addr.is_ipv6() {
            let _ = sock.set_tcp_nodelay(true);
        }
        Ok((TcpStream::from_socket(event_loop, sock)?, addr))
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.io.sock.as_raw_fd()
    }
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let local = self.io.sock.local_addr().ok();
        f.debug_struct("TcpListener")
            .field("fd", &self.as_raw_fd())
            .field("local", &local.as_ref().map(addr_repr))
            .finish()
    }
}

/// Error conversion for the I/O traits.
pub(crate) fn to_io(e: Error) -> io::Error {
    match e {
        Error::Io(e) => e,
        other => io::Error::other(other),
    }
}
