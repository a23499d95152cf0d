//! Subprocess, pipe and signal details the main tests leave open: a
//! child's stdin given as a descriptor (a pipe, a file), the
//! SubprocessTransport's own `terminate` and `send_signal`, a named FIFO
//! through `connect_read_pipe` / `connect_write_pipe`, and the fault
//! signals `add_signal_handler` refuses.

mod common;

use common::net::{Ev, Rec, lost, received, run_until};
use common::{Log, within};
use evloop::{Error, EventLoop, ExtraInfo, Stdio, SubprocessOptions, SubprocessProtocol};
use evloop::{SubprocessTransport, Transport};
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// A new pipe: (read end, write end), both close-on-exec.
fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // Safety: `fds` is a valid out-array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // Safety: both fds were just created and are owned by nobody else.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

/// A path no other test (or run) uses, in the temp directory.
fn temp_path(what: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("evloop-details-{what}-{}-{n}", std::process::id()))
}

/// Removes the file at the path when dropped (also when a test fails).
struct Remove(PathBuf);

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ----- stdin from a given descriptor ------------------------------------------------------

#[test]
fn a_childs_stdin_may_be_a_pipe_we_write_into() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let (r, mut w) = pipe();
        let (out, code) = lp
            .run_until_complete(async {
                let options = SubprocessOptions {
                    stdin: Some(Stdio::Fd(r.into())),
                    stdout: Some(Stdio::Pipe),
                    ..Default::default()
                };
                let mut child = lp.create_subprocess_exec("cat", [""; 0], options).await?;
                // Not a pipe to the Process: no stdin stream.
                assert!(child.stdin.is_none());
                assert!(child.transport().get_pipe_transport(0).is_none());
                // Written after the child started; our end closed, the
                // child reads EOF and exits.
                w.write_all(b"through our own pipe\n").unwrap();
                drop(w);
                let (out, _) = child.communicate(None).await?;
                Ok::<_, Error>((out.unwrap(), child.returncode()))
            })
            .unwrap()
            .unwrap();
        assert_eq!(out, b"through our own pipe\n");
        assert_eq!(code, Some(0));
    });
}

