//! The subprocess transport (asyncio's `BaseSubprocessTransport`): one
//! child, its pipe transports, and the protocol told of both.
//!
//! The state lives in a [`LoopCell`] (the loop's thread only); what other
//! threads may ask (the pid, the return code, whether it is closing) is
//! published in atomics, and signals go through the child's own lock (see
//! `watch`). The protocol sits in a `net::protocol_slot`: calls made
//! before `connection_made` wait for it, in order (asyncio's
//! `_pending_calls`), and so do calls that come while the protocol is busy
//! in one of its callbacks; `connection_lost` follows once the child has
//! exited *and* every pipe has closed, and wakes whoever waits for the
//! child.

use super::SubprocessProtocol;
use super::watch::SharedChild;
use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::event_loop::shared::Shared;
use crate::exception::ExceptionContext;
use crate::loop_cell::LoopCell;
use crate::net::protocol_slot::{self, OwedCall, ProtocolSlot, SlotOwner};
use crate::net::transport::{Protocol, Transport};
use crate::waiters::WakerList;
use std::io;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// `returncode` while the child runs.
const RUNNING: i64 = i64::MIN;

/// A protocol call, owed while `connection_made` is pending or the
/// protocol is busy.
pub(crate) enum Call {
    Data(i32, Vec<u8>),
    PipeLost(i32, Option<io::Error>),
    Exited,
    Pause,
    Resume,
}

impl OwedCall for Call {
    fn name(&self) -> &'static str {
        match self {
            Call::Data(..) => "pipe_data_received",
            Call::PipeLost(..) => "pipe_connection_lost",
            Call::Exited => "process_exited",
            Call::Pause => "pause_writing",
            Call::Resume => "resume_writing",
        }
    }

    fn cancelled_by(&self, next: &Call) -> bool {
        matches!(
            (self, next),
            (Call::Pause, Call::Resume) | (Call::Resume, Call::Pause)
        )
    }
}

/// What the child's watcher reports.
pub(crate) enum ChildEvent {
    /// It exited (and was reaped) with this return code.
    Exited(i32),
    /// The loop closed first; the return code if it had exited.
    LoopClosed(Option<i32>),
}

pub(crate) struct State {
    slot: ProtocolSlot<Box<dyn SubprocessProtocol>, Call>,
    /// The pipe is (still) connected.
    open: [bool; 3],
    returncode: Option<i32>,
    /// `connection_lost` was queued (or the transport abandoned).
    finished: bool,
    exit_waiters: WakerList,
}

pub(crate) struct SubInner {
    shared: Arc<Shared>,
    pid: u32,
    pub(crate) child: SharedChild,
    state: LoopCell<State>,
    /// The pipes' transports, for any thread (cloned out under the lock).
    pipes: Mutex<[Option<Transport>; 3]>,
    returncode: AtomicI64,
    closing: AtomicBool,
    /// Published `done`: signals are refused from then on.
    done: AtomicBool,
}

/// A running child as a transport (asyncio: the `SubprocessTransport` of
/// `loop.subprocess_exec` / `subprocess_shell`): its pid, its pipes'
/// transports, its return code, signals, `close`. Cheap to clone; usable
/// from any thread: `send_signal` and `close`'s kill act at once, the
/// pipes' closing is posted to the loop; `wait` and `with_protocol`
/// belong to the loop's thread.
#[derive(Clone)]
pub struct SubprocessTransport {
    pub(crate) inner: Arc<SubInner>,
}

impl SlotOwner for SubInner {
    type Protocol = Box<dyn SubprocessProtocol>;
    type Call = Call;
    type State = State;

    const NAME: &'static str = "SubprocessProtocol";

    fn cell(&self) -> &LoopCell<State> {
        &self.state
    }

    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn slot(s: &mut State) -> &mut ProtocolSlot<Box<dyn SubprocessProtocol>, Call> {
        &mut s.slot
    }

