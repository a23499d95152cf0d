//! Unix signals (asyncio: `loop.add_signal_handler` /
//! `remove_signal_handler`), on the `signal-hook` crate.
//!
//! # How a signal reaches a loop
//! Each handler a loop registers for a signal owns a socket pair
//! ([`SignalPipe`]). The write end goes to
//! `signal_hook::low_level::pipe::register`: the process's signal handler
//! (async-signal-safe, installed by signal-hook once per signal) writes
//! one byte to it per delivery. The read end is a source of the loop's
//! readiness layer, so the byte wakes the loop like any readable socket;
//! the loop counts the bytes and queues the user's callback once per
//! delivered signal (as CPython, which writes one byte per signal to its
//! wake-up fd and handles each byte), to run as an ordinary callback on
//! its thread: no thread per signal, no user code in signal context. A
//! signal that arrives while the loop is not running waits in the socket
//! and is delivered on the next run.
//!
//! asyncio allows handlers on the main thread's loop only (Python's
//! signal module is main-thread only); evloop allows them on any loop,
//! and **every loop that registered a signal gets it**: each has its own
//! socket, and signal-hook calls every registered action.
//!
//! Removing a handler unregisters its action, which closes the write end:
//! the read end then reports end-of-file and leaves the loop.
//!
//! # The disposition without handlers
//! signal-hook keeps its process-wide handler installed once it is; it
//! does not restore the previous disposition when its actions go (CPython
//! puts `SIG_DFL` back). So that removing the last evloop handler of a
//! signal gives the signal back what it did before, evloop registers, the
//! first time it handles a signal whose disposition was the default,
//! signal-hook's *conditional default*: an action that performs the
//! default action (terminate, ignore, stop) exactly while no evloop
//! handler is registered for that signal. The process-level handler stays
//! installed; only what it does changes. A signal that was ignored before
//! (Rust ignores `SIGPIPE`) stays ignored.

use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::readiness::{IoHandler, READ_CLOSED, Registration, ScheduledIo};
use crate::sched::Local;
use crate::services::LoopService;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Python's `signal.NSIG` on Linux: signals are `1..NSIG`.
const NSIG: i32 = 65;

/// What the process as a whole knows of one signal.
struct ProcessSignal {
    sig: i32,
    /// True while no evloop handler is registered: signal-hook's
    /// conditional default then runs the default action. `None` if the
    /// signal's disposition was not the default when evloop first took it.
    no_handler: Option<Arc<AtomicBool>>,
    /// Handlers registered for it, over all loops.
    handlers: usize,
}

static PROCESS: Mutex<Vec<ProcessSignal>> = Mutex::new(Vec::new());

/// The channel from signal-hook's signal handler to a loop: one byte per
/// delivery of one signal is written to a socket pair's write end (owned
/// by signal-hook's action); the read end is watched by the loop.
pub(crate) struct SignalPipe {
    pub(crate) read: UnixStream,
    pub(crate) id: signal_hook::SigId,
}

impl SignalPipe {
    /// Opens the socket pair and registers its write end for `sig`.
    pub(crate) fn open(sig: i32) -> io::Result<SignalPipe> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let id = signal_hook::low_level::pipe::register(sig, write)?;
        Ok(SignalPipe { read, id })
    }

    /// Watches the read end on `event_loop` (whose thread must be this
    /// one, running it): `on_signals(n)` runs on the loop's thread with
    /// the number of deliveries that arrived, and returns whether to keep
    /// watching. The watch ends by itself when the action is unregistered
    /// (the write end closes) and when the loop closes.
    pub(crate) fn watch(
        read: UnixStream,
        event_loop: &EventLoop,
        on_signals: impl FnMut(usize) -> bool + Send + 'static,
    ) -> Result<(), Error> {
        let raw = read.as_raw_fd();
        let registration = event_loop.register_source(&mut mio::unix::SourceFd(&raw))?;
        registration.attach_owned(move |registration| {
            Box::new(PipeReader {
                read,
                registration: Some(registration),
                on_signals,
            })
        })
    }
}

/// The read end of a [`SignalPipe`] on the readiness layer.
struct PipeReader<F> {
    read: UnixStream,
    registration: Option<Registration>,
    on_signals: F,
}

impl<F> PipeReader<F> {
    /// Counts the bytes waiting (each one delivery); `None` once the write
    /// end has closed.
    fn drain(&mut self) -> Option<usize> {
        let mut count = 0;
        let mut buf = [0u8; 64];
        loop {
            match self.read.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => count += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // WouldBlock: drained (the edge will come again with the
                // next byte). Anything else: a socket pair does not fail.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(count),
                Err(_) => return None,
            }
        }
    }

    fn release(&mut self) {
        if let Some(mut registration) = self.registration.take() {
            let raw = self.read.as_raw_fd();
            registration.deregister(&mut mio::unix::SourceFd(&raw));
        }
    }
}

