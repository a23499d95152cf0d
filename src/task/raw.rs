//! The task allocation: one `Box` holding the header, the state word, the
//! awaiter slot and the future (later its output), plus the type-erased
//! operations on it (run, discard, wake, read the output, free).

use super::state::{COMPLETE, DONE_CALLBACKS, HANDLE, Start, State, WakeByVal};
use super::{TaskDone, TaskOutcome};
use crate::atomic_waker::AtomicWaker;
use crate::error::{PanicPayload, TaskError};
use crate::event_loop::context;
use crate::event_loop::core::Core;
use crate::event_loop::shared::Shared;
use crate::exception::{ExceptionContext, TaskInfo};
use crate::future::CallbackId;
use crate::runnable::{Header, Kind, Runnable, Vtable};
use crate::sync::UnsafeCell;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

/// Registry slot of a task that has not started yet.
pub(crate) const NO_SLOT: usize = usize::MAX;

static TASK_IDS: AtomicU64 = AtomicU64::new(1);

#[repr(C)]
pub(crate) struct TaskVtable {
    base: Vtable,
    dealloc: unsafe fn(NonNull<TaskHeader>),
    /// Moves the output into `*mut Option<Result<T, TaskError>>`.
    read_output: unsafe fn(NonNull<TaskHeader>, *mut ()),
    /// Drops the output; returns the panic payload if it was a panic.
    drop_output: unsafe fn(NonNull<TaskHeader>) -> Option<PanicPayload>,
    /// Drops the future and stores `Cancelled` (caller holds `RUNNING`).
    cancel_future: unsafe fn(NonNull<TaskHeader>),
}

/// The future-independent prefix of a task.
#[repr(C)]
pub(crate) struct TaskHeader {
    header: Header,
    pub(crate) state: State,
    pub(crate) shared: Arc<Shared>,
    pub(crate) awaiter: AtomicWaker,
    pub(crate) id: u64,
    /// The name and the done callbacks: rarely touched, so one lock.
    pub(crate) meta: std::sync::Mutex<Meta>,
    /// Index in the loop's task registry; touched only by the loop thread.
    pub(crate) slot: UnsafeCell<usize>,
    pub(crate) location: &'static Location<'static>,
}

pub(crate) type DoneCallback = Box<dyn FnOnce(TaskDone) + Send + 'static>;

/// The parts of a task that user calls change from any thread.
pub(crate) struct Meta {
    pub(crate) name: Option<String>,
    /// Boxed on the first `add_done_callback`: most tasks never have one,
    /// and an empty `Option` costs them nothing to create or drop.
    done: Option<Box<DoneCallbacks>>,
}

#[derive(Default)]
struct DoneCallbacks {
    list: Vec<(CallbackId, DoneCallback, &'static Location<'static>)>,
    next_id: u64,
}

impl Meta {
    pub(crate) fn next_callback_id(&mut self) -> CallbackId {
        let done = self.done.get_or_insert_default();
        done.next_id += 1;
        CallbackId::new(done.next_id)
    }

    pub(crate) fn push_callback(
        &mut self,
        id: CallbackId,
        callback: DoneCallback,
        location: &'static Location<'static>,
    ) {
        self.done
            .get_or_insert_default()
            .list
            .push((id, callback, location));
    }

    /// Removes the callback `id` if it is still waiting; returns how many
    /// were removed.
    pub(crate) fn remove_callback(&mut self, id: CallbackId) -> usize {
        let Some(done) = &mut self.done else {
            return 0;
        };
        let before = done.list.len();
        done.list.retain(|(cid, _, _)| *cid != id);
        before - done.list.len()
    }

    fn take_callbacks(&mut self) -> Vec<(CallbackId, DoneCallback, &'static Location<'static>)> {
        self.done
            .as_mut()
            .map(|d| std::mem::take(&mut d.list))
            .unwrap_or_default()
    }
}

// Safety: shared fields are atomics, a mutex and an `Arc<Shared>`; `slot` is
// only used by the thread running the loop.
unsafe impl Send for TaskHeader {}
unsafe impl Sync for TaskHeader {}