    fn make(protocol: &mut Box<dyn SubprocessProtocol>, call: Call) {
        match call {
            Call::Data(fd, data) => protocol.pipe_data_received(fd, &data),
            Call::PipeLost(fd, e) => protocol.pipe_connection_lost(fd, e),
            Call::Exited => protocol.process_exited(),
            Call::Pause => protocol.pause_writing(),
            Call::Resume => protocol.resume_writing(),
        }
    }

    /// asyncio calls a subprocess protocol through `call_soon`: a failing
    /// call is reported as a failing callback, and the transport goes on.
    fn panicked(self: &Arc<Self>, what: &'static str, payload: crate::error::PanicPayload) {
        self.shared.report_panic(
            ExceptionContext::new(format!("Exception in callback SubprocessProtocol.{what}()")),
            payload,
        );
    }
}

impl SubInner {
    pub(crate) fn new(
        event_loop: &EventLoop,
        child: SharedChild,
        protocol: Box<dyn SubprocessProtocol>,
        open: [bool; 3],
    ) -> Arc<SubInner> {
        let shared = event_loop.inner.shared.clone();
        let pid = super::watch::lock_child(&child).pid();
        Arc::new(SubInner {
            state: LoopCell::new(
                shared.id(),
                State {
                    slot: ProtocolSlot::new(protocol),
                    open,
                    returncode: None,
                    finished: false,
                    exit_waiters: WakerList::default(),
                },
            ),
            shared,
            pid,
            child,
            pipes: Mutex::new([None, None, None]),
            returncode: AtomicI64::new(RUNNING),
            closing: AtomicBool::new(false),
            done: AtomicBool::new(false),
        })
    }

    pub(crate) fn set_pipe(&self, fd: i32, transport: Transport) {
        crate::sync::lock(&self.pipes)[fd as usize] = Some(transport);
    }

    fn call(self: &Arc<Self>, call: Call) {
        protocol_slot::call(self, call);
    }

    /// Pipe data: delivered from the pipe's read buffer without a copy
    /// when the protocol can take it at once.
    fn data(self: &Arc<Self>, fd: i32, data: &[u8]) {
        protocol_slot::call_with(
            self,
            "pipe_data_received",
            |p| p.pipe_data_received(fd, data),
            || Some(Call::Data(fd, data.to_vec())),
        );
    }

    /// Runs `f` on the protocol (see `net::protocol_slot`).
    fn with_protocol<R>(
        self: &Arc<Self>,
        what: &'static str,
        f: impl FnOnce(&mut Box<dyn SubprocessProtocol>) -> R,
    ) -> Option<R> {
        protocol_slot::with(self, what, f)
    }

    /// Every pipe is connected: `connection_made`, then the calls that
    /// waited for it, in order (loop thread, from the starting call, so
    /// that the call returns with `connection_made` run, as asyncio's
    /// does, without waiting for another loop iteration).
    pub(crate) fn connected(self: &Arc<Self>) {
        let transport = SubprocessTransport {
            inner: self.clone(),
        };
        protocol_slot::connection_made(self, |p| p.connection_made(transport));
        self.try_finish();
    }

    /// What the child's watcher reports (loop thread, or the closing
    /// loop).
    pub(crate) fn child_event(self: &Arc<Self>, event: ChildEvent) {
        match event {
            ChildEvent::Exited(code) => {
                self.returncode.store(code as i64, Ordering::Release);
                self.state.with(|s| s.returncode = Some(code));
                self.call(Call::Exited);
                self.try_finish();
            }
            ChildEvent::LoopClosed(code) => {
                if let Some(code) = code {
                    self.returncode.store(code as i64, Ordering::Release);
                    self.state.with(|s| s.returncode = Some(code));
                }
                self.abandon();
            }
        }
    }

    /// A pipe transport's `connection_lost` ran.
    pub(crate) fn pipe_closed(self: &Arc<Self>, fd: i32) {
        self.state.with(|s| s.open[fd as usize] = false);
        self.try_finish();
    }

