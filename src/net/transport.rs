//! Stream transports (asyncio's `_SelectorSocketTransport`): a connected
//! TCP or Unix socket driven by the loop, talking to a [`Protocol`] or a
//! [`BufferedProtocol`]. The same transport drives a pipe's read or write
//! end (asyncio's `_UnixReadPipeTransport` / `_UnixWritePipeTransport`,
//! see `net::pipe`): the few places where those differ from a socket
//! follow the transport's [`Kind`], and the system calls its
//! [`Endpoint`].
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

use super::endpoint::Endpoint;
use super::protocol::{BufferedProtocol, Protocol, StreamProtocol};
use super::protocol_slot::{self, OwedCall, ProtocolSlot, SlotOwner};
use super::tls::{Handshake, TlsInfo, TlsLayer};
use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::event_loop::shared::Shared;
use crate::exception::ExceptionContext;
use crate::future::LoopFuture;
use crate::loop_cell::LoopCell;
use crate::readiness::{
    Direction, ERROR, IoHandler, READ_CLOSED, READABLE, Registration, ScheduledIo, WRITABLE,
    WRITE_CLOSED,
};
use crate::sched::Local;
use crate::waiters::WakerList;
use socket2::{SockAddr, SockRef, Socket};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::RawFd;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

/// asyncio's default high-water mark for a transport's write buffer.
pub const DEFAULT_HIGH_WATER: usize = 64 * 1024;
/// How much one read asks for (asyncio's `max_size`: 256 KiB).
const READ_SIZE: usize = 256 * 1024;
/// Reads per readiness event before yielding to the rest of the loop.
const READS_PER_EVENT: usize = 4;
/// Buffered chunks one vectored write sends at most.
const MAX_IOVECS: usize = 64;
/// asyncio's `LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const CONNLOST_WARN_AFTER: usize = 5;

/// What [`Transport::get_extra_info`] answers (asyncio's
/// `get_extra_info(name)` keys `peername`, `sockname` and `socket`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ExtraInfo {
    /// `peername` / `sockname`: an address.
    Address(SockAddr),
    /// `socket` / `pipe`: the file descriptor. Use it only while the
    /// transport is open, and never close it.
    Fd(RawFd),
    /// `peercert`: the TLS peer's certificate chain, DER-encoded, the
    /// peer's own first.
    Certificates(Vec<Vec<u8>>),
    /// `cipher` / `tls_version`: the negotiated cipher suite or protocol
    /// version, by name (`TLS13_AES_256_GCM_SHA384`, `TLSv1_3`).
    Text(String),
    /// `alpn_protocol`: the protocol ALPN chose (`b"h2"`).
    Bytes(Vec<u8>),
}

/// The bytes waiting to be sent.
#[derive(Default)]
struct WriteBuffer {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes of the front chunk already sent.
    offset: usize,
    len: usize,
}

impl WriteBuffer {
    fn push(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        // Small writes coalesce into the last chunk.
        if let Some(last) = self.chunks.back_mut() {
            if last.len() + data.len() <= 16 * 1024 && last.capacity() - last.len() >= data.len() {
                last.extend_from_slice(data);
                return;
            }
        }
        self.chunks.push_back(data.to_vec());
    }

    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let front = self.chunks.front().expect("consumed no more than buffered");
            let left = front.len() - self.offset;
            if n < left {
                self.offset += n;
                return;
            }
            n -= left;
            self.offset = 0;
            self.chunks.pop_front();
        }
    }

    fn clear(&mut self) {
        self.chunks.clear();
        self.offset = 0;
        self.len = 0;
    }

    /// Sends as much as the socket takes, with vectored writes: `Ok(true)`
    /// if all went, `Ok(false)` if the socket would block.
    fn flush(&mut self, endpoint: &Endpoint) -> io::Result<bool> {
        while self.len > 0 {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (i, chunk) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
                let from = if i == 0 { self.offset } else { 0 };
                slices[i] = IoSlice::new(&chunk[from..]);
                count += 1;
            }
            match endpoint.write_vectored(&slices[..count]) {
                Ok(n) => self.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// The calls a stream protocol may be owed (see `net::protocol_slot`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flow {
    Pause,
    Resume,
}

impl OwedCall for Flow {
    fn name(&self) -> &'static str {
        match self {
            Flow::Pause => "pause_writing",
            Flow::Resume => "resume_writing",
        }
    }

    fn cancelled_by(&self, next: &Flow) -> bool {
        self != next
    }
}

struct StreamState {
    endpoint: Option<Endpoint>,
    registration: Option<Registration>,
    slot: ProtocolSlot<StreamProtocol, Flow>,
    buffer: WriteBuffer,
    high: usize,
    low: usize,
    /// `pause_writing` was called and `resume_writing` not yet.
    protocol_paused: bool,
    reading_paused: bool,
    closing: bool,
    /// `write_eof` was called: the write side shuts once the buffer drains.
    eof_requested: bool,
    eof_written: bool,
    /// The peer's EOF was received.
    eof_received: bool,
    /// `connection_lost` is queued or delivered.
    lost: bool,
    /// Writes attempted after the connection was lost.
    conn_lost_writes: usize,
    /// A read continuation is queued (the socket was left readable).
    read_queued: bool,
    /// Called once after `connection_lost`.
    on_lost: Option<Box<dyn FnOnce() + Send>>,
    /// `loop.sendfile` owns the socket's write side.
    sendfile: bool,
    /// `loop.sendfile` waits for the buffer to drain.
    drain_waiters: WakerList,
    /// The TLS session, when the connection is TLS (see `net::tls`).
    tls: Option<Box<TlsLayer>>,
    /// Completed when the connection is up (`connection_made` ran, or a
    /// TLS handshake completed), failed if it ends first.
    made_future: Option<LoopFuture<()>>,
}

