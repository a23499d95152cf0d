//! [`StreamWriter`]: asyncio's `StreamWriter`.

use super::core::{State, StreamCore, connection_lost};
use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::net::extra::ExtraInfo;
use crate::net::io_error::copy_io_error;
use crate::net::transport::Transport;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The writing half of a stream (asyncio: `StreamWriter`). Clones are the
/// same writer. `write` never blocks: bytes the socket does not take at
/// once are buffered by the transport; `drain` is the back-pressure,
/// waiting while the buffer is above the transport's high-water mark.
///
/// When the last clone is dropped and the transport is still open, it is
/// closed (asyncio's `StreamWriter.__del__` does the same, with a
/// `ResourceWarning`).
pub struct StreamWriter {
    inner: Arc<WriterInner>,
    /// This clone's places in the waiter lists of the I/O traits' polls
    /// (`poll_write`, `poll_flush`, `poll_close`), given back on drop.
    waits: IoWaits,
}

#[derive(Default)]
struct IoWaits {
    write: Option<u64>,
    flush: Option<u64>,
    close: Option<u64>,
}

impl Clone for StreamWriter {
    fn clone(&self) -> StreamWriter {
        StreamWriter {
            inner: self.inner.clone(),
            waits: IoWaits::default(),
        }
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        let waits = &mut self.waits;
        if waits.write.is_some() || waits.close.is_some() {
            let removed = self
                .inner
                .core
                .with(|s| {
                    (
                        s.io_write_waiters.remove(&mut waits.write),
                        s.io_close_waiters.remove(&mut waits.close),
                    )
                })
                .ok();
            drop(removed);
        }
        self.inner.transport.forget_drained(&mut waits.flush);
    }
}

struct WriterInner {
    transport: Transport,
    core: Arc<StreamCore>,
}

impl Drop for WriterInner {
    fn drop(&mut self) {
        if !self.transport.is_closing() {
            self.transport.close();
        }
    }
}

/// What a [`Wait`] waits for.
#[derive(Clone, Copy)]
enum Until {
    /// `resume_writing` (asyncio's `_drain_helper`).
    Resumed,
    /// `connection_lost` (asyncio's `_closed` future).
    Closed,
}

/// Waits for a writer's event, or for the end of the connection: then
/// `Ok`, or the error it was lost with (asyncio's waiters get exactly
/// that).
struct Wait<'a> {
    core: &'a StreamCore,
    id: Option<u64>,
    until: Until,
}

fn outcome_of_loss(s: &State) -> Result<(), Error> {
    match &s.lost_error {
        Some(e) => Err(Error::Io(copy_io_error(e))),
        None => Ok(()),
    }
}

impl Future for Wait<'_> {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let waker = cx.waker().clone();
        let this = &mut *self;
        let (out, replaced) = this.core.with(|s| {
            if s.lost {
                return (Some(outcome_of_loss(s)), None);
            }
            let list = match this.until {
                Until::Resumed if !s.write_paused => return (Some(Ok(())), None),
                Until::Resumed => &mut s.drain_waiters,
                Until::Closed => &mut s.closed_waiters,
            };
            (None, list.register(&mut this.id, waker))
        })?;
        drop(replaced);
        match out {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        let (id, until) = (&mut self.id, self.until);
        let waker = self
            .core
            .with(|s| match until {
                Until::Resumed => s.drain_waiters.remove(id),
                Until::Closed => s.closed_waiters.remove(id),
            })
            .ok()
            .flatten();
        drop(waker);
    }
}

impl StreamWriter {
    pub(crate) fn new(transport: Transport, core: Arc<StreamCore>) -> StreamWriter {
        StreamWriter {
            inner: Arc::new(WriterInner { transport, core }),
            waits: IoWaits::default(),
        }
    }

    /// The transport underneath (asyncio: `writer.transport`).
    pub fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// Sends `data` (asyncio: `write`); see [`Transport::write`]. Follow
    /// with [`StreamWriter::drain`] to respect back-pressure.
    pub fn write(&self, data: &[u8]) -> Result<(), Error> {
        self.inner.transport.write(data)
    }

    /// Sends several buffers in one vectored write (asyncio:
    /// `writelines`).
    pub fn writelines<I, B>(&self, buffers: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        self.inner.transport.writelines(buffers)
    }

    /// Whether `write_eof` is supported (asyncio: `can_write_eof`).
    pub fn can_write_eof(&self) -> bool {
        self.inner.transport.can_write_eof()
    }

    /// Closes the write side after the buffer is sent (asyncio:
    /// `write_eof`).
    pub fn write_eof(&self) -> Result<(), Error> {
        self.inner.transport.write_eof()
    }

    /// Closes the stream (asyncio: `close`): the buffer is still sent, then
    /// the connection closes. Await [`StreamWriter::wait_closed`] to know
    /// when.
    pub fn close(&self) {
        self.inner.transport.close();
    }

    /// Whether the stream is closing or closed (asyncio: `is_closing`).
    pub fn is_closing(&self) -> bool {
        self.inner.transport.is_closing()
    }

