//! What a stream transport is: its handle, the part other threads read,
//! and the state only the loop's thread touches. The other files of
//! `net::transport` are what it does with them.
//!
//! The state is written as the steps it goes through rather than as
//! flags, so that steps that cannot go together cannot be written down:
//! the connection ([`Conn`]: open, closing, lost, closed, the socket
//! existing exactly until closed), the write side ([`WriteSide`]: open,
//! lent to `loop.sendfile`, EOF requested, EOF written), the protocol
//! (`net::protocol_slot`: not yet made, made, ended) and a TLS handshake
//! ([`TlsState::handshake`], gone once complete). What stays a flag is
//! what may hold in any step (reading paused by the protocol, the peer's
//! EOF).

use super::buffer::WriteBuffer;
use super::protocol::StreamProtocol;
use crate::event_loop::shared::Shared;
use crate::exception::TransportInfo;
use crate::future::LoopFuture;
use crate::handle::TimerHandle;
use crate::loop_cell::LoopCell;
use crate::net::endpoint::Endpoint;
use crate::net::flow::{PostedBytes, WriteFlow};
use crate::net::protocol_slot::{self, OwedCall, ProtocolSlot, SlotOwner};
use crate::net::tls::{TlsInfo, TlsLayer};
use crate::readiness::Registration;
use crate::waiters::WakerList;
use socket2::SockAddr;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// A stream transport (asyncio: the transport of `create_connection`,
/// `create_server`, `connect_accepted_socket`): write to it, close it,
/// pause its reading; it calls its protocol. Cheap to clone (clones are
/// the same transport) and usable from any thread (see the module docs:
/// off the loop's thread operations are posted to the loop).
#[derive(Clone)]
pub struct Transport {
    pub(super) inner: Arc<Inner>,
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

pub(super) struct Inner {
    pub(super) shared: Arc<Shared>,
    pub(super) state: LoopCell<StreamState>,
    // ----- published for other threads
    pub(super) closing: AtomicBool,
    pub(super) reading: AtomicBool,
    pub(super) buffer_size: AtomicUsize,
    /// Written from other threads, not yet applied by the loop.
    pub(super) posted: PostedBytes,
    pub(super) high: AtomicUsize,
    pub(super) low: AtomicUsize,
    // ----- fixed at the start
    pub(super) peername: Option<SockAddr>,
    pub(super) sockname: Option<SockAddr>,
    pub(super) fd: RawFd,
    pub(super) kind: Kind,
    /// The descriptor is a socket (a pipe transport may drive one).
    pub(super) is_socket: bool,
    /// Set once the transport is TLS (at its start, or by `start_tls`).
    pub(super) tls: AtomicBool,
    /// What the TLS handshake negotiated, once it completed.
    pub(super) tls_info: OnceLock<TlsInfo>,
    /// The registration's readiness, kept outside the state so that the
    /// read path looks at it without a reference count per read.
    pub(super) readiness: Arc<crate::readiness::ScheduledIo>,
}

/// The descriptor and its registration: they exist together, and only
/// until the connection is closed.
pub(super) struct Io {
    pub(super) endpoint: Endpoint,
    pub(super) registration: Registration,
}

/// The connection's life (asyncio's `_closing` and `_conn_lost`). Each
/// step is taken once, in this order; any step may be skipped.
pub(super) enum Conn {
    /// Reads and writes go on.
    Open(Io),
    /// `close()` (or an error) stopped reading; what is buffered still
    /// goes out, then `connection_lost` is queued.
    Closing(Io),
    /// `connection_lost` is queued; the descriptor closes when it runs.
    Lost(Io),
    /// The descriptor is closed.
    Closed,
}

impl Conn {
    pub(super) fn io(&self) -> Option<&Io> {
        match self {
            Conn::Open(io) | Conn::Closing(io) | Conn::Lost(io) => Some(io),
            Conn::Closed => None,
        }
    }

    pub(super) fn endpoint(&self) -> Option<&Endpoint> {
        self.io().map(|io| &io.endpoint)
    }

    pub(super) fn is_open(&self) -> bool {
        matches!(self, Conn::Open(_))
    }

    /// `connection_lost` is queued or ran.
    pub(super) fn is_lost(&self) -> bool {
        matches!(self, Conn::Lost(_) | Conn::Closed)
    }

    /// Open → closing; `false` if it was not open.
    pub(super) fn close(&mut self) -> bool {
        self.step(|io| match io {
            Conn::Open(io) => Ok(Conn::Closing(io)),
            other => Err(other),
        })
    }

    /// Open or closing → lost; `false` if it was lost already.
    pub(super) fn lose(&mut self) -> bool {
        self.step(|io| match io {
            Conn::Open(io) | Conn::Closing(io) => Ok(Conn::Lost(io)),
            other => Err(other),
        })
    }

    /// → closed: the descriptor and registration, for the caller to
    /// close.
    pub(super) fn take_io(&mut self) -> Option<Io> {
        match std::mem::replace(self, Conn::Closed) {
            Conn::Open(io) | Conn::Closing(io) | Conn::Lost(io) => Some(io),
            Conn::Closed => None,
        }
    }

