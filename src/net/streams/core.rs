//! The state a stream's reader, writer and protocol share.
//!
//! The state lives in a [`LoopCell`]: the loop's thread reaches it without
//! a lock (the protocol from the transport's callbacks, the reader and
//! writer from tasks), and any other thread is refused with
//! [`Error::WrongThread`]. The reader's buffer is one `Vec` whose bytes
//! `start..end` are unread; the transport receives straight into
//! `end..` (lent for one `recv`, see [`StreamCore::read_from`]), so no
//! byte is copied between the socket and the reader.
//!
//! No user code runs inside the cell: wakers are collected there and
//! woken, and transport calls are made, after it is released.

use crate::error::Error;
use crate::event_loop::shared::Shared;
use crate::loop_cell::LoopCell;
use crate::net::transport::Transport;
use crate::waiters::WakerList;
use std::io;
use std::sync::Arc;
use std::task::Waker;

/// asyncio's default stream limit (`_DEFAULT_LIMIT`, 64 KiB).
pub const DEFAULT_LIMIT: usize = 64 * 1024;
/// The first read of a connection asks for this much; reads that fill what
/// they were offered double it, up to [`MAX_READ`].
const FIRST_READ: usize = 16 * 1024;
/// The most one read asks for (asyncio's `max_size`: 256 KiB).
const MAX_READ: usize = 256 * 1024;

/// asyncio's `ConnectionResetError('Connection lost')`.
pub(crate) fn connection_lost() -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::ConnectionReset,
        "Connection lost",
    ))
}

pub(crate) struct State {
    // ----- the reader's side
    /// Initialised bytes; `start..end` are unread.
    pub(crate) buf: Vec<u8>,
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// How much the next read asks for.
    next_read: usize,
    pub(crate) eof: bool,
    /// The reader's exception (asyncio: `set_exception`).
    pub(crate) error: Option<io::Error>,
    /// Bumped by every feed (data, EOF, error): what a waiting read waits
    /// for.
    pub(crate) fed: u64,
    /// The one read in progress (a `StreamReader` reads through `&mut`).
    pub(crate) read_waker: Option<Waker>,
    /// Reading was paused because the buffer went over twice the limit.
    pub(crate) reading_paused: bool,
    pub(crate) transport: Option<Transport>,
    // ----- the writer's side (asyncio's `FlowControlMixin`)
    pub(crate) write_paused: bool,
    pub(crate) drain_waiters: WakerList,
    /// `connection_lost` ran; `lost_error` is its error.
    pub(crate) lost: bool,
    pub(crate) lost_error: Option<io::Error>,
    pub(crate) closed_waiters: WakerList,
    /// The I/O traits' waits (`poll_write`, `poll_close`), keyed by the
    /// writer clone that waits.
    pub(crate) io_write_waiters: WakerList,
    pub(crate) io_close_waiters: WakerList,
}

