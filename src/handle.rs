//! Callbacks scheduled with `call_soon`, `call_later` and friends, and the
//! [`Handle`] / [`TimerHandle`] that cancel them.
//!
//! A callback is one allocation: a [`CallbackHeader`] followed by the
//! closure, from the [`block_pool`](crate::block_pool) when it fits. Two
//! parties own it: the loop (from the moment it is scheduled until it has
//! run or been discarded) and the user's handle. Their shares
//! are two bits of `state` rather than a counter. A handle dropped on the
//! thread that runs its loop releases its share with a plain load and
//! store: on that thread the loop cannot be using its share at the same
//! moment. The loop, releasing its share after a run, needs no atomic
//! read-modify-write either when the handle is already gone — the common
//! case of `loop.call_soon(f)` whose handle is dropped at once, which thus
//! costs one allocation and no read-modify-write; only while a handle is
//! alive does it clear its bit with `fetch_and`. From any other thread the
//! bits are updated with `fetch_and` / `fetch_or`; `loom-tests/handle.rs`
//! checks that exactly one party frees the allocation.

use crate::block_pool;
use crate::exception::HandleInfo;
use crate::runnable::{Header, Kind, Runnable, Vtable};
use crate::sched::{self, Local, LoopId, Schedule};
use crate::sync::{AtomicBool, AtomicUsize, Ordering, UnsafeCell};
use std::fmt;
use std::panic::{AssertUnwindSafe, Location};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Instant;

/// The loop still holds the callback (scheduled, not yet run or discarded).
const QUEUED: usize = 1 << 0;
/// A `Handle` / `TimerHandle` for it is alive.
const HANDLE: usize = 1 << 1;
/// `cancel()` was called; the loop skips the callback.
const CANCELLED: usize = 1 << 2;
/// The cell is a [`block_pool`] block (set at creation, never changed).
const POOLED: usize = 1 << 3;

/// Operations on a callback that do not depend on its closure's type.
#[repr(C)]
pub(crate) struct CallbackVtable {
    base: Vtable,
    /// Drops the closure if it is still there (loop thread only).
    drop_func: unsafe fn(NonNull<CallbackHeader>),
    /// Frees the allocation (both shares released).
    dealloc: unsafe fn(NonNull<CallbackHeader>),
}

/// Identifies a done callback for
/// [`LoopFuture::remove_done_callback`](crate::LoopFuture::remove_done_callback)
/// and [`Task::remove_done_callback`](crate::Task::remove_done_callback).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallbackId(u64);

impl CallbackId {
    pub(crate) fn new(n: u64) -> CallbackId {
        CallbackId(n)
    }
}

/// What only timers carry.
pub(crate) struct TimerPart {
    when: Instant,
    /// The owning loop, told when the timer is cancelled from another
    /// thread while it sits in the loop's timer queue (its purge rule
    /// counts those too).
    sched: Arc<dyn Schedule>,
    /// The timer sits in the loop's heap (set and cleared by the loop).
    in_heap: AtomicBool,
}

/// The closure-independent prefix of every callback allocation.
#[repr(C)]
pub(crate) struct CallbackHeader {
    header: Header,
    state: AtomicUsize,
    /// Identity of the owning loop, never dereferenced here.
    owner: LoopId,
    /// `None` for `call_soon` callbacks.
    timer: Option<TimerPart>,
    /// Where the callback was scheduled from, for debug-mode reports.
    location: &'static Location<'static>,
}

#[repr(C)]
struct CallbackCell<F> {
    head: CallbackHeader,
    func: UnsafeCell<Option<F>>,
}

