//! The pool's admission gate: submissions pass it while the pool accepts
//! work, and shutdown closes it and waits for the submissions already
//! past it to finish queueing, so that "accepted" means "will run".
//!
//! One word: the `CLOSED` flag plus a count of submissions in flight. A
//! submission adds itself and checks the flag in one read-modify-write; a
//! shutdown sets the flag in one, then waits for the count to drain. In
//! the word's modification order a submission either comes before the
//! flag (shutdown waits for it) or after (it sees the flag and backs out).
//! `loom-tests/executor.rs` checks that no job accepted is ever lost to a
//! concurrent shutdown.

use crate::sync::{AtomicUsize, Ordering};

/// Set once submissions are refused.
const CLOSED: usize = 1;
/// One submission in flight (counted above the flag).
const ONE: usize = 2;

pub(crate) struct Gate {
    word: AtomicUsize,
}

/// A submission past the gate; dropping it lets a waiting shutdown go on.
pub(crate) struct Pass<'a>(&'a Gate);

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.0.word.fetch_sub(ONE, Ordering::AcqRel);
    }
}

impl Gate {
    pub(crate) fn new() -> Gate {
        Gate {
            word: AtomicUsize::new(0),
        }
    }

    /// Lets a submission in, unless the gate is closed.
    pub(crate) fn enter(&self) -> Option<Pass<'_>> {
        let prev = self.word.fetch_add(ONE, Ordering::AcqRel);
        let pass = Pass(self);
        (prev & CLOSED == 0).then_some(pass)
    }

    /// Closes the gate and waits until every submission that got in has
    /// left it (they are short: a queue push and a wake-up).
    pub(crate) fn close(&self) {
        self.word.fetch_or(CLOSED, Ordering::AcqRel);
        while self.word.load(Ordering::Acquire) >= ONE {
            crate::sync::yield_now();
        }
    }
}
