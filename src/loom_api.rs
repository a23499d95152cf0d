//! Entry points for the loom models in `loom-tests/` (built only with
//! `RUSTFLAGS="--cfg loom"`). Each wrapper forwards to the production code
//! of one protocol, so the models check the code that ships. Real tasks and
//! callbacks run on [`MockLoop`], a minimal loop that implements the same
//! `sched` interfaces the real one does.
#![allow(missing_docs)]

use crate::error::{Error, PanicPayload};
use crate::exception::ExceptionContext;
use crate::remote::{Pop, Remote};
use crate::runnable::{Header, Kind, Runnable, Vtable};
use crate::sched::{self, Local, LoopId, Schedule};
use crate::task::registry::TaskRegistry;
use loom::sync::atomic::{AtomicUsize, Ordering};
use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::Location;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

// ----- the remote inbox, its wake-up state and its closing --------------------------------

#[repr(C)]
struct TestNode {
    header: Header,
    value: usize,
    /// Counts how many times the node was run or dropped.
    done: Option<loom::sync::Arc<AtomicUsize>>,
}

unsafe fn run_test_node(ptr: NonNull<Header>, _: &dyn Local) {
    unsafe { free_test_node(ptr) }
}

unsafe fn free_test_node(ptr: NonNull<Header>) {
    let node = unsafe { Box::from_raw(ptr.cast::<TestNode>().as_ptr()) };
    if let Some(done) = &node.done {
        done.fetch_add(1, Ordering::SeqCst);
    }
}

static TEST_VTABLE: Vtable = Vtable {
    kind: Kind::Test,
    run: run_test_node,
    discard: free_test_node,
};

fn test_node(value: usize, done: Option<loom::sync::Arc<AtomicUsize>>) -> Runnable {
    let node = Box::new(TestNode {
        header: Header::new(&TEST_VTABLE),
        value,
        done,
    });
    let ptr = NonNull::from(Box::leak(node)).cast::<Header>();
    unsafe { Runnable::from_raw(ptr) }
}

/// An object taken out of the inbox (dropping it counts as consumed).
pub struct Item(Runnable);

impl Item {
    pub fn value(&self) -> usize {
        unsafe { self.0.as_ptr().cast::<TestNode>().as_ref().value }
    }
}

pub enum Popped {
    Item(Item),
    Empty,
    Busy,
}

/// A loop's remote inbox plus wake-up state (`remote::Remote`).
pub struct Inbox(Remote);

impl Default for Inbox {
    fn default() -> Self {
        Inbox(Remote::new())
    }
}

impl Inbox {
    /// Pushes a node carrying `value`; `true` means "write the eventfd".
    pub fn push(&self, value: usize) -> bool {
        self.0.push(test_node(value, None))
    }

    /// Publishes a flag already set; `true` means "write the eventfd".
    pub fn signal(&self) -> bool {
        self.0.signal()
    }

    /// Consumer only.
    pub fn pop(&self) -> Popped {
        match unsafe { self.0.pop() } {
            Pop::Item(r) => Popped::Item(Item(r)),
            Pop::Empty => Popped::Empty,
            Pop::Busy => Popped::Busy,
        }
    }

    /// Consumer only: may the loop sleep?
    pub fn park_begin(&self, pending: impl FnOnce() -> bool) -> bool {
        unsafe { self.0.park_begin(pending) }
    }

    pub fn park_end(&self) -> bool {
        self.0.park_end()
    }
}

/// The inbox with its closing protocol (`remote::Inbox`).
pub struct ClosingInbox(crate::remote::Inbox);

impl Default for ClosingInbox {
    fn default() -> Self {
        ClosingInbox(crate::remote::Inbox::new())
    }
}

impl ClosingInbox {
    /// Posts a node that adds one to `done` when it is run or dropped;
    /// `false` if the inbox refused it (closed; the node was dropped).
    pub fn post(&self, done: &loom::sync::Arc<AtomicUsize>) -> bool {
        self.0.post(test_node(0, Some(done.clone()))).is_ok()
    }

    pub fn close(&self) {
        self.0.close()
    }

    /// The loop consuming (only while the inbox is open, as the loop only
    /// runs before it is closed): runs one node if there is one.
    pub fn run_one(&self) -> bool {
        match unsafe { self.0.remote().pop() } {
            Pop::Item(r) => {
                drop(r);
                true
            }
            Pop::Empty | Pop::Busy => false,
        }
    }
}

// ----- a mock loop for real callbacks and tasks ----------------------------------------------

