//! Datagram transports (asyncio's `_SelectorDatagramTransport`): a UDP (or
//! Unix datagram) socket driven by the loop, talking to a
//! [`DatagramProtocol`]. Same threading rules as stream transports
//! (`net::transport`): any thread may call it; off the loop's thread the
//! operation is posted to the loop.

use super::extra::{ExtraInfo, FdSource, TransportFd, with_socket_of};
use super::flow::{PostedBytes, PostedWrite, WriteFlow};
use super::protocol_slot::{self, OwedCall, ProtocolSlot, SlotOwner};
use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::event_loop::shared::Shared;
use crate::exception::TransportInfo;
use crate::loop_cell::LoopCell;
use crate::readiness::{
    Direction, ERROR, IoHandler, READABLE, Registration, ScheduledIo, WRITABLE,
};
use crate::sched::Local;
use socket2::{SockAddr, Socket};
use std::any::Any;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A datagram protocol (asyncio: `asyncio.DatagramProtocol`).
pub trait DatagramProtocol: Any + Send {
    /// The endpoint is ready (asyncio: `connection_made`).
    fn connection_made(&mut self, transport: DatagramTransport) {
        let _ = transport;
    }

    /// A datagram arrived from `addr` (asyncio: `datagram_received`).
    fn datagram_received(&mut self, data: &[u8], addr: SockAddr) {
        let _ = (data, addr);
    }

    /// A send or receive failed (asyncio: `error_received`), e.g. an ICMP
    /// "port unreachable" reported on a connected endpoint. The endpoint
    /// stays open.
    fn error_received(&mut self, error: io::Error) {
        let _ = error;
    }

    /// The endpoint was closed (asyncio: `connection_lost`).
    fn connection_lost(&mut self, error: Option<io::Error>) {
        let _ = error;
    }

    /// As [`Protocol::pause_writing`](crate::Protocol::pause_writing) (the send buffer is over its mark).
    fn pause_writing(&mut self) {}

    /// As [`Protocol::resume_writing`](crate::Protocol::resume_writing).
    fn resume_writing(&mut self) {}
}

/// The largest datagram one read takes (asyncio: 256 KiB).
const MAX_DATAGRAM: usize = 256 * 1024;
/// Datagrams read per readiness event before yielding to the loop.
const READS_PER_EVENT: usize = 16;

struct State {
    sock: Option<Socket>,
    registration: Option<Registration>,
    slot: ProtocolSlot<Box<dyn DatagramProtocol>, Owed>,
    /// Datagrams waiting for room: bytes and destination.
    buffer: VecDeque<(Vec<u8>, Option<SockAddr>)>,
    buffer_size: usize,
    flow: WriteFlow,
    closing: bool,
    lost: bool,
    read_queued: bool,
    /// Datagrams sent after the endpoint was lost.
    conn_lost_sends: usize,
}

/// A protocol call that waits for the protocol to be free (asyncio calls
/// protocols re-entrantly; a Rust protocol is `&mut` inside its callback;
/// see `net::protocol_slot`).
enum Owed {
    Error(io::Error),
    Pause,
    Resume,
}

impl OwedCall for Owed {
    fn name(&self) -> &'static str {
        match self {
            Owed::Error(_) => "error_received",
            Owed::Pause => "pause_writing",
            Owed::Resume => "resume_writing",
        }
    }

    fn cancelled_by(&self, next: &Owed) -> bool {
        matches!(
            (self, next),
            (Owed::Pause, Owed::Resume) | (Owed::Resume, Owed::Pause)
        )
    }
}

struct Inner {
    shared: Arc<Shared>,
    state: LoopCell<State>,
    closing: AtomicBool,
    buffer_size: AtomicUsize,
    /// Datagrams sent from other threads, not yet applied by the loop.
    posted: PostedBytes,
    /// The connected peer (`remote_addr`), if any.
    remote: Option<SockAddr>,
    sockname: Option<SockAddr>,
    fd: RawFd,
}

/// A datagram transport (asyncio: the transport of
/// `create_datagram_endpoint`). Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct DatagramTransport {
    inner: Arc<Inner>,
}

struct Handler(Arc<Inner>);

