//! Stream transports (asyncio's `_SelectorSocketTransport`): a connected
//! TCP or Unix socket driven by the loop, talking to a [`Protocol`] or a
//! [`BufferedProtocol`]. The same transport drives a pipe's read or write
//! end (asyncio's `_UnixReadPipeTransport` / `_UnixWritePipeTransport`,
//! see `net::pipe`): the few places where those differ from a socket
//! follow the transport's [`Kind`], and the system calls its
//! `Endpoint`.
//!
//! # How it runs
//! The socket is registered once with the readiness layer and a handler is
//! attached: when the loop reports readability, the transport reads (into
//! the loop's one read buffer for plain protocols, straight into the
//! protocol's buffer for buffered ones) until the socket would block, a
//! few reads at most per iteration so that one busy connection cannot hold
//! the loop; when it reports writability, it flushes its buffer. `write`
//! sends at once when nothing is buffered (as asyncio does), and buffers
//! the rest; the buffer is flushed with vectored writes. Crossing the
//! high-water mark calls `pause_writing`, draining below the low mark
//! `resume_writing` (asyncio's defaults: 64 KiB and a quarter of it).
//! `connection_lost` is always the last callback and comes through the
//! loop's ready queue, as in asyncio.
//!
//! # Threads
//! A transport belongs to its loop. Its methods may be called from any
//! thread, and never race: on the thread running the loop (inside protocol
//! callbacks, tasks, callbacks) they act at once; anywhere else the
//! operation is posted to the loop and happens there, in the order posted
//! (`write` copies the bytes), and the getters read values the loop
//! publishes. Errors of a posted operation go to the loop's exception
//! handler.
//!
//! # Files
//! `state.rs` is what a transport is (its handle, what other threads read,
//! the loop-side state as the steps it goes through); `protocol.rs` the
//! protocols it calls; `read.rs`, `write.rs` (with `buffer.rs`), `tls.rs`
//! and `close.rs` what it does: the read path, the write path and flow
//! control, TLS inside the transport, and how it ends. This file starts
//! transports and holds the public API.

mod buffer;
mod close;
mod protocol;
mod read;
mod state;
mod tls;
mod write;

pub use protocol::{BufferedProtocol, Protocol};
pub(crate) use protocol::{ReaderProtocol, StreamProtocol};
pub(crate) use state::Kind;
pub use state::Transport;
pub(crate) use write::closing;

use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::loop_cell::LoopCell;
use crate::net::endpoint::Endpoint;
use crate::net::extra::{ExtraInfo, FdSource, TransportFd, with_socket_of};
use crate::net::flow::{DEFAULT_HIGH_WATER, PostedBytes, PostedWrite, WriteFlow};
use crate::net::protocol_slot::{self, ProtocolSlot};
use crate::net::tls::TlsLayer;
use crate::readiness::{
    ERROR, IoHandler, READ_CLOSED, READABLE, ScheduledIo, WRITABLE, WRITE_CLOSED,
};
use crate::sched::Local;
use crate::waiters::WakerList;
use buffer::WriteBuffer;
use close::close_socket;
use socket2::{SockAddr, SockRef, Socket};
use state::{Conn, Inner, Io, ReadSide, StreamState, WriteSide};
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

impl FdSource for Inner {
    fn dup_fd(&self) -> Option<std::os::fd::OwnedFd> {
        self.state
            .with(|s| s.conn.endpoint().map(Endpoint::dup_fd))
            .flatten()?
            .ok()
    }
}

/// The transport's side of its registration.
struct Handler(Arc<Inner>);

impl IoHandler for Handler {
    fn ready(&mut self, _io: &ScheduledIo, bits: usize, local: &dyn Local) -> bool {
        let inner = &self.0;
        if bits & (WRITABLE | WRITE_CLOSED | ERROR) != 0 && inner.kind != Kind::ReadPipe {
            inner.write_ready();
        }
        if bits & (READABLE | READ_CLOSED | ERROR) != 0 {
            match inner.kind {
                Kind::WritePipe => {
                    let closed = inner
                        .state
                        .with(|s| s.conn.endpoint().is_some_and(Endpoint::reports_peer_close));
                    if closed == Some(true) {
                        inner.reader_gone();
                    }
                }
                Kind::Socket | Kind::ReadPipe => inner.read_ready(local),
            }
        }
        inner.state.with(|s| s.conn.io().is_some()).unwrap_or(false)
    }

