//! Subprocesses (asyncio's "Running Subprocesses"): the loop methods with a
//! SubprocessProtocol, the high-level Process with streams, exit codes and
//! signals, and the faults: a missing program, a killed child, writing to
//! a child that exited, a panicking protocol, children that outlive their
//! Process or their loop (never left zombies), the SIGCHLD watcher.

mod common;

use common::net::run_until;
use common::{Log, record_exceptions, within};
use evloop::{Error, EventLoop, Stdio, SubprocessOptions, SubprocessProtocol, SubprocessTransport};
use std::future::Future;
use std::io;
use std::sync::mpsc;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Made,
    Data(i32, Vec<u8>),
    PipeLost(i32, Option<io::ErrorKind>),
    Exited,
    Lost,
}

struct Rec {
    log: Log<Ev>,
    transports: Option<mpsc::Sender<SubprocessTransport>>,
    panic_on_data: bool,
}

impl Rec {
    fn new(log: &Log<Ev>) -> Rec {
        Rec {
            log: log.clone(),
            transports: None,
            panic_on_data: false,
        }
    }
}

impl SubprocessProtocol for Rec {
    fn connection_made(&mut self, transport: SubprocessTransport) {
        self.log.push(Ev::Made);
        if let Some(tx) = &self.transports {
            let _ = tx.send(transport);
        }
    }
    fn pipe_data_received(&mut self, fd: i32, data: &[u8]) {
        if self.panic_on_data {
            panic!("pipe_data_received panicked");
        }
        self.log.push(Ev::Data(fd, data.to_vec()));
    }
    fn pipe_connection_lost(&mut self, fd: i32, error: Option<io::Error>) {
        self.log.push(Ev::PipeLost(fd, error.map(|e| e.kind())));
    }
    fn process_exited(&mut self) {
        self.log.push(Ev::Exited);
    }
    fn connection_lost(&mut self, _error: Option<io::Error>) {
        self.log.push(Ev::Lost);
    }
}

fn data_of(log: &Log<Ev>, fd: i32) -> Vec<u8> {
    log.get()
        .into_iter()
        .flat_map(|e| match e {
            Ev::Data(f, d) if f == fd => d,
            _ => Vec::new(),
        })
        .collect()
}

/// Only stdin a pipe (the rest inherited, as asyncio's default).
fn stdin_pipe() -> SubprocessOptions {
    SubprocessOptions {
        stdin: Some(Stdio::Pipe),
        ..Default::default()
    }
}

fn pipes() -> SubprocessOptions {
    SubprocessOptions {
        stdin: Some(Stdio::Pipe),
        stdout: Some(Stdio::Pipe),
        stderr: Some(Stdio::Pipe),
        ..Default::default()
    }
}

/// Whether `pid` is gone from the process table (exited and reaped).
fn reaped(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn subprocess_exec_calls_the_protocol_in_asyncio_order() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let rec = Rec::new(&log);
        let t = lp
            .run_until_complete(lp.subprocess_exec(
                move || rec,
                "sh",
                ["-c", "echo out; echo err >&2; exit 3"],
                SubprocessOptions::default(),
            ))
            .unwrap()
            .unwrap();
        // As asyncio: the call returns once connection_made has run.
        assert_eq!(log.get().first(), Some(&Ev::Made));
        assert!(t.get_pid() > 0);
        assert!(t.get_pipe_transport(0).is_some());
        assert!(t.get_pipe_transport(3).is_none());
        let code = lp.run_until_complete(t.wait()).unwrap().unwrap();
        assert_eq!(code, 3);
        assert_eq!(t.get_returncode(), Some(3));
        run_until(&lp, LIMIT, || log.get().last() == Some(&Ev::Lost));
        let events = log.get();
        assert_eq!(events.first(), Some(&Ev::Made));
        assert_eq!(events.last(), Some(&Ev::Lost));
        assert_eq!(data_of(&log, 1), b"out\n");
        assert_eq!(data_of(&log, 2), b"err\n");
        for fd in 0..3 {
            assert!(events.contains(&Ev::PipeLost(fd, None)), "{events:?}");
        }
        assert_eq!(events.iter().filter(|e| **e == Ev::Exited).count(), 1);
        // After the end: the pipes closed, and no process to signal.
        assert!(t.get_pipe_transport(1).unwrap().is_closing());
        let err = t.kill().unwrap_err();
        assert_eq!(err.os_error().unwrap().raw_os_error(), Some(libc::ESRCH));
        assert!(reaped(t.get_pid()));
    });
}

