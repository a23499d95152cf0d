//! The task allocation: one `Box` holding the header, the state word, the
//! awaiter slot and the future (later its output), plus the type-erased
//! operations on it (run, discard, wake, read the output, free).
//!
//! A task knows its loop only through [`Schedule`] (kept, to queue itself
//! from any thread) and [`Local`] (handed to each run by the loop).

use super::outcome::{TaskDone, TaskOutcome};
use super::state::{COMPLETE, HANDLE, LISTENERS, RETRIEVED, Start, State, WakeByVal};
use crate::atomic_waker::AtomicWaker;
use crate::cancellation::{self, CancelMessage};
use crate::error::{PanicPayload, TaskError};
use crate::exception::{ExceptionContext, TaskInfo};
use crate::handle::CallbackId;
use crate::runnable::{Header, Kind, Runnable, Vtable};
use crate::sched::{Local, Schedule};
use crate::sync::{Mutex, UnsafeCell};
use crate::task::registry::{TaskRef, TaskRegistry};
use crate::waiters::Waiters;
use std::cell::RefCell;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

impl TaskRef {
    fn header(&self) -> NonNull<TaskHeader> {
        self.0.cast()
    }

    /// The task.
    pub(crate) fn ptr(&self) -> NonNull<TaskHeader> {
        self.header()
    }

    /// Drops the task's future and completes it as cancelled, unless it is
    /// done.
    pub(crate) fn close(&self) {
        // Safety: we hold a reference.
        unsafe { close(self.header()) }
    }
}

impl Drop for TaskRef {
    fn drop(&mut self) {
        // Safety: we own the reference.
        unsafe { release(self.header()) }
    }
}

/// `slot` of a task its loop has not seen yet (created on another thread
/// and still in the inbox), or that is done.
pub(crate) const NO_SLOT: usize = usize::MAX;
/// `slot` of a task its loop has seen and counted, not in the registry's
/// list: it is queued or running (see `task::registry`).
const SEEN: usize = usize::MAX - 1;

static TASK_IDS: AtomicU64 = AtomicU64::new(1);

/// Task ids a thread takes from `TASK_IDS` at a time, so that creating a
/// task costs no shared read-modify-write for its id. Ids stay unique in
/// the process; across threads they do not follow creation order.
const ID_BLOCK: u64 = 1024;

crate::sync::thread_local_cell! {
    /// This thread's block of task ids: the next, and the end.
    static IDS: std::cell::Cell<(u64, u64)> = std::cell::Cell::new((0, 0));
}

fn next_task_id() -> u64 {
    IDS.with(|ids| {
        let (next, end) = ids.get();
        if next < end {
            ids.set((next + 1, end));
            return next;
        }
        let start = TASK_IDS.fetch_add(ID_BLOCK, Ordering::Relaxed);
        ids.set((start + 1, start + ID_BLOCK));
        start
    })
}

/// asyncio's process-wide `_task_name_counter`: advanced only by tasks
/// created without a name.
static TASK_NAMES: AtomicU64 = AtomicU64::new(1);

fn next_name_number() -> u64 {
    TASK_NAMES.fetch_add(1, Ordering::Relaxed)
}

#[repr(C)]
pub(crate) struct TaskVtable {
    base: Vtable,
    dealloc: unsafe fn(NonNull<TaskHeader>),
    /// Moves the output into `*mut Option<Result<T, TaskError>>`.
    read_output: unsafe fn(NonNull<TaskHeader>, *mut ()),
    /// Points at the output (`*const Result<T, TaskError>`), or null if it
    /// was taken.
    output_ref: unsafe fn(NonNull<TaskHeader>) -> *const (),
    /// Drops the output; returns the panic payload if it was a panic.
    drop_output: unsafe fn(NonNull<TaskHeader>) -> Option<PanicPayload>,
    /// Drops the future and stores `Cancelled` (caller holds `RUNNING`).
    cancel_future: unsafe fn(NonNull<TaskHeader>, CancelMessage),
}

/// The future-independent prefix of a task.
#[repr(C)]
pub(crate) struct TaskHeader {
    header: Header,
    pub(crate) state: State,
    pub(crate) sched: Arc<dyn Schedule>,
    /// The waker of the task awaiting the handle itself (`task.await`).
    pub(crate) awaiter: AtomicWaker,
    pub(crate) id: u64,
    /// Name, listeners and cancellation message: rarely touched, so one
    /// lock.
    pub(crate) meta: Mutex<Meta>,
    /// Index in the loop's task registry; touched only by the loop thread.
    slot: UnsafeCell<usize>,
    pub(crate) location: &'static Location<'static>,
    /// `run_until_complete`'s driver (see [`allocate`]): evloop's own task,
    /// never reported when a closing loop destroys it.
    driver: bool,
}

