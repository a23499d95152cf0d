//! A loop's timer queue: a binary heap ordered by (deadline, scheduling
//! order), with cancelled timers purged lazily, as asyncio does.
//!
//! Cancelled timers stay in the heap until one of three things removes them:
//! they reach the top (dropped when the loop looks for the next deadline);
//! cancellations made on the loop thread, which the queue counts, exceed
//! half the heap (asyncio's rule: rebuild without them); or the heap has
//! doubled since it was last scanned, in which case it is scanned for
//! cancellations made from other threads (which are not counted, to keep
//! their path free of shared counters). Each rebuild removes at least half
//! the heap, so purging costs O(1) amortised per timer.

use crate::handle;
use crate::runnable::Runnable;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Instant;

/// asyncio's `_MIN_SCHEDULED_TIMER_HANDLES`: below this size, never rebuild.
const MIN_PURGE_LEN: usize = 100;
/// The smallest heap worth scanning for foreign cancellations.
const MIN_SCAN_LEN: usize = 1024;
/// The smallest heap for which `pop_due` considers the bulk path.
const BULK_MIN_LEN: usize = 1024;
/// How many heap slots `mostly_due` samples.
const BULK_SAMPLES: usize = 16;

struct Entry {
    /// Nanoseconds since the queue's epoch.
    key: u64,
    seq: u64,
    runnable: Runnable,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.seq == other.seq
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
        (other.key, other.seq).cmp(&(self.key, self.seq))
    }
}

pub(crate) struct TimerQueue {
    heap: BinaryHeap<Entry>,
    epoch: Instant,
    seq: u64,
    /// Cancellations made on the loop thread while the timer was queued.
    cancelled: usize,
    /// Heap length at which to scan for cancellations made elsewhere.
    next_scan: usize,
    /// Cancelled timers taken out of the heap. Dropping one may run user
    /// destructors, which may schedule callbacks; the loop drops them once
    /// it no longer borrows the queue (see `take_removed`).
    removed: Vec<Runnable>,
}

impl TimerQueue {
    pub(crate) fn new(epoch: Instant) -> TimerQueue {
        TimerQueue {
            heap: BinaryHeap::new(),
            epoch,
            seq: 0,
            cancelled: 0,
            next_scan: MIN_SCAN_LEN,
            removed: Vec::new(),
        }
    }

    fn key(&self, when: Instant) -> u64 {
        u64::try_from(when.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Queues a timer callback due at `when`.
    pub(crate) fn insert(&mut self, runnable: Runnable, when: Instant) {
        if handle::is_cancelled(&runnable) {
            self.removed.push(runnable); // cancelled before it reached the loop
            return;
        }
        let key = self.key(when);
        self.seq += 1;
        self.heap.push(Entry {
            key,
            seq: self.seq,
            runnable,
        });
        if self.heap.len() >= self.next_scan {
            self.scan();
        }
    }

    /// A queued timer was cancelled on the loop thread.
    pub(crate) fn note_cancelled(&mut self) {
        self.cancelled += 1;
        if self.heap.len() > MIN_PURGE_LEN && self.cancelled * 2 > self.heap.len() {
            self.purge();
        }
    }

    fn scan(&mut self) {
        let cancelled = self
            .heap
            .iter()
            .filter(|e| handle::is_cancelled(&e.runnable))
            .count();
        self.cancelled = cancelled;
        if cancelled * 2 > self.heap.len() {
            self.purge();
        }
        self.next_scan = (self.heap.len() * 2).max(MIN_SCAN_LEN);
    }

    fn purge(&mut self) {
        let entries = std::mem::take(&mut self.heap).into_vec();
        let mut live = Vec::with_capacity(entries.len() / 2);
        for e in entries {
            if handle::is_cancelled(&e.runnable) {
                self.removed.push(e.runnable);
            } else {
                live.push(e);
            }
        }
        self.heap = BinaryHeap::from(live);
        self.cancelled = 0;
        self.next_scan = (self.heap.len() * 2).max(MIN_SCAN_LEN);
    }

    /// Drops cancelled timers at the top, then returns the earliest
    /// deadline.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(top) = self.heap.peek() {
            if !handle::is_cancelled(&top.runnable) {
                return Some(self.epoch + std::time::Duration::from_nanos(top.key));
            }
            let entry = self.heap.pop().expect("peeked entry exists");
            self.removed.push(entry.runnable);
            self.cancelled = self.cancelled.saturating_sub(1);
        }
        None
    }

    /// Moves every timer due at `now` to `ready`, in deadline order (equal
    /// deadlines in scheduling order); cancelled ones are dropped.
    pub(crate) fn pop_due(&mut self, now: Instant, ready: &mut VecDeque<Runnable>) {
        let now = self.key(now);
        if self.heap.len() >= BULK_MIN_LEN && self.mostly_due(now) {
            self.pop_due_bulk(now, ready);
            return;
        }
        while let Some(top) = self.heap.peek() {
            if top.key > now {
                break;
            }
            let entry = self.heap.pop().expect("peeked entry exists");
            if handle::is_cancelled(&entry.runnable) {
                self.cancelled = self.cancelled.saturating_sub(1);
                self.removed.push(entry.runnable);
            } else {
                ready.push_back(entry.runnable);
            }
        }
        if self.heap.len() < self.next_scan / 4 && self.next_scan > MIN_SCAN_LEN {
            self.next_scan = (self.heap.len() * 2).max(MIN_SCAN_LEN);
        }
    }

    /// Whether most of a large heap is due (from a sample of its array),
    /// in which case one partition and a sort of the due part beat popping
    /// them one O(log n) sift at a time.
    fn mostly_due(&self, now: u64) -> bool {
        let entries = self.heap.as_slice();
        let step = entries.len() / BULK_SAMPLES;
        let due = (0..BULK_SAMPLES)
            .filter(|i| entries[i * step].key <= now)
            .count();
        due * 2 >= BULK_SAMPLES
    }

    fn pop_due_bulk(&mut self, now: u64, ready: &mut VecDeque<Runnable>) {
        let entries = std::mem::take(&mut self.heap).into_vec();
        let mut due = Vec::with_capacity(entries.len());
        let mut later = Vec::new();
        for e in entries {
            if e.key <= now {
                due.push(e);
            } else {
                later.push(e);
            }
        }
        self.heap = BinaryHeap::from(later);
        due.sort_unstable_by_key(|e| (e.key, e.seq));
        ready.reserve(due.len());
        for e in due {
            if handle::is_cancelled(&e.runnable) {
                self.removed.push(e.runnable);
            } else {
                ready.push_back(e.runnable);
            }
        }
        self.cancelled = self.cancelled.min(self.heap.len());
        self.next_scan = (self.heap.len() * 2).max(MIN_SCAN_LEN);
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    pub(crate) fn cancelled(&self) -> usize {
        self.cancelled
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
        all.extend(self.heap.drain().map(|e| e.runnable));
        all
    }
}