#[test]
fn subprocess_shell_runs_through_bin_sh_and_the_stdin_pipe_reaches_the_child() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let (tx, rx) = mpsc::channel();
        let mut rec = Rec::new(&log);
        rec.transports = Some(tx);
        let t = lp
            .run_until_complete(lp.subprocess_shell(move || rec, "echo $0; tr a-z A-Z", pipes()))
            .unwrap()
            .unwrap();
        let _made = rx.recv_timeout(LIMIT).unwrap();
        let stdin = t.get_pipe_transport(0).unwrap();
        lp.run_until_complete(async {
            stdin.write(b"shout\n").unwrap();
            stdin.write_eof().unwrap();
        })
        .unwrap();
        assert_eq!(lp.run_until_complete(t.wait()).unwrap().unwrap(), 0);
        assert_eq!(data_of(&log, 1), b"/bin/sh\nSHOUT\n");
    });
}

#[test]
fn a_missing_program_is_asyncios_file_not_found_and_leaves_nothing_behind() {
    if let Some((status, out)) = common::run_in_child(
        "a_missing_program_is_asyncios_file_not_found_and_leaves_nothing_behind",
        LIMIT,
        || {
            let lp = EventLoop::new().unwrap();
            let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
            // Warm up whatever the loop opens lazily; the child reaped.
            lp.run_until_complete(async {
                let child = lp
                    .create_subprocess_exec("true", [""; 0], SubprocessOptions::default())
                    .await
                    .unwrap();
                child.wait().await.unwrap()
            })
            .unwrap();
            let before = fds();
            for _ in 0..3 {
                let err = lp
                    .run_until_complete(lp.subprocess_exec(
                        || Rec::new(&Log::new()),
                        "evloop-no-such-program",
                        [""; 0],
                        SubprocessOptions::default(),
                    ))
                    .unwrap()
                    .unwrap_err();
                assert_eq!(
                    err.to_string(),
                    "[Errno 2] No such file or directory: 'evloop-no-such-program'"
                );
                assert_eq!(err.os_error().unwrap().kind(), io::ErrorKind::NotFound);
            }
            assert_eq!(fds(), before, "descriptors leaked");
        },
    ) {
        assert!(status.success(), "{out}");
    }
}

#[test]
fn a_child_killed_by_a_signal_has_a_negative_returncode() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let code = lp
            .run_until_complete(async {
                let child = lp
                    .create_subprocess_exec("sleep", ["30"], SubprocessOptions::default())
                    .await?;
                assert_eq!(child.returncode(), None);
                child.kill()?;
                child.wait().await
            })
            .unwrap()
            .unwrap();
        assert_eq!(code, -libc::SIGKILL);
        let code = lp
            .run_until_complete(async {
                let child = lp
                    .create_subprocess_exec("sleep", ["30"], SubprocessOptions::default())
                    .await?;
                child.terminate()?;
                let code = child.wait().await?;
                assert_eq!(child.returncode(), Some(code));
                // asyncio: ProcessLookupError once it is gone.
                let err = child.send_signal(libc::SIGTERM).unwrap_err();
                assert_eq!(err.os_error().unwrap().raw_os_error(), Some(libc::ESRCH));
                Ok::<_, Error>(code)
            })
            .unwrap()
            .unwrap();
        assert_eq!(code, -libc::SIGTERM);
    });
}

