//! [`StreamReader`]: asyncio's `StreamReader`.

use super::core::{Flow, State, StreamCore};
use super::feeder::StreamFeeder;
use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::net::io_error::copy_io_error;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The reading half of a stream (asyncio: `StreamReader`), from
/// [`EventLoop::open_connection`], [`EventLoop::start_server`] and their
/// Unix twins, or built with [`StreamReader::new`] and fed by hand or by a
/// protocol of one's own (through a [`StreamFeeder`]).
///
/// Reads take `&mut self`: one read at a time, as asyncio enforces with
/// "... called while another coroutine is already waiting for incoming
/// data". A read whose bytes are already buffered returns them without
/// waiting; otherwise it waits for the transport, which receives straight
/// into the reader's buffer. When more than twice the limit is buffered,
/// the transport stops reading until the reader is back under the limit.
///
/// A reader belongs to its loop: use it in tasks of that loop. Elsewhere
/// every method returns [`Error::WrongThread`].
///
/// ```no_run
/// use evloop::EventLoop;
///
/// let lp = EventLoop::new()?;
/// lp.run_until_complete(async {
///     let (mut reader, writer) = lp.open_connection("127.0.0.1", 8888).await?;
///     writer.write(b"hello\n")?;
///     let line = reader.readline().await?;
///     println!("{}", String::from_utf8_lossy(&line));
///     writer.close();
///     writer.wait_closed().await
/// })??;
/// # Ok::<(), evloop::Error>(())
/// ```
pub struct StreamReader {
    pub(crate) core: Arc<StreamCore>,
    /// Bytes handed out by `AsyncBufRead` (`pos..front_end` unread).
    front: Vec<u8>,
    pos: usize,
    front_end: usize,
}

/// Waits for the next feed after `seen` (asyncio: `_wait_for_data`),
/// resuming a paused transport first.
struct WaitForData<'a> {
    core: &'a StreamCore,
    seen: u64,
}

impl Future for WaitForData<'_> {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let seen = self.seen;
        let ready = |s: &State| s.fed != seen || s.eof || s.error.is_some();
        // The common re-poll: same task, nothing new. No waker clone.
        let settled = self.core.with(|s| {
            if ready(s) {
                Some(true)
            } else if s
                .read_waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                Some(false)
            } else {
                None
            }
        })?;
        match settled {
            Some(true) => return Poll::Ready(Ok(())),
            Some(false) => return Poll::Pending,
            None => {}
        }
        let waker = cx.waker().clone();
        let (ready, flow, replaced) = self.core.with(|s| {
            if ready(s) {
                return (true, Flow::None, None);
            }
            (false, s.resume_to_wait(), s.read_waker.replace(waker))
        })?;
        drop(replaced);
        flow.apply();
        if ready {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

impl Drop for WaitForData<'_> {
    fn drop(&mut self) {
        // A cancelled read leaves no waker behind.
        let waker = self.core.with(|s| s.read_waker.take()).ok().flatten();
        drop(waker);
    }
}

impl StreamReader {
    /// A reader of the loop `event_loop` fed by hand with
    /// [`StreamReader::feed_data`] and [`StreamReader::feed_eof`]
    /// (asyncio: `StreamReader(limit=limit)`), e.g. to test a parser.
    /// `limit` is what `readline` and `readuntil` accept at most.
    pub fn new(event_loop: &EventLoop, limit: usize) -> Result<StreamReader, Error> {
        if limit == 0 {
            return Err(Error::InvalidArgument("Limit cannot be <= 0".into()));
        }
        Ok(StreamReader::from_core(StreamCore::new(
            event_loop.inner.shared.clone(),
            limit,
        )))
    }

    pub(crate) fn from_core(core: Arc<StreamCore>) -> StreamReader {
        StreamReader {
            core,
            front: Vec::new(),
            pos: 0,
            front_end: 0,
        }
    }

    /// The limit given when the stream was made.
    pub fn limit(&self) -> usize {
        self.core.limit
    }