enum Stage<F: Future> {
    Running(F),
    Finished(Result<F::Output, TaskError>),
    Consumed,
}

#[repr(C)]
struct TaskCell<F: Future> {
    head: TaskHeader,
    stage: UnsafeCell<Stage<F>>,
}

impl TaskHeader {
    fn vtable(&self) -> &'static TaskVtable {
        // Safety: a task header's vtable is the `base` of a `TaskVtable`.
        unsafe { &*(self.header.vtable as *const Vtable as *const TaskVtable) }
    }

    pub(crate) fn info(&self) -> TaskInfo {
        TaskInfo {
            id: self.id,
            name: self.name(),
            created_at: self.location,
        }
    }

    pub(crate) fn name(&self) -> String {
        match &crate::util::lock(&self.meta).name {
            Some(name) => name.clone(),
            None => format!("Task-{}", self.id),
        }
    }
}

/// Allocates a task; returns its first queue entry and the handle's
/// pointer (which owns the `HANDLE` flag).
pub(crate) fn allocate<F>(
    shared: Arc<Shared>,
    future: F,
    name: Option<String>,
    location: &'static Location<'static>,
) -> (Runnable, NonNull<TaskHeader>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let cell = Box::new(TaskCell {
        head: TaskHeader {
            header: Header::new(&TaskCell::<F>::VTABLE.base),
            state: State::new(),
            shared,
            awaiter: AtomicWaker::new(),
            id: TASK_IDS.fetch_add(1, Ordering::Relaxed),
            meta: std::sync::Mutex::new(Meta { name, done: None }),
            slot: UnsafeCell::new(NO_SLOT),
            location,
        },
        stage: UnsafeCell::new(Stage::Running(future)),
    });
    let ptr = NonNull::from(Box::leak(cell)).cast::<TaskHeader>();
    // Safety: the new task holds one reference, for its queue entry.
    (unsafe { Runnable::from_raw(ptr.cast()) }, ptr)
}