pub(crate) type DoneCallback = Box<dyn FnOnce(TaskDone) + Send + 'static>;

/// How a task is named.
pub(crate) enum Name {
    Given(String),
    /// `Task-<n>`, numbered at creation.
    Numbered(u64),
    /// `run_until_complete`'s driver: numbered only if someone asks (say,
    /// `all_tasks`), so that driving a future consumes no number.
    Lazy,
}

/// The parts of a task that user calls change from any thread.
pub(crate) struct Meta {
    pub(crate) name: Name,
    /// Boxed on first use: most tasks never have a listener, and an empty
    /// `Option` costs them nothing to create or drop.
    pub(crate) listeners: Option<Box<Listeners>>,
    /// The message of the last `cancel_with`.
    pub(crate) cancel_message: CancelMessage,
    /// The error readers of a panicked outcome share (made at the first
    /// read; see `TaskError::share_cached`).
    pub(crate) panic_error: Option<crate::error::SharedError>,
}

/// Done callbacks and by-reference awaiters.
#[derive(Default)]
pub(crate) struct Listeners {
    callbacks: Vec<(CallbackId, DoneCallback, &'static Location<'static>)>,
    next_id: u64,
    pub(crate) waiters: Waiters,
}

impl Meta {
    pub(crate) fn listeners(&mut self) -> &mut Listeners {
        self.listeners.get_or_insert_default()
    }

    pub(crate) fn next_callback_id(&mut self) -> CallbackId {
        let l = self.listeners();
        l.next_id += 1;
        CallbackId::new(l.next_id)
    }

    pub(crate) fn push_callback(
        &mut self,
        id: CallbackId,
        callback: DoneCallback,
        location: &'static Location<'static>,
    ) {
        self.listeners().callbacks.push((id, callback, location));
    }

    /// Takes the callback `id` out if it is still waiting, for the caller
    /// to drop after unlocking.
    pub(crate) fn remove_callback(&mut self, id: CallbackId) -> Option<DoneCallback> {
        let l = self.listeners.as_mut()?;
        let i = l.callbacks.iter().position(|(cid, _, _)| *cid == id)?;
        Some(l.callbacks.remove(i).1)
    }
}

// Safety: shared fields are atomics, a mutex and an `Arc<dyn Schedule>`;
// `slot` is only used by the thread running the loop.
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
        let mut meta = crate::sync::lock(&self.meta);
        if let Name::Lazy = meta.name {
            meta.name = Name::Numbered(next_name_number());
        }
        match &meta.name {
            Name::Given(name) => name.clone(),
            Name::Numbered(n) => format!("Task-{n}"),
            Name::Lazy => unreachable!("numbered above"),
        }
    }

    /// Takes the message of the cancellation being carried out.
    fn take_cancel_message(&self) -> CancelMessage {
        crate::sync::lock(&self.meta).cancel_message.take()
    }
}

/// Allocates a task; returns its first queue entry and the handle's
/// pointer (which owns the `HANDLE` flag). The output need not be `Send`
/// here: callers that let the output cross threads (every task but a
/// local one, which is polled and read on its creator's thread only)
/// demand it. `name: None` numbers the task
/// (`Task-<n>`) unless it is `run_until_complete`'s `driver`, which is
/// named only if asked and never reported as destroyed while pending.
pub(crate) fn allocate<F>(
    sched: Arc<dyn Schedule>,
    future: F,
    name: Option<String>,
    driver: bool,
    location: &'static Location<'static>,
) -> (Runnable, NonNull<TaskHeader>)
where
    F: Future + Send + 'static,
    F::Output: 'static,
{
    let name = match name {
        Some(name) => Name::Given(name),
        None if driver => Name::Lazy,
        None => Name::Numbered(next_name_number()),
    };
    let cell = Box::new(TaskCell {
        head: TaskHeader {
            header: Header::new(&TaskCell::<F>::VTABLE.base),
            state: State::new(),
            sched,
            awaiter: AtomicWaker::new(),
            id: next_task_id(),
            meta: Mutex::new(Meta {
                name,
                listeners: None,
                cancel_message: None,
                panic_error: None,
            }),
            slot: UnsafeCell::new(NO_SLOT),
            location,
            driver,
        },
        stage: UnsafeCell::new(Stage::Running(future)),
    });
    let ptr = NonNull::from(Box::leak(cell)).cast::<TaskHeader>();
    // Safety: the new task holds one reference, for its queue entry.
    (unsafe { Runnable::from_raw(ptr.cast()) }, ptr)
}