    /// The feeding end of this reader, for a protocol to keep while a
    /// task reads (see [`StreamFeeder`]).
    pub fn feeder(&self) -> StreamFeeder {
        StreamFeeder::new(self.core.clone())
    }

    /// Appends bytes (asyncio: `feed_data`); a waiting read wakes up.
    pub fn feed_data(&self, data: &[u8]) -> Result<(), Error> {
        self.core.feed_data(data)
    }

    /// Ends the stream (asyncio: `feed_eof`).
    pub fn feed_eof(&self) -> Result<(), Error> {
        self.core.feed_eof()
    }

    /// Makes every later read fail with `error` (asyncio: `set_exception`).
    pub fn set_exception(&self, error: std::io::Error) -> Result<(), Error> {
        self.core.set_exception(error)
    }

    /// The reader's exception, if one was set (asyncio: `exception`): the
    /// connection's error once it was lost with one.
    pub fn exception(&self) -> Option<Error> {
        self.core
            .with(|s| s.error.as_ref().map(|e| Error::Io(copy_io_error(e))))
            .unwrap_or_else(Some)
    }

    /// Whether the stream ended and every byte was read (asyncio:
    /// `at_eof`).
    pub fn at_eof(&self) -> bool {
        self.pos == self.front_end && self.core.with(|s| s.eof && s.len() == 0).unwrap_or(false)
    }

    /// Bytes buffered and not yet read.
    pub fn buffered(&self) -> usize {
        (self.front_end - self.pos) + self.core.with(|s| s.len()).unwrap_or(0)
    }

    /// Waits for the next feed after `seen` (the caller then looks again,
    /// the reader's exception first).
    async fn wait_for_data(&mut self, seen: u64) -> Result<(), Error> {
        WaitForData {
            core: &self.core,
            seen,
        }
        .await
    }

    /// The loop of every read: `step` looks at the state and either
    /// answers (having consumed what it returns) or asks to wait for the
    /// next feed. A paused transport resumes once the reader is back under
    /// its limit.
    async fn read_with<R>(
        &mut self,
        mut step: impl FnMut(&mut State) -> Option<Result<R, Error>>,
    ) -> Result<R, Error> {
        self.unfront()?;
        loop {
            let (got, flow) = self.core.with(|s| {
                if let Some(e) = &s.error {
                    return (Err(Error::Io(copy_io_error(e))), Flow::None);
                }
                match step(s) {
                    Some(out) => (Ok(Ok(out)), self.core.maybe_resume(s)),
                    None => (Ok(Err(s.fed)), Flow::None),
                }
            })?;
            flow.apply();
            match got? {
                Ok(out) => return out,
                Err(seen) => self.wait_for_data(seen).await?,
            }
        }
    }

    /// Reads up to `n` bytes (asyncio: `read(n)`): what is buffered, or
    /// else waits for some. An empty vector means EOF (or `n` was 0).
    /// Error: the connection's error.
    pub async fn read(&mut self, n: usize) -> Result<Vec<u8>, Error> {
        self.read_with(|s| (n == 0 || s.len() > 0 || s.eof).then(|| Ok(s.take(n.min(s.len())))))
            .await
    }

    /// Reads until EOF (asyncio: `read(-1)`).
    pub async fn read_until_eof(&mut self) -> Result<Vec<u8>, Error> {
        self.read_with(|s| s.eof.then(|| Ok(s.take(s.len())))).await
    }

    /// Reads exactly `n` bytes (asyncio: `readexactly`). Error:
    /// [`Error::IncompleteRead`] with the bytes read if the stream ends
    /// first (they are no longer buffered), the connection's error.
    pub async fn readexactly(&mut self, n: usize) -> Result<Vec<u8>, Error> {
        self.read_with(|s| {
            if s.len() >= n {
                Some(Ok(s.take(n)))
            } else if s.eof {
                Some(Err(incomplete(s, Some(n))))
            } else {
                None
            }
        })
        .await
    }

