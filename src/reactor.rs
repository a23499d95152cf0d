//! Watching file descriptors: `add_reader` / `add_writer` on mio.
//!
//! asyncio's readers and writers are level-triggered: a reader that leaves
//! data in the socket is called again on the next iteration. mio is
//! edge-triggered. After each call of a watcher's callback the loop re-arms
//! the descriptor (`EPOLL_CTL_MOD` with the same interest), which makes the
//! kernel report it again if it is still ready — level-triggered behaviour
//! at the cost of one `epoll_ctl` per callback call, paid only by fds that
//! actually fired.
//!
//! The fd table lives behind a mutex rather than in the loop's core, so that
//! `add_reader` / `remove_reader` work from any thread, with a synchronous
//! answer, while the loop runs elsewhere. The loop takes the lock once per
//! batch of events, and once more after each watcher call, to re-arm.

use crate::error::Error;
use crate::exception::ExceptionContext;
use crate::runnable::{Header, Kind, Runnable, Vtable};
use crate::sched::Local;
use crate::sync::{AtomicBool, Ordering};
use mio::unix::SourceFd;
use mio::{Events, Registry, Token};
use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::panic::AssertUnwindSafe;
use std::ptr::NonNull;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, Weak};

pub(crate) use crate::readiness::WAKER_TOKEN;

/// Which readiness a watcher waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

/// A reader or writer callback; queued on the loop like any callback.
#[repr(C)]
struct Watcher {
    header: Header,
    fd: RawFd,
    interest: Interest,
    flags: WatcherFlags,
    callback: std::cell::UnsafeCell<Box<dyn FnMut() + Send>>,
    /// The fd table, to re-arm the descriptor after a run.
    table: Weak<Mutex<State>>,
}

// Safety: `callback` is only called by the loop thread, from the one queued
// reference (`WatcherFlags` keep it unique); other threads only touch the atomics
// and drop the watcher, which needs `Send` only.
unsafe impl Sync for Watcher {}

/// A watcher's two flags. `queued`: the watcher has an entry in the ready
/// queue (set by dispatch, so an fd that fires again while queued is not
/// queued twice; cleared when the entry runs). `cancelled`: removed or
/// replaced (any thread); an entry that runs after the cancellation
/// happened-before it does nothing (`loom-tests/reactor.rs`).
pub(crate) struct WatcherFlags {
    queued: AtomicBool,
    cancelled: AtomicBool,
}

impl WatcherFlags {
    pub(crate) fn new() -> WatcherFlags {
        WatcherFlags {
            queued: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
        }
    }

    /// Dispatch: `true` if the caller must queue an entry.
    pub(crate) fn try_queue(&self) -> bool {
        !self.queued.swap(true, Ordering::AcqRel)
    }

    /// The entry runs: `true` if the callback may be called.
    pub(crate) fn start_run(&self) -> bool {
        self.queued.store(false, Ordering::Release);
        !self.cancelled()
    }

    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }

    pub(crate) fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}

static WATCHER_VTABLE: Vtable = Vtable {
    kind: Kind::Watcher,
    run: run_watcher,
    discard: discard_watcher,
};

unsafe fn run_watcher(ptr: NonNull<Header>, local: &dyn Local) {
    // Safety: the queue reference is an `Arc<Watcher>` turned into a pointer.
    let w = unsafe { Arc::from_raw(ptr.cast::<Watcher>().as_ptr()) };
    if !w.flags.start_run() {
        return;
    }
    // Safety: see `impl Sync for Watcher`.
    let callback = unsafe { &mut *w.callback.get() };
    if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(callback)) {
        let what = describe_watcher(&w);
        local.report_panic(
            ExceptionContext::new(format!("Exception in callback {what}")),
            payload,
        );
    }
    if !w.flags.cancelled() {
        if let Some(table) = w.table.upgrade() {
            rearm(&table, w.fd);
        }
    }
}

unsafe fn discard_watcher(ptr: NonNull<Header>) {
    // Safety: as in `run_watcher`.
    drop(unsafe { Arc::from_raw(ptr.cast::<Watcher>().as_ptr()) });
}

fn describe_watcher(w: &Watcher) -> String {
    match w.interest {
        Interest::Read => format!("<reader for fd {}>", w.fd),
        Interest::Write => format!("<writer for fd {}>", w.fd),
    }
}