    fn step(&mut self, f: impl FnOnce(Conn) -> Result<Conn, Conn>) -> bool {
        let (next, moved) = match f(std::mem::replace(self, Conn::Closed)) {
            Ok(next) => (next, true),
            Err(same) => (same, false),
        };
        *self = next;
        moved
    }
}

/// The write side. A read pipe never leaves `Open` (it refuses writes
/// for its kind).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum WriteSide {
    Open,
    /// `loop.sendfile` sends through a duplicate of the socket: writes
    /// are refused until it gives the side back (`Open`, or
    /// `EofRequested` if `write_eof` was called meanwhile).
    Sendfile {
        eof_after: bool,
    },
    /// `write_eof` was called: writes are refused, and the side shuts
    /// once the buffer drained.
    EofRequested,
    /// The side is shut (`shutdown(SHUT_WR)`): the peer read EOF.
    EofWritten,
}

/// The read side: flags, since any combination may hold.
#[derive(Default)]
pub(super) struct ReadSide {
    /// The protocol (or `loop.sendfile`) paused reading.
    pub(super) paused: bool,
    /// The peer's EOF was received: nothing more to read.
    pub(super) eof: bool,
    /// A read continuation is queued (the socket was left readable, or
    /// reading resumed).
    pub(super) queued: bool,
}

/// The TLS session and the transport's bookkeeping around it (see
/// `net::transport::tls`).
pub(super) struct TlsState {
    pub(super) session: TlsLayer,
    /// Until the handshake completes.
    pub(super) handshake: Option<Handshaking>,
    /// Reused for each write's ciphertext.
    pub(super) out_buf: Vec<u8>,
    /// The shutdown timer of a closing connection, cancelled when it
    /// ends.
    pub(super) shutdown_timer: Option<TimerHandle>,
    /// Why the connection failed before its handshake completed (for the
    /// start that waits for it).
    pub(super) failure: Option<io::Error>,
}

pub(super) struct Handshaking {
    /// Aborts a handshake that outlasts `ssl_handshake_timeout`.
    pub(super) timer: Option<TimerHandle>,
    /// `connection_made` is due when the handshake completes (not after
    /// `start_tls`, as asyncio).
    pub(super) call_made: bool,
}

pub(super) struct StreamState {
    pub(super) conn: Conn,
    pub(super) slot: ProtocolSlot<StreamProtocol, Flow>,
    pub(super) read: ReadSide,
    pub(super) write: WriteSide,
    pub(super) buffer: WriteBuffer,
    pub(super) flow: WriteFlow,
    /// asyncio's `_conn_lost` counter: writes dropped after the
    /// connection ended, plus one for the end itself where asyncio counts
    /// it (see `Inner::drop_lost_write`).
    pub(super) lost_writes: usize,
    /// Waiters for the buffer to drain (`loop.sendfile`, a stream
    /// writer's flush).
    pub(super) drain_waiters: WakerList,
    /// The TLS session, when the connection is TLS.
    pub(super) tls: Option<Box<TlsState>>,
    /// Completed when the connection is up (`connection_made` ran, or a
    /// TLS handshake completed), failed if it ends first.
    pub(super) start: Option<LoopFuture<()>>,
    /// Called once after `connection_lost`.
    pub(super) on_lost: Option<Box<dyn FnOnce() + Send>>,
}

impl StreamState {
    /// One read into `buf`, through the TLS session if there is one.
    pub(super) fn read_into(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let endpoint = self
            .conn
            .endpoint()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        match &mut self.tls {
            None => endpoint.read(buf),
            Some(tls) => tls.session.read(endpoint, buf),
        }
    }

    /// Whether the next read may find more at once (after a read that
    /// did not fill its buffer).
    pub(super) fn more_decrypted(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.session.has_more())
    }

    pub(super) fn handshaking(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|tls| tls.session.is_handshaking())
    }
}

impl AsRef<PostedBytes> for Inner {
    fn as_ref(&self) -> &PostedBytes {
        &self.posted
    }
}

impl Inner {
    pub(super) fn is_loop_thread(&self) -> bool {
        self.state.accessible()
    }

    /// Publishes what other threads read (loop side).
    pub(super) fn publish(&self, s: &StreamState) {
        let closing = !s.conn.is_open();
        self.buffer_size.store(s.buffer.len(), Ordering::Release);
        self.closing.store(closing, Ordering::Release);
        self.reading.store(
            self.kind != Kind::WritePipe && !s.read.paused && !closing,
            Ordering::Release,
        );
    }

    /// The handle of this transport.
    pub(super) fn handle(self: &Arc<Self>) -> Transport {
        Transport {
            inner: self.clone(),
        }
    }

    /// Calls `pause_writing` / `resume_writing` now, or owes it if the
    /// protocol is busy.
    pub(super) fn deliver(self: &Arc<Self>, flow: Option<Flow>) {
        if let Some(flow) = flow {
            protocol_slot::call(self, flow);
        }
    }
}

/// The calls a stream protocol may be owed (see `net::protocol_slot`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
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
        let transport = TransportInfo::new(self.handle());
        let error = protocol_slot::report_fatal_panic(&self.shared, what, payload, transport);
        self.force_close(Some(error));
    }
}