#[test]
fn a_childs_stdin_may_be_a_file_read_from_its_offset() {
    within(LIMIT, || {
        let path = temp_path("stdin-file");
        let _remove = Remove(path.clone());
        std::fs::write(&path, b"skip: the rest is read\n").unwrap();
        let mut file = File::open(&path).unwrap();
        // The child shares the open file: it reads from where we are.
        file.seek(SeekFrom::Start(6)).unwrap();
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let rec = SubRec { log: log.clone() };
        let t = lp
            .run_until_complete(lp.subprocess_exec(
                move || rec,
                "cat",
                [""; 0],
                SubprocessOptions {
                    stdin: Some(Stdio::Fd(file.into())),
                    stdout: Some(Stdio::Pipe),
                    stderr: Some(Stdio::DevNull),
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap();
        assert!(
            t.get_pipe_transport(0).is_none(),
            "stdin is no pipe of ours"
        );
        assert!(t.get_pipe_transport(1).is_some());
        assert_eq!(lp.run_until_complete(t.wait()).unwrap().unwrap(), 0);
        run_until(&lp, LIMIT, || log.get().contains(&Sub::Lost));
        assert_eq!(sub_data(&log, 1), b"the rest is read\n");
    });
}

// ----- SubprocessTransport's own terminate and send_signal ---------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Sub {
    Made,
    Data(i32, Vec<u8>),
    PipeLost(i32),
    Exited,
    Lost,
}

struct SubRec {
    log: Log<Sub>,
}

impl SubprocessProtocol for SubRec {
    fn connection_made(&mut self, _transport: SubprocessTransport) {
        self.log.push(Sub::Made);
    }
    fn pipe_data_received(&mut self, fd: i32, data: &[u8]) {
        self.log.push(Sub::Data(fd, data.to_vec()));
    }
    fn pipe_connection_lost(&mut self, fd: i32, _error: Option<io::Error>) {
        self.log.push(Sub::PipeLost(fd));
    }
    fn process_exited(&mut self) {
        self.log.push(Sub::Exited);
    }
    fn connection_lost(&mut self, _error: Option<io::Error>) {
        self.log.push(Sub::Lost);
    }
}

fn sub_data(log: &Log<Sub>, fd: i32) -> Vec<u8> {
    log.get()
        .into_iter()
        .flat_map(|e| match e {
            Sub::Data(f, d) if f == fd => d,
            _ => Vec::new(),
        })
        .collect()
}

/// A `sleep 30` driven by a protocol, with all three streams piped (as
/// asyncio's `subprocess_exec` default).
fn sleeper(lp: &EventLoop, log: &Log<Sub>) -> SubprocessTransport {
    let rec = SubRec { log: log.clone() };
    lp.run_until_complete(lp.subprocess_exec(
        move || rec,
        "sleep",
        ["30"],
        SubprocessOptions::default(),
    ))
    .unwrap()
    .unwrap()
}

fn esrch(result: Result<(), Error>) -> bool {
    matches!(&result, Err(e) if e.os_error().and_then(io::Error::raw_os_error) == Some(libc::ESRCH))
}

#[test]
fn the_transports_own_terminate_and_send_signal_give_negative_returncodes() {
    // asyncio: transport.terminate() / transport.send_signal(sig) on a
    // running child; returncode is minus the signal.
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        for (how, sig) in [
            ("terminate", libc::SIGTERM),
            ("send_signal", libc::SIGUSR1),
            // Not SIGINT: a shell starts background jobs with it ignored,
            // and the child would inherit that (as with asyncio).
            ("send_signal", libc::SIGUSR2),
        ] {
            let log = Log::new();
            let t = sleeper(&lp, &log);
            assert_eq!(t.get_returncode(), None);
            if how == "terminate" {
                t.terminate().unwrap();
            } else {
                t.send_signal(sig).unwrap();
            }
            let code = lp.run_until_complete(t.wait()).unwrap().unwrap();
            assert_eq!(code, -sig, "{how}({sig})");
            assert_eq!(t.get_returncode(), Some(-sig));
            run_until(&lp, LIMIT, || log.get().contains(&Sub::Lost));
            let events = log.get();
            assert_eq!(events.first(), Some(&Sub::Made));
            assert!(events.contains(&Sub::Exited), "{events:?}");
            for fd in [1, 2] {
                assert!(events.contains(&Sub::PipeLost(fd)), "{events:?}");
            }
            assert_eq!(events.last(), Some(&Sub::Lost));
            // Finished: asyncio's ProcessLookupError, through the
            // transport too.
            assert!(esrch(t.send_signal(libc::SIGTERM)));
            assert!(esrch(t.terminate()));
            assert!(esrch(t.kill()));
        }
        // An invalid signal number, straight from the transport.
        let log = Log::new();
        let t = sleeper(&lp, &log);
        let err = t.send_signal(999).unwrap_err();
        assert_eq!(err.os_error().unwrap().raw_os_error(), Some(libc::EINVAL));
        assert_eq!(t.get_returncode(), None, "an invalid signal did nothing");
        t.kill().unwrap();
        let code = lp.run_until_complete(t.wait()).unwrap().unwrap();
        assert_eq!(code, -libc::SIGKILL);
    });
}

// ----- a named FIFO --------------------------------------------------------------------------

/// Makes a FIFO at `path` and opens both ends: (read end, write end).
/// The read end is opened first without blocking, so that opening the
/// write end finds a reader and does not block either.
fn fifo(path: &Path) -> (OwnedFd, OwnedFd) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // Safety: `c` is a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "{}",
        io::Error::last_os_error()
    );
    let open = |flags: i32| {
        // Safety: as above; the descriptor returned is ours alone.
        let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
        assert!(fd >= 0, "{}", io::Error::last_os_error());
        // Safety: `fd` was just opened and is owned by nobody else.
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    let read = open(libc::O_RDONLY | libc::O_NONBLOCK);
    let write = open(libc::O_WRONLY);
    (read, write)
}