impl<F> TaskCell<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    const VTABLE: TaskVtable = TaskVtable {
        base: Vtable {
            kind: Kind::Task,
            run: Self::run,
            discard: Self::discard,
        },
        dealloc: Self::dealloc,
        read_output: Self::read_output,
        drop_output: Self::drop_output,
        cancel_future: Self::cancel_future,
    };

    /// Replaces the stage, dropping the old one without letting a panicking
    /// destructor unwind into the loop.
    unsafe fn set_stage(ptr: NonNull<TaskHeader>, new: Stage<F>) {
        // Safety: the caller has exclusive access to the stage.
        let old = unsafe {
            ptr.cast::<TaskCell<F>>()
                .as_ref()
                .stage
                .with_mut(|s| std::mem::replace(&mut *s, new))
        };
        if catch_unwind(AssertUnwindSafe(|| drop(old))).is_err() {
            tracing::error!(target: "evloop", "a task's future panicked while being dropped");
        }
    }

    unsafe fn run(ptr: NonNull<Header>) {
        let ptr = ptr.cast::<TaskHeader>();
        // Safety: the queue reference keeps the task alive.
        let head = unsafe { ptr.as_ref() };
        match head.state.start_run() {
            Start::Skip => {
                // Safety: we give up the queue reference.
                unsafe { release(ptr) };
                return;
            }
            Start::Cancel => {
                // Safety: RUNNING is ours. Dropping the future cancels what
                // it was awaiting.
                crate::cancellation::propagate(|| unsafe {
                    Self::set_stage(ptr, Stage::Finished(Err(TaskError::Cancelled)))
                });
                unsafe { finish(ptr, TaskOutcome::Cancelled) };
                return;
            }
            Start::Poll => {}
        }
        register(ptr);
        let waker = ManuallyDrop::new(unsafe { Waker::from_raw(raw_waker(ptr)) });
        let mut cx = Context::from_waker(&waker);
        // Safety: RUNNING is ours, so is the future; it never moves (boxed).
        let polled = catch_unwind(AssertUnwindSafe(|| unsafe {
            ptr.cast::<TaskCell<F>>()
                .as_ref()
                .stage
                .with_mut(|stage| match &mut *stage {
                    Stage::Running(fut) => Pin::new_unchecked(fut).poll(&mut cx),
                    _ => unreachable!("a running task holds its future"),
                })
        }));
        let (output, outcome) = match polled {
            Ok(Poll::Pending) => {
                if head.state.end_run() {
                    // Woken while running: back of the queue, same reference.
                    context::push_ready(unsafe { Runnable::from_raw(ptr.cast()) });
                } else {
                    unsafe { release(ptr) };
                }
                return;
            }
            Ok(Poll::Ready(value)) => (Ok(value), TaskOutcome::Returned),
            Err(payload) => (Err(TaskError::Panicked(payload)), TaskOutcome::Panicked),
        };
        unsafe {
            Self::set_stage(ptr, Stage::Finished(output));
            finish(ptr, outcome);
        }
    }

    unsafe fn discard(ptr: NonNull<Header>) {
        let ptr = ptr.cast::<TaskHeader>();
        // Safety: the queue reference keeps the task alive; closing needs
        // the claim.
        unsafe {
            close(ptr);
            release(ptr);
        }
    }

    unsafe fn cancel_future(ptr: NonNull<TaskHeader>) {
        // Safety: caller holds RUNNING.
        unsafe { Self::set_stage(ptr, Stage::Finished(Err(TaskError::Cancelled))) };
    }

    unsafe fn dealloc(ptr: NonNull<TaskHeader>) {
        // Safety: no reference and no handle remain.
        let cell = unsafe { Box::from_raw(ptr.cast::<TaskCell<F>>().as_ptr()) };
        if catch_unwind(AssertUnwindSafe(|| drop(cell))).is_err() {
            tracing::error!(target: "evloop", "a task's output panicked while being dropped");
        }
    }

    unsafe fn read_output(ptr: NonNull<TaskHeader>, dst: *mut ()) {
        // Safety: the caller owns the output (handle, after COMPLETE) and
        // passes a `*mut Option<Result<F::Output, TaskError>>`.
        unsafe {
            let stage = ptr
                .cast::<TaskCell<F>>()
                .as_ref()
                .stage
                .with_mut(|s| std::mem::replace(&mut *s, Stage::Consumed));
            let dst = &mut *(dst as *mut Option<Result<F::Output, TaskError>>);
            *dst = match stage {
                Stage::Finished(r) => Some(r),
                _ => None,
            };
        }
    }

    unsafe fn drop_output(ptr: NonNull<TaskHeader>) -> Option<PanicPayload> {
        // Safety: the caller owns the output.
        let stage = unsafe {
            ptr.cast::<TaskCell<F>>()
                .as_ref()
                .stage
                .with_mut(|s| std::mem::replace(&mut *s, Stage::Consumed))
        };
        match stage {
            Stage::Finished(Err(TaskError::Panicked(p))) => Some(p),
            other => {
                if catch_unwind(AssertUnwindSafe(|| drop(other))).is_err() {
                    tracing::error!(target: "evloop", "a task's output panicked while being dropped");
                }
                None
            }
        }
    }
}

/// Records a task in its loop's registry (which holds a reference, so
/// that `close()` and `all_tasks()` reach tasks that wait on something),
/// unless it is there already. Loop thread only.
pub(crate) fn register(ptr: NonNull<TaskHeader>) {
    if is_registered(ptr) {
        return;
    }
    context::with_current(|ctx| {
        // Safety: the core lives as long as the context.
        register_in(unsafe { &*ctx.core }, ptr)
    });
}

/// [`register`] with the core at hand (the loop's thread, or the holder of
/// an idle loop's core).
pub(crate) fn register_in(core: &Core, ptr: NonNull<TaskHeader>) {
    // Safety: the caller holds a reference.
    let head = unsafe { ptr.as_ref() };
    // A complete task would never leave the registry: `finish` removes
    // only what it finds there.
    if !is_registered(ptr) && head.state.load() & COMPLETE == 0 {
        head.state.ref_inc();
        let idx = core
            .tasks
            .borrow_mut()
            .insert(super::registry::TaskRef(ptr));
        head.slot.with_mut(|s| unsafe { *s = idx });
    }
}

