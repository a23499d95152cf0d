//! Cancellation that follows the await chain, as in asyncio.
//!
//! In asyncio, cancelling a task also cancels the future it is blocked on
//! (`Task.cancel` cancels `_fut_waiter`), so `outer.cancel()` reaches the
//! task `outer` awaits, and `wait_for` cancels what it waited for when the
//! time runs out. Here a cancelled task's future is dropped; while that
//! drop runs, this thread is marked as propagating a cancellation, and an
//! awaitable evloop handle (`Task`, `LoopFuture`, `ConcurrentFuture`)
//! dropped then cancels what it stands for — but only if the cancelled
//! task is awaiting it *at that moment*.
//!
//! "Awaiting at that moment" is decided by poll generations: every task
//! poll on a thread gets a new number ([`begin_poll`]), and a handle
//! remembers the generation of its last poll that returned `Pending`
//! ([`Awaited`]). A task being cancelled propagates with the generation
//! of its own last poll, so a handle qualifies only if it was still
//! pending when that poll ended. A handle polled once inside `select!` or
//! `wait_for(&mut handle, ..)` and merely held afterwards carries an older
//! generation and is left alone, as asyncio leaves a task nobody awaits.
//!
//! Combinators that poll only the children that were woken (evloop's
//! `gather`) re-scope the drop of their children to "everything pending"
//! when they themselves are being awaited ([`propagate_all`]), since an
//! un-woken child is still awaited.

use crate::sync::thread_local_cell;
use std::cell::{Cell, RefCell};
use std::sync::Arc;

/// The message a cancellation carries (asyncio's `cancel(msg)`).
pub(crate) type CancelMessage = Option<Arc<str>>;

#[derive(Clone)]
enum Scope {
    /// Handles last pending in this poll generation.
    Poll(u64),
    /// Every handle that is pending.
    All,
}

#[derive(Clone)]
struct Propagation {
    scope: Scope,
    message: CancelMessage,
}

thread_local_cell! {
    /// The generation of the task poll running on this thread (0: none yet).
    static POLL: Cell<u64> = Cell::new(0);
}

thread_local_cell! {
    static PROPAGATING: RefCell<Option<Propagation>> = RefCell::new(None);
}

/// A task poll begins on this thread; returns its generation.
#[inline]
pub(crate) fn begin_poll() -> u64 {
    POLL.with(|p| {
        let g = p.get() + 1;
        p.set(g);
        g
    })
}

/// The generation of the poll running now.
#[inline]
fn current_poll() -> u64 {
    POLL.with(|p| p.get())
}

/// What an awaitable handle remembers about being awaited: the poll
/// generation in which it last returned `Pending` (0: not pending).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Awaited(u64);

impl Awaited {
    /// The handle's poll returned `Pending`.
    #[inline]
    pub(crate) fn pending(&mut self) {
        self.0 = current_poll();
    }

    /// The handle's poll returned `Ready`.
    #[inline]
    pub(crate) fn ready(&mut self) {
        self.0 = 0;
    }

    /// `Some(message)` if the handle, dropped now, is being dropped as part
    /// of the await chain of a task being cancelled: the caller cancels its
    /// target with that message.
    pub(crate) fn cancellation(&self) -> Option<CancelMessage> {
        if self.0 == 0 {
            return None;
        }
        PROPAGATING.with(|p| match &*p.borrow() {
            Some(prop) => match prop.scope {
                Scope::All => Some(prop.message.clone()),
                Scope::Poll(g) if g == self.0 => Some(prop.message.clone()),
                Scope::Poll(_) => None,
            },
            None => None,
        })
    }
}

fn with_propagation<R>(prop: Option<Propagation>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Propagation>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            PROPAGATING.with(|p| *p.borrow_mut() = previous);
        }
    }
    let _restore = Restore(PROPAGATING.with(|p| p.replace(prop)));
    f()
}

/// Runs `drop_it` (which drops a cancelled task's future, or a timed-out
/// computation) so that handles last pending in poll `poll` cancel their
/// targets with `message`.
pub(crate) fn propagate<R>(poll: u64, message: CancelMessage, drop_it: impl FnOnce() -> R) -> R {
    with_propagation(
        Some(Propagation {
            scope: Scope::Poll(poll),
            message,
        }),
        drop_it,
    )
}

/// [`propagate`] for the generation of the poll running now (a combinator
/// dropping what it polled a moment ago).
pub(crate) fn propagate_now<R>(drop_it: impl FnOnce() -> R) -> R {
    propagate(current_poll(), None, drop_it)
}

/// A combinator that is itself awaited by the task being cancelled
/// (`awaited.cancellation()` was `Some`) drops its children with this:
/// every pending handle among them is awaited too. Otherwise it drops them
/// with [`suppress`].
pub(crate) fn propagate_all<R>(message: CancelMessage, drop_it: impl FnOnce() -> R) -> R {
    with_propagation(
        Some(Propagation {
            scope: Scope::All,
            message,
        }),
        drop_it,
    )
}

/// Runs `drop_it` with no cancellation propagating.
pub(crate) fn suppress<R>(drop_it: impl FnOnce() -> R) -> R {
    with_propagation(None, drop_it)
}