impl<F: FnMut(usize) -> bool + Send> IoHandler for PipeReader<F> {
    fn ready(&mut self, _io: &ScheduledIo, bits: usize, _local: &dyn Local) -> bool {
        let count = self.drain();
        let keep = match count {
            Some(0) => true,
            Some(n) => (self.on_signals)(n),
            None => {
                // The action is gone: deliveries already read still count.
                false
            }
        } && bits & READ_CLOSED == 0;
        if !keep {
            self.release();
        }
        keep
    }

    fn loop_closed(&mut self) {
        self.release();
    }
}

/// One loop's handler for one signal.
struct Entry {
    sig: i32,
    id: signal_hook::SigId,
    /// Set when the handler is removed or replaced: its reader stops
    /// queueing the callback.
    removed: Arc<AtomicBool>,
}

/// A loop's signal handlers (a service of the loop: `close()` removes
/// them).
#[derive(Default)]
struct SignalTable {
    entries: Mutex<Vec<Entry>>,
}

impl LoopService for SignalTable {
    fn close(&self) {
        let entries = std::mem::take(&mut *crate::sync::lock(&self.entries));
        for entry in entries {
            release(entry);
        }
    }
}

/// Unregisters `entry`'s action (closing its pipe's write end), and gives
/// the signal its default action back if that was the last handler in the
/// process.
fn release(entry: Entry) {
    entry.removed.store(true, Ordering::Release);
    signal_hook::low_level::unregister(entry.id);
    remove_process_handler(entry.sig);
}