/// Releases a queue reference when dropped, also when what follows a poll
/// unwinds (a foreign waker or a tracing layer that panics), so a panic
/// escaping a run never leaks the task.
struct ReleaseOnDrop(NonNull<TaskHeader>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        // Safety: the guard owns one reference.
        unsafe { release(self.0) }
    }
}

impl<F> TaskCell<F>
where
    F: Future + Send + 'static,
    F::Output: 'static,
{
    const VTABLE: TaskVtable = TaskVtable {
        base: Vtable {
            kind: Kind::Task,
            run: Self::run,
            discard: Self::discard,
        },
        dealloc: Self::dealloc,
        read_output: Self::read_output,
        output_ref: Self::output_ref,
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
        crate::util::drop_quietly(old, "a task's future");
    }

    unsafe fn run(ptr: NonNull<Header>, local: &dyn Local) {
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
                let message = head.take_cancel_message();
                let stored = TaskError::Cancelled(message.clone());
                // Safety: RUNNING is ours. Dropping the future cancels what
                // it is awaiting, with the message.
                cancellation::propagate(message, || unsafe {
                    Self::set_stage(ptr, Stage::Finished(Err(stored)))
                });
                unsafe { finish(ptr, local.tasks(), TaskOutcome::Cancelled) };
                return;
            }
            Start::Poll => {}
        }
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
                    local.push(unsafe { Runnable::from_raw(ptr.cast()) });
                } else {
                    // Waiting: listed (with a reference of the list's)
                    // before the run's reference goes.
                    park_in(local.tasks(), ptr);
                    unsafe { release(ptr) };
                }
                return;
            }
            Ok(Poll::Ready(value)) => (Ok(value), TaskOutcome::Returned),
            Err(payload) => (Err(TaskError::Panicked(payload)), TaskOutcome::Panicked),
        };
        unsafe {
            Self::set_stage(ptr, Stage::Finished(output));
            finish(ptr, local.tasks(), outcome);
        }
    }

    unsafe fn discard(ptr: NonNull<Header>) {
        let ptr = ptr.cast::<TaskHeader>();
        let _release = ReleaseOnDrop(ptr);
        // Safety: the queue reference keeps the task alive; closing needs
        // the claim.
        unsafe { close(ptr) };
    }

    unsafe fn cancel_future(ptr: NonNull<TaskHeader>, message: CancelMessage) {
        // Safety: caller holds RUNNING.
        unsafe { Self::set_stage(ptr, Stage::Finished(Err(TaskError::Cancelled(message)))) };
    }

    unsafe fn dealloc(ptr: NonNull<TaskHeader>) {
        // Safety: no reference and no handle remain.
        let cell = unsafe { Box::from_raw(ptr.cast::<TaskCell<F>>().as_ptr()) };
        crate::util::drop_quietly(cell, "a task's output");
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

    unsafe fn output_ref(ptr: NonNull<TaskHeader>) -> *const () {
        // Safety: the caller holds the handle after COMPLETE: the stage no
        // longer changes except through the handle's exclusive methods.
        unsafe {
            ptr.cast::<TaskCell<F>>()
                .as_ref()
                .stage
                .with(|s| match &*s {
                    Stage::Finished(r) => r as *const Result<F::Output, TaskError> as *const (),
                    _ => std::ptr::null(),
                })
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
                crate::util::drop_quietly(other, "a task's output");
                None
            }
        }
    }
}

/// The loop sees a task (created on its thread, or drained from its
/// inbox): counted among its tasks, unless it was already or is done.
/// Only the holder of the loop's core (the loop's thread, or a caller
/// holding an idle loop's core) calls this.
pub(crate) fn register_in(tasks: &RefCell<TaskRegistry>, ptr: NonNull<TaskHeader>) {
    // Safety: the caller holds a reference.
    let head = unsafe { ptr.as_ref() };
    // Safety: only the holder of the loop's core touches `slot`.
    let unseen = head.slot.with(|s| unsafe { *s } == NO_SLOT);
    if unseen && head.state.load() & COMPLETE == 0 {
        head.slot.with_mut(|s| unsafe { *s = SEEN });
        tasks.borrow_mut().count_in();
    }
}