#[test]
fn a_named_fifo_works_with_connect_read_pipe_and_connect_write_pipe() {
    within(LIMIT, || {
        let path = temp_path("fifo");
        let _remove = Remove(path.clone());
        let (read_end, write_end) = fifo(&path);
        let lp = EventLoop::new().unwrap();
        let (read_log, write_log) = (Log::new(), Log::new());
        let (tx, rx) = mpsc::channel();
        let rec = Rec::new(&read_log).sending(&tx);
        lp.run_until_complete(lp.connect_read_pipe(move || rec, read_end))
            .unwrap()
            .unwrap();
        let reader: Transport = rx.recv_timeout(LIMIT).unwrap();
        let rec = Rec::new(&write_log);
        let writer = lp
            .run_until_complete(lp.connect_write_pipe(move || rec, write_end))
            .unwrap()
            .unwrap();
        for t in [&reader, &writer] {
            assert!(matches!(t.get_extra_info("pipe"), Some(ExtraInfo::Pipe(_))));
            assert!(t.get_extra_info("socket").is_none());
        }
        assert!(reader.is_reading());
        assert!(writer.can_write_eof());
        assert!(!reader.can_write_eof());
        // Far more than a FIFO holds (64 KiB): the writer buffers, pauses
        // and resumes as the reader on the same loop drains it.
        let payload: Vec<u8> = (0..1024 * 1024).map(|i| (i % 253) as u8).collect();
        lp.run_until_complete(async {
            writer.write(&payload).unwrap();
            assert!(writer.get_write_buffer_size() > 0);
            writer.write_eof().unwrap();
            assert!(writer.is_closing());
        })
        .unwrap();
        run_until(&lp, LIMIT, || {
            lost(&read_log).is_some() && lost(&write_log).is_some()
        });
        assert!(received(&read_log) == payload, "the FIFO changed the bytes");
        let events = read_log.get();
        assert_eq!(events.first(), Some(&Ev::Made));
        assert_eq!(&events[events.len() - 2..], &[Ev::Eof, Ev::Lost(None)]);
        let events = write_log.get();
        assert_eq!(events.first(), Some(&Ev::Made));
        assert!(events.contains(&Ev::Pause), "{events:?}");
        assert!(events.contains(&Ev::Resume), "{events:?}");
        assert_eq!(events.last(), Some(&Ev::Lost(None)));
        assert_eq!(writer.get_write_buffer_size(), 0);
    });
}

#[test]
fn a_fifo_written_by_another_process_reaches_connect_read_pipe() {
    // The usual use: a FIFO by name, written by another program.
    within(LIMIT, || {
        let path = temp_path("fifo-child");
        let _remove = Remove(path.clone());
        // The child opens the FIFO by name. Our write end stays open until
        // the child is done: the reader must not see the end of the
        // stream before the child has written.
        let (read_end, write_end) = fifo(&path);
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let rec = Rec::new(&log);
        lp.run_until_complete(lp.connect_read_pipe(move || rec, read_end))
            .unwrap()
            .unwrap();
        let code = lp
            .run_until_complete(async {
                let child = lp
                    .create_subprocess_exec(
                        "sh",
                        ["-c", "printf 'by name' > \"$1\"", "sh"]
                            .into_iter()
                            .map(std::ffi::OsString::from)
                            .chain([path.clone().into_os_string()]),
                        SubprocessOptions::default(),
                    )
                    .await?;
                child.wait().await
            })
            .unwrap()
            .unwrap();
        assert_eq!(code, 0);
        drop(write_end);
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert_eq!(received(&log), b"by name");
        let events = log.get();
        assert_eq!(&events[events.len() - 2..], &[Ev::Eof, Ev::Lost(None)]);
    });
}

// ----- signals refused ---------------------------------------------------------------------

/// The current disposition of `sig` (handler address and flags).
fn disposition(sig: i32) -> (libc::sighandler_t, i32) {
    // Safety: sigaction with a null new action only reads the current one
    // into `old`, which we own.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(sig, std::ptr::null(), &mut old), 0);
        (old.sa_sigaction, old.sa_flags)
    }
}