    fn try_finish(self: &Arc<Self>) {
        let finish = self
            .state
            .with(|s| {
                let ready = !s.finished
                    && s.slot.is_made()
                    && s.returncode.is_some()
                    && s.open.iter().all(|open| !open);
                if ready {
                    s.finished = true;
                }
                ready
            })
            .unwrap_or(false);
        if !finish {
            return;
        }
        let inner = self.clone();
        let queued = self.shared.call_soon(None, Location::caller(), move || {
            protocol_slot::connection_lost(&inner, |p| p.connection_lost(None));
            inner.abandon();
        });
        if queued.is_err() {
            // The loop is closing: no more callbacks.
            self.abandon();
        }
    }

    /// The end: the protocol is dropped (breaking any cycle through a
    /// transport it keeps), and whoever waits is woken. Off the loop's
    /// thread it is posted there.
    pub(crate) fn abandon(self: &Arc<Self>) {
        if !self.state.accessible() {
            let inner = self.clone();
            let _ = self
                .shared
                .call_soon(None, Location::caller(), move || inner.abandon());
            return;
        }
        let taken = self.state.with(|s| {
            s.open = [false; 3];
            s.finished = true;
            (s.slot.abandon(), s.exit_waiters.take_all())
        });
        self.done.store(true, Ordering::Release);
        let Some(((protocol, owed), waiters)) = taken else {
            return;
        };
        crate::util::drop_quietly(protocol, "a protocol");
        crate::util::drop_quietly(owed, "a protocol call");
        crate::waiters::wake_all(waiters);
    }

    /// Closes the pipes (posted to the loop off its thread) and kills the
    /// child if it still runs.
    pub(crate) fn close(self: &Arc<Self>) {
        if self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        let pipes = crate::sync::lock(&self.pipes).clone();
        for pipe in pipes.into_iter().flatten() {
            pipe.close();
        }
        // asyncio kills a child still running when its transport closes.
        let _ = super::watch::lock_child(&self.child).send_signal(libc::SIGKILL);
    }
}

/// The pipe transports' protocol in `subprocess_exec`: forwards to the
/// subprocess protocol with the pipe's fd number (asyncio's
/// `ReadSubprocessPipeProto` / `WriteSubprocessPipeProto`).
pub(crate) struct PipeProtocol {
    pub(crate) fd: i32,
    pub(crate) sub: Arc<SubInner>,
}

impl Protocol for PipeProtocol {
    fn data_received(&mut self, data: &[u8]) {
        self.sub.data(self.fd, data);
    }

    fn connection_lost(&mut self, error: Option<io::Error>) {
        self.sub.call(Call::PipeLost(self.fd, error));
    }

    fn pause_writing(&mut self) {
        self.sub.call(Call::Pause);
    }

    fn resume_writing(&mut self) {
        self.sub.call(Call::Resume);
    }
}

impl SubprocessTransport {
    /// The child's process id (asyncio: `get_pid`).
    pub fn get_pid(&self) -> u32 {
        self.inner.pid
    }

    /// The transport of the child's stdin (0), stdout (1) or stderr (2)
    /// pipe (asyncio: `get_pipe_transport`); `None` if that stream is not
    /// a pipe.
    pub fn get_pipe_transport(&self, fd: i32) -> Option<Transport> {
        let fd = usize::try_from(fd).ok().filter(|fd| *fd < 3)?;
        crate::sync::lock(&self.inner.pipes)[fd].clone()
    }

    /// The child's return code once it exited (asyncio:
    /// `get_returncode`): its exit status, or minus the signal that
    /// killed it; `None` while it runs.
    pub fn get_returncode(&self) -> Option<i32> {
        match self.inner.returncode.load(Ordering::Acquire) {
            RUNNING => None,
            code => Some(code as i32),
        }
    }