impl<F: FnOnce() + Send + 'static> CallbackCell<F> {
    const VTABLE: CallbackVtable = CallbackVtable {
        base: Vtable {
            kind: Kind::Callback,
            run: Self::run,
            discard: Self::discard,
        },
        drop_func: Self::drop_func,
        dealloc: Self::dealloc,
    };

    unsafe fn run(ptr: NonNull<Header>, local: &dyn Local) {
        /// Releases the loop's share even if reporting a panic unwinds (a
        /// panicking exception handler's fallback, a tracing layer).
        struct Release(NonNull<CallbackHeader>);
        impl Drop for Release {
            fn drop(&mut self) {
                // Safety: the loop's share is ours to release, once.
                unsafe { release_queue(self.0) }
            }
        }
        let cell = ptr.cast::<CallbackCell<F>>();
        let _release = Release(ptr.cast());
        // Safety: the queue reference keeps the cell alive; the closure is
        // only touched by the thread running the loop, which is us.
        let head = unsafe { &cell.as_ref().head };
        if head.state.load(Ordering::Acquire) & CANCELLED != 0 {
            // Cancelled from another thread: the captures go now, not when
            // the handle is dropped (a closure may even hold its own
            // handle).
            unsafe { Self::drop_func(ptr.cast()) };
            return;
        }
        if let Some(f) = unsafe { cell.as_ref().func.with_mut(|p| (*p).take()) } {
            if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(f)) {
                report_callback_panic(local, HandleInfo::of(head), payload);
            }
        }
    }

    unsafe fn discard(ptr: NonNull<Header>) {
        // Safety: we own the queue share; dropping the closure here is what
        // "close() drops every pending callback" means.
        unsafe {
            Self::drop_func(ptr.cast());
            release_queue(ptr.cast());
        }
    }

    unsafe fn drop_func(ptr: NonNull<CallbackHeader>) {
        // Safety: caller is the loop side (see `CallbackVtable::drop_func`).
        let f = unsafe {
            ptr.cast::<CallbackCell<F>>()
                .as_ref()
                .func
                .with_mut(|p| (*p).take())
        };
        crate::util::drop_quietly(f, "a callback's captured value");
    }

    unsafe fn dealloc(ptr: NonNull<CallbackHeader>) {
        let cell = ptr.cast::<CallbackCell<F>>();
        // Safety: the cell is alive until freed below.
        let pooled = unsafe { ptr.as_ref() }.state.load(Ordering::Relaxed) & POOLED != 0;
        if pooled {
            // Safety: both shares are released; nobody else can reach the
            // cell. Its value moves out before the block goes back, so the
            // captures drop after the pool is done with the memory.
            let value = unsafe { cell.as_ptr().read() };
            unsafe { block_pool::free(cell.cast()) };
            crate::util::drop_quietly(value, "a callback's captured value");
        } else {
            // Safety: as above; cells that do not fit are boxed.
            let boxed = unsafe { Box::from_raw(cell.as_ptr()) };
            crate::util::drop_quietly(boxed, "a callback's captured value");
        }
    }
}

fn vtable_of(head: &CallbackHeader) -> &'static CallbackVtable {
    // Safety: every callback header's vtable is the `base` field (first,
    // `repr(C)`) of a `CallbackVtable`.
    unsafe { &*(head.header.vtable as *const Vtable as *const CallbackVtable) }
}

/// Releases the loop's share (loop side only).
unsafe fn release_queue(ptr: NonNull<CallbackHeader>) {
    // Safety: the caller owns the loop share, so the cell is alive.
    let head = unsafe { ptr.as_ref() };
    let dealloc = vtable_of(head).dealloc;
    if head.state.load(Ordering::Acquire) & HANDLE == 0 {
        // The handle is gone and will not come back: we are the last owner.
        unsafe { dealloc(ptr) };
        return;
    }
    let prev = head.state.fetch_and(!QUEUED, Ordering::AcqRel);
    if prev & HANDLE == 0 {
        unsafe { dealloc(ptr) };
    }
}

/// Allocates a callback owned by the loop `owner` and returns the loop's
/// share as a [`Runnable`] and the user's share as a [`Handle`]. A timer
/// (`when` set) also keeps `sched`, its loop. `remote`: the callback is
/// posted from another thread, so the loop's thread will free what this
/// one allocates; such cells come from the [`block_pool`] when they fit.
pub(crate) fn new_callback<F>(
    owner: LoopId,
    remote: bool,
    timer: Option<(Instant, Arc<dyn Schedule>)>,
    location: &'static Location<'static>,
    f: F,
) -> (Runnable, Handle)
where
    F: FnOnce() + Send + 'static,
{
    let pooled = remote && block_pool::fits::<CallbackCell<F>>();
    let cell = CallbackCell {
        head: CallbackHeader {
            header: Header::new(&CallbackCell::<F>::VTABLE.base),
            state: AtomicUsize::new(QUEUED | HANDLE | if pooled { POOLED } else { 0 }),
            owner,
            timer: timer.map(|(when, sched)| TimerPart {
                when,
                sched,
                in_heap: AtomicBool::new(false),
            }),
            location,
        },
        func: UnsafeCell::new(Some(f)),
    };
    let ptr = if pooled {
        let block = block_pool::alloc().cast::<CallbackCell<F>>();
        // Safety: a pool block is large and aligned enough for the cell
        // (`fits`), and ours.
        unsafe { block.as_ptr().write(cell) };
        block
    } else {
        NonNull::from(Box::leak(Box::new(cell)))
    }
    .cast::<CallbackHeader>();
    // Safety: the cell starts with both shares; each goes to one owner.
    let runnable = unsafe { Runnable::from_raw(ptr.cast()) };
    (runnable, Handle { ptr })
}