/// Asks the kernel to report `fd` again if it is still ready (the
/// level-triggered emulation; see the module docs).
fn rearm(table: &Mutex<State>, fd: RawFd) {
    let state = crate::sync::lock(table);
    let (Some(registry), Some(entry)) = (state.registry.as_ref(), state.fds.get(&fd)) else {
        return;
    };
    if let Some(interest) = entry.interest() {
        if let Err(e) = registry.reregister(&mut SourceFd(&fd), Token(fd as usize), interest) {
            tracing::debug!(target: "evloop", "re-arming fd {fd}: {e}");
        }
    }
}

/// Debug-mode description of a queued watcher.
pub(crate) fn describe(r: &Runnable) -> String {
    // Safety: a watcher runnable points at a live `Watcher`.
    describe_watcher(unsafe { r.as_ptr().cast::<Watcher>().as_ref() })
}

#[derive(Default)]
struct FdEntry {
    reader: Option<Arc<Watcher>>,
    writer: Option<Arc<Watcher>>,
}

impl FdEntry {
    fn interest(&self) -> Option<mio::Interest> {
        match (&self.reader, &self.writer) {
            (Some(_), Some(_)) => Some(mio::Interest::READABLE | mio::Interest::WRITABLE),
            (Some(_), None) => Some(mio::Interest::READABLE),
            (None, Some(_)) => Some(mio::Interest::WRITABLE),
            (None, None) => None,
        }
    }

    fn slot(&mut self, interest: Interest) -> &mut Option<Arc<Watcher>> {
        match interest {
            Interest::Read => &mut self.reader,
            Interest::Write => &mut self.writer,
        }
    }
}

struct State {
    /// `None` once the loop is closed.
    registry: Option<Registry>,
    fds: HashMap<RawFd, FdEntry>,
}

pub(crate) struct Reactor {
    state: Arc<Mutex<State>>,
    count: AtomicUsize,
}

fn cancel(w: Option<Arc<Watcher>>) -> Option<Arc<Watcher>> {
    if let Some(w) = &w {
        w.flags.cancel();
    }
    w
}

/// Rejects what epoll would refuse, with asyncio's errors: a negative fd is
/// `InvalidFd`, a closed one `EBADF`, a regular file or directory `EPERM`.
fn validate(fd: RawFd) -> Result<(), Error> {
    if fd < 0 {
        return Err(Error::InvalidFd(fd));
    }
    // Safety: fstat writes into the zeroed struct we own; any fd value is
    // acceptable to the call.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(Error::Io(io::Error::last_os_error()));
    }
    let kind = st.st_mode & libc::S_IFMT;
    if kind == libc::S_IFREG || kind == libc::S_IFDIR {
        return Err(Error::Io(io::Error::from_raw_os_error(libc::EPERM)));
    }
    Ok(())
}

impl Reactor {
    pub(crate) fn new(registry: Registry) -> Reactor {
        Reactor {
            state: Arc::new(Mutex::new(State {
                registry: Some(registry),
                fds: HashMap::new(),
            })),
            count: AtomicUsize::new(0),
        }
    }

