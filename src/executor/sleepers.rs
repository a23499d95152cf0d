//! How idle pool workers sleep and how a submission wakes exactly one.
//!
//! `idle` counts workers that are parked or about to park. A submitter makes
//! its job visible, issues a `SeqCst` fence and reads `idle`; a worker about
//! to park increments `idle`, issues a `SeqCst` fence and looks at the
//! queues once more. One of the two always sees the other (the two fences
//! are ordered), so either the worker finds the job or the submitter sees
//! the worker idle and hands it a wake-up token. Tokens are counted under a
//! mutex and never exceed `idle`, and each is delivered with
//! `notify_one`: one submission wakes at most one worker, never all of them.
//! When no worker is idle and the pool is below its size, the submitter is
//! told to start one (counted here, under the same mutex, so a worker that
//! retires after its keep-alive can never leave a job behind: either it
//! sees the token, or the submitter sees it gone and starts a new worker).
//! `loom-tests/executor.rs` checks that every job runs exactly once and
//! that shutdown lets every worker exit.

use crate::sync::{AtomicUsize, Condvar, Mutex, Ordering, fence};
use std::time::Duration;

struct State {
    /// Wake-ups granted and not yet taken by a worker.
    tokens: usize,
    /// Workers started and not exited.
    live: usize,
    shutdown: bool,
    /// Under loom: the model's keep-alive clock has run out.
    #[cfg(loom)]
    keep_alive_expired: bool,
}

/// What a submitter must do after [`Sleepers::notify`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Notify {
    /// Nothing: every worker is busy, and one will find the job before it
    /// parks.
    Done,
    /// Nothing: an idle worker was woken for the job.
    Woke,
    /// Start a worker (already counted as live).
    Spawn,
}

/// Why [`Sleepers::park`] returned.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Park {
    /// Look for work again.
    Work,
    /// The pool is shutting down: drain what is left, then call
    /// [`Sleepers::exit`].
    Shutdown,
    /// The keep-alive expired with nothing to do; the worker is no longer
    /// counted and must exit.
    Retire,
}

pub(crate) struct Sleepers {
    idle: AtomicUsize,
    /// Workers awake and looking for work before they park (at most one:
    /// see [`Sleepers::try_search`]). A submitter that sees one wakes
    /// nobody: the searcher will find the job.
    searching: AtomicUsize,
    /// Workers blocked in the condition-variable wait (a subset of
    /// `idle`); changed under the lock, so a notification sent after a
    /// reader saw a worker counted here reaches that worker.
    sleeping: AtomicUsize,
    /// Times a parked worker returned from its wait (woken, or timed out).
    wakeups: AtomicUsize,
    /// Mirror of `State::live` for the submitters' lock-free check.
    live: AtomicUsize,
    state: Mutex<State>,
    wakeup: Condvar,
    exited: Condvar,
}

impl Sleepers {
    pub(crate) fn new() -> Sleepers {
        Sleepers {
            idle: AtomicUsize::new(0),
            searching: AtomicUsize::new(0),
            sleeping: AtomicUsize::new(0),
            wakeups: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            state: Mutex::new(State {
                tokens: 0,
                live: 0,
                shutdown: false,
                #[cfg(loom)]
                keep_alive_expired: false,
            }),
            wakeup: Condvar::new(),
            exited: Condvar::new(),
        }
    }

    fn lock(&self) -> crate::sync::MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// Called after a job was made visible in a queue.
    pub(crate) fn notify(&self, max_workers: usize) -> Notify {
        fence(Ordering::SeqCst);
        // A searching worker has yet to pass `park`'s fence and final look
        // at the queues: it will find the job (see `end_search`).
        if self.searching.load(Ordering::SeqCst) > 0 {
            return Notify::Done;
        }
        if self.idle.load(Ordering::SeqCst) == 0 && self.live.load(Ordering::SeqCst) >= max_workers
        {
            return Notify::Done;
        }
        let mut st = self.lock();
        let idle = self.idle.load(Ordering::SeqCst);
        if st.tokens < idle {
            st.tokens += 1;
            drop(st);
            self.wakeup.notify_one();
            Notify::Woke
        } else if st.live < max_workers {
            st.live += 1;
            self.live.store(st.live, Ordering::SeqCst);
            Notify::Spawn
        } else {
            Notify::Done
        }
    }