fn is_registered(ptr: NonNull<TaskHeader>) -> bool {
    // Safety: only the holder of the loop's core touches `slot`, and the
    // callers are that holder.
    unsafe { ptr.as_ref() }
        .slot
        .with(|s| unsafe { *s } != NO_SLOT)
}

/// The task a queue entry runs.
pub(crate) fn header_of(r: &Runnable) -> NonNull<TaskHeader> {
    r.as_ptr().cast()
}

/// A task's description, if `header` (of a live queue entry) is a task's.
pub(crate) fn info_of(header: NonNull<Header>) -> Option<TaskInfo> {
    // Safety: the caller's entry keeps the object alive.
    let h = unsafe { header.as_ref() };
    match h.vtable.kind {
        Kind::Task => Some(unsafe { header.cast::<TaskHeader>().as_ref() }.info()),
        _ => None,
    }
}

/// The future is gone and the output stored: publish it.
unsafe fn finish(ptr: NonNull<TaskHeader>, outcome: TaskOutcome) {
    // Safety: the caller's queue reference keeps the task alive.
    let head = unsafe { ptr.as_ref() };
    complete(head, ptr, outcome);
    let slot = head
        .slot
        .with_mut(|s| unsafe { std::mem::replace(&mut *s, NO_SLOT) });
    if slot != NO_SLOT {
        let removed =
            context::with_current(|ctx| unsafe { &*ctx.core }.tasks.borrow_mut().remove(slot));
        drop(removed);
    }
    unsafe { release(ptr) };
}

/// Sets COMPLETE, schedules the done callbacks, then either wakes the
/// handle's awaiter or, if there is no handle, drops the output (reporting
/// a panic nobody will retrieve).
#[inline]
fn complete(head: &TaskHeader, ptr: NonNull<TaskHeader>, outcome: TaskOutcome) {
    let prev = head.state.complete(outcome);
    if prev & DONE_CALLBACKS != 0 {
        schedule_done_callbacks(head, outcome);
    }
    if prev & HANDLE != 0 {
        head.awaiter.wake();
    } else {
        // Safety: no handle, so the output is ours.
        if let Some(payload) = unsafe { (head.vtable().drop_output)(ptr) } {
            report_unretrieved(head, payload);
        }
    }
}

/// Queues every waiting done callback (kept out of line: most tasks have
/// none).
#[cold]
#[inline(never)]
fn schedule_done_callbacks(head: &TaskHeader, outcome: TaskOutcome) {
    let callbacks = crate::util::lock(&head.meta).take_callbacks();
    let info = head.info();
    for (_, callback, location) in callbacks {
        // On a closed loop the callbacks are dropped with the task.
        let _ = schedule_done_callback(head, callback, location, info.clone(), outcome);
    }
}

/// Queues one done callback on the task's loop (asyncio never runs them
/// inline).
pub(crate) fn schedule_done_callback(
    head: &TaskHeader,
    callback: DoneCallback,
    location: &'static Location<'static>,
    info: crate::exception::TaskInfo,
    outcome: TaskOutcome,
) -> Result<(), crate::error::Error> {
    let done = TaskDone { info, outcome };
    head.shared
        .call_soon(None, location, move || callback(done))
        .map(drop)
}

pub(crate) fn report_unretrieved(head: &TaskHeader, payload: PanicPayload) {
    let ctx = ExceptionContext::new("Task exception was never retrieved").with_task(head.info());
    head.shared.report_panic(ctx, payload);
}

/// Closes a task that is not running: drops its future, completes it as
/// cancelled, and tells the exception handler, as asyncio does when a
/// pending task is destroyed ("Task was destroyed but it is pending!").
/// Does nothing if it is done (or running, which cannot happen while its
/// loop is closing).
pub(crate) unsafe fn close(ptr: NonNull<TaskHeader>) {
    // Safety: the caller holds a reference.
    let head = unsafe { ptr.as_ref() };
    if head.state.try_claim() {
        unsafe { (head.vtable().cancel_future)(ptr) };
        complete(head, ptr, TaskOutcome::Cancelled);
        head.shared.call_exception_handler(
            ExceptionContext::new("Task was destroyed but it is pending!").with_task(head.info()),
        );
    }
}