    fn loop_closed(&mut self) {
        self.0.loop_closed();
    }
}

impl Transport {
    /// Wraps a connected, non-blocking stream socket in a transport of the
    /// running loop `event_loop` (loop thread only), registers it, and
    /// queues `connection_made` (asyncio's order: the protocol hears of the
    /// connection before any data). `on_lost` is called once after
    /// `connection_lost` (a server forgets its client there); `made`
    /// completes once `connection_made` has run (asyncio's
    /// `create_connection` returns then).
    pub(crate) fn start(
        event_loop: &EventLoop,
        sock: Socket,
        protocol: StreamProtocol,
        on_lost: Option<Box<dyn FnOnce() + Send>>,
        made: Option<crate::future::LoopFuture<()>>,
        tls: Option<TlsLayer>,
    ) -> Result<Transport, Error> {
        Self::start_endpoint(
            event_loop,
            Endpoint::Socket(sock),
            Kind::Socket,
            protocol,
            on_lost,
            made,
            tls,
        )
    }

    /// [`Transport::start`] for any endpoint (a pipe's already
    /// non-blocking), with TLS when `tls` is given: then `connection_made`
    /// (and `made`) wait for the handshake.
    pub(crate) fn start_endpoint(
        event_loop: &EventLoop,
        endpoint: Endpoint,
        kind: Kind,
        protocol: StreamProtocol,
        on_lost: Option<Box<dyn FnOnce() + Send>>,
        made: Option<crate::future::LoopFuture<()>>,
        tls: Option<TlsLayer>,
    ) -> Result<Transport, Error> {
        if let (Endpoint::Socket(sock), Kind::Socket) = (&endpoint, kind) {
            sock.set_nonblocking(true)?;
            // asyncio sets TCP_NODELAY on TCP transports.
            if let Ok(addr) = sock.local_addr() {
                if addr.as_socket().is_some() {
                    let _ = sock.set_tcp_nodelay(true);
                }
            }
        }
        let raw = endpoint.raw_fd();
        let registration = event_loop.register_source(raw)?;
        let shared = event_loop.inner.shared.clone();
        let sock = endpoint.socket();
        let readiness = registration.io().clone();
        let inner = Arc::new(Inner {
            readiness,
            peername: sock.and_then(|s| s.peer_addr().ok()),
            sockname: sock.and_then(|s| s.local_addr().ok()),
            fd: raw,
            kind,
            is_socket: sock.is_some(),
            state: LoopCell::new(
                shared.id(),
                StreamState {
                    conn: Conn::Open(Io {
                        endpoint,
                        registration,
                    }),
                    slot: ProtocolSlot::new(protocol),
                    read: ReadSide::default(),
                    write: WriteSide::Open,
                    buffer: WriteBuffer::default(),
                    flow: WriteFlow::default(),
                    lost_writes: 0,
                    drain_waiters: WakerList::default(),
                    tls: None,
                    start: made,
                    on_lost,
                },
            ),
            tls: AtomicBool::new(false),
            tls_info: OnceLock::new(),
            shared,
            closing: AtomicBool::new(false),
            reading: AtomicBool::new(kind != Kind::WritePipe),
            buffer_size: AtomicUsize::new(0),
            posted: PostedBytes::default(),
            high: AtomicUsize::new(DEFAULT_HIGH_WATER),
            low: AtomicUsize::new(DEFAULT_HIGH_WATER / 4),
        });
        let handler = Box::new(Handler(inner.clone()));
        inner
            .state
            .with(|s| s.conn.io().map(|io| io.registration.set_handler(handler)))
            .flatten()
            .ok_or(Error::WrongThread)??;
        let transport = inner.handle();
        let t = transport.clone();
        let queued = match tls {
            // The handshake first; connection_made when it completes.
            Some(tls) => inner.begin_tls(tls, true),
            None => event_loop
                .call_soon(move || {
                    // From here on the protocol is connected:
                    // `connection_lost` follows whatever happens (a panic
                    // in `connection_made` included).
                    let made = t.inner.state.with(|s| s.start.take()).flatten();
                    let called =
                        protocol_slot::connection_made(&t.inner, |p| p.connection_made(t.clone()));
                    if called {
                        // Data may have arrived already.
                        t.inner.queue_read();
                    }
                    if let Some(made) = made {
                        let _ = made.set_result(());
                    }
                })
                .map(drop),
        };
        if let Err(e) = queued {
            // The loop is closing: undo the registration (which also
            // breaks the handler's cycle with the transport).
            inner.state.with(close_socket);
            return Err(e);
        }
        Ok(transport)
    }

