//! The cross-thread path into a loop: a lock-free multi-producer inbox and
//! the wake-up state machine that decides when a producer must write the
//! loop's eventfd.
//!
//! # The inbox
//! An intrusive multi-producer / single-consumer queue (D. Vyukov's design):
//! producers link the object's own [`Header::next`], so a post allocates
//! nothing beyond the callback or task it carries. A push is one atomic swap
//! and one store; a pop touches no atomic read-modify-write at all. A
//! producer that was preempted between its swap and its link leaves the
//! queue briefly unreadable past that point; [`Remote::pop`] reports that as
//! [`Pop::Busy`] instead of spinning, and the loop polls again without
//! sleeping.
//!
//! # The wake-up state
//! `state` is one of:
//! - `AWAKE`: the loop is running callbacks (or not running at all). A
//!   producer does nothing after its push: the loop looks at the inbox before
//!   it next sleeps.
//! - `PARKED`: the loop announced it is about to block in the poller. The
//!   first producer to move it to `NOTIFIED` writes the eventfd; later ones
//!   see `NOTIFIED` and do nothing, so a burst costs one write.
//! - `NOTIFIED`: a wake-up is on its way.
//!
//! No wake-up is lost: the loop stores `PARKED` and then performs a
//! read-modify-write on the inbox head ([`Remote::sync_point`]); every push
//! is a read-modify-write on the same head. In the head's modification
//! order either the push comes first (the loop's RMW reads it and the loop
//! sees a non-empty inbox, so it does not sleep) or the loop's RMW comes
//! first (the push reads from it, so the producer sees `PARKED` and wakes
//! the loop). Flags that the loop must see before sleeping (`stop()` from
//! another thread, for instance) are published the same way through
//! [`Remote::signal`]. The proof uses acquire/release only, which is what
//! loom checks exactly (`loom-tests/remote.rs`).

use crate::runnable::{Header, Kind, Runnable, Vtable};
use crate::sync::{AtomicBool, AtomicPtr, AtomicUsize, Mutex, Ordering, UnsafeCell};
use std::ptr::{self, NonNull};

const AWAKE: usize = 0;
const PARKED: usize = 1;
const NOTIFIED: usize = 2;

/// What [`Remote::pop`] found.
#[derive(Debug)]
pub(crate) enum Pop {
    /// The oldest object in the inbox.
    Item(Runnable),
    /// Nothing is queued.
    Empty,
    /// A producer is half-way through a push; try again soon.
    Busy,
}

/// A loop's inbox plus its wake-up state.
pub(crate) struct Remote {
    /// The most recently pushed node (producers' end). On a cache line of
    /// its own with `state`, which producers read on every push: the
    /// consumer's end, written on every pop, must not share it (each post
    /// would otherwise move the line between the two cores twice).
    head: CachePadded<AtomicPtr<Header>>,
    state: AtomicUsize,
    /// The oldest node not yet popped (consumer's end; one consumer at a
    /// time), on its own line.
    tail: CachePadded<UnsafeCell<*mut Header>>,
    /// A placeholder node that keeps the list non-empty; owned by `self`.
    stub: NonNull<Header>,
}