    pub(crate) fn has_watchers(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub(crate) fn add(
        &self,
        fd: RawFd,
        interest: Interest,
        callback: Box<dyn FnMut() + Send>,
    ) -> Result<(), Error> {
        validate(fd)?;
        let watcher = Arc::new(Watcher {
            header: Header::new(&WATCHER_VTABLE),
            fd,
            interest,
            flags: WatcherFlags::new(),
            callback: std::cell::UnsafeCell::new(callback),
            table: Arc::downgrade(&self.state),
        });
        let replaced;
        {
            let mut guard = crate::sync::lock(&*self.state);
            let state = &mut *guard;
            let registry = state.registry.as_ref().ok_or(Error::Closed)?;
            let token = Token(fd as usize);
            match state.fds.get_mut(&fd) {
                Some(entry) => {
                    replaced = cancel(entry.slot(interest).replace(watcher));
                    let mio_interest = entry.interest().expect("entry has a watcher");
                    let res = registry.reregister(&mut SourceFd(&fd), token, mio_interest);
                    let res = match res {
                        // The fd was closed and its number reused: epoll
                        // forgot it, so register it afresh.
                        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                            registry.register(&mut SourceFd(&fd), token, mio_interest)
                        }
                        other => other,
                    };
                    if let Err(e) = res {
                        let entry = state.fds.remove(&fd).expect("entry exists");
                        self.count.fetch_sub(1, Ordering::Relaxed);
                        drop(guard);
                        cancel(entry.reader);
                        cancel(entry.writer);
                        return Err(Error::Io(e));
                    }
                }
                None => {
                    let mut entry = FdEntry::default();
                    *entry.slot(interest) = Some(watcher);
                    let mio_interest = entry.interest().expect("entry has a watcher");
                    let res = registry.register(&mut SourceFd(&fd), token, mio_interest);
                    let res = match res {
                        // Registered already (by an fd table entry that was
                        // dropped with the descriptor still in epoll).
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                            registry.reregister(&mut SourceFd(&fd), token, mio_interest)
                        }
                        other => other,
                    };
                    if let Err(e) = res {
                        drop(guard);
                        // The new watcher (the user's closure) goes after
                        // the lock.
                        drop(entry);
                        return Err(Error::Io(e));
                    }
                    state.fds.insert(fd, entry);
                    self.count.fetch_add(1, Ordering::Relaxed);
                    replaced = None;
                }
            }
        }
        drop(replaced);
        Ok(())
    }

    pub(crate) fn remove(&self, fd: RawFd, interest: Interest) -> bool {
        let removed;
        {
            let mut guard = crate::sync::lock(&*self.state);
            let state = &mut *guard;
            let Some(registry) = state.registry.as_ref() else {
                return false;
            };
            let Some(entry) = state.fds.get_mut(&fd) else {
                return false;
            };
            removed = cancel(entry.slot(interest).take());
            if removed.is_none() {
                return false;
            }
            match entry.interest() {
                Some(remaining) => {
                    let token = Token(fd as usize);
                    if let Err(e) = registry.reregister(&mut SourceFd(&fd), token, remaining) {
                        tracing::debug!(target: "evloop", "re-registering fd {fd}: {e}");
                    }
                }
                None => {
                    // The fd may already be closed (epoll then forgot it on
                    // its own); either way it is no longer ours to watch.
                    let _ = registry.deregister(&mut SourceFd(&fd));
                    state.fds.remove(&fd);
                    self.count.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        drop(removed);
        true
    }

    /// Turns readiness events into queued watcher runs.
    pub(crate) fn dispatch(&self, events: &Events, out: &mut Vec<Runnable>) {
        let state = crate::sync::lock(&*self.state);
        for event in events.iter() {
            // The readiness layer's tokens are not fd numbers.
            if event.token() == WAKER_TOKEN || crate::readiness::is_registration(event.token()) {
                continue;
            }
            let fd = event.token().0 as RawFd;
            let Some(entry) = state.fds.get(&fd) else {
                continue;
            };
            // As asyncio's selectors do, errors and hang-ups wake both sides.
            let failed = event.is_error();
            let readable = event.is_readable() || event.is_read_closed() || failed;
            let writable = event.is_writable() || event.is_write_closed() || failed;
            for (ready, watcher) in [(readable, &entry.reader), (writable, &entry.writer)] {
                if let (true, Some(w)) = (ready, watcher) {
                    if w.flags.try_queue() {
                        let ptr = NonNull::new(Arc::into_raw(w.clone()) as *mut Header)
                            .expect("Arc pointers are non-null");
                        // Safety: the Arc reference just leaked is the queue
                        // reference `run_watcher` / `discard_watcher` take back.
                        out.push(unsafe { Runnable::from_raw(ptr) });
                    }
                }
            }
        }
    }

    /// Deregisters everything and forgets the poller (the loop is closing).
    pub(crate) fn close(&self) {
        let (registry, fds) = {
            let mut state = crate::sync::lock(&*self.state);
            let fds = std::mem::take(&mut state.fds);
            (state.registry.take(), fds)
        };
        self.count.store(0, Ordering::Relaxed);
        for (fd, entry) in fds {
            if let Some(registry) = &registry {
                let _ = registry.deregister(&mut SourceFd(&fd));
            }
            cancel(entry.reader);
            cancel(entry.writer);
        }
    }
}