    /// Runs `op` on the loop's thread: now if this is it, else posted.
    fn on_loop(&self, op: impl FnOnce(&Arc<Inner>) + Send + 'static) {
        super::on_loop(
            &self.inner.shared,
            self.inner.is_loop_thread(),
            &self.inner,
            op,
        );
    }

    /// Sends `data` (asyncio: `transport.write`): at once if nothing is
    /// buffered, the rest (or all of it) buffered and sent as the socket
    /// takes it. Never blocks. Writes after the connection is lost are
    /// dropped and counted (asyncio warns "socket.send() raised exception."
    /// after five); a write error closes the transport and reaches
    /// `connection_lost`. Errors, asyncio's `RuntimeError`s:
    /// [`Error::Runtime`] after [`Transport::write_eof`] ("Cannot call
    /// write() after write_eof()") and while `loop.sendfile` sends ("unable
    /// to write; sendfile is in progress"); [`Error::InvalidState`] on a
    /// read pipe. Off the loop's thread the bytes are copied and the write
    /// is posted to the loop.
    pub fn write(&self, data: &[u8]) -> Result<(), Error> {
        if self.inner.is_loop_thread() {
            return self.inner.write_on_loop(&[data]);
        }
        let data = data.to_vec();
        self.post_write(vec![data]);
        Ok(())
    }

    /// Sends several buffers as one vectored write (asyncio:
    /// `transport.writelines`). See [`Transport::write`].
    pub fn writelines<I, B>(&self, buffers: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let buffers: Vec<B> = buffers.into_iter().collect();
        if self.inner.is_loop_thread() {
            let slices: Vec<&[u8]> = buffers.iter().map(|b| b.as_ref()).collect();
            return self.inner.write_on_loop(&slices);
        }
        self.post_write(buffers.iter().map(|b| b.as_ref().to_vec()).collect());
        Ok(())
    }

    /// A write from another thread: counted at once (the buffer's size
    /// and flow control see it), applied on the loop in order.
    #[track_caller]
    fn post_write(&self, owned: Vec<Vec<u8>>) {
        let len = owned.iter().map(Vec::len).sum();
        let write = PostedWrite::new(&self.inner, len);
        // Unrun (the loop closed), the write gives its count back as it
        // drops.
        let _ = self
            .inner
            .shared
            .call_soon(None, Location::caller(), move || {
                let inner = write.apply();
                let slices: Vec<&[u8]> = owned.iter().map(|b| b.as_slice()).collect();
                inner.apply_posted(&slices);
            });
    }

    /// Closes the write side once the buffer is sent (asyncio:
    /// `write_eof`); the peer reads EOF. Writing afterwards is an error
    /// on a socket; a write pipe has nothing but a write side, so this
    /// closes it (as asyncio) and later writes are dropped. Errors:
    /// [`Error::Runtime`] for TLS ("SSL doesn't support half-closes",
    /// asyncio's `NotImplementedError`), [`Error::InvalidState`] on a read
    /// pipe. Called while `loop.sendfile` sends, it takes effect once the
    /// file went.
    pub fn write_eof(&self) -> Result<(), Error> {
        if self.inner.tls.load(Ordering::Acquire) {
            // asyncio: NotImplementedError, a RuntimeError.
            return Err(Error::Runtime("SSL doesn't support half-closes".into()));
        }
        match self.inner.kind {
            Kind::Socket => {}
            Kind::WritePipe => {
                self.close();
                return Ok(());
            }
            Kind::ReadPipe => {
                return Err(Error::InvalidState(
                    "a read pipe transport has no write side",
                ));
            }
        }
        self.on_loop(|inner| inner.write_eof_on_loop());
        Ok(())
    }

