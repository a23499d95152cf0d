//! How a stream transport ends: `close` (what is buffered still goes
//! out), `abort` and fatal errors (it does not), a half-close
//! (`write_eof`, the write side shut once the buffer drained), a write
//! pipe's reader going away, and the loop closing. Every end leads to
//! `connection_lost` once, through the loop's ready queue as in asyncio,
//! and the descriptor closes when it runs.

use super::state::{Conn, Inner, Io, Kind, StreamState, WriteSide};
use crate::exception::{ExceptionContext, TransportInfo};
use crate::net::endpoint::Endpoint;
use crate::net::io_error::{copy_io_error, is_os_error};
use crate::net::protocol_slot;
use std::io;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Deregisters and closes the descriptor (loop side).
pub(super) fn close_socket(s: &mut StreamState) {
    let Some(Io {
        endpoint,
        mut registration,
    }) = s.conn.take_io()
    else {
        return;
    };
    if let (WriteSide::Sendfile { .. }, Some(sock)) = (s.write, endpoint.socket()) {
        // `loop.sendfile` sends through a duplicate of the fd, which
        // would keep the connection open: end it for both.
        let _ = sock.shutdown(std::net::Shutdown::Both);
    }
    let raw = endpoint.raw_fd();
    registration.deregister(&mut mio::unix::SourceFd(&raw));
    drop(endpoint);
}

impl Inner {
    /// asyncio's `close`: reading stops at once; the buffer still goes
    /// out (after `close_notify`, for TLS), then `connection_lost(None)`.
    pub(super) fn close(self: &Arc<Self>) {
        self.send_close_notify();
        let flushed = self.state.with(|s| {
            if !s.conn.close() {
                return None;
            }
            self.publish(s);
            Some(s.buffer.is_empty())
        });
        match flushed.flatten() {
            Some(true) => self.call_connection_lost(None),
            Some(false) => self.start_shutdown_timer(),
            None => {}
        }
    }

    /// asyncio's `_force_close`: the buffer is dropped and
    /// `connection_lost(error)` queued.
    pub(super) fn force_close(self: &Arc<Self>, error: Option<io::Error>) {
        let lose = self.state.with(|s| {
            s.buffer.clear();
            s.conn.close();
            self.publish(s);
            !s.conn.is_lost()
        });
        if lose == Some(true) {
            self.call_connection_lost(error);
        }
    }

    /// asyncio's `_fatal_error`: the error ends the connection
    /// (`connection_lost(error)`), and is reported to the exception
    /// handler with `message` and the transport, unless it is one asyncio
    /// only logs in debug mode: an `OSError` for a socket, TLS or a write
    /// pipe (`selector_events`, `sslproto`, `_UnixWritePipeTransport`), an
    /// `EIO` for a read pipe (`_UnixReadPipeTransport`, which reports every
    /// other error).
    pub(super) fn fatal_error(self: &Arc<Self>, error: io::Error, message: &str) {
        let quiet = match self.kind {
            Kind::ReadPipe => error.raw_os_error() == Some(libc::EIO),
            Kind::Socket | Kind::WritePipe => is_os_error(&error),
        };
        if !quiet {
            self.shared.call_exception_handler(
                ExceptionContext::new(message)
                    .with_error(Arc::new(copy_io_error(&error)))
                    .with_transport(TransportInfo::new(self.handle())),
            );
        } else if self.shared.debug.load(Ordering::Relaxed) {
            tracing::debug!(target: "evloop", "{:?}: {message}: {error}", self.handle());
        }
        self.force_close(Some(error));
    }

    /// asyncio's words for a fatal I/O error of this transport.
    pub(super) fn fatal_message(&self, read: bool) -> &'static str {
        match (self.kind, read) {
            (Kind::Socket, true) => "Fatal read error on socket transport",
            (Kind::Socket, false) => "Fatal write error on socket transport",
            (_, true) => "Fatal read error on pipe transport",
            (_, false) => "Fatal write error on pipe transport",
        }
    }

    /// The buffer may be empty now: finish a pending `write_eof` or
    /// `close`.
    pub(super) fn after_flush(self: &Arc<Self>) {
        let lose = self.state.with(|s| {
            if !s.buffer.is_empty() {
                return false;
            }
            if s.write == WriteSide::EofRequested {
                s.write = WriteSide::EofWritten;
                if let Some(sock) = s.conn.endpoint().and_then(Endpoint::socket) {
                    let _ = sock.shutdown(std::net::Shutdown::Write);
                }
            }
            matches!(s.conn, Conn::Closing(_))
        });
        if lose == Some(true) {
            self.call_connection_lost(None);
        }
    }

    /// `write_eof` on a socket: the write side shuts once the buffer
    /// drained (after `loop.sendfile`, if one is sending).
    pub(super) fn write_eof_on_loop(self: &Arc<Self>) {
        let flushed = self.state.with(|s| {
            if !s.conn.is_open() {
                return false;
            }
            match s.write {
                WriteSide::Open => {
                    s.write = WriteSide::EofRequested;
                    s.buffer.is_empty()
                }
                WriteSide::Sendfile { .. } => {
                    s.write = WriteSide::Sendfile { eof_after: true };
                    false
                }
                WriteSide::EofRequested | WriteSide::EofWritten => false,
            }
        });
        if flushed == Some(true) {
            self.after_flush();
        }
    }

    /// A write pipe's reader closed its end (asyncio's
    /// `_UnixWritePipeTransport._read_ready`): with bytes still buffered
    /// they can never be delivered (`BrokenPipe`); otherwise the transport
    /// simply closes.
    pub(super) fn reader_gone(self: &Arc<Self>) {
        let pending = self
            .state
            .with(|s| (!s.buffer.is_empty(), s.conn.is_lost()))
            .unwrap_or((false, true));
        match pending {
            (_, true) => {}
            (true, false) => self.force_close(Some(io::Error::from(io::ErrorKind::BrokenPipe))),
            (false, false) => self.force_close(None),
        }
    }

    /// Queues `connection_lost` (asyncio calls it through `call_soon`);
    /// the descriptor is closed when it runs.
    pub(super) fn call_connection_lost(self: &Arc<Self>, error: Option<io::Error>) {
        let first = self.state.with(|s| {
            let first = s.conn.lose();
            // asyncio's socket transport counts its end as a lost write.
            if first && self.kind == Kind::Socket && s.tls.is_none() {
                s.lost_writes += 1;
            }
            first
        });
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
                let unmade = s.start.take();
                if s.tls.is_some() {
                    // asyncio's SSL protocol counts its connection_lost
                    // as a lost write.
                    s.lost_writes += 1;
                }
                if let Some(tls) = &mut s.tls {
                    timers.extend(tls.handshake.take().and_then(|h| h.timer));
                    timers.extend(tls.shutdown_timer.take());
                    // Ended before it was up (a failed TLS handshake, or
                    // start_tls's): the error is also the start's, for
                    // whoever awaits it.
                    if unmade.is_some() {
                        tls.failure = error.as_ref().map(copy_io_error);
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

    /// The loop closed under the transport: it is not running, so
    /// `connection_lost` is called right here.
    pub(super) fn loop_closed(self: &Arc<Self>) {
        let on_lost = self
            .state
            .with(|s| {
                s.buffer.clear();
                close_socket(s);
                self.publish(s);
                s.on_lost.take()
            })
            .flatten();
        self.closing.store(true, Ordering::Release);
        self.wake_drained();
        protocol_slot::connection_lost(self, |p| p.connection_lost(None));
        if let Some(on_lost) = on_lost {
            on_lost();
        }
    }
}