impl StreamState {
    /// One read into `buf`, through the TLS session if there is one.
    fn read_into(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let endpoint = self
            .endpoint
            .as_ref()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        match &mut self.tls {
            None => endpoint.read(buf),
            Some(tls) => tls.read(endpoint, buf),
        }
    }

    /// Whether the next read may find more at once (after a read that
    /// did not fill its buffer).
    fn more_decrypted(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.has_more())
    }

    fn handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.is_handshaking())
    }
}

struct Inner {
    shared: Arc<Shared>,
    state: LoopCell<StreamState>,
    /// Published for other threads.
    closing: AtomicBool,
    reading: AtomicBool,
    buffer_size: AtomicUsize,
    high: AtomicUsize,
    low: AtomicUsize,
    peername: Option<SockAddr>,
    sockname: Option<SockAddr>,
    fd: RawFd,
    kind: Kind,
    /// Set once the transport is TLS (at its start, or by `start_tls`).
    tls: AtomicBool,
    /// What the TLS handshake negotiated, once it completed.
    tls_info: OnceLock<TlsInfo>,
}

/// What a transport's descriptor is: where asyncio's socket and pipe
/// transports differ, this decides.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// A connected stream socket: reads and writes, half-closes with
    /// `shutdown`.
    Socket,
    /// The read end of a pipe (asyncio's `_UnixReadPipeTransport`): EOF
    /// closes the transport.
    ReadPipe,
    /// The write end of a pipe (asyncio's `_UnixWritePipeTransport`):
    /// `write_eof` closes it, and the reader going away closes it too.
    WritePipe,
}

/// A stream transport (asyncio: the transport of `create_connection`,
/// `create_server`, `connect_accepted_socket`): write to it, close it,
/// pause its reading; it calls its protocol. Cheap to clone (clones are
/// the same transport) and usable from any thread (see the module docs:
/// off the loop's thread operations are posted to the loop).
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
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
                    let closed = inner.state.with(|s| {
                        s.endpoint
                            .as_ref()
                            .is_some_and(Endpoint::reports_peer_close)
                    });
                    if closed == Some(true) {
                        inner.reader_gone();
                    }
                }
                Kind::Socket | Kind::ReadPipe => inner.read_ready(local),
            }
        }
        inner.state.with(|s| s.endpoint.is_some()).unwrap_or(false)
    }

    fn loop_closed(&mut self) {
        // The loop is not running: connection_lost is called right here.
        let on_lost = self
            .0
            .state
            .with(|s| {
                s.lost = true;
                s.closing = true;
                s.buffer.clear();
                close_socket(s);
                s.on_lost.take()
            })
            .flatten();
        self.0.closing.store(true, Ordering::Release);
        self.0.wake_drained();
        protocol_slot::connection_lost(&self.0, |p| p.connection_lost(None));
        if let Some(on_lost) = on_lost {
            on_lost();
        }
    }
}

/// Deregisters and closes the socket (loop side).
fn close_socket(s: &mut StreamState) {
    if let Some(endpoint) = s.endpoint.take() {
        if let (true, Some(sock)) = (s.sendfile, endpoint.socket()) {
            // `loop.sendfile` sends through a duplicate of the fd, which
            // would keep the connection open: end it for both.
            let _ = sock.shutdown(std::net::Shutdown::Both);
        }
        if let Some(mut reg) = s.registration.take() {
            let raw = endpoint.raw_fd();
            reg.deregister(&mut mio::unix::SourceFd(&raw));
        }
        drop(endpoint);
    }
}

impl SlotOwner for Inner {
    type Protocol = StreamProtocol;
    type Call = Flow;
    type State = StreamState;

    const NAME: &'static str = "protocol";

    fn cell(&self) -> &LoopCell<StreamState> {
        &self.state
    }

    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn slot(s: &mut StreamState) -> &mut ProtocolSlot<StreamProtocol, Flow> {
        &mut s.slot
    }

    fn make(protocol: &mut StreamProtocol, call: Flow) {
        match call {
            Flow::Pause => protocol.pause_writing(),
            Flow::Resume => protocol.resume_writing(),
        }
    }

    fn panicked(self: &Arc<Self>, what: &'static str, payload: crate::error::PanicPayload) {
        let error = protocol_slot::report_fatal_panic(&self.shared, what, payload);
        self.force_close(Some(error));
    }
}

impl Inner {
    fn is_loop_thread(&self) -> bool {
        self.state.accessible()
    }

    fn publish(&self, s: &StreamState) {
        self.buffer_size.store(s.buffer.len, Ordering::Release);
        self.closing.store(s.closing, Ordering::Release);
        self.reading.store(
            self.kind != Kind::WritePipe && !s.reading_paused && !s.closing,
            Ordering::Release,
        );
    }

    /// Runs `f` on the protocol (see `net::protocol_slot`).
    fn with_protocol<R>(
        self: &Arc<Self>,
        what: &'static str,
        f: impl FnOnce(&mut StreamProtocol) -> R,
    ) -> Option<R> {
        protocol_slot::with(self, what, f)
    }

    /// Calls `pause_writing` / `resume_writing` now, or owes it if the
    /// protocol is busy.
    fn deliver(self: &Arc<Self>, flow: Option<Flow>) {
        if let Some(flow) = flow {
            protocol_slot::call(self, flow);
        }
    }

    /// After the buffer grew: is `pause_writing` due? (loop side)
    fn check_pause(s: &mut StreamState) -> Option<Flow> {
        if !s.protocol_paused && s.buffer.len > s.high {
            s.protocol_paused = true;
            return Some(Flow::Pause);
        }
        None
    }

    /// After the buffer shrank: is `resume_writing` due? (loop side)
    fn check_resume(s: &mut StreamState) -> Option<Flow> {
        if s.protocol_paused && s.buffer.len <= s.low {
            s.protocol_paused = false;
            return Some(Flow::Resume);
        }
        None
    }

