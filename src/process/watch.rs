//! Watching children exit, and reaping them.
//!
//! # pidfd (Linux 5.3+)
//! A child's exit is watched with a pidfd (`pidfd_open`) registered with
//! the loop's readiness layer: the pidfd turns readable when the child
//! exits, the handler reaps it (`waitpid` through `Child::try_wait`) and
//! reports the exit code on the loop's thread. No signal, no thread, and
//! nothing else in the process is disturbed.
//!
//! # SIGCHLD (no pidfds, or `EVLOOP_CHILD_WATCHER=sigchld`)
//! Where this process may not open pidfds (probed once: a kernel before
//! 5.3 says `ENOSYS`, a seccomp profile may say `EPERM`), or when the
//! environment asks for it, each loop with children registers
//! a socket pair with signal-hook for `SIGCHLD` (as its signal handlers
//! do, see `crate::signals`) and watches the read end: on every `SIGCHLD`
//! it tries to reap each of its own children with `waitpid(pid, WNOHANG)`
//! (asyncio's old `SafeChildWatcher`). It never calls `waitpid(-1)`, so
//! children spawned by other code are left to their owners. Code that
//! reaps with `waitpid(-1)` elsewhere in the process steals the exit codes
//! (as it would from asyncio).
//!
//! # Zombies and orphans
//! A child is reaped whether or not anyone still holds its transport or
//! `Process`: the watcher owns it. When a loop closes with children still
//! running, they are handed to a reaper thread each (a small stack,
//! blocked in `waitid(WNOWAIT)` until the child exits), so the loop closes
//! at once and no child is left a zombie.
//!
//! # Signalling
//! The `Child` lives behind a mutex with its exit status; reaping happens
//! under that mutex, and so does sending a signal after checking that the
//! child was not reaped. A pid is only reused after its reaping, so a
//! signal can never reach another process that got the same pid.

use super::transport::ChildEvent;
use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::readiness::{IoHandler, Registration, ScheduledIo};
use crate::sched::Local;
use crate::services::LoopService;
use crate::signals::SignalPipe;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::Child;
use std::sync::{Arc, Mutex};

/// A child and, once reaped, its return code.
pub(crate) struct ChildCell {
    child: Child,
    returncode: Option<i32>,
}

pub(crate) type SharedChild = Arc<Mutex<ChildCell>>;

/// Locks a child's cell (poisoning ignored: the cell holds no invariant a
/// panic could break).
pub(crate) fn lock_child(child: &Mutex<ChildCell>) -> std::sync::MutexGuard<'_, ChildCell> {
    crate::sync::lock(child)
}

/// Called once, on the loop's thread (or by the closing loop).
pub(crate) type OnExit = Box<dyn FnOnce(ChildEvent) + Send>;

/// asyncio's return code: the exit status, or minus the signal that
/// killed the child.
fn returncode(status: std::process::ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => -sig,
        (None, None) => -1,
    }
}