impl IoHandler for Handler {
    fn ready(&mut self, _io: &ScheduledIo, bits: usize, local: &dyn Local) -> bool {
        if bits & (WRITABLE | ERROR) != 0 {
            self.0.write_ready();
        }
        if bits & (READABLE | ERROR) != 0 {
            self.0.read_ready(local);
        }
        self.0.state.with(|s| s.sock.is_some()).unwrap_or(false)
    }

    fn loop_closed(&mut self) {
        // The loop is not running: connection_lost is called right here.
        self.0.state.with(|s| {
            s.lost = true;
            s.closing = true;
            s.buffer.clear();
            close_socket(s);
        });
        self.0.closing.store(true, Ordering::Release);
        protocol_slot::connection_lost(&self.0, |p| p.connection_lost(None));
    }
}

fn close_socket(s: &mut State) {
    if let Some(sock) = s.sock.take() {
        if let Some(mut reg) = s.registration.take() {
            let raw = sock.as_raw_fd();
            reg.deregister(&mut mio::unix::SourceFd(&raw));
        }
    }
}

/// What one attempt to send a datagram did.
enum Sent {
    All,
    WouldBlock,
    Failed(io::Error),
}

fn send_one(sock: &Socket, data: &[u8], addr: Option<&SockAddr>) -> Sent {
    loop {
        let r = match addr {
            Some(a) => sock.send_to_with_flags(data, a, libc::MSG_NOSIGNAL),
            None => sock.send_with_flags(data, libc::MSG_NOSIGNAL),
        };
        match r {
            Ok(_) => return Sent::All,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Sent::WouldBlock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Sent::Failed(e),
        }
    }
}

impl FdSource for Inner {
    fn dup_fd(&self) -> Option<std::os::fd::OwnedFd> {
        self.state
            .with(|s| s.sock.as_ref().map(|sock| sock.try_clone()))
            .flatten()?
            .ok()
            .map(Into::into)
    }
}

impl SlotOwner for Inner {
    type Protocol = Box<dyn DatagramProtocol>;
    type Call = Owed;
    type State = State;

    const NAME: &'static str = "protocol";

    fn cell(&self) -> &LoopCell<State> {
        &self.state
    }

    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn slot(s: &mut State) -> &mut ProtocolSlot<Box<dyn DatagramProtocol>, Owed> {
        &mut s.slot
    }

    fn make(protocol: &mut Box<dyn DatagramProtocol>, call: Owed) {
        match call {
            Owed::Error(e) => protocol.error_received(e),
            Owed::Pause => protocol.pause_writing(),
            Owed::Resume => protocol.resume_writing(),
        }
    }

    fn panicked(self: &Arc<Self>, what: &'static str, payload: crate::error::PanicPayload) {
        let transport = TransportInfo::new(DatagramTransport {
            inner: self.clone(),
        });
        let error = protocol_slot::report_fatal_panic(&self.shared, what, payload, transport);
        self.force_close(Some(error));
    }
}

impl AsRef<PostedBytes> for Inner {
    fn as_ref(&self) -> &PostedBytes {
        &self.posted
    }
}

impl Inner {
    /// Is `pause_writing` due, counting what other threads posted?
    fn pause_due(&self, s: &mut State) -> bool {
        s.flow.pause_due(s.buffer_size + self.posted.get())
    }

    /// Is `resume_writing` due, counting what other threads posted?
    fn resume_due(&self, s: &mut State) -> bool {
        s.flow.resume_due(s.buffer_size + self.posted.get())
    }

    fn publish(&self, s: &State) {
        self.buffer_size.store(s.buffer_size, Ordering::Release);
        self.closing.store(s.closing, Ordering::Release);
    }

    /// Runs `f` on the protocol (see `net::protocol_slot`).
    fn with_protocol<R>(
        self: &Arc<Self>,
        what: &'static str,
        f: impl FnOnce(&mut Box<dyn DatagramProtocol>) -> R,
    ) -> Option<R> {
        protocol_slot::with(self, what, f)
    }