    // ----- reading ---------------------------------------------------------------------

    fn read_ready(self: &Arc<Self>, local: &dyn Local) {
        if self.kind == Kind::WritePipe {
            // Never read a write end (EBADF): its read readiness means the
            // reader went away, which `reader_gone` handles.
            return;
        }
        for _ in 0..READS_PER_EVENT {
            let ready = self.state.with(|s| {
                s.read_queued = false;
                let open = !s.closing && !s.eof_received && s.endpoint.is_some();
                // A TLS handshake reads whatever the protocol's state.
                match s.handshaking() {
                    true => open.then_some(true),
                    false => (open && s.slot.is_made() && !s.reading_paused).then_some(false),
                }
            });
            let Some(Some(handshaking)) = ready else {
                return;
            };
            let io = self
                .state
                .with(|s| s.registration.as_ref().map(|r| r.io().clone()));
            let Some(Some(io)) = io else { return };
            let event = io.ready_now(Direction::Read);
            // Plaintext TLS already decrypted is read without the socket
            // being readable (it stayed in rustls while reading paused).
            let decrypted = event.is_none()
                && !handshaking
                && self
                    .state
                    .with(|s| s.tls.as_ref().is_some_and(|t| t.plaintext_pending()))
                    .unwrap_or(false);
            if event.is_none() && !decrypted {
                return;
            }
            if handshaking {
                let step = self
                    .state
                    .with(|s| match (&mut s.tls, &s.endpoint) {
                        (Some(tls), Some(endpoint)) => tls.handshake(endpoint),
                        _ => Ok(Handshake::Pending),
                    })
                    .unwrap_or(Ok(Handshake::Pending));
                // The step's own flight (or an alert) goes out first.
                self.send_tls_output();
                match step {
                    Ok(Handshake::Done) => {
                        self.handshake_complete();
                        continue;
                    }
                    Ok(Handshake::Pending) => {
                        if let Some(event) = event {
                            io.clear(Direction::Read, event);
                        }
                        return;
                    }
                    Ok(Handshake::Eof) => {
                        self.fatal_error(
                            io::Error::new(
                                io::ErrorKind::ConnectionReset,
                                "Connection lost during the SSL handshake",
                            ),
                            "SSL handshake failed",
                        );
                        return;
                    }
                    Err(e) => {
                        self.fatal_error(e, "SSL handshake failed");
                        return;
                    }
                }
            }
            let buffered = self
                .state
                .with(|s| {
                    matches!(
                        s.slot.peek(),
                        Some(StreamProtocol::Buffered(_) | StreamProtocol::Stream(_))
                    )
                })
                .unwrap_or(false);
            let read = if buffered {
                self.read_buffered()
            } else {
                self.read_plain(local)
            };
            match read {
                Read::Data(more) => {
                    if !more {
                        // A short read drained the socket: its readiness
                        // is spent. A peer's FIN or an error stays flagged
                        // and is read next, since no new edge would come.
                        if let Some(event) = event {
                            io.clear_spent(Direction::Read, event);
                        }
                        if io.ready_now(Direction::Read).is_none() {
                            return;
                        }
                    }
                }
                Read::WouldBlock => {
                    if let Some(event) = event {
                        io.clear(Direction::Read, event);
                    }
                    return;
                }
                Read::Eof => {
                    self.eof();
                    return;
                }
                Read::Failed(e) => {
                    self.fatal_error(e, self.fatal_message(true));
                    return;
                }
                Read::Stopped => return,
            }
        }
        // Still readable after our share of reads: continue next iteration.
        self.queue_read();
    }

    /// Queues a read for the next iteration (the socket was left
    /// readable, or reading resumed).
    fn queue_read(self: &Arc<Self>) {
        let queue = self
            .state
            .with(|s| !std::mem::replace(&mut s.read_queued, true));
        if queue == Some(true) {
            let inner = self.clone();
            let scheduled = self.shared.call_soon(None, Location::caller(), move || {
                crate::sched::with_any(|_, local| inner.read_ready(local));
            });
            if scheduled.is_err() {
                self.state.with(|s| s.read_queued = false);
            }
        }
    }

    fn read_plain(self: &Arc<Self>, local: &dyn Local) -> Read {
        // The loop's one read buffer stays borrowed across
        // `data_received`: nothing a protocol can call reads a socket
        // synchronously (reads run from the loop's dispatch only, which a
        // callback cannot re-enter), so the borrow is never contended.
        let mut buf = local.read_buffer().borrow_mut();
        if buf.len() < READ_SIZE {
            buf.resize(READ_SIZE, 0);
        }
        let got = self
            .state
            .with(|s| s.read_into(&mut buf).map(|n| (n, s.more_decrypted())));
        self.send_tls_output();
        match got {
            None => Read::Stopped,
            Some(Ok((0, _))) => Read::Eof,
            Some(Ok((n, decrypted))) => {
                let data = &buf[..n];
                let delivered = self.with_protocol("data_received", |p| match p {
                    StreamProtocol::Plain(p) => p.data_received(data),
                    StreamProtocol::Buffered(_) | StreamProtocol::Stream(_) => {}
                });
                if delivered.is_none() {
                    return Read::Stopped;
                }
                Read::Data(n == buf.len() || decrypted)
            }
            Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => Read::WouldBlock,
            Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => Read::Data(true),
            Some(Err(e)) => Read::Failed(e),
        }
    }