impl State {
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    pub(crate) fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Takes the first `n` unread bytes.
    pub(crate) fn take(&mut self, n: usize) -> Vec<u8> {
        let out = self.buf[self.start..self.start + n].to_vec();
        self.consume(n);
        out
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Makes room for the next read: unread bytes move to the front when
    /// that frees enough, otherwise the buffer grows.
    fn spare(&mut self) -> &mut [u8] {
        let want = self.next_read;
        if self.buf.len() - self.end < want {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < want {
                self.buf.resize(self.end + want, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    /// Before a read waits: asyncio resumes a paused transport, since a
    /// read that needs more than is buffered must not wait forever.
    pub(crate) fn resume_to_wait(&mut self) -> Flow {
        if !self.reading_paused {
            return Flow::None;
        }
        self.reading_paused = false;
        self.transport.clone().map_or(Flow::None, Flow::Resume)
    }

    /// Counts a feed and takes the waiting read's waker, to be woken once
    /// the cell is released (an `Option`, not a list: a reader reads
    /// through `&mut`, so at most one read waits, and a feed per `recv`
    /// allocates nothing).
    pub(crate) fn wake_reader(&mut self) -> Option<Waker> {
        self.fed += 1;
        self.read_waker.take()
    }
}

/// What the reader, the writer and the protocol of one stream share.
pub(crate) struct StreamCore {
    pub(crate) state: LoopCell<State>,
    pub(crate) limit: usize,
    /// The owning loop, to tell a closed loop from a wrong thread when the
    /// state is out of reach.
    shared: Arc<Shared>,
}

/// A transport call to make once the cell is released.
pub(crate) enum Flow {
    None,
    Pause(Transport),
    Resume(Transport),
}

impl Flow {
    pub(crate) fn apply(self) {
        match self {
            Flow::None => {}
            Flow::Pause(t) => t.pause_reading(),
            Flow::Resume(t) => t.resume_reading(),
        }
    }
}

impl StreamCore {
    pub(crate) fn new(shared: Arc<Shared>, limit: usize) -> Arc<StreamCore> {
        Arc::new(StreamCore {
            state: LoopCell::new(
                shared.id(),
                State {
                    buf: Vec::new(),
                    start: 0,
                    end: 0,
                    next_read: FIRST_READ,
                    eof: false,
                    error: None,
                    fed: 0,
                    read_waker: None,
                    reading_paused: false,
                    transport: None,
                    write_paused: false,
                    drain_waiters: WakerList::default(),
                    lost: false,
                    lost_error: None,
                    closed_waiters: WakerList::default(),
                    io_write_waiters: WakerList::default(),
                    io_close_waiters: WakerList::default(),
                },
            ),
            limit,
            shared,
        })
    }

    /// Runs `f` on the state: [`Error::Closed`] once the loop is closed,
    /// [`Error::WrongThread`] off the loop's thread.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> Result<R, Error> {
        self.state
            .with(f)
            .ok_or_else(|| match self.shared.is_closed() {
                true => Error::Closed,
                false => Error::WrongThread,
            })
    }

    /// asyncio's `_maybe_resume_transport`, after the reader consumed.
    pub(crate) fn maybe_resume(&self, s: &mut State) -> Flow {
        self.maybe_resume_holding(s, 0)
    }

    /// [`StreamCore::maybe_resume`] counting `held` bytes the reader took
    /// out of the shared buffer but has not consumed yet (`AsyncBufRead`).
    pub(crate) fn maybe_resume_holding(&self, s: &mut State, held: usize) -> Flow {
        if s.reading_paused && s.len() + held <= self.limit {
            s.reading_paused = false;
            if let Some(t) = &s.transport {
                return Flow::Resume(t.clone());
            }
        }
        Flow::None
    }

    /// asyncio's `feed_data`'s flow control, after bytes came in.
    pub(crate) fn maybe_pause(&self, s: &mut State) -> Flow {
        if !s.reading_paused && s.len() > 2 * self.limit {
            if let Some(t) = &s.transport {
                s.reading_paused = true;
                return Flow::Pause(t.clone());
            }
        }
        Flow::None
    }

    /// Lends the unread end of the reader's buffer to `recv` (the
    /// transport's `recv` on the socket, no user code) and keeps what it
    /// wrote. Returns the byte count and whether it filled all it was lent;
    /// `None` if the state is out of reach.
    pub(crate) fn read_from(
        &self,
        recv: &mut dyn FnMut(&mut [u8]) -> Option<io::Result<usize>>,
    ) -> Option<io::Result<(usize, bool)>> {
        let mut wake = None;
        let (got, flow) = self
            .with(|s| {
                let spare = s.spare();
                let offered = spare.len();
                let got = recv(spare);
                if let Some(Ok(n)) = got {
                    if n > 0 {
                        s.end += n;
                        if n == offered {
                            s.next_read = (s.next_read * 2).min(MAX_READ);
                        }
                        wake = s.wake_reader();
                        return (Some(Ok((n, n == offered))), self.maybe_pause(s));
                    }
                }
                (got.map(|r| r.map(|n| (n, false))), Flow::None)
            })
            .ok()?;
        flow.apply();
        if let Some(w) = wake {
            w.wake();
        }
        got
    }

    /// Appends `data` (asyncio: `feed_data`).
    pub(crate) fn feed_data(&self, data: &[u8]) -> Result<(), Error> {
        if data.is_empty() {
            return Ok(());
        }
        let mut wake = None;
        let flow = self.with(|s| {
            if s.eof {
                // asyncio asserts here.
                return Err(Error::InvalidState("feed_data after feed_eof"));
            }
            if s.start > 0 && s.buf.len() - s.end < data.len() {
                s.buf.copy_within(s.start..s.end, 0);
                s.end -= s.start;
                s.start = 0;
            }
            if s.buf.len() - s.end < data.len() {
                s.buf.resize(s.end + data.len(), 0);
            }
            s.buf[s.end..s.end + data.len()].copy_from_slice(data);
            s.end += data.len();
            wake = s.wake_reader();
            Ok(self.maybe_pause(s))
        })??;
        flow.apply();
        if let Some(w) = wake {
            w.wake();
        }
        Ok(())
    }

    /// The transport whose reading follows the reader (asyncio:
    /// `set_transport`).
    pub(crate) fn set_transport(&self, transport: &Transport) -> Result<(), Error> {
        self.with(|s| match s.transport {
            Some(_) => Err(Error::InvalidState("Transport already set")),
            None => {
                s.transport = Some(transport.clone());
                Ok(())
            }
        })?
    }

    /// Marks the end of the stream (asyncio: `feed_eof`).
    pub(crate) fn feed_eof(&self) -> Result<(), Error> {
        let mut wake = None;
        self.with(|s| {
            s.eof = true;
            wake = s.wake_reader();
        })?;
        if let Some(w) = wake {
            w.wake();
        }
        Ok(())
    }

    /// Sets the reader's exception (asyncio: `set_exception`).
    pub(crate) fn set_exception(&self, e: io::Error) -> Result<(), Error> {
        let mut wake = None;
        // The error it replaces is dropped outside the cell (a user's
        // error may carry a payload with its own destructor).
        let old = self.with(|s| {
            let old = s.error.replace(e);
            wake = s.wake_reader();
            old
        })?;
        drop(old);
        if let Some(w) = wake {
            w.wake();
        }
        Ok(())
    }
}
