//! A task's whole lifecycle in one atomic word.
//!
//! The low bits are flags, the rest a reference count. References are held
//! by wakers, by the queue entry while the task is scheduled, and by the
//! loop's task registry once the task has started; the `Task<T>` handle is
//! the `HANDLE` flag rather than a reference. The allocation is freed when
//! the count is zero and `HANDLE` is clear. Every transition below is one
//! compare-and-swap loop; `loom-tests/task.rs` runs them against each other.

use super::outcome::TaskOutcome;
use crate::sync::{AtomicUsize, Ordering};

/// The task is in a run queue, or (if `RUNNING`) will be put back in one
/// when the current poll ends. Set by a wake-up; cleared when a run starts.
/// While set, wake-ups do nothing: a task is never queued twice.
pub(crate) const SCHEDULED: usize = 1 << 0;
/// The loop is polling the future (or closing it). Only the holder of this
/// bit touches the future.
pub(crate) const RUNNING: usize = 1 << 1;
/// The future is gone and the output (value, panic or cancellation) is
/// stored. Final: no transition clears it.
pub(crate) const COMPLETE: usize = 1 << 2;
/// A `Task<T>` handle exists. Whoever clears it or sets `COMPLETE` second
/// owns the output (the handle to read it, the loop to drop it).
pub(crate) const HANDLE: usize = 1 << 3;
/// `cancel()` was called; the next run drops the future instead of polling.
pub(crate) const CANCEL_REQUESTED: usize = 1 << 4;
/// The task completed by cancellation.
pub(crate) const CANCELLED: usize = 1 << 5;
/// The task completed because its future panicked.
pub(crate) const PANICKED: usize = 1 << 6;
/// Done callbacks or by-reference awaiters wait in the task's `meta`;
/// whoever completes the task schedules / wakes them. Set only while
/// `COMPLETE` is clear, under `meta`'s lock, so a listener is either seen
/// by the completer or added after completion (and then served by its
/// adder). Tasks nobody listens to never take that lock.
pub(crate) const LISTENERS: usize = 1 << 7;
/// `result()` / `exception()` read the outcome: a panic is no longer
/// "never retrieved" when the handle drops.
pub(crate) const RETRIEVED: usize = 1 << 8;
/// One reference.
pub(crate) const REF_ONE: usize = 1 << 9;

const REF_MASK: usize = !(REF_ONE - 1);

#[inline]
pub(crate) fn refs(state: usize) -> usize {
    (state & REF_MASK) / REF_ONE
}

/// How a complete task ended.
fn outcome_of(state: usize) -> TaskOutcome {
    if state & CANCELLED != 0 {
        TaskOutcome::Cancelled
    } else if state & PANICKED != 0 {
        TaskOutcome::Panicked
    } else {
        TaskOutcome::Returned
    }
}

/// What a run should do with the future.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Start {
    Poll,
    /// Cancellation was requested: drop the future, complete as cancelled.
    Cancel,
    /// Already complete (closed while queued): just drop the reference.
    Skip,
}

/// The outcome of a wake-up that consumed the waker's reference.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WakeByVal {
    /// Queue the task; the waker's reference became the queue's.
    Enqueue,
    /// Nothing to queue and that was the last reference: free the task.
    Dealloc,
    Nothing,
}

pub(crate) struct State {
    word: AtomicUsize,
}

impl State {
    /// A new task: scheduled (its first run is queued, holding the one
    /// reference) with a live handle.
    pub(crate) fn new() -> State {
        State {
            word: AtomicUsize::new(SCHEDULED | HANDLE | REF_ONE),
        }
    }

    #[inline]
    pub(crate) fn load(&self) -> usize {
        self.word.load(Ordering::Acquire)
    }