/// Aligns `T` to a cache line (two, as adjacent-line prefetchers pair
/// them), so that what other threads write next to it does not share it.
#[repr(align(128))]
struct CachePadded<T>(T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

// Safety: the raw pointers are to queued objects, which are `Send`, and to
// the stub, which `Remote` owns; the consumer end is guarded by the
// single-consumer contract of `pop`.
unsafe impl Send for Remote {}
unsafe impl Sync for Remote {}

unsafe fn stub_never_runs(_: NonNull<Header>, _: &dyn crate::sched::Local) {
    // The stub is never handed out as a `Runnable` (see `pop`).
}

unsafe fn stub_never_discarded(_: NonNull<Header>) {
    // As above.
}

static STUB_VTABLE: Vtable = Vtable {
    kind: Kind::Callback,
    run: stub_never_runs,
    discard: stub_never_discarded,
};

impl Remote {
    pub(crate) fn new() -> Remote {
        let stub = NonNull::from(Box::leak(Box::new(Header::new(&STUB_VTABLE))));
        Remote {
            head: CachePadded(AtomicPtr::new(stub.as_ptr())),
            state: AtomicUsize::new(AWAKE),
            tail: CachePadded(UnsafeCell::new(stub.as_ptr())),
            stub,
        }
    }

    /// Links `node` at the producers' end.
    fn push_node(&self, node: *mut Header) {
        // Safety: `node` is a live header that is in no queue (the caller's
        // contract), so nobody else reads or writes its link now.
        unsafe { (*node).next.store(ptr::null_mut(), Ordering::Relaxed) };
        let prev = self.head.swap(node, Ordering::AcqRel);
        // Safety: `prev` stays alive until the consumer has followed its link,
        // which it can only do after this store.
        unsafe { (*prev).next.store(node, Ordering::Release) };
    }

    /// Queues `r` from any thread. Returns `true` when the caller must wake
    /// the loop's poller (exactly one producer per sleep gets `true`).
    pub(crate) fn push(&self, r: Runnable) -> bool {
        self.push_node(r.into_raw().as_ptr());
        self.notify()
    }

    /// Publishes a flag the caller has just set (with at least `Relaxed`
    /// ordering) so that a loop about to sleep sees it. Returns `true` when
    /// the caller must wake the loop's poller.
    pub(crate) fn signal(&self) -> bool {
        self.sync_point();
        self.notify()
    }

    fn notify(&self) -> bool {
        self.state.load(Ordering::Acquire) == PARKED
            && self
                .state
                .compare_exchange(PARKED, NOTIFIED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// A successful read-modify-write of `head` that changes nothing: it puts
    /// the caller's earlier writes into the head's release sequence and makes
    /// every earlier push visible to the caller.
    fn sync_point(&self) {
        let mut cur = self.head.load(Ordering::Relaxed);
        loop {
            match self
                .head
                .compare_exchange_weak(cur, cur, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Takes the oldest queued object.
    ///
    /// # Safety
    /// Only one thread may consume at a time (the loop while it runs; the
    /// closing thread, under the loop's drain lock, once it is closed).
    pub(crate) unsafe fn pop(&self) -> Pop {
        let stub = self.stub.as_ptr();
        self.tail.with_mut(|tail_slot| {
            // Safety (whole block): the consumer contract gives us the tail;
            // every pointer followed was published by a release store that
            // our acquire loads read.
            unsafe {
                let mut tail = *tail_slot;
                let mut next = (*tail).next.load(Ordering::Acquire);
                if tail == stub {
                    if next.is_null() {
                        return if self.head.load(Ordering::Acquire) == stub {
                            Pop::Empty
                        } else {
                            Pop::Busy
                        };
                    }
                    *tail_slot = next;
                    tail = next;
                    next = (*tail).next.load(Ordering::Acquire);
                }
                if !next.is_null() {
                    *tail_slot = next;
                    return Pop::Item(Runnable::from_raw(NonNull::new_unchecked(tail)));
                }
                if self.head.load(Ordering::Acquire) != tail {
                    return Pop::Busy;
                }
                // `tail` is the last node: queue the stub behind it so that
                // `tail` can be handed out without leaving the list empty.
                self.push_node(stub);
                next = (*tail).next.load(Ordering::Acquire);
                if !next.is_null() {
                    *tail_slot = next;
                    return Pop::Item(Runnable::from_raw(NonNull::new_unchecked(tail)));
                }
                Pop::Busy
            }
        })
    }

    /// Whether anything is queued or half-queued (consumer only).
    ///
    /// # Safety
    /// Same single-consumer contract as [`Remote::pop`].
    pub(crate) unsafe fn is_empty(&self) -> bool {
        let stub = self.stub.as_ptr();
        self.tail.with(|tail| {
            // Safety: the consumer contract gives us the tail.
            let tail = unsafe { *tail };
            tail == stub && self.head.load(Ordering::Acquire) == stub
        })
    }

    /// The loop is about to block. Returns `false` if it must not (work or a
    /// signalled flag arrived; `pending` reads the flags), in which case the
    /// state is back to `AWAKE`. After a `true`, call [`Remote::park_end`]
    /// once the poller returns.
    ///
    /// # Safety
    /// Same single-consumer contract as [`Remote::pop`].
    pub(crate) unsafe fn park_begin(&self, pending: impl FnOnce() -> bool) -> bool {
        self.state.store(PARKED, Ordering::Relaxed);
        self.sync_point();
        // Safety: forwarded contract.
        if !unsafe { self.is_empty() } || pending() {
            self.state.swap(AWAKE, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// The loop woke up (by eventfd, timeout or I/O). Returns whether a
    /// producer had claimed the wake-up.
    pub(crate) fn park_end(&self) -> bool {
        self.state.swap(AWAKE, Ordering::AcqRel) == NOTIFIED
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        // Safety: `&mut self` makes us the only consumer, and no producer can
        // exist without a reference to us, so no push is half-done.
        unsafe {
            while let Pop::Item(r) = self.pop() {
                drop(r);
            }
            drop(Box::from_raw(self.stub.as_ptr()));
        }
    }
}

/// A loop's inbox with its closing protocol: once closed, nothing posted
/// stays in it (so nothing posted is leaked, and nothing runs).
///
/// `post` checks `closed`, pushes, and checks `closed` again; `close` sets
/// `closed`, then makes a read-modify-write on the inbox head
/// ([`Remote::signal`]), then drains. In the head's modification order a
/// push either precedes close's read-modify-write (close's drain sees it)
/// or follows it (the push's swap reads from it, so the poster sees
/// `closed` and drains itself). Several drainers are serialised by
/// `drain_lock`; values are dropped after it is released, since dropping
/// may run user code that posts again. `loom-tests/remote.rs` checks that
/// every post is run or dropped exactly once.
pub(crate) struct Inbox {
    remote: Remote,
    closed: AtomicBool,
    /// Serialises the consumers of `remote` once the loop is closed.
    drain_lock: Mutex<()>,
}

impl Inbox {
    pub(crate) fn new() -> Inbox {
        Inbox {
            remote: Remote::new(),
            closed: AtomicBool::new(false),
            drain_lock: Mutex::new(()),
        }
    }

    /// The queue and wake-up state, for the loop (its consumer).
    pub(crate) fn remote(&self) -> &Remote {
        &self.remote
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Queues `r` from any thread. `Ok(true)`: the caller must wake the
    /// loop's poller. `Err(r)`: the inbox is closed.
    pub(crate) fn post(&self, r: Runnable) -> Result<bool, Runnable> {
        if self.is_closed() {
            return Err(r);
        }
        let wake = self.remote.push(r);
        if self.is_closed() {
            // `close` may have finished draining before our push landed;
            // whoever sees the flag after pushing drains.
            self.drain_closed();
            return Ok(false);
        }
        Ok(wake)
    }

    /// Marks the inbox closed and drops everything in it.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // A push that follows this read-modify-write in the head's order
        // sees `closed`; one that precedes it is drained below.
        self.remote.signal();
        self.drain_closed();
    }

    /// Drops every queued object; only once the inbox is closed.
    fn drain_closed(&self) {
        let mut dropped = Vec::new();
        {
            let _consumer = crate::sync::lock(&self.drain_lock);
            loop {
                // Safety: the inbox is closed, so the loop no longer
                // consumes; the drain lock makes us the only consumer.
                match unsafe { self.remote.pop() } {
                    Pop::Item(r) => dropped.push(r),
                    Pop::Empty => break,
                    // A producer is between its swap and its link; it has
                    // already decided to push, so wait for it.
                    Pop::Busy => crate::sync::yield_now(),
                }
            }
        }
        // Dropping runs user destructors, which may post again: not under
        // the lock.
        drop(dropped);
    }
}