    fn read_ready(self: &Arc<Self>, local: &dyn Local) {
        for _ in 0..READS_PER_EVENT {
            let io = self
                .state
                .with(|s| {
                    s.read_queued = false;
                    if s.closing || !s.slot.is_made() {
                        return None;
                    }
                    s.registration.as_ref().map(|r| r.io().clone())
                })
                .flatten();
            let Some(io) = io else { return };
            let Some(event) = io.ready_now(Direction::Read) else {
                return;
            };
            let mut buf = local.read_buffer().borrow_mut();
            if buf.len() < MAX_DATAGRAM {
                buf.resize(MAX_DATAGRAM, 0);
            }
            let got = self.state.with(|s| match &s.sock {
                Some(sock) => {
                    // Safety: initialised bytes are valid `MaybeUninit`s.
                    let uninit = unsafe {
                        &mut *(&mut buf[..] as *mut [u8] as *mut [std::mem::MaybeUninit<u8>])
                    };
                    sock.recv_from(uninit)
                }
                None => Err(io::Error::from(io::ErrorKind::NotConnected)),
            });
            match got {
                None => return,
                Some(Ok((n, addr))) => {
                    let data = &buf[..n];
                    if self
                        .with_protocol("datagram_received", |p| p.datagram_received(data, addr))
                        .is_none()
                    {
                        return;
                    }
                }
                Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    io.clear(Direction::Read, event);
                    return;
                }
                Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Some(Err(e)) => {
                    // asyncio: OSError on receive goes to error_received;
                    // the endpoint stays open.
                    // The error was consumed by this call: more datagrams
                    // may wait behind it, and no new edge would tell.
                    drop(buf);
                    self.deliver(Owed::Error(e));
                }
            }
        }
        self.queue_read();
    }

    /// Makes a call on the protocol now, or once its current callback
    /// returns.
    fn deliver(self: &Arc<Self>, call: Owed) {
        protocol_slot::call(self, call);
    }

    fn queue_read(self: &Arc<Self>) {
        if self
            .state
            .with(|s| !std::mem::replace(&mut s.read_queued, true))
            == Some(true)
        {
            let inner = self.clone();
            let _ = self.shared.call_soon(None, Location::caller(), move || {
                crate::sched::with_any(|_, local| inner.read_ready(local));
            });
        }
    }

    fn write_ready(self: &Arc<Self>) {
        let mut errors = Vec::new();
        let resume = self.state.with(|s| {
            let Some(sock) = &s.sock else { return false };
            let io = s.registration.as_ref().map(|r| r.io().clone());
            while let Some((data, addr)) = s.buffer.front() {
                let event = io.as_ref().and_then(|io| io.ready_now(Direction::Write));
                match send_one(sock, data, addr.as_ref()) {
                    Sent::All => {}
                    Sent::WouldBlock => {
                        if let (Some(io), Some(ev)) = (&io, event) {
                            io.clear(Direction::Write, ev);
                        }
                        break;
                    }
                    Sent::Failed(e) => errors.push(e),
                }
                let (data, _) = s.buffer.pop_front().expect("front exists");
                s.buffer_size -= data.len();
            }
            self.publish(s);
            self.resume_due(s)
        });
        for e in errors {
            self.deliver(Owed::Error(e));
        }
        if resume == Some(true) {
            self.deliver(Owed::Resume);
        }
        let lose = self
            .state
            .with(|s| s.closing && s.buffer.is_empty() && !s.lost);
        if lose == Some(true) {
            self.call_connection_lost(None);
        }
    }

    fn sendto_on_loop(self: &Arc<Self>, data: &[u8], addr: Option<SockAddr>) -> Result<(), Error> {
        if let (Some(remote), Some(a)) = (&self.remote, &addr) {
            if remote != a {
                return Err(Error::InvalidArgument(format!(
                    "Invalid address: must be None or {}",
                    super::addr_repr(remote)
                )));
            }
        }
        let outcome = self.state.with(|s| {
            if s.lost || s.sock.is_none() {
                // asyncio drops these and, from the fifth, warns each time.
                s.conn_lost_sends += 1;
                if s.conn_lost_sends >= 5 {
                    crate::util::log_warning(format_args!("socket.send() raised exception."));
                }
                return Ok((None, false));
            }
            let Some(sock) = &s.sock else {
                return Ok((None, false));
            };
            if s.buffer.is_empty() {
                match send_one(sock, data, addr.as_ref()) {
                    // Datagrams posted from other threads may be over the
                    // mark.
                    Sent::All => return Ok((None, self.pause_due(s))),
                    Sent::Failed(e) => return Ok((Some(e), false)),
                    Sent::WouldBlock => {}
                }
            }
            s.buffer.push_back((data.to_vec(), addr));
            s.buffer_size += data.len();
            self.publish(s);
            Ok((None, self.pause_due(s)))
        });
        match outcome {
            Some(Ok((error, pause))) => {
                if let Some(e) = error {
                    self.deliver(Owed::Error(e));
                }
                if pause {
                    self.deliver(Owed::Pause);
                }
                Ok(())
            }
            Some(Err(e)) => Err(e),
            None => Err(Error::InvalidState("the transport is busy")),
        }
    }

    fn close(self: &Arc<Self>) {
        let lose = self.state.with(|s| {
            if s.closing {
                return false;
            }
            s.closing = true;
            self.publish(s);
            s.buffer.is_empty() && !s.lost
        });
        if lose == Some(true) {
            self.call_connection_lost(None);
        }
    }

    fn force_close(self: &Arc<Self>, error: Option<io::Error>) {
        let lose = self.state.with(|s| {
            s.buffer.clear();
            s.buffer_size = 0;
            s.closing = true;
            self.publish(s);
            !s.lost
        });
        if lose == Some(true) {
            self.call_connection_lost(error);
        }
    }

    fn call_connection_lost(self: &Arc<Self>, error: Option<io::Error>) {
        if self.state.with(|s| !std::mem::replace(&mut s.lost, true)) != Some(true) {
            return;
        }
        let inner = self.clone();
        let _ = self.shared.call_soon(None, Location::caller(), move || {
            inner.state.with(close_socket);
            protocol_slot::connection_lost(&inner, |p| p.connection_lost(error));
        });
    }
}

