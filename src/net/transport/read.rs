//! The read path: on readability the transport reads (into the loop's one
//! read buffer for plain protocols, straight into the protocol's buffer
//! for buffered ones, into the stream reader's buffer for streams) until
//! the socket would block, a few reads at most per iteration so that one
//! busy connection cannot hold the loop; then the peer's EOF.

use super::protocol::StreamProtocol;
use super::state::{Inner, Kind};
use super::tls::HandshakeStep;
use crate::readiness::Direction;
use crate::sched::Local;
use std::io;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// How much one read asks for (asyncio's `max_size`: 256 KiB).
const READ_SIZE: usize = 256 * 1024;
/// Reads per readiness event before yielding to the rest of the loop.
const READS_PER_EVENT: usize = 4;

/// What one read did.
enum Read {
    /// `n` bytes were read (0 after an interrupted call); `more` if the
    /// socket may hold more.
    Data {
        n: usize,
        more: bool,
    },
    WouldBlock,
    Eof,
    Failed(io::Error),
    /// The buffered protocol's `get_buffer` returned an empty buffer.
    EmptyBuffer,
    /// Reading stopped (closed, paused, or the protocol is gone).
    Stopped,
}

impl Read {
    /// A read's outcome: `filled` says whether it may have left more.
    fn of(got: Option<io::Result<usize>>, filled: impl FnOnce(usize) -> bool) -> Read {
        match got {
            None => Read::Stopped,
            Some(Ok(0)) => Read::Eof,
            Some(Ok(n)) => Read::Data { n, more: filled(n) },
            Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => Read::WouldBlock,
            Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {
                Read::Data { n: 0, more: true }
            }
            Some(Err(e)) => Read::Failed(e),
        }
    }
}

impl Inner {
    pub(super) fn read_ready(self: &Arc<Self>, local: &dyn Local) {
        if self.kind == Kind::WritePipe {
            // Never read a write end (EBADF): its read readiness means the
            // reader went away, which `reader_gone` handles.
            return;
        }
        let io = &self.readiness;
        for _ in 0..READS_PER_EVENT {
            // One look at the state: may we read, is a handshake on, is
            // decrypted plaintext waiting, which kind of protocol reads.
            let step = self.state.with(|s| {
                s.read.queued = false;
                let open = s.conn.is_open() && !s.read.eof;
                // A TLS handshake reads whatever the protocol's state.
                let handshaking = s.handshaking();
                if !open || !(handshaking || (s.slot.is_made() && !s.read.paused)) {
                    return None;
                }
                let plaintext = !handshaking
                    && s.tls
                        .as_ref()
                        .is_some_and(|t| t.session.plaintext_pending());
                let buffered = matches!(
                    s.slot.peek(),
                    Some(StreamProtocol::Buffered(_) | StreamProtocol::Stream(_))
                );
                Some((handshaking, plaintext, buffered))
            });
            let Some(Some((handshaking, plaintext, buffered))) = step else {
                return;
            };
            let event = io.ready_now(Direction::Read);
            // Plaintext TLS already decrypted is read without the socket
            // being readable (it stayed in rustls while reading paused).
            if event.is_none() && !plaintext {
                return;
            }
            if handshaking {
                match self.handshake_step() {
                    HandshakeStep::Complete => continue,
                    HandshakeStep::Pending => {
                        if let Some(event) = event {
                            io.clear(Direction::Read, event);
                        }
                        return;
                    }
                    HandshakeStep::Failed => return,
                }
            }
            let read = if buffered {
                self.read_buffered()
            } else {
                self.read_plain(local)
            };
            match read {
                Read::Data { more, .. } => {
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
                Read::EmptyBuffer => {
                    // asyncio's RuntimeError, reported as a failed call.
                    self.fatal_error(
                        io::Error::other("get_buffer() returned an empty buffer"),
                        "Fatal error: protocol.get_buffer() call failed.",
                    );
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
    pub(super) fn queue_read(self: &Arc<Self>) {
        let queue = self
            .state
            .with(|s| !std::mem::replace(&mut s.read.queued, true));
        if queue == Some(true) {
            let inner = self.clone();
            let scheduled = self.shared.call_soon(None, Location::caller(), move || {
                crate::sched::with_any(|_, local| inner.read_ready(local));
            });
            if scheduled.is_err() {
                self.state.with(|s| s.read.queued = false);
            }
        }
    }

    /// A plain protocol: one read into the loop's read buffer, handed to
    /// `data_received`.
    fn read_plain(self: &Arc<Self>, local: &dyn Local) -> Read {
        // The loop's one read buffer stays borrowed across
        // `data_received`: nothing a protocol can call reads a socket
        // synchronously (reads run from the loop's dispatch only, which a
        // callback cannot re-enter), so the borrow is never contended.
        let mut buf = local.read_buffer().borrow_mut();
        if buf.len() < READ_SIZE {
            buf.resize(READ_SIZE, 0);
        }
        let mut decrypted = false;
        let got = self.state.with(|s| {
            let n = s.read_into(&mut buf);
            decrypted = s.more_decrypted();
            n
        });
        self.send_tls_output();
        let len = buf.len();
        let read = Read::of(got, |n| n == len || decrypted);
        if let Read::Data { n: n @ 1.., .. } = read {
            let data = &buf[..n];
            let delivered = self.with_protocol("data_received", |p| match p {
                StreamProtocol::Plain(p) => p.data_received(data),
                StreamProtocol::Buffered(_) | StreamProtocol::Stream(_) => {}
            });
            if delivered.is_none() {
                return Read::Stopped;
            }
        }
        read
    }

    /// A buffered protocol (`get_buffer` / `buffer_updated`), or the
    /// streams' reader, which lends its buffer: the socket's bytes land in
    /// the protocol's memory.
    fn read_buffered(self: &Arc<Self>) -> Read {
        let this = self;
        let outcome = self.with_protocol("get_buffer", move |p| {
            let mut decrypted = false;
            let mut recv = |buf: &mut [u8]| {
                this.state.with(|s| {
                    let n = s.read_into(buf);
                    decrypted = s.more_decrypted();
                    n
                })
            };
            let read = match p {
                StreamProtocol::Stream(p) => {
                    let got = p.read_from(&mut recv);
                    let filled = got.as_ref().is_some_and(|r| r.as_ref().is_ok_and(|g| g.1));
                    Read::of(got.map(|r| r.map(|g| g.0)), |_| filled || decrypted)
                }
                StreamProtocol::Buffered(p) => {
                    let buf = p.get_buffer(READ_SIZE);
                    if buf.is_empty() {
                        return Read::EmptyBuffer;
                    }
                    let len = buf.len();
                    // The socket is reached through the state; the buffer
                    // is the protocol's, outside it.
                    let got = recv(buf);
                    let read = Read::of(got, |n| n == len || decrypted);
                    if let Read::Data { n: n @ 1.., .. } = read {
                        p.buffer_updated(n);
                    }
                    read
                }
                StreamProtocol::Plain(_) => Read::Stopped,
            };
            this.send_tls_output();
            read
        });
        outcome.unwrap_or(Read::Stopped)
    }

    /// The peer's EOF: `eof_received`, and the transport closes unless the
    /// protocol keeps its write side open.
    fn eof(self: &Arc<Self>) {
        self.state.with(|s| s.read.eof = true);
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

    /// Runs `f` on the protocol (see `net::protocol_slot`).
    pub(super) fn with_protocol<R>(
        self: &Arc<Self>,
        what: &'static str,
        f: impl FnOnce(&mut StreamProtocol) -> R,
    ) -> Option<R> {
        crate::net::protocol_slot::with(self, what, f)
    }
}