    /// A worker that ran out of work becomes the pool's searcher, unless
    /// another is: `true` if it did (it then watches the queues for a
    /// while and calls [`Sleepers::end_search`] before it parks).
    pub(crate) fn try_search(&self) -> bool {
        self.searching
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// The searcher stops searching. It must call this before
    /// [`Sleepers::park`]: the decrement precedes `park`'s increment of
    /// `idle` and its fence, so a submitter that saw it searching (and
    /// woke nobody) had pushed its job before that fence, where `park`'s
    /// last look finds it.
    pub(crate) fn end_search(&self) {
        self.searching.fetch_sub(1, Ordering::SeqCst);
        // A searcher that found work then looks at the queues again, to
        // wake a sibling for what submitters left to it: the fence orders
        // that look after every submission that saw it searching.
        fence(Ordering::SeqCst);
    }

    /// A worker found nothing to do. `has_work` looks at every queue.
    pub(crate) fn park(&self, has_work: impl Fn() -> bool, keep_alive: Duration) -> Park {
        self.idle.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if has_work() {
            self.idle.fetch_sub(1, Ordering::SeqCst);
            return Park::Work;
        }
        let mut st = self.lock();
        loop {
            if st.tokens > 0 {
                st.tokens -= 1;
                self.idle.fetch_sub(1, Ordering::SeqCst);
                return Park::Work;
            }
            if st.shutdown {
                self.idle.fetch_sub(1, Ordering::SeqCst);
                return Park::Shutdown;
            }
            self.sleeping.fetch_add(1, Ordering::Relaxed);
            let (guard, timed_out) = self.wait(st, keep_alive);
            st = guard;
            self.sleeping.fetch_sub(1, Ordering::Relaxed);
            self.wakeups.fetch_add(1, Ordering::Relaxed);
            if timed_out && st.tokens == 0 && !st.shutdown {
                // Under the lock: a submitter that saw us idle has not
                // granted a token yet, and will now see us gone.
                st.live -= 1;
                self.live.store(st.live, Ordering::SeqCst);
                self.idle.fetch_sub(1, Ordering::SeqCst);
                drop(st);
                self.exited.notify_all();
                return Park::Retire;
            }
        }
    }

    /// Waits for a notification or the keep-alive; returns whether the
    /// wait timed out.
    #[cfg(not(loom))]
    fn wait<'a>(
        &self,
        st: crate::sync::MutexGuard<'a, State>,
        keep_alive: Duration,
    ) -> (crate::sync::MutexGuard<'a, State>, bool) {
        let (guard, timeout) = self
            .wakeup
            .wait_timeout(st, keep_alive)
            .unwrap_or_else(|p| p.into_inner());
        (guard, timeout.timed_out())
    }

    /// Under loom a wait never times out on its own: the keep-alive is a
    /// clock the model drives ([`Sleepers::expire_keep_alive`]), so that it
    /// explores a worker retiring at every point of a submission.
    #[cfg(loom)]
    fn wait<'a>(
        &self,
        st: crate::sync::MutexGuard<'a, State>,
        _keep_alive: Duration,
    ) -> (crate::sync::MutexGuard<'a, State>, bool) {
        if st.keep_alive_expired {
            return (st, true);
        }
        let guard = self.wakeup.wait(st).unwrap_or_else(|p| p.into_inner());
        let expired = guard.keep_alive_expired;
        (guard, expired)
    }

    /// The model's clock: every keep-alive from now on has expired.
    #[cfg(loom)]
    pub(crate) fn expire_keep_alive(&self) {
        self.lock().keep_alive_expired = true;
        self.wakeup.notify_all();
    }

    /// A worker exits after shutdown (or could not be started after
    /// `notify` counted it).
    pub(crate) fn exit(&self) {
        let mut st = self.lock();
        st.live -= 1;
        self.live.store(st.live, Ordering::SeqCst);
        drop(st);
        self.exited.notify_all();
    }

    /// Tells every worker to finish up.
    pub(crate) fn shutdown(&self) {
        self.lock().shutdown = true;
        self.wakeup.notify_all();
    }

    /// Blocks until at most `remaining` workers are live, or `timeout`
    /// passes (`None`: no limit). Returns whether the count was reached.
    pub(crate) fn wait_live_at_most(&self, remaining: usize, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut st = self.lock();
        while st.live > remaining {
            st = match deadline {
                None => self.exited.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    self.exited
                        .wait_timeout(st, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
        true
    }

    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    pub(crate) fn wakeups(&self) -> usize {
        self.wakeups.load(Ordering::Relaxed)
    }

    pub(crate) fn sleeping(&self) -> usize {
        self.sleeping.load(Ordering::Relaxed)
    }

    pub(crate) fn idle(&self) -> usize {
        self.idle.load(Ordering::SeqCst)
    }
}