/// A step returned `Pending` and the task was not queued again: it now
/// waits on something, and joins the registry's list (which holds a
/// reference, so that `close()` and `all_tasks()` reach it).
fn park_in(tasks: &RefCell<TaskRegistry>, ptr: NonNull<TaskHeader>) {
    register_in(tasks, ptr);
    // Safety: the caller holds a reference; the slot is the core holder's.
    let head = unsafe { ptr.as_ref() };
    if head.slot.with(|s| unsafe { *s } == SEEN) {
        head.state.ref_inc();
        let idx = tasks.borrow_mut().insert(TaskRef(ptr.cast()));
        head.slot.with_mut(|s| unsafe { *s = idx });
    }
}

/// Takes a finishing task out of the count and the list (what the list
/// held is returned, to be dropped outside its borrow).
fn unregister(tasks: &RefCell<TaskRegistry>, head: &TaskHeader) -> Option<TaskRef> {
    // Safety: the caller holds the loop's core.
    let slot = head
        .slot
        .with_mut(|s| unsafe { std::mem::replace(&mut *s, NO_SLOT) });
    if slot == NO_SLOT {
        return None;
    }
    let mut tasks = tasks.borrow_mut();
    tasks.count_out();
    if slot == SEEN {
        None
    } else {
        tasks.remove(slot)
    }
}

/// Whether a live queue entry is a task, and which.
pub(crate) fn task_of(r: &Runnable) -> Option<NonNull<TaskHeader>> {
    (r.kind() == Kind::Task).then(|| header_of(r))
}

/// Requests cancellation of the task at `ptr`; `true` if it was not done.
///
/// # Safety
/// The caller holds a reference (or a queue entry) to the task.
pub(crate) unsafe fn cancel(ptr: NonNull<TaskHeader>) -> bool {
    // Safety: the caller's reference.
    let head = unsafe { ptr.as_ref() };
    if head.state.request_cancel() {
        wake_by_ref(ptr);
        true
    } else {
        false
    }
}

