//! The write path: `write` sends at once when nothing is buffered (as
//! asyncio does) and buffers the rest; writability flushes the buffer
//! with vectored writes; the buffer's size drives flow control
//! (`pause_writing` over the high mark, `resume_writing` at or below the
//! low one). Also `loop.sendfile`'s hold on the write side.

use super::buffer::MAX_IOVECS;
use super::state::{Flow, Inner, Kind, StreamState, Transport, WriteSide};
use crate::error::Error;
use crate::exception::ExceptionContext;
use crate::readiness::Direction;
use socket2::Socket;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::task::{Context, Poll};

/// asyncio's `LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const CONNLOST_WARN_AFTER: usize = 5;

impl Inner {
    /// A write on the loop's thread: through the TLS session when there
    /// is one (see `tls.rs`), else as it is.
    pub(super) fn write_on_loop(self: &Arc<Self>, data: &[&[u8]]) -> Result<(), Error> {
        if self.tls.load(std::sync::atomic::Ordering::Acquire) {
            return self.write_tls(data);
        }
        self.write_raw(data)
    }

    /// Sends bytes as they are (ciphertext, for TLS).
    pub(super) fn write_raw(self: &Arc<Self>, data: &[&[u8]]) -> Result<(), Error> {
        let outcome = self.state.with(|s| {
            match s.write {
                WriteSide::Open => {}
                WriteSide::Sendfile { .. } => return Err(sendfile_in_progress()),
                WriteSide::EofRequested | WriteSide::EofWritten => {
                    return Err(Error::Runtime(
                        "Cannot call write() after write_eof()".into(),
                    ));
                }
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
            let pipe_closing = self.kind == Kind::WritePipe && !s.conn.is_open();
            if s.conn.is_lost() || pipe_closing {
                self.drop_lost_write(s);
                return Ok(None);
            }
            let sent = match s.buffer.is_empty() {
                true => self.send_now(s, data, total)?,
                false => Sent::Some(Partial {
                    skip: 0,
                    flush_now: false,
                }),
            };
            let Sent::Some(sent) = sent else {
                // Nothing buffered, yet writes posted from other threads
                // may be over the mark.
                return Ok(self.check_pause(s));
            };
            // Buffer what did not go.
            let mut skip = sent.skip;
            for d in data {
                if skip >= d.len() {
                    skip -= d.len();
                    continue;
                }
                s.buffer.push(&d[skip..]);
                skip = 0;
            }
            if sent.flush_now {
                if let Some(io) = s.conn.io() {
                    s.buffer.flush(&io.endpoint).map_err(Error::Io)?;
                }
            }
            let owed = self.check_pause(s);
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

    /// Nothing is queued: tries the socket at once, as asyncio does
    /// (with at most `MAX_IOVECS` buffers: the kernel refuses more than
    /// `IOV_MAX`; the rest is buffered).
    fn send_now(&self, s: &StreamState, data: &[&[u8]], total: usize) -> Result<Sent, Error> {
        let Some(io) = s.conn.io() else {
            return Ok(Sent::All);
        };
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
        let sent = loop {
            match io.endpoint.write_vectored(slices) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Io(e)),
            }
        };
        if sent == total {
            return Ok(Sent::All);
        }
        Ok(Sent::Some(Partial {
            skip: sent,
            // The send took all it was offered, yet buffers were left out
            // (the IOV_MAX cap): the socket has room, and no new edge
            // will say so, so the rest is flushed now.
            flush_now: sent == slices.iter().map(|b| b.len()).sum::<usize>(),
        }))
    }

    /// A write after the connection ended is dropped, and warned about
    /// once asyncio's counter reached its threshold. asyncio counts the
    /// end itself as one lost write for a socket (its `close` / `abort`)
    /// and for TLS (once `connection_lost` ran), not for a pipe: a socket
    /// warns from the fifth dropped write on, a pipe from the sixth.
    pub(super) fn drop_lost_write(&self, s: &mut StreamState) {
        let warn = s.lost_writes >= CONNLOST_WARN_AFTER;
        s.lost_writes += 1;
        if warn {
            crate::util::log_warning(format_args!(
                "{}",
                match (self.kind, s.tls.is_some()) {
                    (_, true) => "SSL connection is closed",
                    (Kind::Socket, false) => "socket.send() raised exception.",
                    (_, false) => "pipe closed by peer or os.write(pipe, data) raised exception.",
                }
            ));
        }
    }

    /// The socket is writable: flush the buffer (with nothing buffered,
    /// the common case of a transport that writes at once, nothing to
    /// do).
    pub(super) fn write_ready(self: &Arc<Self>) {
        let outcome = self.state.with(|s| {
            let io = s.conn.io()?;
            if s.buffer.is_empty() {
                return None;
            }
            let ready = io.registration.io();
            let event = ready.ready_now(Direction::Write);
            let done = match s.buffer.flush(&io.endpoint) {
                Ok(done) => done,
                Err(e) => return Some(Err(e)),
            };
            if let (false, Some(ev)) = (done, event) {
                ready.clear(Direction::Write, ev);
            }
            let owed = self.check_resume(s);
            self.publish(s);
            Some(Ok(owed))
        });
        match outcome.flatten() {
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
    pub(super) fn wake_drained(&self) {
        let wakers = self
            .state
            .with(|s| {
                if s.buffer.is_empty() || s.conn.is_lost() {
                    s.drain_waiters.take_all()
                } else {
                    Vec::new()
                }
            })
            .unwrap_or_default();
        crate::waiters::wake_all(wakers);
    }

    /// What flow control counts: the buffer, and what other threads
    /// posted that the loop has not applied yet.
    fn pending(&self, s: &StreamState) -> usize {
        s.buffer.len() + self.posted.get()
    }

    /// After the buffer grew: is `pause_writing` due? (loop side)
    pub(super) fn check_pause(&self, s: &mut StreamState) -> Option<Flow> {
        let pending = self.pending(s);
        s.flow.pause_due(pending).then_some(Flow::Pause)
    }

    /// After the buffer shrank: is `resume_writing` due? (loop side)
    pub(super) fn check_resume(&self, s: &mut StreamState) -> Option<Flow> {
        let pending = self.pending(s);
        s.flow.resume_due(pending).then_some(Flow::Resume)
    }

    /// A write posted from another thread, applied on the loop: its bytes
    /// leave the posted count and go through the ordinary path; then
    /// `resume_writing` may be due (what was posted may have gone at
    /// once). An error goes to the exception handler, the caller being
    /// gone.
    pub(super) fn apply_posted(self: &Arc<Self>, data: &[&[u8]]) {
        if let Err(e) = self.write_on_loop(data) {
            self.shared
                .call_exception_handler(ExceptionContext::new(format!(
                    "transport.write() from another thread failed: {e}"
                )));
        }
        let owed = self.state.with(|s| {
            let owed = self.check_resume(s);
            self.publish(s);
            owed
        });
        self.deliver(owed.flatten());
    }
}

/// asyncio's RuntimeError for a write while `loop.sendfile` holds the
/// write side.
pub(super) fn sendfile_in_progress() -> Error {
    Error::Runtime("unable to write; sendfile is in progress".into())
}

/// asyncio's RuntimeError for a transport that is closing (`loop.sendfile`,
/// `loop.start_tls`).
pub(crate) fn closing() -> Error {
    Error::Runtime("Transport is closing".into())
}

/// What an immediate send left to buffer.
enum Sent {
    All,
    Some(Partial),
}

struct Partial {
    /// Bytes sent, to skip.
    skip: usize,
    flush_now: bool,
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
                if !s.conn.is_open() {
                    return Err(closing());
                }
                match s.write {
                    WriteSide::Open => {}
                    WriteSide::Sendfile { .. } => {
                        return Err(Error::Runtime("sendfile is already in progress".into()));
                    }
                    WriteSide::EofRequested | WriteSide::EofWritten => {
                        return Err(Error::Runtime(
                            "Cannot call write() after write_eof()".into(),
                        ));
                    }
                }
                if s.tls.is_some() {
                    return Err(Error::SendfileNotAvailable(
                        "the transport is TLS: sendfile(2) would bypass it".into(),
                    ));
                }
                let sock = s
                    .conn
                    .endpoint()
                    .ok_or_else(closing)?
                    .socket()
                    .ok_or_else(|| {
                        Error::SendfileNotAvailable("the transport is not a socket".into())
                    })?
                    .try_clone()?;
                s.write = WriteSide::Sendfile { eof_after: false };
                let was_reading = !s.read.paused;
                s.read.paused = true;
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
            if s.conn.is_lost() {
                (
                    Poll::Ready(Err(Error::Io(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "Connection is closed by peer",
                    )))),
                    None,
                )
            } else if s.buffer.is_empty() {
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
    /// if it was on; a `write_eof` made meanwhile takes effect now.
    pub(crate) fn end_sendfile(&self, resume_reading: bool) {
        let eof = self.inner.state.with(|s| {
            let WriteSide::Sendfile { eof_after } = s.write else {
                return false;
            };
            s.write = match eof_after {
                true => WriteSide::EofRequested,
                false => WriteSide::Open,
            };
            self.inner.publish(s);
            eof_after
        });
        if eof == Some(true) {
            self.inner.after_flush();
        }
        if resume_reading {
            self.resume_reading();
        }
    }
}