/// The callback header behind a queued object, if it is a callback.
fn callback_header(r: &Runnable) -> Option<&CallbackHeader> {
    // Safety: a runnable of kind `Callback` points at a live
    // `CallbackHeader`, kept alive by the queue reference `r` holds.
    (r.kind() == Kind::Callback).then(|| unsafe { r.as_ptr().cast::<CallbackHeader>().as_ref() })
}

/// The deadline of a queued callback, if it is a timer.
pub(crate) fn timer_deadline(r: &Runnable) -> Option<Instant> {
    callback_header(r)?.timer.as_ref().map(|t| t.when)
}

/// Records whether a queued timer sits in its loop's heap (loop thread).
pub(crate) fn set_in_heap(r: &Runnable, in_heap: bool) {
    if let Some(t) = callback_header(r).and_then(|h| h.timer.as_ref()) {
        t.in_heap.store(in_heap, Ordering::Release);
    }
}

/// Whether a queued callback was cancelled (the timer queue purges these).
pub(crate) fn is_cancelled(r: &Runnable) -> bool {
    callback_header(r).is_some_and(|h| h.state.load(Ordering::Acquire) & CANCELLED != 0)
}

/// Where a queued callback was scheduled from.
pub(crate) fn location_of(r: &Runnable) -> Option<&'static Location<'static>> {
    callback_header(r).map(|h| h.location)
}

/// A scheduled callback, returned by `call_soon` and `call_soon_threadsafe`.
///
/// Dropping a handle does not cancel the callback (as in asyncio, where the
/// handle is just a reference to it). Handles are `Send + Sync`: a callback
/// may be cancelled from any thread, but only a cancellation made before
/// the loop starts running the callback takes effect.
///
/// ```
/// use evloop::EventLoop;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
///
/// let lp = EventLoop::new()?;
/// let ran = Arc::new(AtomicBool::new(false));
/// let r = ran.clone();
/// let handle = lp.call_soon(move || r.store(true, Ordering::SeqCst))?;
/// handle.cancel();
/// assert!(handle.cancelled());
/// lp.stop();
/// lp.run_forever()?; // one iteration: the cancelled callback is skipped
/// assert!(!ran.load(Ordering::SeqCst));
/// # Ok::<(), evloop::Error>(())
/// ```
pub struct Handle {
    ptr: NonNull<CallbackHeader>,
}

// Safety: the handle only touches `state` (atomic) and immutable fields; the
// closure is reached only through the loop thread (see `cancel`).
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

impl Handle {
    fn head(&self) -> &CallbackHeader {
        // Safety: the handle's share keeps the cell alive.
        unsafe { self.ptr.as_ref() }
    }

    /// Cancels the callback: if it has not started running, it never will.
    /// Cancelling twice, or after it ran, does nothing.
    ///
    /// On the loop's own thread the captured values are dropped at once;
    /// from another thread they are dropped by the loop, without running
    /// the callback, when it reaches it (asyncio drops them at once; doing
    /// so from another thread would race with the loop). A cancelled timer
    /// is reached at its deadline or earlier, when cancelled timers make up
    /// most of the loop's timer queue and the loop purges them, as asyncio
    /// does (cancellations from other threads count too).
    pub fn cancel(&self) {
        let head = self.head();
        let local = sched::with_local(head.owner, (), |local, ()| {
            let s = head.state.load(Ordering::Relaxed);
            if s & CANCELLED != 0 {
                return;
            }
            head.state.store(s | CANCELLED, Ordering::Relaxed);
            if s & QUEUED != 0 {
                if head
                    .timer
                    .as_ref()
                    .is_some_and(|t| t.in_heap.load(Ordering::Relaxed))
                {
                    local.timer_cancelled();
                }
                // Safety: we are on the loop thread, and the closure is not
                // running (a running callback has already taken it out).
                unsafe { (vtable_of(head).drop_func)(self.ptr) };
            }
        });
        if local.is_err() {
            let prev = head.state.fetch_or(CANCELLED, Ordering::AcqRel);
            if prev & (CANCELLED | QUEUED) == QUEUED {
                if let Some(t) = &head.timer {
                    if t.in_heap.load(Ordering::Acquire) {
                        t.sched.timer_cancelled_remotely();
                    }
                }
            }
        }
    }