impl ChildCell {
    pub(crate) fn new(child: Child) -> SharedChild {
        Arc::new(Mutex::new(ChildCell {
            child,
            returncode: None,
        }))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the child was reaped.
    pub(crate) fn exited(&self) -> bool {
        self.returncode.is_some()
    }

    /// Reaps the child if it has exited; its return code once it has.
    fn reap(&mut self) -> Option<i32> {
        if self.returncode.is_none() {
            match self.child.try_wait() {
                Ok(Some(status)) => self.returncode = Some(returncode(status)),
                Ok(None) => {}
                // ECHILD: someone else reaped it (a waitpid(-1) elsewhere):
                // the code is lost, as asyncio reports it.
                Err(_) => {
                    crate::util::log_warning(format_args!(
                        "Unknown child process pid {}, will report returncode 255",
                        self.child.id()
                    ));
                    self.returncode = Some(255);
                }
            }
        }
        self.returncode
    }

    /// Sends `sig` unless the child was reaped (asyncio's
    /// `ProcessLookupError`, `ESRCH`). Called with the cell locked, which
    /// is what makes it safe against pid reuse.
    pub(crate) fn send_signal(&mut self, sig: i32) -> Result<(), Error> {
        if self.returncode.is_some() {
            return Err(Error::Io(io::Error::from_raw_os_error(libc::ESRCH)));
        }
        // Safety: kill(2) takes plain integers; the pid is our unreaped
        // child (we hold the lock reaping takes), so it names no other
        // process.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, sig) } != 0 {
            return Err(Error::Io(io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// Blocks until `pid` has exited, without reaping it (`WNOWAIT`), so
/// that the reaping can happen under the cell's lock.
fn wait_exit(pid: u32) {
    loop {
        // Safety: an all-zero siginfo_t is valid for waitid to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // Safety: plain integers and a valid out-pointer we own.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// Waits for `child` (just killed) and reaps it, blocking: for a child
/// that could not be watched.
pub(crate) fn reap_blocking(child: &SharedChild) {
    let pid = lock_child(child).pid();
    wait_exit(pid);
    let _ = lock_child(child).reap();
}

/// Reaps `child` (locked) and reports its exit if it has exited.
fn try_finish(child: &SharedChild, on_exit: &mut Option<OnExit>) -> bool {
    let code = lock_child(child).reap();
    match code {
        Some(code) => {
            if let Some(on_exit) = on_exit.take() {
                on_exit(ChildEvent::Exited(code));
            }
            true
        }
        None => false,
    }
}

/// The loop closes: the child is reaped now if it exited, or handed to a
/// reaper thread; whoever waited is told the loop closed.
fn give_up(child: SharedChild, on_exit: Option<OnExit>) {
    let code = lock_child(&child).reap();
    if code.is_none() {
        orphan(child);
    }
    if let Some(on_exit) = on_exit {
        on_exit(ChildEvent::LoopClosed(code));
    }
}

/// Whether to watch with pidfds: unless the environment says
/// `EVLOOP_CHILD_WATCHER=sigchld`, if this process may open one (a kernel
/// before 5.3 says `ENOSYS`, a seccomp profile may say `EPERM`; either
/// way the SIGCHLD watcher serves instead). Decided once per process, at
/// the first spawn.
fn use_pidfd() -> bool {
    static USE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USE.get_or_init(|| {
        std::env::var("EVLOOP_CHILD_WATCHER").as_deref() != Ok("sigchld")
            && pidfd_open(std::process::id()).is_ok()
    })
}

/// Watches `child` on `event_loop` (loop thread): `on_exit` runs on the
/// loop's thread once the child has exited and been reaped.
pub(crate) fn watch(
    event_loop: &EventLoop,
    child: SharedChild,
    on_exit: OnExit,
) -> Result<(), Error> {
    if use_pidfd() {
        let pid = lock_child(&child).pid();
        let pidfd = pidfd_open(pid)?;
        return watch_pidfd(event_loop, pidfd, child, on_exit);
    }
    event_loop
        .inner
        .services
        .get_or_insert_with(ChildTable::default)?
        .watch(event_loop, child, on_exit)
}

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // Safety: the pidfd_open system call takes a pid and flags and returns
    // a new descriptor, which we own from here.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // Safety: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The pidfd's handler: owns the pidfd, its registration and the child.
struct PidfdWatch {
    pidfd: OwnedFd,
    registration: Option<Registration>,
    child: SharedChild,
    on_exit: Option<OnExit>,
}

impl PidfdWatch {
    fn release(&mut self) {
        if let Some(mut reg) = self.registration.take() {
            let raw = self.pidfd.as_raw_fd();
            reg.deregister(&mut mio::unix::SourceFd(&raw));
        }
    }
}

impl IoHandler for PidfdWatch {
    fn ready(&mut self, _io: &ScheduledIo, _bits: usize, _local: &dyn Local) -> bool {
        // A pidfd turns readable only once the child is a zombie, so the
        // reap succeeds on the first event.
        if try_finish(&self.child, &mut self.on_exit) {
            self.release();
            return false;
        }
        true
    }

    fn loop_closed(&mut self) {
        self.release();
        give_up(self.child.clone(), self.on_exit.take());
    }
}

fn watch_pidfd(
    event_loop: &EventLoop,
    pidfd: OwnedFd,
    child: SharedChild,
    on_exit: OnExit,
) -> Result<(), Error> {
    let raw = pidfd.as_raw_fd();
    let registration = event_loop.register_source(&mut mio::unix::SourceFd(&raw))?;
    registration.attach_owned(move |registration| {
        Box::new(PidfdWatch {
            pidfd,
            registration: Some(registration),
            child,
            on_exit: Some(on_exit),
        })
    })
}

/// Hands a child still running when its loop closed to a reaper thread.
fn orphan(child: SharedChild) {
    let pid = lock_child(&child).pid();
    let spawned = std::thread::Builder::new()
        .name("evloop-reaper".into())
        .stack_size(32 * 1024)
        .spawn(move || {
            wait_exit(pid);
            let _ = lock_child(&child).reap();
        });
    if let Err(e) = spawned {
        crate::util::log_error(format_args!(
            "evloop: cannot start a thread to reap child {pid}: {e}"
        ));
    }
}

// ----- the SIGCHLD watcher --------------------------------------------------------------

struct Watched {
    child: SharedChild,
    on_exit: Option<OnExit>,
}

struct Sigchld {
    id: signal_hook::SigId,
    children: Vec<Watched>,
}

/// A loop's children under the SIGCHLD watcher (a service of the loop,
/// created at its first child when pidfds are not used).
#[derive(Default)]
struct ChildTable {
    sigchld: Arc<Mutex<Option<Sigchld>>>,
}

impl LoopService for ChildTable {
    /// The loop closes: the signal action goes, running children go to
    /// reaper threads.
    fn close(&self) {
        let taken = crate::sync::lock(&*self.sigchld).take();
        if let Some(s) = taken {
            signal_hook::low_level::unregister(s.id);
            for w in s.children {
                give_up(w.child, w.on_exit);
            }
        }
    }
}

impl ChildTable {
    /// Watches `child` (loop thread): starts the SIGCHLD watcher at the
    /// first child.
    fn watch(
        &self,
        event_loop: &EventLoop,
        child: SharedChild,
        on_exit: OnExit,
    ) -> Result<(), Error> {
        let started = crate::sync::lock(&*self.sigchld).is_some();
        if !started {
            let pipe = SignalPipe::open(libc::SIGCHLD)?;
            let table = Arc::downgrade(&self.sigchld);
            let watched =
                SignalPipe::watch(pipe.read, event_loop, move |_| match table.upgrade() {
                    Some(table) => {
                        reap_table(&table);
                        true
                    }
                    None => false,
                });
            if let Err(e) = watched {
                signal_hook::low_level::unregister(pipe.id);
                return Err(e);
            }
            *crate::sync::lock(&*self.sigchld) = Some(Sigchld {
                id: pipe.id,
                children: Vec::new(),
            });
        }
        match &mut *crate::sync::lock(&*self.sigchld) {
            Some(s) => s.children.push(Watched {
                child,
                on_exit: Some(on_exit),
            }),
            None => return Err(Error::Closed),
        }
        // It may have exited before the SIGCHLD watcher existed.
        reap_table(&self.sigchld);
        Ok(())
    }
}

/// Reaps whichever of the table's children exited, and reports them
/// outside the table's lock.
fn reap_table(table: &Mutex<Option<Sigchld>>) {
    let exited: Vec<Watched> = {
        let mut guard = crate::sync::lock(table);
        let Some(s) = guard.as_mut() else { return };
        let mut exited = Vec::new();
        let mut i = 0;
        while i < s.children.len() {
            if lock_child(&s.children[i].child).reap().is_some() {
                exited.push(s.children.swap_remove(i));
            } else {
                i += 1;
            }
        }
        exited
    };
    for mut w in exited {
        try_finish(&w.child, &mut w.on_exit);
    }
}