struct MockShared {
    queue: loom::sync::Mutex<VecDeque<Runnable>>,
    exceptions: AtomicUsize,
}

impl Schedule for MockShared {
    fn id(&self) -> LoopId {
        self as *const MockShared as *const ()
    }

    fn schedule(&self, r: Runnable) -> Result<(), Runnable> {
        crate::sync::lock(&self.queue).push_back(r);
        Ok(())
    }

    fn call_soon(
        &self,
        location: &'static Location<'static>,
        f: Box<dyn FnOnce() + Send>,
    ) -> Result<(), Error> {
        let (r, h) = crate::handle::new_callback(Schedule::id(self), true, None, location, f);
        drop(h);
        crate::sync::lock(&self.queue).push_back(r);
        Ok(())
    }

    fn call_exception_handler(&self, _ctx: ExceptionContext) {
        self.exceptions.fetch_add(1, Ordering::SeqCst);
    }

    fn timer_cancelled_remotely(&self) {}

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }
}

/// A minimal loop: a locked run queue. Any thread may queue; one thread at
/// a time drives it through a [`Driver`].
#[derive(Clone)]
pub struct MockLoop {
    shared: Arc<MockShared>,
}

impl Default for MockLoop {
    fn default() -> Self {
        MockLoop {
            shared: Arc::new(MockShared {
                queue: loom::sync::Mutex::new(VecDeque::new()),
                exceptions: AtomicUsize::new(0),
            }),
        }
    }
}

/// The loop thread's side of a [`MockLoop`].
pub struct Driver {
    shared: Arc<MockShared>,
    tasks: RefCell<TaskRegistry>,
    io: RefCell<crate::readiness::IoSet>,
    read_buffer: RefCell<Vec<u8>>,
}

impl Local for Driver {
    fn push(&self, r: Runnable) {
        crate::sync::lock(&self.shared.queue).push_back(r);
    }

    fn tasks(&self) -> &RefCell<TaskRegistry> {
        &self.tasks
    }

    fn free_io(&self, token: mio::Token) -> bool {
        crate::readiness::free_in(&self.io, token)
    }

    fn read_buffer(&self) -> &RefCell<Vec<u8>> {
        &self.read_buffer
    }

    fn timer_cancelled(&self) {}

    fn report_panic(&self, _ctx: ExceptionContext, _payload: PanicPayload) {
        self.shared.exceptions.fetch_add(1, Ordering::SeqCst);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl MockLoop {
    /// Spawns a real task (first step queued).
    #[track_caller]
    pub fn spawn<F>(&self, fut: F) -> crate::Task<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let sched: Arc<dyn Schedule> = self.shared.clone();
        let (r, ptr) = crate::task::raw::allocate(sched, fut, None, false, Location::caller());
        crate::sync::lock(&self.shared.queue).push_back(r);
        crate::Task::from_allocation(ptr)
    }

    /// A real callback owned by this loop: the loop's share is queued.
    #[track_caller]
    pub fn call_soon<F: FnOnce() + Send + 'static>(&self, f: F) -> crate::Handle {
        let id = Schedule::id(&*self.shared);
        let (r, h) = crate::handle::new_callback(id, true, None, Location::caller(), f);
        crate::sync::lock(&self.shared.queue).push_back(r);
        h
    }

    /// The driver for the calling thread.
    pub fn driver(&self) -> Driver {
        let poll = mio::Poll::new().expect("a poller for the mock loop");
        let registry = poll.registry().try_clone().expect("the poller's registry");
        Driver {
            shared: self.shared.clone(),
            tasks: RefCell::new(TaskRegistry::default()),
            io: RefCell::new(crate::readiness::IoSet::new(registry)),
            read_buffer: RefCell::new(Vec::new()),
        }
    }

    pub fn exceptions(&self) -> usize {
        self.shared.exceptions.load(Ordering::SeqCst)
    }
}

impl Driver {
    /// Runs what is queued, as the loop does, with this thread marked as
    /// the loop's (so handles take their loop-thread paths); returns how
    /// many objects ran.
    pub fn run_queued(&self) -> usize {
        let id = Schedule::id(&*self.shared);
        // Safety: `self` outlives the guard, dropped on this thread.
        let _entered = unsafe { sched::enter(id, self) };
        let mut ran = 0;
        loop {
            let next = crate::sync::lock(&self.shared.queue).pop_front();
            match next {
                Some(r) => {
                    r.run(self);
                    ran += 1;
                }
                None => return ran,
            }
        }
    }

