//! hyper 1.x's runtime traits (feature `hyper`): `rt::Read` / `rt::Write`
//! for the stream types, and [`HyperExecutor`] / [`HyperTimer`], so that
//! hyper's connections run on an evloop loop with no tokio runtime.

use crate::event_loop::{EventLoop, WeakEventLoop};
use crate::net::streams::StreamReader;
use crate::net::tcp::TcpStream;
use hyper::rt::{Executor, Read, ReadBufCursor, Sleep, Timer};

impl_shutdown_write!(hyper::rt::Write);
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

impl Read for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // Safety: recv writes only initialised bytes into the cursor's
        // memory and never de-initialises any.
        let n = ready!(self.get_mut().poll_read_uninit(cx, unsafe { buf.as_mut() }))?;
        // Safety: recv initialised the first `n` bytes.
        unsafe { buf.advance(n) };
        Poll::Ready(Ok(()))
    }
}

impl Read for StreamReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let room = buf.remaining();
        self.get_mut()
            .poll_read_io(cx, room, |data| buf.put_slice(data))
    }
}

/// hyper's `rt::Executor` on an evloop loop: each future hyper spawns
/// (HTTP/2 streams, pooled client connections) becomes a task of the loop,
/// from any thread. Holds the loop weakly: once the loop is gone, spawned
/// futures are dropped.
#[derive(Clone, Debug)]
pub struct HyperExecutor {
    event_loop: WeakEventLoop,
}

impl HyperExecutor {
    /// An executor spawning on `event_loop`.
    pub fn new(event_loop: &EventLoop) -> HyperExecutor {
        HyperExecutor {
            event_loop: event_loop.downgrade(),
        }
    }

    /// An executor spawning on the loop running on this thread. Error:
    /// [`Error::NoRunningLoop`](crate::Error::NoRunningLoop).
    pub fn current() -> Result<HyperExecutor, crate::Error> {
        Ok(HyperExecutor::new(&crate::get_running_loop()?))
    }
}

impl<F> Executor<F> for HyperExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        if let Some(lp) = self.event_loop.upgrade() {
            // A closed loop refuses the task, which drops the future: what
            // hyper expects of an executor that is shutting down.
            let _ = lp.create_task(fut);
        }
    }
}

/// hyper's `rt::Timer` on evloop's timers: each sleep is a timer of the
/// loop that polls it (hyper's header-read timeout, keep-alive timeouts).
#[derive(Clone, Copy, Debug, Default)]
pub struct HyperTimer;

impl Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(HyperSleep(crate::runners::sleep_until(deadline)))
    }
}

/// One of [`HyperTimer`]'s sleeps: an evloop sleep toward a fixed
/// deadline (its timer is set at the first poll; no clock is read).
struct HyperSleep(crate::runners::Sleep);

impl Future for HyperSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match Pin::new(&mut self.0).poll(cx) {
            Poll::Pending => Poll::Pending,
            // A sleep polled outside a running loop fails at once; hyper's
            // timeouts then fire at once rather than never.
            Poll::Ready(_) => Poll::Ready(()),
        }
    }
}

impl Sleep for HyperSleep {}