#[test]
fn an_invalid_signal_number_is_einval() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        lp.run_until_complete(async {
            let options = stdin_pipe();
            let child = lp.create_subprocess_exec("cat", [""; 0], options).await?;
            let err = child.send_signal(999).unwrap_err();
            assert_eq!(err.os_error().unwrap().raw_os_error(), Some(libc::EINVAL));
            child.stdin.as_ref().unwrap().close();
            assert_eq!(child.wait().await?, 0);
            Ok::<_, Error>(())
        })
        .unwrap()
        .unwrap();
    });
}

#[test]
fn communicate_moves_megabytes_both_ways_without_deadlock() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let input: Vec<u8> = (0..8 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let (out, err, code) = lp
            .run_until_complete(async {
                let options = SubprocessOptions {
                    stdin: Some(Stdio::Pipe),
                    stdout: Some(Stdio::Pipe),
                    stderr: Some(Stdio::Pipe),
                    ..Default::default()
                };
                // cat echoes stdin to stdout and to stderr (through tee),
                // so all three pipes are full at once.
                let mut child = lp
                    .create_subprocess_shell("tee /dev/stderr", options)
                    .await?;
                let (out, err) = child.communicate(Some(&input)).await?;
                Ok::<_, Error>((out, err, child.returncode()))
            })
            .unwrap()
            .unwrap();
        assert_eq!(code, Some(0));
        assert!(out.as_deref() == Some(&input[..]), "stdout differs");
        assert!(err.as_deref() == Some(&input[..]), "stderr differs");
    });
}

#[test]
fn stderr_to_stdout_and_devnull_and_inherited_streams() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        lp.run_until_complete(async {
            let options = SubprocessOptions {
                stdout: Some(Stdio::Pipe),
                stderr: Some(Stdio::Stdout),
                ..Default::default()
            };
            let mut child = lp
                .create_subprocess_shell("echo one; echo two >&2", options)
                .await?;
            assert!(child.stderr.is_none());
            let (out, err) = child.communicate(None).await?;
            assert_eq!(out.unwrap(), b"one\ntwo\n");
            assert!(err.is_none());

            let options = SubprocessOptions {
                stdin: Some(Stdio::DevNull),
                stdout: Some(Stdio::Pipe),
                stderr: Some(Stdio::DevNull),
                ..Default::default()
            };
            let mut child = lp
                .create_subprocess_shell("cat; echo done; echo hidden >&2", options)
                .await?;
            assert!(child.stdin.is_none());
            let (out, _) = child.communicate(None).await?;
            assert_eq!(out.unwrap(), b"done\n");

            // A given descriptor: the child writes into our own pipe.
            let (r, w) = std::os::unix::net::UnixStream::pair().unwrap();
            let options = SubprocessOptions {
                stdout: Some(Stdio::Fd(w.into())),
                ..Default::default()
            };
            let child = lp
                .create_subprocess_exec("echo", ["given"], options)
                .await?;
            assert_eq!(child.wait().await?, 0);
            let mut got = String::new();
            io::Read::read_to_string(&mut &r, &mut got).unwrap();
            assert_eq!(got, "given\n");

            let err = lp
                .create_subprocess_exec(
                    "true",
                    [""; 0],
                    SubprocessOptions {
                        stdout: Some(Stdio::Stdout),
                        ..Default::default()
                    },
                )
                .await
                .unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)));
            Ok::<_, Error>(())
        })
        .unwrap()
        .unwrap();
    });
}

#[test]
fn cwd_env_and_process_group_reach_the_child() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let dir = std::env::temp_dir().canonicalize().unwrap();
        let out = lp
            .run_until_complete(async {
                let options = SubprocessOptions {
                    stdout: Some(Stdio::Pipe),
                    cwd: Some(dir.clone()),
                    env: Some(vec![("EVLOOP_X".into(), "42".into())]),
                    process_group: Some(0),
                    ..Default::default()
                };
                let mut child = lp
                    .create_subprocess_exec(
                        "/bin/sh",
                        ["-c", "pwd; echo $EVLOOP_X; echo ${HOME:-none}; ps -o pgid= -p $$ | tr -d ' '; echo $$"],
                        options,
                    )
                    .await?;
                let (out, _) = child.communicate(None).await?;
                Ok::<_, Error>(String::from_utf8(out.unwrap()).unwrap())
            })
            .unwrap()
            .unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], dir.to_str().unwrap());
        assert_eq!(lines[1], "42");
        assert_eq!(lines[2], "none", "the environment is exactly env");
        if lines.len() == 5 {
            // The child leads its own process group (when ps exists).
            assert_eq!(lines[3], lines[4]);
        }
    });
}

