//! Entry points for the loom models in `loom-tests/` (built only with
//! `RUSTFLAGS="--cfg loom"`). Each wrapper forwards to the production code
//! of one lock-free protocol, so the models check the code that ships.
#![allow(missing_docs)]

use crate::remote::{Pop, Remote};
use crate::runnable::{Header, Kind, Runnable, Vtable};
use std::ptr::NonNull;
use std::time::Duration;

// ----- the remote inbox and its wake-up state ---------------------------------------

#[repr(C)]
struct TestNode {
    header: Header,
    value: usize,
}

unsafe fn free_test_node(ptr: NonNull<Header>) {
    drop(unsafe { Box::from_raw(ptr.cast::<TestNode>().as_ptr()) });
}

static TEST_VTABLE: Vtable = Vtable {
    kind: Kind::Test,
    run: free_test_node,
    discard: free_test_node,
};

/// An object taken out of the inbox.
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
        let node = Box::new(TestNode {
            header: Header::new(&TEST_VTABLE),
            value,
        });
        let ptr = NonNull::from(Box::leak(node)).cast::<Header>();
        self.0.push(unsafe { Runnable::from_raw(ptr) })
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

// ----- a callback's two shares --------------------------------------------------------

/// The loop's share of a callback.
pub struct QueuedCallback(Runnable);

impl QueuedCallback {
    /// Runs the callback (as the loop does), releasing the loop's share.
    pub fn run(self) {
        self.0.run()
    }
}

/// Allocates a callback; drop the `QueuedCallback` to discard it unrun.
pub fn callback<F: FnOnce() + Send + 'static>(f: F) -> (QueuedCallback, crate::Handle) {
    let (r, h) = crate::handle::loom_api::new_test_callback(f);
    (QueuedCallback(r), h)
}

// ----- a task's state word ------------------------------------------------------------

use crate::task::state::{self, State};

#[derive(Debug, PartialEq, Eq)]
pub enum Start {
    Poll,
    Cancel,
    Skip,
}

#[derive(Debug, PartialEq, Eq)]
pub enum WakeByVal {
    Enqueue,
    Dealloc,
    Nothing,
}

/// A task's state word (`task::state::State`).
pub struct TaskState(State);

impl Default for TaskState {
    fn default() -> Self {
        TaskState(State::new())
    }
}

impl TaskState {
    pub fn ref_inc(&self) {
        self.0.ref_inc()
    }
    pub fn ref_dec(&self) -> bool {
        self.0.ref_dec()
    }
    pub fn wake_by_ref(&self) -> bool {
        self.0.wake_by_ref()
    }
    pub fn wake_by_val(&self) -> WakeByVal {
        match self.0.wake_by_val() {
            state::WakeByVal::Enqueue => WakeByVal::Enqueue,
            state::WakeByVal::Dealloc => WakeByVal::Dealloc,
            state::WakeByVal::Nothing => WakeByVal::Nothing,
        }
    }
    pub fn start_run(&self) -> Start {
        match self.0.start_run() {
            state::Start::Poll => Start::Poll,
            state::Start::Cancel => Start::Cancel,
            state::Start::Skip => Start::Skip,
        }
    }
    pub fn end_run(&self) -> bool {
        self.0.end_run()
    }
    /// Returns whether the handle was alive when the task completed.
    pub fn complete(&self, cancelled: bool) -> bool {
        let outcome = if cancelled {
            crate::task::TaskOutcome::Cancelled
        } else {
            crate::task::TaskOutcome::Returned
        };
        self.0.complete(outcome) & state::HANDLE != 0
    }
    /// Completes the task; returns whether done callbacks were waiting.
    pub fn complete_finds_callbacks(&self) -> bool {
        self.0.complete(crate::task::TaskOutcome::Returned) & state::DONE_CALLBACKS != 0
    }
    /// A done callback is being added (caller holds the list's lock);
    /// `true`: store it for the completer.
    pub fn mark_done_callbacks(&self) -> bool {
        self.0.mark_done_callbacks().is_ok()
    }
    pub fn try_claim(&self) -> bool {
        self.0.try_claim()
    }
    pub fn request_cancel(&self) -> bool {
        self.0.request_cancel()
    }
    pub fn drop_handle_if_incomplete(&self) -> Result<bool, ()> {
        self.0.drop_handle_if_incomplete()
    }
    pub fn drop_handle(&self) -> bool {
        self.0.drop_handle()
    }
    pub fn is_complete(&self) -> bool {
        self.0.load() & state::COMPLETE != 0
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load() & state::CANCELLED != 0
    }
}

// ----- the atomic waker ---------------------------------------------------------------

/// The task awaiter slot (`atomic_waker::AtomicWaker`).
#[derive(Default)]
pub struct AtomicWaker(crate::atomic_waker::AtomicWaker);

impl AtomicWaker {
    pub fn register(&self, waker: &std::task::Waker) {
        self.0.register(waker)
    }
    pub fn wake(&self) {
        self.0.wake()
    }
}

// ----- the executor's parking ---------------------------------------------------------

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
            sleepers::Notify::Done => Notify::Done,
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
    pub fn shutdown(&self) {
        self.0.shutdown()
    }
    pub fn live(&self) -> usize {
        self.0.live()
    }
}