    /// Sends `sig` to the child (asyncio: `send_signal`). As asyncio, a
    /// child that exited is not signalled: nothing happens until the
    /// transport finished (`connection_lost`), then it is [`Error::Io`]
    /// with `ESRCH` (Python's `ProcessLookupError`). `EINVAL` for an
    /// invalid signal number.
    pub fn send_signal(&self, sig: i32) -> Result<(), Error> {
        if self.inner.done.load(Ordering::Acquire) {
            return Err(Error::Io(io::Error::from_raw_os_error(libc::ESRCH)));
        }
        let mut child = super::watch::lock_child(&self.inner.child);
        if child.exited() {
            return Ok(());
        }
        child.send_signal(sig)
    }

    /// Sends `SIGTERM` (asyncio: `terminate`).
    pub fn terminate(&self) -> Result<(), Error> {
        self.send_signal(libc::SIGTERM)
    }

    /// Sends `SIGKILL` (asyncio: `kill`).
    pub fn kill(&self) -> Result<(), Error> {
        self.send_signal(libc::SIGKILL)
    }

    /// Closes the pipes and kills the child if it still runs (asyncio:
    /// `close`). The protocol still hears `process_exited` and
    /// `connection_lost`.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Whether [`SubprocessTransport::close`] was called (asyncio:
    /// `is_closing`).
    pub fn is_closing(&self) -> bool {
        self.inner.closing.load(Ordering::Acquire)
    }

    /// Runs `f` on the protocol if it is a `P` (asyncio: `get_protocol`,
    /// typed). `None` off the loop's thread, while the protocol is busy in
    /// one of its callbacks, after `connection_lost`, or if it is not a
    /// `P`.
    pub fn with_protocol<P: 'static, R>(&self, f: impl FnOnce(&mut P) -> R) -> Option<R> {
        self.inner
            .with_protocol("get_protocol", |p| {
                let any: &mut dyn std::any::Any = p.as_mut();
                any.downcast_mut::<P>().map(f)
            })
            .flatten()
    }

    /// The loop the transport belongs to, while it exists.
    pub fn get_loop(&self) -> Option<EventLoop> {
        self.inner.shared.event_loop()
    }

    /// Waits for the child and returns its return code (asyncio's `_wait`,
    /// what `Process.wait` awaits), with asyncio 3.11's rule: once the
    /// exit is known the code comes back at once; a wait begun before
    /// that ends when the transport finishes, i.e. when the child has
    /// exited *and* every pipe has closed. Error: [`Error::Closed`] if
    /// the loop closed first; [`Error::WrongThread`] off the loop's
    /// thread.
    pub async fn wait(&self) -> Result<i32, Error> {
        struct Forget<'a>(&'a SubInner, Option<u64>);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                if self.1.is_some() {
                    let waker = self.0.state.with(|s| s.exit_waiters.remove(&mut self.1));
                    drop(waker);
                }
            }
        }
        let mut waiting = Forget(&self.inner, None);
        std::future::poll_fn(|cx| self.poll_wait(cx, &mut waiting.1)).await
    }

    fn poll_wait(&self, cx: &mut Context<'_>, id: &mut Option<u64>) -> Poll<Result<i32, Error>> {
        let waker = cx.waker().clone();
        let outcome = self.inner.state.with(|s| {
            if let Some(code) = s.returncode {
                (Poll::Ready(Ok(code)), None)
            } else if s.slot.has_ended() {
                (Poll::Ready(Err(Error::Closed)), None)
            } else {
                (Poll::Pending, s.exit_waiters.register(id, waker))
            }
        });
        match outcome {
            Some((poll, replaced)) => {
                drop(replaced);
                if poll.is_pending() && self.inner.shared.is_closed() {
                    return Poll::Ready(Err(Error::Closed));
                }
                poll
            }
            None if self.inner.shared.is_closed() => Poll::Ready(Err(Error::Closed)),
            None => Poll::Ready(Err(Error::WrongThread)),
        }
    }
}

impl std::fmt::Debug for SubprocessTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubprocessTransport")
            .field("pid", &self.inner.pid)
            .field("returncode", &self.get_returncode())
            .field("closing", &self.is_closing())
            .finish()
    }
}