#[test]
fn writing_to_a_child_that_exited_surfaces_a_broken_pipe_and_the_process_lives() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        lp.run_until_complete(async {
            let options = stdin_pipe();
            let child = lp.create_subprocess_exec("true", [""; 0], options).await?;
            assert_eq!(child.wait().await?, 0);
            let stdin = child.stdin.as_ref().unwrap();
            // The pipe may be known closed already (the write is then
            // dropped, as asyncio), or the write finds EPIPE: either way
            // drain reports the end, and nothing kills this process.
            let _ = stdin.write(&vec![b'x'; 1 << 20]);
            let err = stdin.drain().await.unwrap_err();
            let kind = err.os_error().map(|e| e.kind());
            assert!(
                matches!(
                    kind,
                    Some(io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset)
                ),
                "{err:?}"
            );
            Ok::<_, Error>(())
        })
        .unwrap()
        .unwrap();
    });
}

#[test]
fn close_kills_a_running_child_and_the_protocol_still_hears_the_end() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let rec = Rec::new(&log);
        let t = lp
            .run_until_complete(lp.subprocess_exec(
                move || rec,
                "sleep",
                ["30"],
                SubprocessOptions::default(),
            ))
            .unwrap()
            .unwrap();
        t.close();
        assert!(t.is_closing());
        assert_eq!(
            lp.run_until_complete(t.wait()).unwrap().unwrap(),
            -libc::SIGKILL
        );
        run_until(&lp, LIMIT, || log.get().last() == Some(&Ev::Lost));
        let events = log.get();
        assert!(events.contains(&Ev::Exited));
        assert_eq!(events.last(), Some(&Ev::Lost));
    });
}

#[test]
fn a_panicking_protocol_is_reported_and_the_child_still_finishes() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let seen = record_exceptions(&lp);
        let log = Log::new();
        let mut rec = Rec::new(&log);
        rec.panic_on_data = true;
        let t = lp
            .run_until_complete(lp.subprocess_exec(
                move || rec,
                "echo",
                ["boom"],
                SubprocessOptions::default(),
            ))
            .unwrap()
            .unwrap();
        assert_eq!(lp.run_until_complete(t.wait()).unwrap().unwrap(), 0);
        run_until(&lp, LIMIT, || log.get().last() == Some(&Ev::Lost));
        let reports = seen.get();
        assert!(
            reports
                .iter()
                .any(|(m, _)| m == "Exception in callback SubprocessProtocol.pipe_data_received()"),
            "{reports:?}"
        );
        assert_eq!(log.get().last(), Some(&Ev::Lost));
    });
}

#[test]
fn a_dropped_process_is_still_reaped() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let (pid, stdin) = lp
            .run_until_complete(async {
                let options = stdin_pipe();
                let child = lp.create_subprocess_exec("cat", [""; 0], options).await?;
                Ok::<_, Error>((child.pid(), child.stdin.clone().unwrap()))
            })
            .unwrap()
            .unwrap();
        // The Process is gone; closing its stdin ends the child.
        stdin.close();
        run_until(&lp, LIMIT, || reaped(pid));
    });
}

#[test]
fn a_child_outliving_its_loop_does_not_hold_the_close_and_is_reaped() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let pid = lp
            .run_until_complete(async {
                let options = stdin_pipe();
                let child = lp.create_subprocess_exec("cat", [""; 0], options).await?;
                Ok::<_, Error>(child.pid())
            })
            .unwrap()
            .unwrap();
        // Closing the loop closes the child's stdin (so cat ends) and must
        // not wait for it.
        lp.close().unwrap();
        assert!(matches!(
            lp.run_until_complete(async {}),
            Err(Error::Closed)
        ));
        let watcher = EventLoop::new().unwrap();
        run_until(&watcher, LIMIT, || reaped(pid));
    });
}