    /// Runs queued objects until `done()`, yielding to the model between
    /// rounds.
    pub fn run_until(&self, done: impl Fn() -> bool) {
        while !done() {
            if self.run_queued() == 0 {
                loom::thread::yield_now();
            }
        }
    }

    /// Closes the loop: drops what is queued and closes the tasks left.
    pub fn close(self) {
        let queued: Vec<Runnable> = crate::sync::lock(&self.shared.queue).drain(..).collect();
        drop(queued);
        let tasks = self.tasks.borrow_mut().drain();
        for t in &tasks {
            t.close();
        }
        drop(tasks);
    }
}

// ----- the atomic waker ---------------------------------------------------------------

/// The task awaiter slot (`atomic_waker::AtomicWaker`).
#[derive(Default)]
pub struct AtomicWaker(crate::atomic_waker::AtomicWaker);

impl AtomicWaker {
    pub fn register(&self, waker: &Waker) {
        self.0.register(waker)
    }
    pub fn wake(&self) {
        self.0.wake()
    }
}

// ----- sleep and gather ----------------------------------------------------------------

/// What a `Sleep` shares with its timer (`runners::SleepState`).
pub struct SleepState(crate::runners::SleepState);

impl Default for SleepState {
    fn default() -> Self {
        SleepState(crate::runners::SleepState::new())
    }
}

impl SleepState {
    pub fn fire(&self) {
        self.0.fire()
    }
    pub fn poll_fired(&self, waker: &Waker) -> bool {
        self.0.poll_fired(waker)
    }
}

/// Which children of a gather were woken (`runners::GatherWake`).
pub struct GatherWake(crate::runners::GatherWake);

impl GatherWake {
    pub fn new(children: usize) -> GatherWake {
        GatherWake(crate::runners::GatherWake::new(children))
    }
    pub fn wake_child(&self, i: usize) {
        self.0.wake_child(i)
    }
    pub fn take_woken(&self) -> Vec<usize> {
        self.0.take_woken()
    }
    pub fn register_parent(&self, waker: &Waker) {
        self.0.register_parent(waker)
    }
}

// ----- the executor ----------------------------------------------------------------------

use crate::executor::sleepers::{self, Sleepers as Inner};

#[derive(Debug, PartialEq, Eq)]
pub enum Notify {
    Done,
    Spawn,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Park {
    Work,
    Shutdown,
    Retire,
}

/// How pool workers park and submitters wake them (`executor::sleepers`).
pub struct Sleepers(Inner);

impl Default for Sleepers {
    fn default() -> Self {
        Sleepers(Inner::new())
    }
}

impl Sleepers {
    pub fn notify(&self, max_workers: usize) -> Notify {
        match self.0.notify(max_workers) {
            sleepers::Notify::Done | sleepers::Notify::Woke => Notify::Done,
            sleepers::Notify::Spawn => Notify::Spawn,
        }
    }
    pub fn park(&self, has_work: impl Fn() -> bool) -> Park {
        match self.0.park(has_work, Duration::from_secs(3600)) {
            sleepers::Park::Work => Park::Work,
            sleepers::Park::Shutdown => Park::Shutdown,
            sleepers::Park::Retire => Park::Retire,
        }
    }
    pub fn exit(&self) {
        self.0.exit()
    }
    pub fn try_search(&self) -> bool {
        self.0.try_search()
    }
    pub fn end_search(&self) {
        self.0.end_search()
    }
    pub fn shutdown(&self) {
        self.0.shutdown()
    }
    pub fn live(&self) -> usize {
        self.0.live()
    }
    /// The model's clock: keep-alives expire from now on.
    pub fn expire_keep_alive(&self) {
        self.0.expire_keep_alive()
    }
}

/// The pool's admission gate (`executor::gate`).
pub struct Gate(crate::executor::gate::Gate);

impl Default for Gate {
    fn default() -> Self {
        Gate(crate::executor::gate::Gate::new())
    }
}

impl Gate {
    /// Runs `f` if the gate lets the submission in; returns whether it did.
    pub fn submit(&self, f: impl FnOnce()) -> bool {
        match self.0.enter() {
            Some(pass) => {
                f();
                drop(pass);
                true
            }
            None => false,
        }
    }
    pub fn close(&self) {
        self.0.close()
    }
}

/// A watcher's queued / cancelled flags (`reactor::WatcherFlags`).
pub struct WatcherFlags(crate::reactor::WatcherFlags);

impl Default for WatcherFlags {
    fn default() -> Self {
        WatcherFlags(crate::reactor::WatcherFlags::new())
    }
}

impl WatcherFlags {
    pub fn try_queue(&self) -> bool {
        self.0.try_queue()
    }
    pub fn start_run(&self) -> bool {
        self.0.start_run()
    }
    pub fn cancel(&self) {
        self.0.cancel()
    }
}

// ----- the readiness layer -----------------------------------------------------------------

/// One registration's readiness word and wakers (`readiness::ScheduledIo`).
pub struct Readiness(Arc<crate::readiness::ScheduledIo>);

/// A readiness observation.
pub struct Observed(crate::readiness::ReadyEvent);

impl Default for Readiness {
    fn default() -> Self {
        Readiness(Arc::new(crate::readiness::ScheduledIo::new_for_model()))
    }
}

impl Readiness {
    /// The loop reports the source readable (an edge from epoll).
    pub fn report_readable(&self) {
        let queued = self.0.set_readiness(crate::readiness::READABLE);
        assert!(queued.is_none(), "no handler attached");
    }