    /// Reads one line, ending in `\n` (asyncio: `readline`). At EOF the
    /// partial last line is returned (empty at the very end). A line
    /// longer than the limit is [`Error::LimitOverrun`]: the line (or, if
    /// its end was not found, the whole buffer) is dropped, as asyncio
    /// does before raising its `ValueError`.
    pub async fn readline(&mut self) -> Result<Vec<u8>, Error> {
        match self.readuntil(b"\n").await {
            Ok(line) => Ok(line),
            Err(Error::IncompleteRead { partial, .. }) => Ok(partial),
            Err(Error::LimitOverrun { message, consumed }) => {
                let flow = self.core.with(|s| {
                    if s.data()[consumed..].starts_with(b"\n") {
                        s.consume(consumed + 1);
                    } else {
                        s.consume(s.len());
                    }
                    self.core.maybe_resume(s)
                })?;
                flow.apply();
                Err(Error::LimitOverrun { message, consumed })
            }
            Err(e) => Err(e),
        }
    }

    /// Reads up to and including `separator` (asyncio: `readuntil`).
    /// Errors: [`Error::IncompleteRead`] at EOF without the separator (the
    /// partial bytes inside, no longer buffered); [`Error::LimitOverrun`]
    /// when the separator is not within the limit (the buffer is left
    /// intact); [`Error::InvalidArgument`] for an empty separator.
    pub async fn readuntil(&mut self, separator: &[u8]) -> Result<Vec<u8>, Error> {
        self.readuntil_any(&[separator]).await
    }

    /// [`StreamReader::readuntil`] with several separators (asyncio 3.13's
    /// tuple): returns the shortest chunk that ends in any of them.
    pub async fn readuntil_any(&mut self, separators: &[&[u8]]) -> Result<Vec<u8>, Error> {
        if separators.is_empty() {
            return Err(Error::InvalidArgument(
                "Separator should contain at least one element".into(),
            ));
        }
        if separators.iter().any(|s| s.is_empty()) {
            return Err(Error::InvalidArgument(
                "Separator should be at least one-byte string".into(),
            ));
        }
        self.unfront()?;
        let min_len = separators.iter().map(|s| s.len()).min().unwrap_or(1);
        let max_len = separators.iter().map(|s| s.len()).max().unwrap_or(1);
        let limit = self.core.limit;
        let mut offset = 0;
        self.read_with(|s| {
            let data = s.data();
            if data.len() - offset.min(data.len()) >= min_len {
                let mut found: Option<(usize, usize)> = None;
                for sep in separators {
                    if let Some(i) = find(&data[offset..], sep) {
                        let start = offset + i;
                        let end = start + sep.len();
                        if found.is_none_or(|(_, e)| end < e) {
                            found = Some((start, end));
                        }
                    }
                }
                if let Some((start, end)) = found {
                    if start > limit {
                        return Some(Err(Error::LimitOverrun {
                            message: "Separator is found, but chunk is longer than limit",
                            consumed: start,
                        }));
                    }
                    return Some(Ok(s.take(end)));
                }
                offset = (data.len() + 1).saturating_sub(max_len);
                if offset > limit {
                    return Some(Err(Error::LimitOverrun {
                        message: "Separator is not found, and chunk exceed the limit",
                        consumed: offset,
                    }));
                }
            }
            s.eof.then(|| Err(incomplete(s, None)))
        })
        .await
    }

    /// Waits until some bytes are buffered or the stream ended (for the
    /// `AsyncBufRead` implementations).
    pub(crate) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.pos < self.front_end {
            return Poll::Ready(Ok(()));
        }
        let waker = cx.waker().clone();
        let (outcome, flow, replaced) = self.core.with(|s| {
            // The exception first, as asyncio's reads raise it.
            if let Some(e) = &s.error {
                return (Some(Err(Error::Io(copy_io_error(e)))), Flow::None, None);
            }
            if s.len() > 0 || s.eof {
                return (Some(Ok(())), Flow::None, None);
            }
            (None, s.resume_to_wait(), s.read_waker.replace(waker))
        })?;
        drop(replaced);
        flow.apply();
        match outcome {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }

