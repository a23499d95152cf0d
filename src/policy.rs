//! Which loop a thread uses: the policy object and the free functions over
//! it (asyncio's `get_event_loop`, `set_event_loop`, `new_event_loop`,
//! `get_running_loop`, `get/set_event_loop_policy`).

use crate::error::Error;
use crate::event_loop::{EventLoop, context};
use std::cell::RefCell;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::thread::ThreadId;
use thread_local::ThreadLocal;

/// Maps threads to loops (asyncio: `AbstractEventLoopPolicy`).
///
/// Install one with [`set_event_loop_policy`]; the free functions
/// [`get_event_loop`], [`set_event_loop`] and [`new_event_loop`] then go
/// through it.
///
/// A policy that gives every thread a loop on first use (the pre-3.12
/// asyncio behaviour), built on the default one:
///
/// ```
/// use evloop::{DefaultEventLoopPolicy, Error, EventLoop, EventLoopPolicy};
/// use std::sync::Arc;
///
/// #[derive(Default)]
/// struct LoopOnDemand(DefaultEventLoopPolicy);
///
/// impl EventLoopPolicy for LoopOnDemand {
///     fn get_event_loop(&self) -> Result<EventLoop, Error> {
///         self.0.get_event_loop().or_else(|_| {
///             let lp = self.new_event_loop()?;
///             self.set_event_loop(Some(lp.clone()));
///             Ok(lp)
///         })
///     }
///     fn set_event_loop(&self, event_loop: Option<EventLoop>) {
///         self.0.set_event_loop(event_loop)
///     }
///     fn new_event_loop(&self) -> Result<EventLoop, Error> {
///         self.0.new_event_loop()
///     }
/// }
///
/// let policy = LoopOnDemand::default();
/// let first = policy.get_event_loop()?;
/// assert_eq!(policy.get_event_loop()?, first); // the same loop again
/// // Installed globally, the free functions use it.
/// evloop::set_event_loop_policy(Some(Arc::new(policy)));
/// assert_eq!(evloop::get_event_loop()?, first);
/// evloop::set_event_loop_policy(None); // back to the default
/// # Ok::<(), evloop::Error>(())
/// ```
pub trait EventLoopPolicy: Send + Sync {
    /// The loop set for the calling thread. The default policy never
    /// creates one implicitly (as in Python 3.14): it returns
    /// [`Error::NoCurrentLoop`].
    fn get_event_loop(&self) -> Result<EventLoop, Error>;

    /// Sets (or with `None` clears) the calling thread's loop.
    fn set_event_loop(&self, event_loop: Option<EventLoop>);

    /// Creates a loop, as this policy's loops are made.
    fn new_event_loop(&self) -> Result<EventLoop, Error>;
}

/// The policy evloop starts with: each thread's loop in a
/// `thread_local::ThreadLocal` owned by the policy object, so two policies
/// never see each other's loops and a loop set on one thread is invisible
/// on every other. When a thread exits, the loop it set is released (and
/// closed, if that was its last handle), as Python releases a thread's
/// loop with the thread's state.
///
/// ```
/// use evloop::{DefaultEventLoopPolicy, Error, EventLoopPolicy};
///
/// let policy = DefaultEventLoopPolicy::new();
/// // No implicit loop: the error names the thread.
/// assert!(matches!(policy.get_event_loop(), Err(Error::NoCurrentLoop { .. })));
/// let lp = policy.new_event_loop()?;
/// policy.set_event_loop(Some(lp.clone()));
/// assert_eq!(policy.get_event_loop()?, lp);
/// // Another thread sees nothing.
/// std::thread::scope(|s| {
///     s.spawn(|| assert!(policy.get_event_loop().is_err()));
/// });
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Default)]
pub struct DefaultEventLoopPolicy {
    loops: ThreadLocal<ThreadSlot>,
}

/// One thread's entry: shared with that thread's exit guard, which empties
/// it when the thread exits. The thread id is kept with the loop because
/// `ThreadLocal` hands a finished thread's entry to a new thread.
type ThreadSlot = Arc<Mutex<ThreadEntry>>;
type ThreadEntry = Option<(ThreadId, EventLoop)>;

/// Empties, when its thread exits, the policy entries the thread filled.
struct ExitGuard {
    thread: ThreadId,
    slots: RefCell<Vec<Weak<Mutex<ThreadEntry>>>>,
}

thread_local! {
    static EXIT_GUARD: ExitGuard = ExitGuard {
        thread: std::thread::current().id(),
        slots: RefCell::new(Vec::new()),
    };
}