    /// A reader's poll: `Some` if readable now, else its waker is set.
    pub fn poll_readable(&self, waker: &Waker) -> Option<Observed> {
        let mut cx = std::task::Context::from_waker(waker);
        match self
            .0
            .poll_ready(crate::readiness::Direction::Read, &mut cx)
        {
            std::task::Poll::Ready(ev) => Some(Observed(ev)),
            std::task::Poll::Pending => None,
        }
    }

    /// The read returned `WouldBlock` after `ev`.
    pub fn clear_readable(&self, ev: Observed) {
        self.0.clear(crate::readiness::Direction::Read, ev.0)
    }
}

impl Readiness {
    /// The loop reports the peer's hang-up (a final bit: it is never
    /// cleared by a `WouldBlock`).
    pub fn report_read_closed(&self) {
        let queued = self.0.set_readiness(crate::readiness::READ_CLOSED);
        assert!(queued.is_none(), "no handler attached");
    }

    /// A read through the production retry loop (`ScheduledIo::poll_op`):
    /// `op` is the system call; a result shorter than `len` spends the
    /// readiness (`clear_spent`).
    pub fn poll_read_op(
        &self,
        cx: &mut std::task::Context<'_>,
        len: usize,
        op: impl FnMut() -> std::io::Result<usize>,
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0
            .poll_op(crate::readiness::Direction::Read, cx, op, |&n| {
                n > 0 && n < len
            })
    }

    /// One of several readers waiting together
    /// (`ScheduledIo::poll_ready_shared`).
    pub fn poll_readable_shared(
        &self,
        cx: &mut std::task::Context<'_>,
        id: &mut Option<u64>,
    ) -> std::task::Poll<Observed> {
        self.0
            .poll_ready_shared(crate::readiness::Direction::Read, cx, id)
            .map(Observed)
    }

    /// Gives back a shared waiter entry.
    pub fn forget_shared(&self, id: &mut Option<u64>) {
        self.0.forget_shared(crate::readiness::Direction::Read, id)
    }
}

/// A socket registered with a [`Driver`]'s readiness layer.
pub struct RegisteredSource {
    registration: crate::readiness::Registration,
    sock: std::os::unix::net::UnixStream,
}

impl RegisteredSource {
    /// The registration's token.
    pub fn token(&self) -> mio::Token {
        self.registration.token()
    }
}

impl Drop for RegisteredSource {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        let raw = self.sock.as_raw_fd();
        self.registration.deregister(&mut mio::unix::SourceFd(&raw));
    }
}

impl Driver {
    /// Registers a fresh socket with this loop's readiness layer (as the
    /// loop's thread).
    pub fn register_socket(&self) -> RegisteredSource {
        use std::os::fd::AsRawFd;
        let (sock, _peer) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
        let raw = sock.as_raw_fd();
        let sched: Arc<dyn Schedule> = self.shared.clone();
        let registration = self
            .io
            .borrow_mut()
            .register(raw, sched)
            .expect("registered");
        RegisteredSource { registration, sock }
    }

    /// What an event carrying `token` reaches: the address of the
    /// registration's state, or `None` for a stale token.
    pub fn lookup(&self, token: mio::Token) -> Option<usize> {
        self.io
            .borrow()
            .lookup_token(token)
            .map(|io| Arc::as_ptr(io) as usize)
    }

    /// The address of `source`'s registration state.
    pub fn address_of(source: &RegisteredSource) -> usize {
        Arc::as_ptr(source.registration.io()) as usize
    }
}