    /// The buffered bytes, for `AsyncBufRead::poll_fill_buf`: the shared
    /// buffer is swapped into the reader's own `front` (no copy), so the
    /// slice stays valid while the transport goes on reading.
    pub(crate) fn poll_fill_buf(&mut self, cx: &mut Context<'_>) -> Poll<Result<&[u8], Error>> {
        if self.pos == self.front_end {
            match self.poll_fill(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            let mut front = std::mem::take(&mut self.front);
            let taken = self.core.with(|s| {
                std::mem::swap(&mut s.buf, &mut front);
                let range = (s.start, s.end);
                s.start = 0;
                s.end = 0;
                // The bytes moved, but are still held: flow control counts
                // them until they are consumed.
                (range, self.core.maybe_resume_holding(s, range.1 - range.0))
            });
            match taken {
                Ok(((pos, end), flow)) => {
                    self.front = front;
                    self.pos = pos;
                    self.front_end = end;
                    flow.apply();
                }
                Err(e) => {
                    self.front = front;
                    return Poll::Ready(Err(e));
                }
            }
        }
        Poll::Ready(Ok(&self.front[self.pos..self.front_end]))
    }

    /// `poll_read` of the I/O traits: copies what is buffered into `out`
    /// (a closure, so that each trait passes its own buffer type).
    pub(crate) fn poll_read_io(
        &mut self,
        cx: &mut Context<'_>,
        room: usize,
        out: impl FnOnce(&[u8]),
    ) -> Poll<std::io::Result<()>> {
        let data = match std::task::ready!(self.poll_fill_buf(cx)) {
            Ok(data) => data,
            Err(e) => return Poll::Ready(Err(crate::net::tcp::to_io(e))),
        };
        let n = data.len().min(room);
        out(&data[..n]);
        self.consume_front(n);
        Poll::Ready(Ok(()))
    }

    /// Consumes `n` bytes of what [`StreamReader::poll_fill_buf`] returned.
    pub(crate) fn consume_front(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.front_end);
        let held = self.front_end - self.pos;
        if let Ok(flow) = self.core.with(|s| self.core.maybe_resume_holding(s, held)) {
            flow.apply();
        }
    }

    /// Puts bytes left in `front` back in front of the shared buffer, so
    /// that the asyncio methods see them.
    fn unfront(&mut self) -> Result<(), Error> {
        if self.pos == self.front_end {
            return Ok(());
        }
        let (pos, end) = (self.pos, self.front_end);
        let mut front = std::mem::take(&mut self.front);
        let back = self.core.with(|s| {
            if s.len() == 0 {
                std::mem::swap(&mut s.buf, &mut front);
                s.start = pos;
                s.end = end;
            } else {
                let mut joined = front[pos..end].to_vec();
                joined.extend_from_slice(s.data());
                s.end = joined.len();
                s.start = 0;
                s.buf = joined;
            }
        });
        self.front = front;
        if back.is_ok() {
            // Only now are the bytes back in the shared buffer.
            self.pos = 0;
            self.front_end = 0;
        }
        back
    }
}

/// asyncio's `IncompleteReadError` at EOF: the partial bytes leave the
/// buffer with it.
fn incomplete(s: &mut State, expected: Option<usize>) -> Error {
    Error::IncompleteRead {
        partial: s.take(s.len()),
        expected,
    }
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    match needle {
        [b] => memchr::memchr(*b, hay),
        _ => memchr::memmem::find(hay, needle),
    }
}

impl std::fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (len, eof) = self.core.with(|s| (s.len(), s.eof)).unwrap_or((0, false));
        f.debug_struct("StreamReader")
            .field("buffered", &len)
            .field("eof", &eof)
            .field("limit", &self.core.limit)
            .finish()
    }
}