    #[inline]
    fn update<R>(&self, mut f: impl FnMut(usize) -> Result<(usize, R), R>) -> R {
        let mut cur = self.word.load(Ordering::Acquire);
        loop {
            let (next, out) = match f(cur) {
                Ok(v) => v,
                Err(out) => return out,
            };
            match self
                .word
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return out,
                Err(actual) => cur = actual,
            }
        }
    }

    pub(crate) fn ref_inc(&self) {
        let prev = self.word.fetch_add(REF_ONE, Ordering::Relaxed);
        if prev > isize::MAX as usize {
            std::process::abort();
        }
    }

    /// Drops a reference; `true` if the caller must free the task.
    pub(crate) fn ref_dec(&self) -> bool {
        let prev = self.word.fetch_sub(REF_ONE, Ordering::AcqRel);
        refs(prev) == 1 && prev & HANDLE == 0
    }

    /// A wake-up by reference. `true`: the caller must queue the task with
    /// the reference this call added.
    ///
    /// A wake-up that finds the task already scheduled still writes the
    /// word (an unchanged value, but a release RMW): the run that follows
    /// must happen after this wake-up, so that it sees whatever the waker
    /// published before waking. Returning on a plain load would let that
    /// run miss it (loom finds the interleaving).
    pub(crate) fn wake_by_ref(&self) -> bool {
        self.update(|cur| {
            if cur & COMPLETE != 0 {
                Err(false)
            } else if cur & SCHEDULED != 0 {
                Ok((cur, false))
            } else if cur & RUNNING != 0 {
                Ok((cur | SCHEDULED, false))
            } else {
                Ok(((cur | SCHEDULED) + REF_ONE, true))
            }
        })
    }

    /// A wake-up that consumes the waker's reference.
    pub(crate) fn wake_by_val(&self) -> WakeByVal {
        self.update(|cur| {
            if cur & (COMPLETE | SCHEDULED | RUNNING) != 0 {
                // Nothing to queue (done, queued, or re-queued by the
                // runner): give the reference up.
                let next = if cur & (COMPLETE | SCHEDULED) == 0 {
                    cur | SCHEDULED
                } else {
                    cur
                } - REF_ONE;
                let out = if refs(next) == 0 && next & HANDLE == 0 {
                    WakeByVal::Dealloc
                } else {
                    WakeByVal::Nothing
                };
                Ok((next, out))
            } else {
                Ok((cur | SCHEDULED, WakeByVal::Enqueue))
            }
        })
    }

    /// A run begins (the caller holds the queue reference).
    pub(crate) fn start_run(&self) -> Start {
        self.update(|cur| {
            if cur & COMPLETE != 0 {
                return Err(Start::Skip);
            }
            debug_assert!(cur & RUNNING == 0, "a task runs once at a time");
            let next = (cur & !SCHEDULED) | RUNNING;
            let start = if cur & CANCEL_REQUESTED != 0 {
                Start::Cancel
            } else {
                Start::Poll
            };
            Ok((next, start))
        })
    }

    /// The poll returned `Pending`. `true`: the task was woken meanwhile and
    /// must be queued again, keeping the run's reference.
    pub(crate) fn end_run(&self) -> bool {
        self.update(|cur| Ok((cur & !RUNNING, cur & SCHEDULED != 0)))
    }

    /// The future is gone (finished, panicked, or dropped by cancellation);
    /// the output is stored. Returns the state before.
    pub(crate) fn complete(&self, outcome: TaskOutcome) -> usize {
        let set = COMPLETE
            | match outcome {
                TaskOutcome::Returned => 0,
                TaskOutcome::Panicked => PANICKED,
                TaskOutcome::Cancelled => CANCELLED,
            };
        self.update(|cur| Ok(((cur & !(RUNNING | SCHEDULED)) | set, cur)))
    }

    /// A listener (done callback, by-reference awaiter) is being added
    /// (the caller holds `meta`'s lock). `Ok`: the completer will serve it,
    /// so the caller stores it; `Err(outcome)`: the task is complete, so
    /// the caller serves it itself.
    pub(crate) fn mark_listeners(&self) -> Result<(), TaskOutcome> {
        self.update(|cur| {
            if cur & COMPLETE != 0 {
                Err(Err(outcome_of(cur)))
            } else if cur & LISTENERS != 0 {
                Err(Ok(()))
            } else {
                Ok((cur | LISTENERS, Ok(())))
            }
        })
    }

    /// The outcome was read by reference.
    pub(crate) fn mark_retrieved(&self) {
        self.word.fetch_or(RETRIEVED, Ordering::AcqRel);
    }

    /// Takes the future away from a task that is neither running nor done
    /// (to close it with the loop). `true`: the caller now holds `RUNNING`.
    pub(crate) fn try_claim(&self) -> bool {
        self.update(|cur| {
            if cur & (COMPLETE | RUNNING) != 0 {
                Err(false)
            } else {
                Ok((cur | RUNNING, true))
            }
        })
    }

    /// `cancel()`: `false` if the task is already done.
    pub(crate) fn request_cancel(&self) -> bool {
        self.update(|cur| {
            if cur & COMPLETE != 0 {
                Err(false)
            } else if cur & CANCEL_REQUESTED != 0 {
                Err(true)
            } else {
                Ok((cur | CANCEL_REQUESTED, true))
            }
        })
    }

    /// The handle goes away while the task is not complete. `Ok(free)`:
    /// done, and whether the caller must free the task. `Err(())`: the task
    /// completed meanwhile; the handle owns the output and must drop it
    /// before calling [`State::drop_handle`].
    #[inline]
    pub(crate) fn drop_handle_if_incomplete(&self) -> Result<bool, ()> {
        self.update(|cur| {
            if cur & COMPLETE != 0 {
                Err(Err(()))
            } else {
                Ok((cur & !HANDLE, Ok(refs(cur) == 0)))
            }
        })
    }

    /// The handle goes away; `true` if the caller must free the task.
    #[inline]
    pub(crate) fn drop_handle(&self) -> bool {
        let prev = self.word.fetch_and(!HANDLE, Ordering::AcqRel);
        refs(prev) == 0
    }
}