    /// Transport information (asyncio: `get_extra_info`): `peername`,
    /// `sockname`, `socket`.
    pub fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        self.inner.transport.get_extra_info(name)
    }

    /// The loop the stream belongs to.
    pub fn get_loop(&self) -> Option<EventLoop> {
        self.inner.transport.get_loop()
    }

    /// Waits until it is appropriate to write more (asyncio: `drain`):
    /// returns at once while the transport's buffer is under its high-water
    /// mark, otherwise when it drains below the low mark. Errors: the
    /// reader's exception (the connection's error) if there is one; once
    /// the connection is lost, asyncio's `ConnectionResetError('Connection
    /// lost')` ([`Error::Io`] of kind `ConnectionReset`).
    pub async fn drain(&self) -> Result<(), Error> {
        let core = &self.inner.core;
        // One look at the state answers the common cases.
        let (error, lost, paused) =
            core.with(|s| (s.error.as_ref().map(copy_io_error), s.lost, s.write_paused))?;
        if let Some(e) = error {
            return Err(Error::Io(e));
        }
        if self.inner.transport.is_closing() {
            // Let connection_lost run first, so that a write-drain loop on
            // a closed connection sees the error (asyncio's `sleep(0)`).
            crate::sleep(std::time::Duration::ZERO).await?;
        } else if !lost && !paused {
            return Ok(());
        }
        if core.with(|s| s.lost)? {
            return Err(connection_lost());
        }
        Wait {
            core,
            id: None,
            until: Until::Resumed,
        }
        .await
    }

    /// Upgrades the connection to TLS (asyncio: `StreamWriter.start_tls`):
    /// drains what was written, then runs the handshake of `context` over
    /// the connection; the writer and its reader go on in plaintext over
    /// TLS. See [`EventLoop::start_tls`] for the errors.
    pub async fn start_tls(
        &self,
        context: crate::net::tls::TlsContext,
        options: crate::net::start_tls::StartTlsOptions,
    ) -> Result<(), Error> {
        self.drain().await?;
        let lp = self.get_loop().ok_or(Error::Closed)?;
        lp.start_tls(&self.inner.transport, context, options)
            .await
            .map(drop)
    }

    /// Waits until the connection is closed (asyncio: `wait_closed`). Any
    /// number of calls, before or after the close, return the same: `Ok`,
    /// or the error the connection was lost with.
    pub async fn wait_closed(&self) -> Result<(), Error> {
        Wait {
            core: &self.inner.core,
            id: None,
            until: Until::Closed,
        }
        .await
    }

    /// `poll_write` of the I/O traits: waits under back-pressure, then
    /// takes all of `bufs` (the transport buffers what the socket does
    /// not take).
    pub(crate) fn poll_write_io(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[&[u8]],
    ) -> Poll<std::io::Result<usize>> {
        if let Err(e) = std::task::ready!(self.poll_write_ready(cx)) {
            return Poll::Ready(Err(crate::net::tcp::to_io(e)));
        }
        let n = bufs.iter().map(|b| b.len()).sum();
        Poll::Ready(
            self.writelines(bufs)
                .map(|()| n)
                .map_err(crate::net::tcp::to_io),
        )
    }

    /// `poll_shutdown` of tokio's and hyper's traits: EOF once flushed.
    #[cfg(any(feature = "tokio-io", feature = "hyper"))]
    pub(crate) fn poll_shutdown_io(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Err(e) = std::task::ready!(self.poll_flushed(cx)) {
            return Poll::Ready(Err(crate::net::tcp::to_io(e)));
        }
        Poll::Ready(self.write_eof().map_err(crate::net::tcp::to_io))
    }

    /// Polls whether a write may proceed without waiting (the I/O traits'
    /// back-pressure): ready while the transport is under its high-water
    /// mark.
    pub(crate) fn poll_write_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let waker = cx.waker().clone();
        let id = &mut self.waits.write;
        let (out, replaced) = self.inner.core.with(|s| {
            if s.lost {
                return (Some(Err(connection_lost())), None);
            }
            if !s.write_paused {
                return (Some(Ok(())), None);
            }
            (None, s.io_write_waiters.register(id, waker))
        })?;
        drop(replaced);
        match out {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }

    /// Polls until the transport's buffer is empty (`poll_flush`).
    pub(crate) fn poll_flushed(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.transport.poll_drained(cx, &mut self.waits.flush)
    }

    /// Polls until the connection is closed (`poll_close`), closing it.
    pub(crate) fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if !self.is_closing() {
            self.close();
        }
        let waker = cx.waker().clone();
        let id = &mut self.waits.close;
        let (out, replaced) = self.inner.core.with(|s| {
            if s.lost {
                return (Some(outcome_of_loss(s)), None);
            }
            (None, s.io_close_waiters.register(id, waker))
        })?;
        drop(replaced);
        match out {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

impl std::fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWriter")
            .field("transport", &self.inner.transport)
            .finish()
    }
}