    fn read_buffered(self: &Arc<Self>) -> Read {
        let this = self.clone();
        let outcome = self.with_protocol("get_buffer", move |p| {
            let p = match p {
                StreamProtocol::Buffered(p) => p,
                StreamProtocol::Stream(p) => {
                    let mut decrypted = false;
                    let got = p.read_from(|buf| {
                        this.state.with(|s| {
                            let n = s.read_into(buf);
                            decrypted = s.more_decrypted();
                            n
                        })
                    });
                    this.send_tls_output();
                    return match got {
                        None => Read::Stopped,
                        Some(Ok((0, _))) => Read::Eof,
                        Some(Ok((_, filled))) => Read::Data(filled || decrypted),
                        Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => Read::WouldBlock,
                        Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => Read::Data(true),
                        Some(Err(e)) => Read::Failed(e),
                    };
                }
                StreamProtocol::Plain(_) => return Read::Stopped,
            };
            let buf = p.get_buffer(READ_SIZE);
            if buf.is_empty() {
                return Read::Failed(io::Error::other("get_buffer() returned an empty buffer"));
            }
            let len = buf.len();
            // The socket is reached through the state; the buffer is the
            // protocol's, outside it.
            let got = this
                .state
                .with(|s| s.read_into(buf).map(|n| (n, s.more_decrypted())));
            this.send_tls_output();
            match got {
                None => Read::Stopped,
                Some(Ok((0, _))) => Read::Eof,
                Some(Ok((n, decrypted))) => {
                    p.buffer_updated(n);
                    Read::Data(n == len || decrypted)
                }
                Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => Read::WouldBlock,
                Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => Read::Data(true),
                Some(Err(e)) => Read::Failed(e),
            }
        });
        outcome.unwrap_or(Read::Stopped)
    }

    fn eof(self: &Arc<Self>) {
        self.state.with(|s| s.eof_received = true);
        let keep_open = self
            .with_protocol("eof_received", |p| p.eof_received())
            .unwrap_or(false);
        let tls = self.tls.load(Ordering::Acquire);
        if keep_open && tls {
            crate::util::log_warning(format_args!(
                "returning true from eof_received() has no effect when using ssl"
            ));
        }
        // A pipe has no write side to keep open, and TLS cannot be
        // half-closed: their EOF always closes.
        if !keep_open || tls || self.kind == Kind::ReadPipe {
            self.close();
        }
    }

    // ----- TLS ------------------------------------------------------------------------

    /// Sends what the TLS session has to send outside `write` (handshake
    /// flights, alerts, tickets, key updates).
    fn send_tls_output(self: &Arc<Self>) {
        let out = self
            .state
            .with(|s| {
                let tls = s.tls.as_mut()?;
                let mut out = Vec::new();
                tls.output(&mut out);
                (!out.is_empty()).then_some(out)
            })
            .flatten();
        if let Some(out) = out {
            if let Err(e) = self.write_raw(&[&out]) {
                tracing::debug!(target: "evloop", "TLS output not sent: {e}");
            }
        }
    }

    /// The handshake completed: what it negotiated is published, the
    /// timer cancelled, the protocol told (`connection_made`, unless this
    /// is `start_tls`), and whoever waits for the connection released.
    fn handshake_complete(self: &Arc<Self>) {
        let taken = self.state.with(|s| {
            let tls = s.tls.as_mut()?;
            let _ = self.tls_info.set(tls.info());
            let call_made = std::mem::replace(&mut tls.call_made, false);
            Some((call_made, tls.timer.take(), s.made_future.take()))
        });
        let Some(Some((call_made, timer, made))) = taken else {
            return;
        };
        if let Some(timer) = timer {
            timer.cancel();
        }
        if call_made {
            let t = Transport {
                inner: self.clone(),
            };
            if !protocol_slot::connection_made(self, |p| p.connection_made(t)) {
                // It panicked and the transport is closing: the start
                // fails with the connection.
                self.state.with(|s| s.made_future = made);
                return;
            }
        }
        if let Some(made) = made {
            let _ = made.set_result(());
        }
        // Plaintext may have come with the last flight.
        self.queue_read();
    }