impl DatagramTransport {
    /// Wraps a bound (and maybe connected: `remote`) non-blocking datagram
    /// socket in a transport of the running loop, and queues
    /// `connection_made`.
    pub(crate) fn start(
        event_loop: &EventLoop,
        sock: Socket,
        remote: Option<SockAddr>,
        protocol: Box<dyn DatagramProtocol>,
        made: Option<crate::future::LoopFuture<()>>,
    ) -> Result<DatagramTransport, Error> {
        sock.set_nonblocking(true)?;
        let raw = sock.as_raw_fd();
        let registration = event_loop.register_source(raw)?;
        let shared = event_loop.inner.shared.clone();
        let inner = Arc::new(Inner {
            sockname: sock.local_addr().ok(),
            remote,
            fd: raw,
            state: LoopCell::new(
                shared.id(),
                State {
                    sock: Some(sock),
                    registration: None,
                    slot: ProtocolSlot::new(protocol),
                    buffer: VecDeque::new(),
                    buffer_size: 0,
                    flow: WriteFlow::default(),
                    closing: false,
                    lost: false,
                    read_queued: false,
                    conn_lost_sends: 0,
                },
            ),
            shared,
            closing: AtomicBool::new(false),
            buffer_size: AtomicUsize::new(0),
            posted: PostedBytes::default(),
        });
        registration.set_handler(Box::new(Handler(inner.clone())))?;
        inner
            .state
            .with(|s| s.registration = Some(registration))
            .ok_or(Error::WrongThread)?;
        let transport = DatagramTransport {
            inner: inner.clone(),
        };
        let t = transport.clone();
        let queued = event_loop.call_soon(move || {
            // Connected from here on: `connection_lost` follows, whatever
            // `connection_made` does.
            if protocol_slot::connection_made(&t.inner, |p| p.connection_made(t.clone())) {
                t.inner.queue_read();
            }
            if let Some(made) = made {
                let _ = made.set_result(());
            }
        });
        if let Err(e) = queued {
            // The loop is closing: undo the registration (breaking the
            // handler's cycle with the transport).
            inner.state.with(|s| {
                s.lost = true;
                close_socket(s);
            });
            return Err(e);
        }
        Ok(transport)
    }

    fn on_loop(&self, op: impl FnOnce(&Arc<Inner>) + Send + 'static) {
        super::on_loop(
            &self.inner.shared,
            self.inner.state.accessible(),
            &self.inner,
            op,
        );
    }