/// The description of the task at `ptr` unless it is done.
///
/// # Safety
/// As [`cancel`].
pub(crate) unsafe fn info_if_pending(ptr: NonNull<TaskHeader>) -> Option<TaskInfo> {
    // Safety: the caller's reference.
    let head = unsafe { ptr.as_ref() };
    (head.state.load() & COMPLETE == 0).then(|| head.info())
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

/// The future is gone and the output stored: leave the registry, publish
/// the output, release the run's reference (also if publishing unwinds).
unsafe fn finish(ptr: NonNull<TaskHeader>, tasks: &RefCell<TaskRegistry>, outcome: TaskOutcome) {
    let _release = ReleaseOnDrop(ptr);
    // Safety: the run's reference keeps the task alive.
    let head = unsafe { ptr.as_ref() };
    drop(unregister(tasks, head));
    complete(head, ptr, outcome);
}

/// Sets COMPLETE, serves the listeners (done callbacks queued, by-reference
/// awaiters woken), then either wakes the handle's awaiter or, if there is
/// no handle, drops the output (reporting a panic nobody will retrieve).
#[inline]
fn complete(head: &TaskHeader, ptr: NonNull<TaskHeader>, outcome: TaskOutcome) {
    let prev = head.state.complete(outcome);
    if prev & LISTENERS != 0 {
        serve_listeners(head, outcome);
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

/// Queues every waiting done callback and wakes every by-reference awaiter
/// (kept out of line: most tasks have neither).
#[cold]
#[inline(never)]
fn serve_listeners(head: &TaskHeader, outcome: TaskOutcome) {
    let (callbacks, wakers) = {
        let mut meta = crate::sync::lock(&head.meta);
        let l = meta.listeners();
        (std::mem::take(&mut l.callbacks), l.waiters.take_all())
    };
    let info = head.info();
    for (_, callback, location) in callbacks {
        // On a closed loop the callbacks are dropped with the task.
        let _ = schedule_done_callback(head, callback, location, info.clone(), outcome);
    }
    crate::waiters::wake_all(wakers);
}

/// Queues one done callback on the task's loop (asyncio never runs them
/// inline).
pub(crate) fn schedule_done_callback(
    head: &TaskHeader,
    callback: DoneCallback,
    location: &'static Location<'static>,
    info: TaskInfo,
    outcome: TaskOutcome,
) -> Result<(), crate::error::Error> {
    let done = TaskDone { info, outcome };
    head.sched
        .call_soon(location, Box::new(move || callback(done)))
}

pub(crate) fn report_unretrieved(head: &TaskHeader, payload: PanicPayload) {
    let ctx = ExceptionContext::new("Task exception was never retrieved")
        .with_task(head.info())
        .with_panic(payload);
    head.sched.call_exception_handler(ctx);
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
        unsafe { (head.vtable().cancel_future)(ptr, None) };
        complete(head, ptr, TaskOutcome::Cancelled);
        if !head.driver {
            head.sched.call_exception_handler(
                ExceptionContext::new("Task was destroyed but it is pending!")
                    .with_task(head.info()),
            );
        }
    }
}

/// Ends a task nobody will see again (`run_until_complete`'s driver once
/// the future it polled is gone): out of the registry, its future
/// dropped, complete as cancelled, with no report. A queued entry of it
/// finds it complete and does nothing.
///
/// # Safety
/// The caller holds the task's handle and the core of its loop (`tasks`
/// is that loop's registry).
pub(crate) unsafe fn dismiss(ptr: NonNull<TaskHeader>, tasks: &RefCell<TaskRegistry>) {
    // Safety: the handle keeps the task alive.
    let head = unsafe { ptr.as_ref() };
    if !head.state.try_claim() {
        return;
    }
    let removed = unregister(tasks, head);
    // Safety: RUNNING is ours.
    unsafe { (head.vtable().cancel_future)(ptr, None) };
    complete(head, ptr, TaskOutcome::Cancelled);
    drop(removed);
}

/// The handle of a task goes away: detaches a pending task, or drops the
/// output of a complete one (which it owns); frees the task if nothing
/// else holds it.
///
/// # Safety
/// The caller owns the `HANDLE` flag of `ptr` and gives it up.
pub(crate) unsafe fn drop_handle(ptr: NonNull<TaskHeader>) {
    // Safety: the handle keeps the task alive until this returns.
    let head = unsafe { ptr.as_ref() };
    match head.state.drop_handle_if_incomplete() {
        Ok(free) => {
            if free {
                // Safety: no reference and no handle remain.
                unsafe { dealloc(ptr) };
            }
        }
        Err(()) => {
            // Complete: the output is ours to drop.
            // Safety: the handle owns the output of a complete task.
            unsafe { drop_output(ptr) };
            if head.state.drop_handle() {
                // Safety: as above.
                unsafe { dealloc(ptr) };
            }
        }
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

/// The output, by reference, for a caller that holds the handle of a
/// complete task (`None` if it was taken); marks it retrieved.
///
/// # Safety
/// `T` is the task's output type, the task is complete, and the returned
/// reference does not outlive the caller's borrow of the handle.
pub(crate) unsafe fn output_ref<'a, T>(
    ptr: NonNull<TaskHeader>,
) -> Option<&'a Result<T, TaskError>> {
    // Safety: forwarded.
    let head = unsafe { ptr.as_ref() };
    head.state.mark_retrieved();
    let p = unsafe { (head.vtable().output_ref)(ptr) } as *const Result<T, TaskError>;
    // Safety: a non-null pointer points into the live, no longer changing
    // output.
    unsafe { p.as_ref() }
}

/// Drops the output when the handle goes (the handle owns it once the task
/// is complete); reports a panic nobody retrieved.
pub(crate) unsafe fn drop_output(ptr: NonNull<TaskHeader>) {
    // Safety: forwarded.
    let head = unsafe { ptr.as_ref() };
    if let Some(payload) = unsafe { (head.vtable().drop_output)(ptr) } {
        if head.state.load() & RETRIEVED == 0 {
            report_unretrieved(head, payload);
        } else {
            crate::util::drop_quietly(payload, "a panic payload");
        }
    }
}

/// Queues a task that a wake-up made runnable (the caller gives the queue
/// reference): locally on the loop's thread, through the inbox elsewhere.
/// If the loop is closed, the entry is dropped, which closes the task.
fn schedule(ptr: NonNull<TaskHeader>) {
    // Safety: the caller hands over a queue reference.
    let head = unsafe { ptr.as_ref() };
    let r = unsafe { Runnable::from_raw(ptr.cast()) };
    if let Err(r) = head.sched.schedule(r) {
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