#[test]
fn loops_on_several_threads_spawn_at_once() {
    within(LIMIT, || {
        let threads: Vec<_> = (0..4)
            .map(|i| {
                std::thread::spawn(move || {
                    let lp = EventLoop::new().unwrap();
                    lp.run_until_complete(async {
                        let mut codes = Vec::new();
                        for j in 0..5 {
                            let child = lp
                                .create_subprocess_exec(
                                    "sh",
                                    ["-c", &format!("exit {}", i * 10 + j)],
                                    SubprocessOptions::default(),
                                )
                                .await?;
                            codes.push(child.wait().await?);
                        }
                        Ok::<_, Error>(codes)
                    })
                    .unwrap()
                    .unwrap()
                })
            })
            .collect();
        for (i, t) in threads.into_iter().enumerate() {
            let codes = t.join().unwrap();
            let want: Vec<i32> = (0..5).map(|j| (i * 10 + j) as i32).collect();
            assert_eq!(codes, want);
        }
    });
}

#[test]
fn misuse_is_refused_with_typed_errors() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let other = lp.clone();
        let err = EventLoop::new()
            .unwrap()
            .run_until_complete(async move {
                other
                    .create_subprocess_exec("true", [""; 0], SubprocessOptions::default())
                    .await
            })
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, Error::WrongThread), "{err:?}");
        let err = lp
            .run_until_complete(lp.create_subprocess_exec(
                "true",
                [""; 0],
                SubprocessOptions {
                    limit: Some(0),
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)));
        lp.close().unwrap();
        let err = lp
            .run_until_complete(lp.create_subprocess_exec(
                "true",
                [""; 0],
                SubprocessOptions::default(),
            ))
            .unwrap_err();
        assert!(matches!(err, Error::Closed));
    });
}

#[test]
fn the_sigchld_watcher_reaps_and_reports_exit_codes() {
    if let Some((status, out)) = common::run_in_child(
        "the_sigchld_watcher_reaps_and_reports_exit_codes",
        LIMIT,
        || {
            // Safety: this child process runs this one test, before any
            // thread of its own reads the environment.
            unsafe { std::env::set_var("EVLOOP_CHILD_WATCHER", "sigchld") };
            let lp = EventLoop::new().unwrap();
            let codes = lp
                .run_until_complete(async {
                    let mut codes = Vec::new();
                    for code in [0, 7, 255] {
                        let child = lp
                            .create_subprocess_exec(
                                "sh",
                                ["-c", &format!("exit {code}")],
                                SubprocessOptions::default(),
                            )
                            .await?;
                        codes.push(child.wait().await?);
                    }
                    let killed = lp
                        .create_subprocess_exec("sleep", ["30"], SubprocessOptions::default())
                        .await?;
                    killed.kill()?;
                    codes.push(killed.wait().await?);
                    Ok::<_, Error>(codes)
                })
                .unwrap()
                .unwrap();
            assert_eq!(codes, vec![0, 7, 255, -libc::SIGKILL]);
            // A child still running when the loop closes is reaped later.
            let pid = lp
                .run_until_complete(async {
                    let options = stdin_pipe();
                    let child = lp.create_subprocess_exec("cat", [""; 0], options).await?;
                    Ok::<_, Error>(child.pid())
                })
                .unwrap()
                .unwrap();
            lp.close().unwrap();
            run_until(&EventLoop::new().unwrap(), LIMIT, || reaped(pid));
        },
    ) {
        assert!(status.success(), "{out}");
    }
}

/// The pids of this process's children whose command line has `marker`.
fn children_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in list
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
        {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(marker) {
                found.push(pid);
            }
        }
    }
    found
}

