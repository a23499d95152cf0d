//! Waiter lists whose entries leave when the waiting future is dropped.
//!
//! A future that many tasks may await (a `LoopFuture`, a
//! `ConcurrentFuture`, a `Task` awaited by reference) keeps its wakers in a
//! [`Waiters`] list, guarded by the future's own mutex. Each awaiting
//! future holds a [`WaitKey`]: its slot in the list. Polling again
//! refreshes the slot in place, and dropping the waiting future (a
//! `wait_for` timeout, a losing `select!` branch, a cancelled task)
//! removes it, so a long-lived future awaited with timeouts by every
//! request handler never accumulates dead wakers, and never pins the
//! tasks behind them.
//!
//! No user code runs under the guarding lock: a foreign waker is cloned
//! before the lock is taken ([`poll_wait`]), and replaced or removed wakers
//! are handed back to be dropped after it is released.

use std::ops::DerefMut;
use std::task::{Context, Poll, Waker};

/// An awaiting future's slot in a [`Waiters`] list (`None`: no slot).
#[derive(Debug, Default)]
pub(crate) struct WaitKey(Option<usize>);

/// The wakers of the futures awaiting one result.
#[derive(Default)]
pub(crate) struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
    /// Woken for good: the result is there and no slot is handed out again.
    closed: bool,
}

impl Waiters {
    /// Whether `key`'s slot holds a waker that wakes the same task as
    /// `waker` (no clone needed).
    fn is_current(&self, key: &WaitKey, waker: &Waker) -> bool {
        key.0
            .and_then(|i| self.slots.get(i))
            .and_then(Option::as_ref)
            .is_some_and(|w| w.will_wake(waker))
    }

    /// Stores `waker` in `key`'s slot (taking one if needed). Returns the
    /// waker it replaced, for the caller to drop after unlocking.
    fn register(&mut self, key: &mut WaitKey, waker: Waker) -> Option<Waker> {
        debug_assert!(!self.closed, "registering on a completed future");
        if let Some(i) = key.0 {
            if let Some(slot) = self.slots.get_mut(i) {
                return slot.replace(waker);
            }
        }
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(waker);
                i
            }
            None => {
                self.slots.push(Some(waker));
                self.slots.len() - 1
            }
        };
        key.0 = Some(i);
        None
    }

    /// Gives up `key`'s slot. Returns its waker, for the caller to drop
    /// after unlocking.
    #[must_use]
    pub(crate) fn remove(&mut self, key: &mut WaitKey) -> Option<Waker> {
        let i = key.0.take()?;
        if self.closed {
            return None;
        }
        let waker = self.slots.get_mut(i)?.take();
        self.free.push(i);
        waker
    }

    /// Takes every waker, for the completer to wake after unlocking; later
    /// removals are no-ops.
    #[must_use]
    pub(crate) fn take_all(&mut self) -> Vec<Waker> {
        self.closed = true;
        self.free.clear();
        std::mem::take(&mut self.slots)
            .into_iter()
            .flatten()
            .collect()
    }
}

/// Wakes every waker in `wakers` (the caller has released its lock).
pub(crate) fn wake_all(wakers: Vec<Waker>) {
    for w in wakers {
        w.wake();
    }
}

/// The poll of a future that waits on state guarded by the lock `lock`
/// takes: `check` returns `Some(output)` once the wait is over; otherwise
/// the task's waker is (re)registered under `key` in the list `waiters`
/// picks out of the state. The waker is cloned outside the lock, and
/// `check` may be called twice (before and after the clone).
pub(crate) fn poll_wait<G, S, R>(
    lock: impl Fn() -> G,
    key: &mut WaitKey,
    cx: &mut Context<'_>,
    mut check: impl FnMut(&mut S) -> Option<R>,
    waiters: impl Fn(&mut S) -> &mut Waiters,
) -> Poll<R>
where
    G: DerefMut<Target = S>,
{
    {
        let mut st = lock();
        if let Some(r) = check(&mut st) {
            return Poll::Ready(r);
        }
        if waiters(&mut st).is_current(key, cx.waker()) {
            return Poll::Pending;
        }
    }
    let waker = cx.waker().clone();
    let replaced = {
        let mut st = lock();
        if let Some(r) = check(&mut st) {
            drop(st);
            drop(waker);
            return Poll::Ready(r);
        }
        waiters(&mut st).register(key, waker)
    };
    drop(replaced);
    Poll::Pending
}

/// Removes `key`'s entry (the awaiting future is being dropped).
pub(crate) fn forget<G, S>(
    lock: impl FnOnce() -> G,
    key: &mut WaitKey,
    waiters: impl FnOnce(&mut S) -> &mut Waiters,
) where
    G: DerefMut<Target = S>,
{
    if key.0.is_none() {
        return;
    }
    let removed = waiters(&mut lock()).remove(key);
    drop(removed);
}

/// Wakers of the futures waiting for one condition, each removable by the
/// id it was given (ids are never reused, so a stale id removes nothing).
/// For state that is not behind a lock of its own (a `LoopCell`), where
/// [`poll_wait`] does not fit; the caller keeps the id in its future and
/// removes it when that future is dropped.
#[derive(Default)]
pub(crate) struct WakerList {
    next_id: u64,
    entries: Vec<(u64, Waker)>,
}

impl WakerList {
    /// Stores `waker` under `id` (given one if `None`); returns the waker
    /// it replaced, to be dropped outside the cell.
    pub(crate) fn register(&mut self, id: &mut Option<u64>, waker: Waker) -> Option<Waker> {
        if let Some(i) = *id {
            if let Some(entry) = self.entries.iter_mut().find(|(e, _)| *e == i) {
                return Some(std::mem::replace(&mut entry.1, waker));
            }
        }
        let i = self.next_id;
        self.next_id += 1;
        *id = Some(i);
        self.entries.push((i, waker));
        None
    }

    /// Removes `id`'s waker (its future is gone).
    pub(crate) fn remove(&mut self, id: &mut Option<u64>) -> Option<Waker> {
        let i = id.take()?;
        let at = self.entries.iter().position(|(e, _)| *e == i)?;
        Some(self.entries.swap_remove(at).1)
    }

    /// Whether no waker is registered.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Takes every waker, to be woken outside the cell.
    pub(crate) fn take_all(&mut self) -> Vec<Waker> {
        if self.entries.is_empty() {
            return Vec::new();
        }
        self.entries.drain(..).map(|(_, w)| w).collect()
    }
}