    /// Whether [`Handle::cancel`] was called.
    pub fn cancelled(&self) -> bool {
        self.head().state.load(Ordering::Acquire) & CANCELLED != 0
    }

    /// Where the callback was scheduled from (`#[track_caller]` location of
    /// the `call_*` call).
    pub fn scheduled_at(&self) -> &'static Location<'static> {
        self.head().location
    }

    pub(crate) fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let head = self.head();
        let dealloc = vtable_of(head).dealloc;
        if sched::runs_here(head.owner) {
            let s = head.state.load(Ordering::Relaxed);
            if s & QUEUED == 0 {
                // Safety: the loop's share is gone; we are the last owner.
                unsafe { dealloc(self.ptr) };
            } else {
                head.state.store(s & !HANDLE, Ordering::Relaxed);
            }
        } else {
            let prev = head.state.fetch_and(!HANDLE, Ordering::AcqRel);
            if prev & QUEUED == 0 {
                // Safety: as above.
                unsafe { dealloc(self.ptr) };
            }
        }
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("cancelled", &self.cancelled())
            .field("scheduled_at", &self.scheduled_at())
            .finish()
    }
}

/// A scheduled timer, returned by `call_later` and `call_at`.
///
/// Everything a [`Handle`] does, plus [`TimerHandle::when`].
///
/// ```
/// use evloop::EventLoop;
/// use std::time::Duration;
///
/// let lp = EventLoop::new()?;
/// let stopper = lp.clone();
/// let timer = lp.call_later(Duration::from_millis(5), move || stopper.stop())?;
/// assert!(timer.when() >= lp.time() + Duration::from_millis(4));
/// lp.run_forever()?; // returns once the timer has fired
/// assert!(lp.time() >= timer.when());
/// # Ok::<(), evloop::Error>(())
/// ```
pub struct TimerHandle {
    handle: Handle,
}

impl TimerHandle {
    pub(crate) fn new(handle: Handle) -> TimerHandle {
        TimerHandle { handle }
    }

    /// The loop time at which the callback is due (asyncio:
    /// `TimerHandle.when()`).
    pub fn when(&self) -> Instant {
        self.handle
            .head()
            .timer
            .as_ref()
            .expect("a timer handle always carries a deadline")
            .when
    }

    /// Cancels the timer; see [`Handle::cancel`]. The loop keeps a count of
    /// cancelled timers and purges them from its queue when they dominate it.
    pub fn cancel(&self) {
        self.handle.cancel()
    }

    /// Whether [`TimerHandle::cancel`] was called.
    pub fn cancelled(&self) -> bool {
        self.handle.cancelled()
    }

    /// Where the timer was scheduled from.
    pub fn scheduled_at(&self) -> &'static Location<'static> {
        self.handle.scheduled_at()
    }

    /// The timer as a plain [`Handle`].
    pub fn as_handle(&self) -> &Handle {
        &self.handle
    }
}

impl fmt::Debug for TimerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerHandle")
            .field("when", &self.when())
            .field("cancelled", &self.cancelled())
            .field("scheduled_at", &self.scheduled_at())
            .finish()
    }
}

impl HandleInfo {
    /// Describes the callback of `head`.
    fn of(head: &CallbackHeader) -> HandleInfo {
        HandleInfo {
            addr: head as *const CallbackHeader as usize,
            when: head.timer.as_ref().map(|t| t.when),
            scheduled_at: head.location,
        }
    }

    /// Whether this describes the callback behind `handle`.
    pub fn is(&self, handle: &Handle) -> bool {
        self.addr == handle.addr()
    }
}

/// Reports a callback that panicked (asyncio: "Exception in callback
/// ...").
fn report_callback_panic(local: &dyn Local, info: HandleInfo, payload: crate::error::PanicPayload) {
    let ctx = crate::exception::ExceptionContext::new(format!("Exception in callback {info}"))
        .with_handle(info);
    local.report_panic(ctx, payload);
}
