//! A loop's timer queue: a binary heap ordered by (deadline, scheduling
//! order), with cancelled timers purged lazily, as asyncio does.
//!
//! Deadlines are compared as `Instant`s, so a deadline in the past, even
//! one before the loop was created, keeps its place: `call_at(now - 1 s)`
//! runs after `call_at(now - 5 s)`.
//!
//! Cancelled timers stay in the heap until they reach the top (dropped
//! when the loop looks for the next deadline), or until cancelled timers
//! make up more than half of a heap of more than 100 (asyncio's rule),
//! which rebuilds the heap without them. The count behind that rule
//! includes timers cancelled on other threads: a timer knows whether it
//! sits in the heap, and a cancellation from another thread of a timer in
//! the heap is reported to the loop (`Schedule::timer_cancelled_remotely`),
//! which adds those reports here each iteration ([`TimerQueue::add_cancelled`]).
//! A report may race with the loop taking the timer out, so the count is a
//! hint; every rebuild recounts exactly, and each rebuild removes at least
//! half the heap, so purging costs O(1) amortised per timer.

use crate::handle;
use crate::runnable::Runnable;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Instant;

/// asyncio's `_MIN_SCHEDULED_TIMER_HANDLES`: below this size, never rebuild.
const MIN_PURGE_LEN: usize = 100;
/// The smallest heap for which `pop_due` considers the bulk path.
const BULK_MIN_LEN: usize = 1024;
/// How many heap slots `mostly_due` samples.
const BULK_SAMPLES: usize = 16;

struct Entry {
    when: Instant,
    seq: u64,
    runnable: Runnable,
}

impl Entry {
    fn key(&self) -> (Instant, u64) {
        (self.when, self.seq)
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // Reversed, so that `BinaryHeap` (a max-heap) yields the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

#[derive(Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Entry>,
    seq: u64,
    /// Timers in the heap known to be cancelled (a hint; see module docs).
    cancelled: usize,
    /// Cancelled timers taken out of the heap. Dropping one may run user
    /// destructors, which may schedule callbacks; the loop drops them once
    /// it no longer borrows the queue (see `take_removed`).
    removed: Vec<Runnable>,
}

impl TimerQueue {
    /// Queues a timer callback due at `when`.
    pub(crate) fn insert(&mut self, runnable: Runnable, when: Instant) {
        if handle::is_cancelled(&runnable) {
            self.removed.push(runnable); // cancelled before it reached the loop
            return;
        }
        handle::set_in_heap(&runnable, true);
        self.seq += 1;
        self.heap.push(Entry {
            when,
            seq: self.seq,
            runnable,
        });
    }

    /// `n` timers in the heap were cancelled (on the loop thread, or
    /// reported from other threads); purges if they now dominate.
    pub(crate) fn add_cancelled(&mut self, n: usize) {
        self.cancelled += n;
        if self.heap.len() > MIN_PURGE_LEN && self.cancelled * 2 > self.heap.len() {
            self.purge();
        }
    }

    /// Whether `n` more cancellations would trigger a purge.
    pub(crate) fn would_purge_with(&self, n: usize) -> bool {
        self.heap.len() > MIN_PURGE_LEN && (self.cancelled + n) * 2 > self.heap.len()
    }

    fn take_out(&mut self, runnable: Runnable) {
        handle::set_in_heap(&runnable, false);
        self.cancelled = self.cancelled.saturating_sub(1);
        self.removed.push(runnable);
    }

    fn purge(&mut self) {
        let entries = std::mem::take(&mut self.heap).into_vec();
        let mut live = Vec::with_capacity(entries.len() / 2);
        for e in entries {
            if handle::is_cancelled(&e.runnable) {
                handle::set_in_heap(&e.runnable, false);
                self.removed.push(e.runnable);
            } else {
                live.push(e);
            }
        }
        self.heap = BinaryHeap::from(live);
        self.cancelled = 0;
    }

    /// Drops cancelled timers at the top, then returns the earliest
    /// deadline.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(top) = self.heap.peek() {
            if !handle::is_cancelled(&top.runnable) {
                return Some(top.when);
            }
            let entry = self.heap.pop().expect("peeked entry exists");
            self.take_out(entry.runnable);
        }
        None
    }

    /// Moves every timer due at `now` to `ready`, in deadline order (equal
    /// deadlines in scheduling order); cancelled ones are dropped.
    pub(crate) fn pop_due(&mut self, now: Instant, ready: &mut VecDeque<Runnable>) {
        if self.heap.len() >= BULK_MIN_LEN && self.mostly_due(now) {
            self.pop_due_bulk(now, ready);
            return;
        }
        while let Some(top) = self.heap.peek() {
            if top.when > now {
                break;
            }
            let entry = self.heap.pop().expect("peeked entry exists");
            if handle::is_cancelled(&entry.runnable) {
                self.take_out(entry.runnable);
            } else {
                handle::set_in_heap(&entry.runnable, false);
                ready.push_back(entry.runnable);
            }
        }
    }

    /// Whether most of a large heap is due (from a sample of its array),
    /// in which case one partition and a sort of the due part beat popping
    /// them one O(log n) sift at a time.
    fn mostly_due(&self, now: Instant) -> bool {
        let entries = self.heap.as_slice();
        let step = entries.len() / BULK_SAMPLES;
        let due = (0..BULK_SAMPLES)
            .filter(|i| entries[i * step].when <= now)
            .count();
        due * 2 >= BULK_SAMPLES
    }

    fn pop_due_bulk(&mut self, now: Instant, ready: &mut VecDeque<Runnable>) {
        let entries = std::mem::take(&mut self.heap).into_vec();
        let mut due = Vec::with_capacity(entries.len());
        let mut later = Vec::new();
        for e in entries {
            if e.when <= now {
                due.push(e);
            } else {
                later.push(e);
            }
        }
        self.heap = BinaryHeap::from(later);
        due.sort_unstable_by_key(Entry::key);
        ready.reserve(due.len());
        for e in due {
            handle::set_in_heap(&e.runnable, false);
            if handle::is_cancelled(&e.runnable) {
                self.removed.push(e.runnable);
            } else {
                ready.push_back(e.runnable);
            }
        }
        self.cancelled = self.cancelled.min(self.heap.len());
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Timers in the heap known to be cancelled (never more than the heap
    /// holds).
    pub(crate) fn cancelled(&self) -> usize {
        self.cancelled.min(self.heap.len())
    }

    /// Cancelled timers removed since the last call, for the caller to drop
    /// outside its borrow of the queue.
    pub(crate) fn take_removed(&mut self) -> Vec<Runnable> {
        std::mem::take(&mut self.removed)
    }

    /// Removes every timer (the loop is closing).
    pub(crate) fn drain(&mut self) -> Vec<Runnable> {
        self.cancelled = 0;
        let mut all = self.take_removed();
        all.extend(self.heap.drain().map(|e| {
            handle::set_in_heap(&e.runnable, false);
            e.runnable
        }));
        all
    }
}