impl ExitGuard {
    /// Makes sure `slot` is emptied when this thread exits.
    fn watch(slot: &ThreadSlot) {
        // During the thread's own teardown there is nothing left to watch.
        let _ = EXIT_GUARD.try_with(|g| {
            let mut slots = g.slots.borrow_mut();
            slots.retain(|w| w.strong_count() > 0);
            if !slots
                .iter()
                .any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(slot)))
            {
                slots.push(Arc::downgrade(slot));
            }
        });
    }
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        for weak in self.slots.take() {
            let Some(slot) = weak.upgrade() else { continue };
            let released = {
                let mut entry = crate::sync::lock(&*slot);
                match &*entry {
                    // Only this thread's own loop: the entry may already
                    // have been handed to a new thread.
                    Some((owner, _)) if *owner == self.thread => entry.take(),
                    _ => None,
                }
            };
            // Dropping the loop may close it: outside the lock.
            drop(released);
        }
    }
}

impl DefaultEventLoopPolicy {
    /// A policy with no loops set.
    pub fn new() -> DefaultEventLoopPolicy {
        DefaultEventLoopPolicy::default()
    }
}

impl std::fmt::Debug for DefaultEventLoopPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultEventLoopPolicy")
            .finish_non_exhaustive()
    }
}

impl EventLoopPolicy for DefaultEventLoopPolicy {
    fn get_event_loop(&self) -> Result<EventLoop, Error> {
        let me = std::thread::current().id();
        let Some(slot) = self.loops.get() else {
            return Err(no_current_loop());
        };
        let stale = {
            let mut entry = crate::sync::lock(&**slot);
            match &*entry {
                Some((owner, event_loop)) if *owner == me => return Ok(event_loop.clone()),
                // Left behind by a finished thread that had this entry.
                Some(_) => entry.take(),
                None => None,
            }
        };
        drop(stale);
        Err(no_current_loop())
    }

    fn set_event_loop(&self, event_loop: Option<EventLoop>) {
        let me = std::thread::current().id();
        let slot = self.loops.get_or_default();
        ExitGuard::watch(slot);
        let previous = std::mem::replace(
            &mut *crate::sync::lock(&**slot),
            event_loop.map(|l| (me, l)),
        );
        // Dropping the previous loop may close it: outside the lock.
        drop(previous);
    }

    fn new_event_loop(&self) -> Result<EventLoop, Error> {
        EventLoop::new()
    }
}

fn no_current_loop() -> Error {
    Error::NoCurrentLoop {
        thread: crate::util::thread_name(),
    }
}

/// The installed policy; `None` until first asked for, and again after
/// `set_event_loop_policy(None)` (asyncio's `_event_loop_policy`).
static POLICY: RwLock<Option<Arc<dyn EventLoopPolicy>>> = RwLock::new(None);

/// The installed policy: a [`DefaultEventLoopPolicy`], created on first
/// use, unless [`set_event_loop_policy`] installed another.
pub fn get_event_loop_policy() -> Arc<dyn EventLoopPolicy> {
    if let Some(policy) = crate::sync::read(&POLICY).clone() {
        return policy;
    }
    crate::sync::write(&POLICY)
        .get_or_insert_with(|| Arc::new(DefaultEventLoopPolicy::new()))
        .clone()
}

/// Installs `policy` for the whole process. `None` goes back to a *new*
/// default policy, as asyncio does: the loops set under the old one are
/// no longer returned by [`get_event_loop`].
pub fn set_event_loop_policy(policy: Option<Arc<dyn EventLoopPolicy>>) {
    let previous = std::mem::replace(&mut *crate::sync::write(&POLICY), policy);
    drop(previous);
}

/// The loop running on this thread, else the policy's loop for this thread
/// (asyncio: `get_event_loop()`); [`Error::NoCurrentLoop`] names the thread
/// when there is neither.
pub fn get_event_loop() -> Result<EventLoop, Error> {
    match context::running_loop() {
        Some(event_loop) => Ok(event_loop),
        None => get_event_loop_policy().get_event_loop(),
    }
}

/// Sets this thread's loop through the policy (asyncio:
/// `set_event_loop`).
pub fn set_event_loop(event_loop: Option<EventLoop>) {
    get_event_loop_policy().set_event_loop(event_loop);
}

/// Creates a loop through the policy (asyncio: `new_event_loop()`).
pub fn new_event_loop() -> Result<EventLoop, Error> {
    get_event_loop_policy().new_event_loop()
}

/// The loop running on this thread (asyncio: `get_running_loop()`);
/// [`Error::NoRunningLoop`] when none runs here.
pub fn get_running_loop() -> Result<EventLoop, Error> {
    context::running_loop().ok_or(Error::NoRunningLoop)
}
