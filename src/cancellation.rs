//! Cancellation that follows the await chain, as in asyncio.
//!
//! In asyncio, cancelling a task also cancels the future it is blocked on
//! (`Task.cancel` cancels `_fut_waiter`), so `outer.cancel()` reaches the
//! task `outer` awaits, and `wait_for` cancels what it waited for when the
//! time runs out. Here a cancelled task's future is dropped; while that
//! drop runs, this thread is marked as propagating a cancellation (with
//! its message), and an *awaiting future* dropped then, while pending,
//! cancels what it waits for.
//!
//! Awaiting futures are separate from the handles they wait on: `task.await`
//! awaits a `TaskAwait` that owns the task, `task.wait()` a `TaskAwaitMut`
//! that borrows it, `(&task).await` a `TaskRead`; likewise for `LoopFuture`
//! and `ConcurrentFuture`. Such a future exists exactly as long as the
//! await, so "being awaited at that moment" is "a pending awaiting future
//! exists": a handle that was awaited inside a `select!` branch that lost
//! or a `wait_for` that returned, and is afterwards merely held, is not
//! cancelled with its holder, as asyncio leaves a task nobody awaits.

use crate::sync::thread_local_cell;
use std::cell::RefCell;
use std::sync::Arc;

/// The message a cancellation carries (asyncio's `cancel(msg)`).
pub(crate) type CancelMessage = Option<Arc<str>>;

thread_local_cell! {
    /// `Some(message)` while a cancellation propagates on this thread.
    static PROPAGATING: RefCell<Option<CancelMessage>> = RefCell::new(None);
}

/// What an awaiting future remembers: whether its last poll returned
/// `Pending` (it is waiting).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Awaited(bool);

impl Awaited {
    /// The awaiting future's poll returned `Pending`.
    #[inline]
    pub(crate) fn pending(&mut self) {
        self.0 = true;
    }

    /// The awaiting future's poll returned `Ready`.
    #[inline]
    pub(crate) fn ready(&mut self) {
        self.0 = false;
    }

    /// `Some(message)` if the awaiting future, dropped now, is dropped while
    /// waiting as part of a cancellation: the caller cancels what it waits
    /// for, with that message.
    pub(crate) fn cancellation(&self) -> Option<CancelMessage> {
        if !self.0 {
            return None;
        }
        // `try_with`: an awaiting future may be dropped while this thread's
        // thread-locals are being torn down (a loop closed at thread exit).
        PROPAGATING.try_with(|p| p.borrow().clone()).ok().flatten()
    }
}

/// Runs `drop_it` (which drops a cancelled task's future, or a timed-out
/// computation) so that awaiting futures dropped meanwhile cancel what they
/// wait for, with `message`.
pub(crate) fn propagate<R>(message: CancelMessage, drop_it: impl FnOnce() -> R) -> R {
    with_propagation(Some(message), drop_it)
}

/// Runs `drop_it` with no cancellation propagating (`shield`).
pub(crate) fn suppress<R>(drop_it: impl FnOnce() -> R) -> R {
    with_propagation(None, drop_it)
}

fn with_propagation<R>(state: Option<CancelMessage>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Option<CancelMessage>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(previous) = self.0.take() {
                let _ = PROPAGATING.try_with(|p| *p.borrow_mut() = previous);
            }
        }
    }
    let _restore = Restore(PROPAGATING.try_with(|p| p.replace(state)).ok());
    f()
}
