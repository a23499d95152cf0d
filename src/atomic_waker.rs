//! A slot for one waker that one thread registers while another may be
//! waking it (the awaiter of a task).
//!
//! `state` is a tiny lock with two bits: `REGISTERING` is held by the thread
//! storing a waker, `WAKING` by the thread taking it. A waker registered
//! while a wake is in progress is woken at once by the registering thread;
//! a wake that arrives while a waker is being stored is carried out by the
//! registering thread when it releases the slot. Either way no wake-up is
//! lost (`loom-tests/atomic_waker.rs`).

use crate::sync::{AtomicUsize, Ordering, UnsafeCell};
use std::task::Waker;

const IDLE: usize = 0;
const REGISTERING: usize = 1;
const WAKING: usize = 2;

pub(crate) struct AtomicWaker {
    state: AtomicUsize,
    waker: UnsafeCell<Option<Waker>>,
}

// Safety: the waker slot is only accessed by the holder of one of the two
// state bits, which exclude each other (see the methods).
unsafe impl Send for AtomicWaker {}
unsafe impl Sync for AtomicWaker {}

impl AtomicWaker {
    pub(crate) fn new() -> AtomicWaker {
        AtomicWaker {
            state: AtomicUsize::new(IDLE),
            waker: UnsafeCell::new(None),
        }
    }

    /// Stores `waker` to be woken by the next [`AtomicWaker::wake`]. Only one
    /// thread registers at a time (the task's single handle).
    pub(crate) fn register(&self, waker: &Waker) {
        // A foreign waker's clone is user code: it runs before the slot is
        // taken, so a panicking clone cannot leave the slot held.
        let new = waker.clone();
        match self
            .state
            .compare_exchange(IDLE, REGISTERING, Ordering::Acquire, Ordering::Acquire)
        {
            Ok(_) => {
                // Safety: REGISTERING gives us the slot. `will_wake` only
                // compares pointers. What is replaced (or not needed) is
                // dropped after the slot is released.
                let stale = self.waker.with_mut(|slot| unsafe {
                    match &*slot {
                        Some(old) if old.will_wake(&new) => Some(new),
                        _ => (*slot).replace(new),
                    }
                });
                match self.state.compare_exchange(
                    REGISTERING,
                    IDLE,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {}
                    Err(_) => {
                        // A wake arrived while we held the slot and could not
                        // take the waker: deliver it ourselves.
                        // Safety: we still hold REGISTERING.
                        let w = self.waker.with_mut(|slot| unsafe { (*slot).take() });
                        self.state.swap(IDLE, Ordering::AcqRel);
                        if let Some(w) = w {
                            w.wake();
                        }
                    }
                }
                drop(stale);
            }
            Err(WAKING) => {
                // A wake is taking the previous waker right now; it may miss
                // this one, so wake it directly; the caller polls again at
                // once, so let the waking thread finish first.
                new.wake();
                crate::sync::spin_loop();
            }
            Err(_) => {
                // Concurrent registration (not done by this crate): be safe.
                new.wake();
            }
        }
    }

    /// Takes the registered waker, if any, and wakes it.
    pub(crate) fn wake(&self) {
        if let Some(w) = self.take() {
            w.wake();
        }
    }

    fn take(&self) -> Option<Waker> {
        match self.state.fetch_or(WAKING, Ordering::AcqRel) {
            IDLE => {
                // Safety: WAKING (with REGISTERING clear) gives us the slot.
                let w = self.waker.with_mut(|slot| unsafe { (*slot).take() });
                self.state.fetch_and(!WAKING, Ordering::Release);
                w
            }
            // A registration holds the slot; it sees our WAKING bit when it
            // releases the slot and wakes for us. Or another wake is running.
            _ => None,
        }
    }
}

impl Default for AtomicWaker {
    fn default() -> Self {
        Self::new()
    }
}
