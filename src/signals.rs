//! Unix signals (asyncio: `loop.add_signal_handler` /
//! `remove_signal_handler`), on the `signal-hook` crate.
//!
//! # How a signal reaches a loop
//! Each handler a loop registers for a signal owns a socket pair. The
//! write end goes to `signal_hook::low_level::pipe::register`: the process's
//! signal handler (async-signal-safe, installed by signal-hook once per
//! signal) writes one byte to it. The read end is watched with the loop's
//! own `add_reader`, so the byte wakes the loop like any readable fd, and
//! the loop runs the user's callback as an ordinary callback on its
//! thread: no thread per signal, no user code in signal context. A signal
//! that arrives while the loop is not running waits in the socket and is
//! delivered on the next run.
//!
//! asyncio allows handlers on the main thread's loop only (Python's
//! signal module is main-thread only); evloop allows them on any loop,
//! and **every loop that registered a signal gets it**: each has its own
//! socket, and signal-hook calls every registered action.
//!
//! # The disposition without handlers
//! signal-hook keeps its process-wide handler installed once it is; it
//! does not restore the previous disposition when its actions go. So that
//! removing the last evloop handler of a signal restores what the signal
//! did before, evloop registers, the first time it handles a signal whose
//! disposition was the default, signal-hook's *conditional default*: an
//! action that runs the default action (terminate, ignore, stop) exactly
//! while no evloop handler is registered for that signal. A signal that
//! was ignored before (Rust ignores `SIGPIPE`) stays ignored.

use crate::error::Error;
use crate::event_loop::EventLoop;
use std::io::Read;
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
    /// Loops with a handler for it.
    loops: usize,
}

static PROCESS: Mutex<Vec<ProcessSignal>> = Mutex::new(Vec::new());

/// One loop's handler for one signal.
struct Entry {
    sig: i32,
    id: signal_hook::SigId,
    /// The read end the loop watches (the write end belongs to
    /// signal-hook's action).
    read: Arc<UnixStream>,
}

/// A loop's signal handlers.
#[derive(Default)]
pub(crate) struct SignalTable {
    entries: Mutex<Vec<Entry>>,
}

impl SignalTable {
    /// Drops every handler of a closing loop (its readers go with the
    /// loop's reactor).
    pub(crate) fn clear(&self) {
        let entries = std::mem::take(&mut *crate::sync::lock(&self.entries));
        for entry in entries {
            release(entry);
        }
    }
}

/// Unregisters `entry`'s action, and restores the signal's disposition if
/// it was the last handler in the process.
fn release(entry: Entry) {
    signal_hook::low_level::unregister(entry.id);
    let mut process = crate::sync::lock(&PROCESS);
    if let Some(p) = process.iter_mut().find(|p| p.sig == entry.sig) {
        p.loops -= 1;
        if p.loops == 0 {
            if let Some(no_handler) = &p.no_handler {
                no_handler.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// asyncio's checks, with its wording.
fn check(sig: i32) -> Result<(), Error> {
    if !(1..NSIG).contains(&sig) {
        return Err(Error::InvalidArgument(format!(
            "sig {sig} out of range(1, {NSIG})"
        )));
    }
    // SIGKILL and SIGSTOP cannot be caught; signal-hook also refuses the
    // signals of faults (SIGSEGV, SIGILL, SIGFPE), whose handlers cannot
    // safely return to Rust code.
    if signal_hook::consts::FORBIDDEN.contains(&sig) {
        return Err(Error::InvalidArgument(format!(
            "sig {sig} cannot be caught"
        )));
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

impl EventLoop {
    /// Calls `callback` on this loop's thread, as an ordinary callback,
    /// each time the process receives `sig` (asyncio:
    /// `loop.add_signal_handler`). A second call for the same signal
    /// replaces the handler. Any loop may register (asyncio: only the main
    /// thread's), and every loop that registered a signal gets it. A
    /// callback that panics is reported to the exception handler, and the
    /// handler stays.
    ///
    /// Errors: [`Error::InvalidArgument`] with asyncio's wording, "sig 0
    /// out of range(1, 65)" or "sig 9 cannot be caught" (`SIGKILL`,
    /// `SIGSTOP`, and the fault signals `SIGSEGV`, `SIGILL`, `SIGFPE`);
    /// [`Error::Closed`]; [`Error::Io`] if the socket pair cannot be made.
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
    pub fn add_signal_handler<F>(&self, sig: i32, mut callback: F) -> Result<(), Error>
    where
        F: FnMut() + Send + 'static,
    {
        check(sig)?;
        if self.is_closed() {
            return Err(Error::Closed);
        }
        self.remove_signal_handler(sig)?;
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let read = Arc::new(read);
        let fd = read.as_raw_fd();
        let drain = read.clone();
        self.add_reader(fd, move || {
            // One callback per wake-up, however many signals came (as
            // asyncio: its wakeup fd coalesces too).
            let mut buf = [0u8; 64];
            while matches!((&*drain).read(&mut buf), Ok(n) if n > 0) {}
            callback();
        })?;
        let id = {
            let mut process = crate::sync::lock(&PROCESS);
            let at = match process.iter().position(|p| p.sig == sig) {
                Some(at) => at,
                None => {
                    let no_handler = if is_default(sig) {
                        let flag = Arc::new(AtomicBool::new(false));
                        signal_hook::flag::register_conditional_default(sig, flag.clone())
                            .map(|_| Some(flag))
                    } else {
                        Ok(None)
                    };
                    match no_handler {
                        Ok(no_handler) => {
                            process.push(ProcessSignal {
                                sig,
                                no_handler,
                                loops: 0,
                            });
                            process.len() - 1
                        }
                        Err(e) => {
                            drop(process);
                            self.remove_reader(fd);
                            return Err(Error::Io(e));
                        }
                    }
                }
            };
            // The loop's action first, then the default off: no moment in
            // which the signal would be acted on twice.
            let id = match signal_hook::low_level::pipe::register(sig, write) {
                Ok(id) => id,
                Err(e) => {
                    drop(process);
                    self.remove_reader(fd);
                    return Err(Error::Io(e));
                }
            };
            let p = &mut process[at];
            p.loops += 1;
            if let Some(no_handler) = &p.no_handler {
                no_handler.store(false, Ordering::SeqCst);
            }
            id
        };
        crate::sync::lock(&self.inner.signals.entries).push(Entry { sig, id, read });
        if self.is_closed() {
            // Closed meanwhile: the close may have missed this entry.
            self.inner.signals.clear();
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Removes this loop's handler for `sig` (asyncio:
    /// `loop.remove_signal_handler`); returns whether there was one. When
    /// the last handler of a signal in the process goes, the signal does
    /// again what it did before evloop handled it (see the module docs).
    /// Closing the loop removes its handlers. Errors: as
    /// [`EventLoop::add_signal_handler`] for a bad `sig`.
    pub fn remove_signal_handler(&self, sig: i32) -> Result<bool, Error> {
        check(sig)?;
        let entry = {
            let mut entries = crate::sync::lock(&self.inner.signals.entries);
            entries
                .iter()
                .position(|e| e.sig == sig)
                .map(|at| entries.swap_remove(at))
        };
        let Some(entry) = entry else {
            return Ok(false);
        };
        // The reader's callback (the user's closure) is dropped here,
        // outside the table's lock.
        self.remove_reader(entry.read.as_raw_fd());
        release(entry);
        Ok(true)
    }
}