#[test]
fn a_start_given_up_kills_the_child_and_tells_the_protocol_nothing() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let rec = Rec::new(&log);
        let pid = lp
            .run_until_complete(async {
                let mut start =
                    Box::pin(lp.subprocess_exec(move || rec, "sleep", ["30.0417"], pipes()));
                // One poll spawns the child, then waits for its pipes.
                let first = std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(start.as_mut().poll(cx).is_pending())
                })
                .await;
                assert!(first);
                // The child's command line shows once its exec completed.
                let deadline = std::time::Instant::now() + LIMIT;
                let pids = loop {
                    let pids = children_with("30.0417");
                    if !pids.is_empty() || std::time::Instant::now() > deadline {
                        break pids;
                    }
                    evloop::sleep(Duration::from_millis(1)).await.unwrap();
                };
                assert_eq!(pids.len(), 1, "the child runs");
                drop(start); // the caller gives up (a timeout, a cancel)
                pids[0]
            })
            .unwrap();
        run_until(&lp, LIMIT, || reaped(pid));
        assert_eq!(log.get(), vec![], "the protocol heard nothing");
    });
}

#[test]
fn wait_after_the_exit_is_known_returns_at_once_as_asyncio_311() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let options = SubprocessOptions {
            stdout: Some(Stdio::Pipe),
            process_group: Some(0),
            ..Default::default()
        };
        // The shell exits at once; a grandchild keeps its stdout open.
        let child = lp
            .run_until_complete(lp.create_subprocess_shell("sleep 30.0419 & echo started", options))
            .unwrap()
            .unwrap();
        run_until(&lp, LIMIT, || child.returncode().is_some());
        assert_eq!(lp.run_until_complete(child.wait()).unwrap().unwrap(), 0);
        // The grandchild still holds the pipe: end its group.
        // Safety: kill(2) with the group of the child we started.
        unsafe { libc::kill(-(child.pid() as i32), libc::SIGKILL) };
    });
}

/// A protocol that keeps its transport (asyncio's usual pattern) and a
/// token whose drop is counted.
struct Keeper {
    transport: Option<SubprocessTransport>,
    _token: common::Token,
}

impl SubprocessProtocol for Keeper {
    fn connection_made(&mut self, transport: SubprocessTransport) {
        self.transport = Some(transport);
    }
}

#[test]
fn closing_the_loop_drops_a_protocol_that_keeps_its_transport() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let drops = common::DropCounter::new();
        let token = drops.token();
        let t = lp
            .run_until_complete(lp.subprocess_exec(
                move || Keeper {
                    transport: None,
                    _token: token,
                },
                "cat",
                [""; 0],
                pipes(),
            ))
            .unwrap()
            .unwrap();
        let pid = t.get_pid();
        drop(t);
        assert_eq!(drops.dropped(), 0);
        lp.close().unwrap();
        assert_eq!(
            drops.dropped(),
            1,
            "the transport-protocol cycle was broken"
        );
        run_until(&EventLoop::new().unwrap(), LIMIT, || reaped(pid));
    });
}

#[test]
fn the_transport_reaches_its_protocol_and_loop_and_a_process_its_transport() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let rec = Rec::new(&log);
        let t = lp
            .run_until_complete(lp.subprocess_exec(move || rec, "cat", [""; 0], pipes()))
            .unwrap()
            .unwrap();
        assert!(t.get_loop().is_some());
        lp.run_until_complete(async {
            // The protocol, typed (asyncio's get_protocol).
            let made = t.with_protocol(|r: &mut Rec| r.log.get().first().cloned());
            assert_eq!(made, Some(Some(Ev::Made)));
            assert!(
                t.with_protocol(|_: &mut String| ()).is_none(),
                "not a String"
            );
            // cat ends with its stdin.
            t.get_pipe_transport(0).unwrap().close();
        })
        .unwrap();
        assert_eq!(lp.run_until_complete(t.wait()).unwrap().unwrap(), 0);
        let child = lp
            .run_until_complete(lp.create_subprocess_exec(
                "true",
                [""; 0],
                SubprocessOptions::default(),
            ))
            .unwrap()
            .unwrap();
        assert_eq!(child.transport().get_pid(), child.pid());
        assert_eq!(lp.run_until_complete(child.wait()).unwrap().unwrap(), 0);
        assert_eq!(child.transport().get_returncode(), Some(0));
    });
}