    /// Installs a TLS session and starts its handshake (loop thread): the
    /// client's first flight goes out, the timer starts, and readiness
    /// drives the rest.
    fn begin_tls(self: &Arc<Self>, tls: TlsLayer) -> Result<(), Error> {
        let timeout = tls.handshake_timeout;
        self.state
            .with(|s| s.tls = Some(Box::new(tls)))
            .ok_or(Error::WrongThread)?;
        self.tls.store(true, Ordering::Release);
        let inner = self.clone();
        let timer = self.shared.call_soon(
            Some(std::time::Instant::now() + timeout),
            Location::caller(),
            move || {
                let pending = inner.state.with(|s| s.handshaking()).unwrap_or(false);
                if pending {
                    let secs = timeout.as_secs_f64();
                    inner.fatal_error(
                        io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            format!(
                                "SSL handshake is taking longer than {secs:?} seconds: \
                                 aborting the connection"
                            ),
                        ),
                        "SSL handshake timed out",
                    );
                }
            },
        )?;
        self.state.with(|s| {
            if let Some(tls) = &mut s.tls {
                tls.timer = Some(crate::handle::TimerHandle::new(timer));
            }
        });
        self.send_tls_output();
        // Bytes may be waiting already (a server's peer spoke first).
        self.queue_read();
        Ok(())
    }

    /// A write pipe's reader closed its end (asyncio's
    /// `_UnixWritePipeTransport._read_ready`): with bytes still buffered
    /// they can never be delivered (`BrokenPipe`); otherwise the transport
    /// simply closes.
    fn reader_gone(self: &Arc<Self>) {
        let pending = self
            .state
            .with(|s| (s.buffer.len > 0, s.lost))
            .unwrap_or((false, true));
        match pending {
            (_, true) => {}
            (true, false) => self.force_close(Some(io::Error::from(io::ErrorKind::BrokenPipe))),
            (false, false) => self.force_close(None),
        }
    }

    /// asyncio's words for a fatal I/O error of this transport.
    fn fatal_message(&self, read: bool) -> &'static str {
        match (self.kind, read) {
            (Kind::Socket, true) => "Fatal read error on socket transport",
            (Kind::Socket, false) => "Fatal write error on socket transport",
            (_, true) => "Fatal read error on pipe transport",
            (_, false) => "Fatal write error on pipe transport",
        }
    }

    // ----- writing ---------------------------------------------------------------------

    fn write_ready(self: &Arc<Self>) {
        let outcome = self.state.with(|s| {
            let Some(endpoint) = &s.endpoint else {
                return Ok(None);
            };
            if s.buffer.len == 0 {
                return Ok(None);
            }
            let io = s.registration.as_ref().map(|r| r.io().clone());
            let event = io.as_ref().and_then(|io| io.ready_now(Direction::Write));
            match s.buffer.flush(endpoint) {
                Ok(done) => {
                    if !done {
                        if let (Some(io), Some(ev)) = (io, event) {
                            io.clear(Direction::Write, ev);
                        }
                    }
                    let owed = Self::check_resume(s);
                    self.publish(s);
                    Ok(owed)
                }
                Err(e) => Err(e),
            }
        });
        match outcome {
            Some(Ok(owed)) => {
                self.deliver(owed);
                self.wake_drained();
                self.after_flush();
            }
            Some(Err(e)) => self.fatal_error(e, self.fatal_message(false)),
            None => {}
        }
    }

    /// Wakes whoever waits for the buffer to drain (`loop.sendfile`, a
    /// stream writer's flush) once it has, or the connection ended;
    /// outside the state's borrow.
    fn wake_drained(&self) {
        let wakers = self
            .state
            .with(|s| {
                if s.buffer.len == 0 || s.lost {
                    s.drain_waiters.take_all()
                } else {
                    Vec::new()
                }
            })
            .unwrap_or_default();
        crate::waiters::wake_all(wakers);
    }

    /// The buffer may be empty now: finish a pending `write_eof` or
    /// `close`.
    fn after_flush(self: &Arc<Self>) {
        let lose = self.state.with(|s| {
            if s.buffer.len != 0 {
                return false;
            }
            if s.eof_requested && !s.eof_written {
                s.eof_written = true;
                if let Some(sock) = s.endpoint.as_ref().and_then(Endpoint::socket) {
                    let _ = sock.shutdown(std::net::Shutdown::Write);
                }
            }
            s.closing && !s.lost
        });
        if lose == Some(true) {
            self.call_connection_lost(None);
        }
    }

    fn write_on_loop(self: &Arc<Self>, data: &[&[u8]]) -> Result<(), Error> {
        if self.tls.load(Ordering::Acquire) {
            // Encrypted here (into a buffer the session keeps for it); the
            // ciphertext takes the plain path.
            let cipher = self.state.with(|s| {
                if s.sendfile {
                    return Err(Error::InvalidState(
                        "unable to write; sendfile is in progress",
                    ));
                }
                let total: usize = data.iter().map(|d| d.len()).sum();
                if total == 0 {
                    return Ok(None);
                }
                if s.closing || s.lost || s.endpoint.is_none() {
                    // After close_notify nothing more may go (asyncio drops
                    // these too, warning from the fifth).
                    s.conn_lost_writes += 1;
                    if s.conn_lost_writes >= CONNLOST_WARN_AFTER {
                        crate::util::log_warning(format_args!("SSL connection is closed"));
                    }
                    return Ok(None);
                }
                let Some(tls) = &mut s.tls else {
                    return Ok(None);
                };
                let mut out = std::mem::take(&mut tls.out_buf);
                out.clear();
                match tls.encrypt(data, &mut out) {
                    Ok(()) => Ok(Some(out)),
                    Err(e) => {
                        tls.out_buf = out;
                        Err(Error::Io(e))
                    }
                }
            });
            return match cipher {
                Some(Ok(Some(out))) => {
                    let sent = self.write_raw(&[&out]);
                    // The buffer goes back for the next write (unless it
                    // grew large for one big write).
                    if out.capacity() <= 256 * 1024 {
                        self.state.with(|s| {
                            if let Some(tls) = &mut s.tls {
                                tls.out_buf = out;
                            }
                        });
                    }
                    sent
                }
                Some(Ok(None)) => Ok(()),
                Some(Err(e)) => Err(e),
                None => Err(Error::InvalidState("the transport is busy")),
            };
        }
        self.write_raw(data)
    }

    /// Sends bytes as they are (ciphertext, for TLS).
    fn write_raw(self: &Arc<Self>, data: &[&[u8]]) -> Result<(), Error> {
        let outcome = self.state.with(|s| {
            if s.eof_requested {
                return Err(Error::InvalidState("Cannot call write() after write_eof()"));
            }
            if s.sendfile {
                return Err(Error::InvalidState(
                    "unable to write; sendfile is in progress",
                ));
            }
            let total: usize = data.iter().map(|d| d.len()).sum();
            if total == 0 {
                return Ok(None);
            }
            if self.kind == Kind::ReadPipe {
                return Err(Error::InvalidState("a read pipe transport cannot write"));
            }
            // A pipe that is closing takes no more (asyncio); a socket
            // keeps taking until the connection is gone.
            let pipe_closing = self.kind == Kind::WritePipe && s.closing;
            if s.lost || s.endpoint.is_none() || pipe_closing {
                // asyncio drops these and, from the fifth, warns each time.
                s.conn_lost_writes += 1;
                if s.conn_lost_writes >= CONNLOST_WARN_AFTER {
                    crate::util::log_warning(format_args!(
                        "{}",
                        match self.kind {
                            Kind::Socket => "socket.send() raised exception.",
                            _ => "pipe closed by peer or os.write(pipe, data) raised exception.",
                        }
                    ));
                }
                return Ok(None);
            }
            let Some(endpoint) = &s.endpoint else {
                return Ok(None);
            };
            let mut sent = 0;
            // The immediate send took all it was offered, yet buffers were
            // left out (the IOV_MAX cap): the socket has room, and no new
            // edge will say so, so the rest is flushed now.
            let mut flush_now = false;
            if s.buffer.len == 0 {
                // Nothing queued: try at once, as asyncio does (with at
                // most MAX_IOVECS buffers: the kernel refuses more than
                // IOV_MAX; the rest is buffered).
                // One buffer (the common write) needs no list.
                let one: [IoSlice<'_>; 1];
                let many: Vec<IoSlice<'_>>;
                let slices: &[IoSlice<'_>] = match data {
                    [d] => {
                        one = [IoSlice::new(d)];
                        &one
                    }
                    _ => {
                        many = data
                            .iter()
                            .filter(|d| !d.is_empty())
                            .take(MAX_IOVECS)
                            .map(|d| IoSlice::new(d))
                            .collect();
                        &many
                    }
                };
                loop {
                    match endpoint.write_vectored(slices) {
                        Ok(n) => {
                            sent = n;
                            break;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(Error::Io(e)),
                    }
                }
                if sent == total {
                    return Ok(None);
                }
                flush_now = sent == slices.iter().map(|b| b.len()).sum::<usize>();
            }
            // Buffer what did not go.
            let mut skip = sent;
            for d in data {
                if skip >= d.len() {
                    skip -= d.len();
                    continue;
                }
                s.buffer.push(&d[skip..]);
                skip = 0;
            }
            if flush_now {
                if let Some(endpoint) = &s.endpoint {
                    s.buffer.flush(endpoint).map_err(Error::Io)?;
                }
            }
            let owed = Self::check_pause(s);
            self.publish(s);
            Ok(owed)
        });
        match outcome {
            Some(Ok(owed)) => {
                self.deliver(owed);
                Ok(())
            }
            Some(Err(Error::Io(e))) => {
                self.fatal_error(e, self.fatal_message(false));
                Ok(())
            }
            Some(Err(e)) => Err(e),
            None => Err(Error::InvalidState("the transport is busy")),
        }
    }

    // ----- closing ---------------------------------------------------------------------

    fn close(self: &Arc<Self>) {
        if self.tls.load(Ordering::Acquire) {
            // close_notify goes out after what is buffered.
            let notify = self
                .state
                .with(|s| {
                    if s.closing || s.lost {
                        return None;
                    }
                    let mut out = Vec::new();
                    s.tls.as_mut()?.close_notify(&mut out);
                    Some(out)
                })
                .flatten();
            if let Some(out) = notify {
                let _ = self.write_raw(&[&out]);
            }
        }
        let lose = self.state.with(|s| {
            if s.closing {
                return (false, None);
            }
            s.closing = true;
            self.publish(s);
            let flushed = s.buffer.len == 0 && !s.lost;
            // A TLS peer that never takes the rest is given
            // ssl_shutdown_timeout (asyncio), then the connection aborted.
            let shutdown = s
                .tls
                .as_ref()
                .filter(|_| !flushed && !s.lost)
                .map(|tls| tls.shutdown_timeout);
            (flushed, shutdown)
        });
        match lose {
            Some((true, _)) => self.call_connection_lost(None),
            Some((false, Some(timeout))) => {
                let inner = self.clone();
                let timer = self.shared.call_soon(
                    Some(std::time::Instant::now() + timeout),
                    Location::caller(),
                    move || {
                        inner.force_close(Some(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "SSL shutdown timed out",
                        )))
                    },
                );
                if let Ok(timer) = timer {
                    self.state.with(|s| {
                        if let Some(tls) = &mut s.tls {
                            tls.shutdown_timer = Some(crate::handle::TimerHandle::new(timer));
                        }
                    });
                }
            }
            _ => {}
        }
    }

    fn force_close(self: &Arc<Self>, error: Option<io::Error>) {
        let lose = self.state.with(|s| {
            s.buffer.clear();
            s.closing = true;
            self.publish(s);
            !s.lost
        });
        if lose == Some(true) {
            self.call_connection_lost(error);
        }
    }

    fn fatal_error(self: &Arc<Self>, error: io::Error, message: &str) {
        // asyncio logs these unless they are the peer going away.
        if !matches!(
            error.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::TimedOut
        ) && self.shared.debug.load(Ordering::Relaxed)
        {
            tracing::debug!(target: "evloop", "{message}: {error}");
        }
        self.force_close(Some(error));
    }

    /// Queues `connection_lost` (asyncio calls it through `call_soon`);
    /// the socket is closed when it runs.
    fn call_connection_lost(self: &Arc<Self>, error: Option<io::Error>) {
        let first = self.state.with(|s| !std::mem::replace(&mut s.lost, true));
        if first != Some(true) {
            return;
        }
        let inner = self.clone();
        let finish = move || {
            let taken = inner.state.with(|s| {
                close_socket(s);
                s.buffer.clear();
                inner.publish(s);
                let mut timers = Vec::new();
                if let Some(tls) = &mut s.tls {
                    timers.extend(tls.timer.take());
                    timers.extend(tls.shutdown_timer.take());
                }
                // Ended before it was up (a failed TLS handshake, or
                // start_tls's): the error is also the start's, for
                // whoever awaits it.
                let unmade = s.made_future.take();
                if unmade.is_some() {
                    if let Some(tls) = &mut s.tls {
                        tls.failure = error.as_ref().map(super::tls::duplicate_error);
                    }
                }
                (s.on_lost.take(), unmade, timers)
            });
            let (on_lost, unmade, timers) = taken.unwrap_or((None, None, Vec::new()));
            for timer in timers {
                timer.cancel();
            }
            if let Some(unmade) = unmade {
                let _ = unmade
                    .set_exception(Arc::new(io::Error::from(io::ErrorKind::ConnectionAborted)));
            }
            inner.wake_drained();
            protocol_slot::connection_lost(&inner, |p| p.connection_lost(error));
            if let Some(on_lost) = on_lost {
                on_lost();
            }
        };
        if let Err(e) = self.shared.call_soon(None, Location::caller(), finish) {
            // The loop is closing: it closes the transport itself.
            tracing::debug!(target: "evloop", "connection_lost not queued: {e}");
        }
    }
}