    /// Sends a datagram (asyncio: `transport.sendto(data, addr)`): to
    /// `addr`, or to the connected peer with `None`. Never blocks: a full
    /// socket buffer queues it (with `pause_writing` past the high-water
    /// mark). A send error goes to the protocol's `error_received`.
    /// Error: [`Error::InvalidArgument`] for an address other than the
    /// connected peer's. Off the loop's thread the datagram is copied and
    /// the send posted to the loop.
    pub fn sendto(&self, data: &[u8], addr: Option<SockAddr>) -> Result<(), Error> {
        if self.inner.state.accessible() {
            return self.inner.sendto_on_loop(data, addr);
        }
        if let (Some(remote), Some(a)) = (&self.inner.remote, &addr) {
            if remote != a {
                return Err(Error::InvalidArgument(format!(
                    "Invalid address: must be None or {}",
                    super::addr_repr(remote)
                )));
            }
        }
        // Counted at once (the buffer's size and flow control see it),
        // given back when the loop applies it or drops it unrun.
        let send = PostedWrite::new(&self.inner, data.len());
        let data = data.to_vec();
        let _ = self
            .inner
            .shared
            .call_soon(None, std::panic::Location::caller(), move || {
                let inner = send.apply();
                let _ = inner.sendto_on_loop(&data, addr);
                let resume = inner.state.with(|s| inner.resume_due(s));
                if resume == Some(true) {
                    inner.deliver(Owed::Resume);
                }
            });
        Ok(())
    }

    /// Closes the endpoint once queued datagrams are sent (asyncio:
    /// `close`); `connection_lost(None)` follows.
    pub fn close(&self) {
        self.on_loop(|inner| inner.close());
    }

    /// Closes at once, dropping queued datagrams (asyncio: `abort`).
    pub fn abort(&self) {
        self.on_loop(|inner| inner.force_close(None));
    }

    /// Whether the endpoint is closing or closed.
    pub fn is_closing(&self) -> bool {
        self.inner.closing.load(Ordering::Acquire)
    }

    /// Bytes of datagrams queued and not yet sent (asyncio:
    /// `get_write_buffer_size`), counting at once those sent from other
    /// threads that the loop has not applied yet (flow control counts
    /// them too).
    pub fn get_write_buffer_size(&self) -> usize {
        self.inner.buffer_size.load(Ordering::Acquire) + self.inner.posted.get()
    }

    /// The local address.
    pub fn sockname(&self) -> Option<SockAddr> {
        self.inner.sockname.clone()
    }

    /// The connected peer, for an endpoint created with `remote_addr`.
    pub fn peername(&self) -> Option<SockAddr> {
        self.inner.remote.clone()
    }

    /// asyncio's `get_extra_info`: `"sockname"`, `"peername"` (addresses),
    /// `"socket"` (the socket, lent while the endpoint is open:
    /// [`TransportFd`]; `None` once it is closing).
    pub fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        match name {
            "sockname" => self.sockname().map(ExtraInfo::Address),
            "peername" => self.peername().map(ExtraInfo::Address),
            "socket" if !self.is_closing() => {
                Some(ExtraInfo::Socket(TransportFd::new(&self.inner, true)))
            }
            _ => None,
        }
    }

    /// Replaces the protocol (asyncio: `set_protocol`): later datagrams and
    /// calls go to `protocol`, and the old one is dropped (after its
    /// callback returns, when called from inside one). Off the loop's
    /// thread the switch is posted to the loop.
    pub fn set_protocol(&self, protocol: impl DatagramProtocol) {
        let protocol: Box<dyn DatagramProtocol> = Box::new(protocol);
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
                (p.as_mut() as &mut dyn Any).downcast_mut::<P>().map(f)
            })
            .flatten()
    }

    /// The loop the endpoint belongs to, while it exists.
    pub fn get_loop(&self) -> Option<EventLoop> {
        self.inner.shared.event_loop()
    }

    /// The socket, for options asyncio does not expose (loop thread only;
    /// `None` elsewhere or once closed). Do not close it or read from it.
    pub fn with_socket<R>(&self, f: impl FnOnce(socket2::SockRef<'_>) -> R) -> Option<R> {
        with_socket_of(&*self.inner, f)
    }
}

impl std::fmt::Debug for DatagramTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatagramTransport")
            .field("fd", &self.inner.fd)
            .field("sockname", &self.inner.sockname)
            .field("closing", &self.is_closing())
            .finish()
    }
}