#[test]
fn fault_signals_are_refused_with_a_typed_error_and_left_alone() {
    // evloop refuses what signal-hook refuses (documented deviation:
    // asyncio accepts SIGSEGV, SIGILL and SIGFPE); SIGKILL and SIGSTOP
    // are asyncio's "cannot be caught" too.
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        for sig in [
            libc::SIGSEGV,
            libc::SIGILL,
            libc::SIGFPE,
            libc::SIGKILL,
            libc::SIGSTOP,
        ] {
            let before = disposition(sig);
            let err = lp.add_signal_handler(sig, || ()).unwrap_err();
            assert!(matches!(err, Error::Runtime(_)), "{sig}: {err:?}");
            assert_eq!(err.to_string(), format!("sig {sig} cannot be caught"));
            // asyncio: a valid signal with no handler is simply not there.
            assert!(!lp.remove_signal_handler(sig).unwrap());
            // Nothing was installed: the disposition (Rust's own SIGSEGV
            // handler for stack overflows included) is what it was.
            assert_eq!(disposition(sig), before, "sig {sig}");
        }
        // Nothing half-registered: no source for a refused signal.
        assert_eq!(lp.stats().io_sources, 0);
        assert_eq!(lp.stats().watched_fds, 0);
        lp.close().unwrap();
    });
}

// ----- signals reach the child, never a stranger with its pid ----------------------------

/// Code elsewhere in the process reaps the child behind evloop's back
/// (`waitpid`), and its pid goes to a new process: `send_signal` must not
/// reach that stranger. With pidfds (the default on Linux 5.3+) the
/// signal goes through the child's pidfd, which names it and no other.
/// Needs to steer the kernel's next pid (`/proc/sys/kernel/ns_last_pid`,
/// root), in a child process of this test binary.
#[test]
fn a_signal_never_reaches_a_stranger_that_got_the_childs_pid() {
    let name = "a_signal_never_reaches_a_stranger_that_got_the_childs_pid";
    if let Some((status, out)) = common::run_in_child(name, LIMIT, stranger_body) {
        assert!(status.success(), "{status:?}\n{out}");
    }
}

fn stranger_body() {
    const NS_LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";
    if std::fs::OpenOptions::new()
        .write(true)
        .open(NS_LAST_PID)
        .is_err()
    {
        eprintln!("cannot steer pids here (not root): nothing to check");
        std::process::exit(0);
    }
    if std::env::var("EVLOOP_CHILD_WATCHER").as_deref() == Ok("sigchld") {
        std::process::exit(0); // the pid path's limit is documented
    }
    let lp = EventLoop::new().unwrap();
    let child = lp
        .run_until_complete(lp.create_subprocess_exec(
            "sleep",
            ["30"],
            SubprocessOptions::default(),
        ))
        .unwrap()
        .unwrap();
    let pid = child.pid() as libc::pid_t;
    // Killed and reaped behind the loop's back (the loop does not run).
    // Safety: plain integers; `pid` is our own child.
    unsafe {
        assert_eq!(libc::kill(pid, libc::SIGKILL), 0);
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
    }
    // A stranger gets the pid (a few tries: other processes may take it).
    let mut stranger = None;
    for _ in 0..50 {
        std::fs::write(NS_LAST_PID, (pid - 1).to_string()).unwrap();
        let s = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        if s.id() as libc::pid_t == pid {
            stranger = Some(s);
            break;
        }
        let mut s = s;
        s.kill().unwrap();
        s.wait().unwrap();
    }
    let mut stranger = stranger.expect("the pid was reused");
    let sent = child.send_signal(libc::SIGKILL);
    assert!(
        matches!(&sent, Err(Error::Io(e)) if e.raw_os_error() == Some(libc::ESRCH)),
        "{sent:?}"
    );
    assert!(stranger.try_wait().unwrap().is_none(), "the stranger lives");
    stranger.kill().unwrap();
    stranger.wait().unwrap();
    lp.close().unwrap();
    std::process::exit(0);
}