/// Drops one reference, freeing the task if it was the last.
pub(crate) unsafe fn release(ptr: NonNull<TaskHeader>) {
    // Safety: the caller owned the reference.
    let head = unsafe { ptr.as_ref() };
    if head.state.ref_dec() {
        unsafe { (head.vtable().dealloc)(ptr) };
    }
}

pub(crate) unsafe fn dealloc(ptr: NonNull<TaskHeader>) {
    // Safety: forwarded.
    unsafe { (ptr.as_ref().vtable().dealloc)(ptr) }
}

pub(crate) unsafe fn read_output<T>(ptr: NonNull<TaskHeader>) -> Option<Result<T, TaskError>> {
    let mut out: Option<Result<T, TaskError>> = None;
    // Safety: `T` is the task's output type (the handle's type parameter).
    unsafe { (ptr.as_ref().vtable().read_output)(ptr, &mut out as *mut _ as *mut ()) };
    out
}

pub(crate) unsafe fn drop_output(ptr: NonNull<TaskHeader>) -> Option<PanicPayload> {
    // Safety: forwarded.
    unsafe { (ptr.as_ref().vtable().drop_output)(ptr) }
}

/// Queues a task that a wake-up made runnable (the caller gives the queue
/// reference): locally on the loop's thread, through the inbox elsewhere.
/// If the loop is closed, the entry is dropped, which closes the task.
fn schedule(ptr: NonNull<TaskHeader>) {
    // Safety: the caller hands over a queue reference.
    let head = unsafe { ptr.as_ref() };
    let r = unsafe { Runnable::from_raw(ptr.cast()) };
    if let Err(r) = head.shared.schedule(r) {
        drop(r);
    }
}

/// `cancel()` and wake-ups by reference.
pub(crate) fn wake_by_ref(ptr: NonNull<TaskHeader>) {
    // Safety: the caller holds a reference or the handle.
    if unsafe { ptr.as_ref() }.state.wake_by_ref() {
        schedule(ptr);
    }
}

static WAKER_VTABLE: RawWakerVTable =
    RawWakerVTable::new(waker_clone, waker_wake, waker_wake_by_ref, waker_drop);

fn raw_waker(ptr: NonNull<TaskHeader>) -> RawWaker {
    RawWaker::new(ptr.as_ptr() as *const (), &WAKER_VTABLE)
}

unsafe fn waker_clone(data: *const ()) -> RawWaker {
    let ptr = NonNull::new(data as *mut TaskHeader).expect("waker data is non-null");
    // Safety: a waker holds a reference (or borrows the running task's).
    unsafe { ptr.as_ref() }.state.ref_inc();
    raw_waker(ptr)
}

unsafe fn waker_wake(data: *const ()) {
    let ptr = NonNull::new(data as *mut TaskHeader).expect("waker data is non-null");
    // Safety: the waker's reference is consumed here.
    match unsafe { ptr.as_ref() }.state.wake_by_val() {
        WakeByVal::Enqueue => schedule(ptr),
        WakeByVal::Dealloc => unsafe { dealloc(ptr) },
        WakeByVal::Nothing => {}
    }
}

unsafe fn waker_wake_by_ref(data: *const ()) {
    let ptr = NonNull::new(data as *mut TaskHeader).expect("waker data is non-null");
    wake_by_ref(ptr);
}

unsafe fn waker_drop(data: *const ()) {
    let ptr = NonNull::new(data as *mut TaskHeader).expect("waker data is non-null");
    // Safety: the waker's reference is released.
    unsafe { release(ptr) };
}

/// Debug-mode description of a queued task.
pub(crate) fn describe(r: &Runnable) -> String {
    // Safety: a task runnable points at a live `TaskHeader`.
    let head = unsafe { r.as_ptr().cast::<TaskHeader>().as_ref() };
    head.info().to_string()
}