enum Read {
    /// Bytes were delivered; `true` if the socket may hold more.
    Data(bool),
    WouldBlock,
    Eof,
    Failed(io::Error),
    /// Reading stopped (closed, paused, or the protocol is gone).
    Stopped,
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
        let registration = event_loop.register_source(&mut mio::unix::SourceFd(&raw))?;
        let shared = event_loop.inner.shared.clone();
        let sock = endpoint.socket();
        let inner = Arc::new(Inner {
            peername: sock.and_then(|s| s.peer_addr().ok()),
            sockname: sock.and_then(|s| s.local_addr().ok()),
            fd: raw,
            kind,
            state: LoopCell::new(
                shared.id(),
                StreamState {
                    endpoint: Some(endpoint),
                    registration: None,
                    slot: ProtocolSlot::new(protocol),
                    buffer: WriteBuffer::default(),
                    high: DEFAULT_HIGH_WATER,
                    low: DEFAULT_HIGH_WATER / 4,
                    protocol_paused: false,
                    reading_paused: false,
                    closing: false,
                    eof_requested: false,
                    eof_written: false,
                    eof_received: false,
                    lost: false,
                    conn_lost_writes: 0,
                    read_queued: false,
                    on_lost,
                    sendfile: false,
                    drain_waiters: WakerList::default(),
                    tls: None,
                    made_future: made,
                },
            ),
            tls: AtomicBool::new(false),
            tls_info: OnceLock::new(),
            shared,
            closing: AtomicBool::new(false),
            reading: AtomicBool::new(kind != Kind::WritePipe),
            buffer_size: AtomicUsize::new(0),
            high: AtomicUsize::new(DEFAULT_HIGH_WATER),
            low: AtomicUsize::new(DEFAULT_HIGH_WATER / 4),
        });
        registration.set_handler(Box::new(Handler(inner.clone())))?;
        inner
            .state
            .with(|s| s.registration = Some(registration))
            .ok_or(Error::WrongThread)?;
        let transport = Transport {
            inner: inner.clone(),
        };
        let t = transport.clone();
        let queued = match tls {
            // The handshake first; connection_made when it completes.
            Some(tls) => inner.begin_tls(tls),
            None => event_loop
                .call_soon(move || {
                    // From here on the protocol is connected:
                    // `connection_lost` follows whatever happens (a panic
                    // in `connection_made` included).
                    let made = t.inner.state.with(|s| s.made_future.take()).flatten();
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
            inner.state.with(|s| {
                s.lost = true;
                close_socket(s);
            });
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
    /// `connection_lost`. Error: [`Error::InvalidState`] after
    /// [`Transport::write_eof`]. Off the loop's thread the bytes are copied
    /// and the write is posted to the loop.
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

    fn post_write(&self, owned: Vec<Vec<u8>>) {
        self.on_loop(move |inner| {
            let slices: Vec<&[u8]> = owned.iter().map(|b| b.as_slice()).collect();
            if let Err(e) = inner.write_on_loop(&slices) {
                inner
                    .shared
                    .call_exception_handler(ExceptionContext::new(format!(
                        "transport.write() from another thread failed: {e}"
                    )));
            }
        });
    }

    /// Closes the write side once the buffer is sent (asyncio:
    /// `write_eof`); the peer reads EOF. Writing afterwards is an error
    /// on a socket; a write pipe has nothing but a write side, so this
    /// closes it (as asyncio) and later writes are dropped. Error:
    /// [`Error::InvalidState`] on a read pipe.
    pub fn write_eof(&self) -> Result<(), Error> {
        if self.inner.tls.load(Ordering::Acquire) {
            return Err(Error::InvalidState("SSL doesn't support half-closes"));
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
        self.on_loop(|inner| {
            let flushed = inner.state.with(|s| {
                if s.closing || s.eof_requested {
                    return false;
                }
                s.eof_requested = true;
                s.buffer.len == 0
            });
            if flushed == Some(true) {
                inner.after_flush();
            }
        });
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
                if !s.closing {
                    s.reading_paused = true;
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
                let was = s.reading_paused && !s.closing;
                s.reading_paused = false;
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
        let high = high.unwrap_or_else(|| low.map_or(DEFAULT_HIGH_WATER, |l| 4 * l));
        let low = low.unwrap_or(high / 4);
        if high < low {
            return Err(Error::InvalidArgument(format!(
                "high ({high}) must be >= low ({low}) must be >= 0"
            )));
        }
        self.inner.high.store(high, Ordering::Release);
        self.inner.low.store(low, Ordering::Release);
        self.on_loop(move |inner| {
            let owed = inner.state.with(|s| {
                s.high = high;
                s.low = low;
                // asyncio checks for a pause only.
                Inner::check_pause(s)
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

    /// Bytes buffered and not yet sent (asyncio: `get_write_buffer_size`).
    pub fn get_write_buffer_size(&self) -> usize {
        self.inner.buffer_size.load(Ordering::Acquire)
    }

    /// asyncio's `get_extra_info(name)`: for a socket `"peername"`,
    /// `"sockname"` (an address) and `"socket"` (the fd); for a pipe
    /// `"pipe"` (the fd); once a TLS handshake completed, `"peercert"`
    /// (the peer's certificate chain, DER), `"cipher"` and
    /// `"tls_version"` (names), `"alpn_protocol"` (the protocol ALPN
    /// chose, if any); `None` for other names.
    pub fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        let socket = self.inner.kind == Kind::Socket;
        let tls = self.inner.tls_info.get();
        match name {
            "peername" => self.peername().map(ExtraInfo::Address),
            "sockname" => self.sockname().map(ExtraInfo::Address),
            "socket" if socket => Some(ExtraInfo::Fd(self.inner.fd)),
            "pipe" if !socket => Some(ExtraInfo::Fd(self.inner.fd)),
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
            .with_protocol("get_protocol", |p| p.as_any().downcast_mut::<P>().map(f))
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
        // `f` is user code: it runs on a duplicate of the socket (the same
        // connection and options) outside the transport's state, so that
        // it may call the transport.
        let dup = self
            .inner
            .state
            .with(|s| {
                s.endpoint
                    .as_ref()
                    .and_then(Endpoint::socket)
                    .map(|sock| sock.try_clone())
            })
            .flatten()?
            .ok()?;
        Some(f(SockRef::from(&dup)))
    }
}

/// TLS on an existing transport (see `net::tls`).
impl Transport {
    /// Why the start failed, after `made` failed: the error that ended
    /// the connection before it was up (loop thread).
    pub(crate) fn take_start_failure(&self) -> Option<io::Error> {
        self.inner
            .state
            .with(|s| s.tls.as_mut().and_then(|tls| tls.failure.take()))
            .flatten()
    }

    /// Upgrades the connection to TLS in place (`loop.start_tls`): the
    /// protocol stays and is not told `connection_made` again; `made`
    /// completes when the handshake does. Loop thread only.
    pub(crate) fn upgrade(&self, mut tls: TlsLayer, made: LoopFuture<()>) -> Result<(), Error> {
        tls.call_made = false;
        self.inner
            .state
            .with(|s| {
                if self.inner.kind != Kind::Socket {
                    return Err(Error::InvalidArgument(
                        "start_tls needs a socket transport".into(),
                    ));
                }
                if s.tls.is_some() {
                    return Err(Error::InvalidState("the transport is already TLS"));
                }
                if s.closing || s.lost || s.endpoint.is_none() {
                    return Err(Error::InvalidState("Transport is closing"));
                }
                if s.sendfile {
                    return Err(Error::InvalidState("sendfile is in progress"));
                }
                if !s.slot.is_made() {
                    return Err(Error::InvalidState("the transport is not connected yet"));
                }
                s.made_future = Some(made);
                Ok(())
            })
            .ok_or(Error::WrongThread)??;
        let begun = self.inner.begin_tls(tls);
        if begun.is_err() {
            // Half installed (the loop is closing): the connection ends.
            self.abort();
        }
        begun
    }
}

/// `loop.sendfile`'s hold on a transport (see `net::sendfile`).
impl Transport {
    /// Takes the write side for `loop.sendfile`: refuses a closing
    /// transport or one already sending a file, pauses reading (as
    /// asyncio), and returns a duplicate of the socket to send through and
    /// whether reading was on. Loop thread only.
    pub(crate) fn begin_sendfile(&self) -> Result<(Socket, bool), Error> {
        self.inner
            .state
            .with(|s| {
                if s.closing || s.lost {
                    return Err(Error::InvalidState("Transport is closing"));
                }
                if s.sendfile {
                    return Err(Error::InvalidState("sendfile is already in progress"));
                }
                if s.tls.is_some() {
                    return Err(Error::SendfileNotAvailable(
                        "the transport is TLS: sendfile(2) would bypass it".into(),
                    ));
                }
                let sock = s
                    .endpoint
                    .as_ref()
                    .ok_or(Error::InvalidState("Transport is closing"))?
                    .socket()
                    .ok_or_else(|| {
                        Error::SendfileNotAvailable("the transport is not a socket".into())
                    })?
                    .try_clone()?;
                s.sendfile = true;
                let was_reading = !s.reading_paused;
                s.reading_paused = true;
                self.inner.publish(s);
                Ok((sock, was_reading))
            })
            .unwrap_or(Err(Error::WrongThread))
    }

    /// Ready once the write buffer is empty; an error if the connection
    /// ended first (asyncio: "Connection is closed by peer"). `id` is the
    /// caller's place in the waiters, to give back with
    /// [`Transport::forget_drained`] when it stops waiting.
    pub(crate) fn poll_drained(
        &self,
        cx: &mut Context<'_>,
        id: &mut Option<u64>,
    ) -> Poll<Result<(), Error>> {
        // Wakers are cloned and dropped outside the state (foreign code).
        let waker = cx.waker().clone();
        let outcome = self.inner.state.with(|s| {
            if s.lost || s.endpoint.is_none() {
                (
                    Poll::Ready(Err(Error::Io(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "Connection is closed by peer",
                    )))),
                    None,
                )
            } else if s.buffer.len == 0 {
                (Poll::Ready(Ok(())), None)
            } else {
                (Poll::Pending, s.drain_waiters.register(id, waker))
            }
        });
        match outcome {
            Some((poll, replaced)) => {
                drop(replaced);
                poll
            }
            None => Poll::Ready(Err(Error::WrongThread)),
        }
    }

    /// Removes a [`Transport::poll_drained`] waiter.
    pub(crate) fn forget_drained(&self, id: &mut Option<u64>) {
        if id.is_some() {
            let waker = self
                .inner
                .state
                .with(|s| s.drain_waiters.remove(id))
                .flatten();
            drop(waker);
        }
    }

    /// Waits until the write buffer is empty (see
    /// [`Transport::poll_drained`]).
    pub(crate) async fn drained(&self) -> Result<(), Error> {
        struct Forget<'a>(&'a Transport, Option<u64>);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.forget_drained(&mut self.1);
            }
        }
        let mut waiting = Forget(self, None);
        std::future::poll_fn(|cx| self.poll_drained(cx, &mut waiting.1)).await
    }

    /// Gives the write side back after `loop.sendfile`, resuming reading
    /// if it was on.
    pub(crate) fn end_sendfile(&self, resume_reading: bool) {
        self.inner.state.with(|s| {
            s.sendfile = false;
            self.inner.publish(s);
        });
        if resume_reading {
            self.resume_reading();
        }
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