    /// Whether [`Transport::write_eof`] is supported (asyncio:
    /// `can_write_eof`): for TCP and Unix stream sockets and write pipes,
    /// not for read pipes or TLS connections.
    pub fn can_write_eof(&self) -> bool {
        self.inner.kind != Kind::ReadPipe && !self.inner.tls.load(Ordering::Acquire)
    }

    /// Closes the transport (asyncio: `close`): reading stops at once, the
    /// buffer is still sent, then the socket closes and the protocol's
    /// `connection_lost(None)` is called.
    pub fn close(&self) {
        self.on_loop(|inner| inner.close());
    }

    /// Closes the transport at once (asyncio: `abort`): buffered data is
    /// dropped; `connection_lost(None)` follows.
    pub fn abort(&self) {
        self.on_loop(|inner| inner.force_close(None));
    }

    /// Whether the transport is closing or closed (asyncio: `is_closing`).
    /// A `close` or `abort` called off the loop's thread is posted to the
    /// loop, and counts here once the loop has run it.
    pub fn is_closing(&self) -> bool {
        self.inner.closing.load(Ordering::Acquire)
    }

    /// Stops reading until [`Transport::resume_reading`] (asyncio:
    /// `pause_reading`); no `data_received` meanwhile. A write pipe
    /// never reads: nothing to pause.
    pub fn pause_reading(&self) {
        if self.inner.kind == Kind::WritePipe {
            return;
        }
        self.inner.reading.store(false, Ordering::Release);
        self.on_loop(|inner| {
            inner.state.with(|s| {
                if s.conn.is_open() {
                    s.read.paused = true;
                }
                inner.publish(s);
            });
        });
    }

    /// Resumes reading (asyncio: `resume_reading`).
    pub fn resume_reading(&self) {
        if self.inner.kind == Kind::WritePipe {
            return;
        }
        if !self.is_closing() {
            // Seen at once by `is_reading`, even when posted.
            self.inner.reading.store(true, Ordering::Release);
        }
        self.on_loop(|inner| {
            let resumed = inner.state.with(|s| {
                let was = s.read.paused && s.conn.is_open();
                s.read.paused = false;
                inner.publish(s);
                was
            });
            if resumed == Some(true) {
                // Readiness kept while paused is not reported again.
                inner.queue_read();
            }
        });
    }

    /// Whether the transport is reading (asyncio: `is_reading`).
    pub fn is_reading(&self) -> bool {
        self.inner.reading.load(Ordering::Acquire)
    }

    /// Sets the write buffer's flow-control marks (asyncio:
    /// `set_write_buffer_limits`): `high` defaults to 64 KiB (or 4 × `low`
    /// when only `low` is given), `low` to `high / 4`. Error:
    /// [`Error::InvalidArgument`] unless `high >= low`, with asyncio's
    /// wording.
    pub fn set_write_buffer_limits(
        &self,
        high: Option<usize>,
        low: Option<usize>,
    ) -> Result<(), Error> {
        let (high, low) = WriteFlow::limits(high, low)?;
        self.inner.high.store(high, Ordering::Release);
        self.inner.low.store(low, Ordering::Release);
        self.on_loop(move |inner| {
            let owed = inner.state.with(|s| {
                s.flow.set(high, low);
                // asyncio checks for a pause only.
                inner.check_pause(s)
            });
            inner.deliver(owed.flatten());
        });
        Ok(())
    }

    /// The flow-control marks as `(low, high)` (asyncio:
    /// `get_write_buffer_limits`).
    pub fn get_write_buffer_limits(&self) -> (usize, usize) {
        (
            self.inner.low.load(Ordering::Acquire),
            self.inner.high.load(Ordering::Acquire),
        )
    }

    /// Bytes buffered and not yet sent (asyncio: `get_write_buffer_size`),
    /// counting at once what other threads wrote and the loop has not
    /// applied yet: flow control counts those too, so `pause_writing`
    /// comes once writes from any thread pile up over the high mark.
    pub fn get_write_buffer_size(&self) -> usize {
        self.inner.buffer_size.load(Ordering::Acquire) + self.inner.posted.get()
    }