/// Records one handler of `sig` fewer in the process; the last one turns
/// the conditional default back on.
fn remove_process_handler(sig: i32) {
    let mut process = crate::sync::lock(&PROCESS);
    if let Some(p) = process.iter_mut().find(|p| p.sig == sig) {
        p.handlers -= 1;
        if p.handlers == 0 {
            if let Some(no_handler) = &p.no_handler {
                no_handler.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// Records one more handler of `sig` in the process (turning the
/// conditional default off), setting the conditional default up the first
/// time `sig` is seen with its default disposition.
fn add_process_handler(sig: i32) -> io::Result<()> {
    let mut process = crate::sync::lock(&PROCESS);
    let at = match process.iter().position(|p| p.sig == sig) {
        Some(at) => at,
        None => {
            let no_handler = if is_default(sig) {
                let flag = Arc::new(AtomicBool::new(false));
                signal_hook::flag::register_conditional_default(sig, flag.clone())?;
                Some(flag)
            } else {
                None
            };
            process.push(ProcessSignal {
                sig,
                no_handler,
                handlers: 0,
            });
            process.len() - 1
        }
    };
    let p = &mut process[at];
    p.handlers += 1;
    if let Some(no_handler) = &p.no_handler {
        no_handler.store(false, Ordering::SeqCst);
    }
    Ok(())
}

/// asyncio's checks, with its classes and wording: a number outside
/// `valid_signals()` is a `ValueError` ("invalid signal number 0"), one
/// that cannot be caught a `RuntimeError` ("sig 9 cannot be caught").
fn check(sig: i32) -> Result<(), Error> {
    if !(1..NSIG).contains(&sig) || (32..34).contains(&sig) {
        // glibc keeps 32 and 33 for its threads: not in `valid_signals()`.
        return Err(Error::InvalidArgument(format!(
            "invalid signal number {sig}"
        )));
    }
    Ok(())
}

/// Whether a handler may be installed for `sig`: not `SIGKILL` or
/// `SIGSTOP` (which nobody can catch), nor the fault signals that
/// signal-hook refuses (`SIGSEGV`, `SIGILL`, `SIGFPE`: their handlers
/// cannot safely return to Rust code).
fn check_catchable(sig: i32) -> Result<(), Error> {
    if signal_hook::consts::FORBIDDEN.contains(&sig) {
        return Err(Error::Runtime(format!("sig {sig} cannot be caught")));
    }
    Ok(())
}

/// Whether `sig`'s disposition is the default one.
fn is_default(sig: i32) -> bool {
    // Safety: sigaction with a null new action only reads the current one
    // into `old`, which we own.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_DFL
    }
}

/// Queues `callback` once per delivery on the running loop.
fn deliver<F: FnMut() + Send + 'static>(
    event_loop: &crate::WeakEventLoop,
    callback: &Arc<Mutex<F>>,
    deliveries: usize,
) {
    let Some(event_loop) = event_loop.upgrade() else {
        return;
    };
    for _ in 0..deliveries {
        let callback = callback.clone();
        // The closure's own mutex, taken only here and only on the loop's
        // thread: it serialises the runs of one `FnMut`, which never
        // contend. A panic is reported like any callback's, and the
        // handler stays (the lock ignores the poisoning).
        let _ = event_loop.call_soon(move || (*crate::sync::lock(&*callback))());
    }
}

impl EventLoop {
    /// Calls `callback` on this loop's thread, as an ordinary callback,
    /// each time the process receives `sig` (asyncio:
    /// `loop.add_signal_handler`): once per delivered signal. A second
    /// call for the same signal replaces the handler (atomically: two
    /// threads adding at once leave one). Any loop may register (asyncio:
    /// only the main thread's), and every loop that registered a signal
    /// gets it. A callback that panics is reported to the exception
    /// handler, and the handler stays.
    ///
    /// Errors, with asyncio's classes and wording:
    /// [`Error::InvalidArgument`] "invalid signal number 0" (a number
    /// outside `signal.valid_signals()`); [`Error::Runtime`] "sig 9
    /// cannot be caught" (`SIGKILL`, `SIGSTOP`, and the fault signals
    /// `SIGSEGV`, `SIGILL`, `SIGFPE`); [`Error::Closed`]; [`Error::Io`] if
    /// the socket pair cannot be made.
    ///
    /// ```no_run
    /// use evloop::EventLoop;
    ///
    /// let lp = EventLoop::new()?;
    /// let stopper = lp.clone();
    /// lp.add_signal_handler(libc::SIGTERM, move || stopper.stop())?;
    /// lp.run_forever()?; // until SIGTERM
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn add_signal_handler<F>(&self, sig: i32, callback: F) -> Result<(), Error>
    where
        F: FnMut() + Send + 'static,
    {
        check(sig)?;
        check_catchable(sig)?;
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let table = self
            .inner
            .services
            .get_or_insert_with(SignalTable::default)?;
        let removed = Arc::new(AtomicBool::new(false));
        // Replace and insert under the table's lock, so that concurrent
        // adds for one signal leave exactly one entry. The process record
        // comes first: it reads the disposition from before signal-hook's
        // handler is installed for the pipe.
        let (pipe, replaced) = {
            let mut entries = crate::sync::lock(&table.entries);
            add_process_handler(sig)?;
            let pipe = match SignalPipe::open(sig) {
                Ok(pipe) => pipe,
                Err(e) => {
                    remove_process_handler(sig);
                    return Err(Error::Io(e));
                }
            };
            let old = entries
                .iter()
                .position(|e| e.sig == sig)
                .map(|at| entries.swap_remove(at));
            entries.push(Entry {
                sig,
                id: pipe.id,
                removed: removed.clone(),
            });
            (pipe, old)
        };
        if let Some(old) = replaced {
            release(old);
        }
        let callback = Arc::new(Mutex::new(callback));
        let weak = self.downgrade();
        let on_signals = move |n: usize| {
            if removed.load(Ordering::Acquire) {
                return false;
            }
            deliver(&weak, &callback, n);
            true
        };
        // The reader joins the readiness layer on the loop's thread: now if
        // the loop runs here, else at its next iteration (a byte that
        // arrives before is reported when the socket is registered).
        let read = pipe.read;
        if crate::sched::runs_here(self.inner.shared.id()) {
            SignalPipe::watch(read, self, on_signals)?;
        } else {
            let weak = self.downgrade();
            self.call_soon_threadsafe(move || {
                let Some(event_loop) = weak.upgrade() else {
                    return;
                };
                if let Err(e) = SignalPipe::watch(read, &event_loop, on_signals) {
                    event_loop.call_exception_handler(
                        crate::ExceptionContext::new(format!(
                            "cannot watch the signal pipe of signal {sig}"
                        ))
                        .with_error(Arc::new(e)),
                    );
                }
            })?;
        }
        Ok(())
    }

    /// Removes this loop's handler for `sig` (asyncio:
    /// `loop.remove_signal_handler`); returns whether there was one (so
    /// `false` for a signal that cannot be caught). When the last handler
    /// of a signal in the process goes, the signal again does what it did
    /// before evloop handled it (see the module docs). Closing the loop
    /// removes its handlers. Error: [`Error::InvalidArgument`] "invalid
    /// signal number 0".
    pub fn remove_signal_handler(&self, sig: i32) -> Result<bool, Error> {
        check(sig)?;
        let Some(table) = self.inner.services.get::<SignalTable>() else {
            return Ok(false);
        };
        let entry = {
            let mut entries = crate::sync::lock(&table.entries);
            entries
                .iter()
                .position(|e| e.sig == sig)
                .map(|at| entries.swap_remove(at))
        };
        match entry {
            Some(entry) => {
                release(entry);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
