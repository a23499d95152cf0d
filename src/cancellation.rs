//! Cancellation that follows the await chain, as in asyncio.
//!
//! In asyncio, cancelling a task also cancels the future it is blocked on
//! (`Task.cancel` cancels `_fut_waiter`), so `outer.cancel()` reaches the
//! task `outer` awaits, and `wait_for` cancels what it waited for when the
//! time runs out. Here a cancelled task's future is dropped; while that
//! drop runs, this thread is marked as propagating a cancellation, and an
//! awaitable evloop handle that is dropped *while being awaited* (its last
//! poll returned `Pending`) cancels what it stands for: a `Task`, a
//! `LoopFuture`, a `ConcurrentFuture`. A handle merely held, never awaited,
//! is left alone, as asyncio leaves it.

use std::cell::Cell;

thread_local! {
    static PROPAGATING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `drop_it` (which drops a cancelled computation) with propagation
/// on, so that awaited handles it drops cancel their targets.
pub(crate) fn propagate<R>(drop_it: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            PROPAGATING.with(|p| p.set(self.0));
        }
    }
    let _restore = Restore(PROPAGATING.with(|p| p.replace(true)));
    drop_it()
}

/// Whether an awaited handle dropped now should cancel its target.
pub(crate) fn propagating() -> bool {
    PROPAGATING.with(|p| p.get())
}