    /// asyncio's `get_extra_info(name)`: for a socket `"peername"`,
    /// `"sockname"` (an address) and `"socket"` (the socket, lent while
    /// the transport is open: [`TransportFd`]); for a pipe `"pipe"` (its
    /// descriptor, lent the same way); once a TLS handshake completed,
    /// `"peercert"` (the peer's certificate chain, DER), `"cipher"` and
    /// `"tls_version"` (names), `"alpn_protocol"` (the protocol ALPN
    /// chose, if any); `None` for other names, and for `"socket"` and
    /// `"pipe"` once the transport is closing.
    pub fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        let socket = self.inner.kind == Kind::Socket;
        let open = !self.is_closing();
        let fd = || TransportFd::new(&self.inner, self.inner.is_socket);
        let tls = self.inner.tls_info.get();
        match name {
            "peername" => self.peername().map(ExtraInfo::Address),
            "sockname" => self.sockname().map(ExtraInfo::Address),
            "socket" if socket && open => Some(ExtraInfo::Socket(fd())),
            "pipe" if !socket && open => Some(ExtraInfo::Pipe(fd())),
            "peercert" => tls
                .filter(|t| !t.peer_certificates.is_empty())
                .map(|t| ExtraInfo::Certificates(t.peer_certificates.clone())),
            "cipher" => tls.and_then(|t| t.cipher.clone()).map(ExtraInfo::Text),
            "tls_version" => tls.and_then(|t| t.version.clone()).map(ExtraInfo::Text),
            "alpn_protocol" => tls.and_then(|t| t.alpn.clone()).map(ExtraInfo::Bytes),
            _ => None,
        }
    }

    /// Whether `loop.sendfile` may use `sendfile(2)`: a socket without
    /// TLS.
    pub(crate) fn sendfile_native(&self) -> bool {
        self.inner.kind == Kind::Socket && !self.inner.tls.load(Ordering::Acquire)
    }

    /// Whether the connection is TLS (`ssl=`, or after `start_tls`).
    pub fn is_tls(&self) -> bool {
        self.inner.tls.load(Ordering::Acquire)
    }

    /// The peer's address.
    pub fn peername(&self) -> Option<SockAddr> {
        self.inner.peername.clone()
    }

    /// The local address.
    pub fn sockname(&self) -> Option<SockAddr> {
        self.inner.sockname.clone()
    }

    /// Replaces the protocol (asyncio: `set_protocol`); the new one gets
    /// the data from now on (it is not told `connection_made`).
    pub fn set_protocol(&self, protocol: impl Protocol) {
        self.replace_protocol(StreamProtocol::Plain(Box::new(protocol)));
    }

    /// [`Transport::set_protocol`] with a buffered protocol.
    pub fn set_buffered_protocol(&self, protocol: impl BufferedProtocol) {
        self.replace_protocol(StreamProtocol::Buffered(Box::new(protocol)));
    }

    fn replace_protocol(&self, protocol: StreamProtocol) {
        self.on_loop(move |inner| {
            let old = inner.state.with(|s| s.slot.replace(protocol));
            crate::util::drop_quietly(old, "a protocol");
        });
    }

    /// Runs `f` on the protocol if it is a `P` (asyncio: `get_protocol`,
    /// typed). `None` off the loop's thread, inside one of the protocol's
    /// own callbacks (it is busy), after `connection_lost`, or if the
    /// protocol is not a `P`.
    pub fn with_protocol<P: 'static, R>(&self, f: impl FnOnce(&mut P) -> R) -> Option<R> {
        self.inner
            .with_protocol("get_protocol", |p| {
                p.as_any().and_then(|p| p.downcast_mut::<P>()).map(f)
            })
            .flatten()
    }

    /// The loop the transport belongs to, while it exists.
    pub fn get_loop(&self) -> Option<EventLoop> {
        self.inner.shared.event_loop()
    }

    /// The socket, for code that needs an option asyncio does not expose
    /// (loop thread only; `None` elsewhere, once closed, or for a pipe).
    /// Do not close it or read from it.
    pub fn with_socket<R>(&self, f: impl FnOnce(SockRef<'_>) -> R) -> Option<R> {
        if !self.inner.is_socket {
            return None;
        }
        with_socket_of(&*self.inner, f)
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("fd", &self.inner.fd)
            .field("kind", &self.inner.kind)
            .field("tls", &self.is_tls())
            .field("peername", &self.inner.peername)
            .field("closing", &self.is_closing())
            .field("buffer", &self.get_write_buffer_size())
            .finish()
    }
}
