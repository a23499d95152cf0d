//! Network faults that need a process of their own: counting the
//! process's file descriptors, and running out of them. Each test re-runs
//! this binary as a child that executes only its body, so no other test
//! opens or closes descriptors meanwhile, and a lowered limit dies with
//! the child.

mod common;

use common::net::{Dg, DgRec, Ev, Rec, lost, run_until};
use common::{Log, record_exceptions};
use evloop::{DatagramOptions, EventLoop};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

/// Runs `body` in a child process (this binary, filtered to `name`),
/// failing if the child fails or outlives `LIMIT`.
fn in_child(name: &str, body: fn()) {
    if let Some((status, out)) = common::run_in_child(name, LIMIT, body) {
        assert!(status.success(), "the child failed:\n{out}");
        assert!(out.contains("1 passed"), "the child ran no test:\n{out}");
    }
}

/// The process's open sockets (entries of /proc/self/fd that are sockets).
fn open_sockets() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn closing_the_loop_closes_its_transports_and_servers_without_leaking() {
    in_child(
        "closing_the_loop_closes_its_transports_and_servers_without_leaking",
        || {
            let before = open_sockets();
            let lp = EventLoop::new().unwrap();
            let accepted = Log::new();
            let a = accepted.clone();
            let server = lp
                .run_until_complete(lp.create_server(move || Rec::new(&a), Some("127.0.0.1"), 0))
                .unwrap()
                .unwrap();
            let port = server.sockets()[0].as_socket().unwrap().port();
            let clients: Vec<Log<Ev>> = (0..3).map(|_| Log::new()).collect();
            let mut transports = Vec::new();
            for log in &clients {
                let rec = Rec::new(log);
                transports.push(
                    lp.run_until_complete(lp.create_connection(move || rec, "127.0.0.1", port))
                        .unwrap()
                        .unwrap(),
                );
            }
            let udp_log = Log::new();
            let udp = DgRec {
                log: udp_log.clone(),
                echo: false,
                transport: None,
            };
            let endpoint = lp
                .run_until_complete(lp.create_datagram_endpoint(
                    move || udp,
                    DatagramOptions {
                        local_addr: Some("127.0.0.1:0".parse().unwrap()),
                        ..Default::default()
                    },
                ))
                .unwrap()
                .unwrap();
            run_until(&lp, LIMIT, || {
                accepted.get().iter().filter(|e| **e == Ev::Made).count() == 3
            });
            // 1 listener + 3 clients + 3 accepted + 1 UDP, on top of the
            // loop's own.
            assert!(open_sockets() >= before + 8);

            lp.close().unwrap();

            for log in &clients {
                assert_eq!(lost(log), Some(None), "{:?}", log.get());
            }
            let lost_accepted = accepted
                .get()
                .iter()
                .filter(|e| matches!(e, Ev::Lost(_)))
                .count();
            assert_eq!(lost_accepted, 3);
            assert!(udp_log.get().iter().any(|e| matches!(e, Dg::Lost)));
            assert!(transports.iter().all(|t| t.is_closing()));
            assert!(endpoint.is_closing());
            assert!(!server.is_serving());
            assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
            // Every socket is closed, though the handles are still held.
            assert_eq!(open_sockets(), before);
            drop((transports, endpoint, server));
        },
    );
}

fn set_fd_limit(limit: u64) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // Safety: getrlimit/setrlimit with a valid, owned struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl), 0);
        rl.rlim_cur = limit as libc::rlim_t;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &rl), 0);
    }
}

fn cpu_time() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // Safety: getrusage fills the struct we own.
    let ru = unsafe {
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()), 0);
        ru.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[test]
fn running_out_of_descriptors_pauses_accepting_then_resumes() {
    in_child(
        "running_out_of_descriptors_pauses_accepting_then_resumes",
        || {
            let lp = EventLoop::new().unwrap();
            let errors = record_exceptions(&lp);
            let made = Log::new();
            let m = made.clone();
            let server = lp
                .run_until_complete(lp.create_server(move || Rec::new(&m), Some("127.0.0.1"), 0))
                .unwrap()
                .unwrap();
            let port = server.sockets()[0].as_socket().unwrap().port();
            // Twelve connections wait in the backlog, unaccepted.
            let mut clients: Vec<TcpStream> = (0..12)
                .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
                .collect();
            // Room for four more descriptors only.
            set_fd_limit(open_fds() as u64 + 4);
            let count_made = || made.get().iter().filter(|e| **e == Ev::Made).count();
            run_until(&lp, LIMIT, || !errors.get().is_empty());
            let paused_at = Instant::now();
            let cpu_at_pause = cpu_time();
            let accepted_before = count_made();
            assert!(accepted_before < 12);
            assert!(
                errors.get()[0]
                    .0
                    .starts_with("socket.accept() out of system resource"),
                "{:?}",
                errors.get()
            );
            // Free descriptors: the clients go, and the server's side of the
            // accepted ones closes on their EOF.
            clients.truncate(2);
            // Accepting resumes by itself, on the listening socket it kept.
            run_until(&lp, LIMIT, || count_made() == 12);
            let paused_for = paused_at.elapsed();
            let cpu = cpu_time() - cpu_at_pause;
            assert!(paused_for >= Duration::from_millis(900), "{paused_for:?}");
            // Paused, not spinning on accept: a handful of reports, and the
            // process mostly idle while it waited.
            assert!(errors.len() <= 3, "{:?}", errors.get());
            assert!(cpu < paused_for / 2, "cpu {cpu:?} over {paused_for:?}");
            assert!(server.is_serving());
            drop(clients);
            server.close();
        },
    );
}

#[test]
fn add_reader_callbacks_never_fire_for_the_readiness_layers_events() {
    in_child(
        "add_reader_callbacks_never_fire_for_the_readiness_layers_events",
        || {
            use std::io::{Read, Write};
            use std::os::fd::AsRawFd;
            let lp = EventLoop::new().unwrap();
            // A pipe nobody writes, watched with add_reader: its fd number
            // is small (made before the sockets), so it equals the slot
            // index of one of the registrations below.
            let (read_end, _write_end) = std::io::pipe().unwrap();
            let fd = read_end.as_raw_fd();
            let fired = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let f = fired.clone();
            lp.add_reader(fd, move || {
                f.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
            .unwrap();
            let server = lp
                .run_until_complete(lp.create_server(
                    common::net::Echo::default,
                    Some("127.0.0.1"),
                    0,
                ))
                .unwrap()
                .unwrap();
            let port = server.sockets()[0].as_socket().unwrap().port();
            let clients: Vec<TcpStream> = (0..40)
                .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
                .collect();
            assert!(
                (fd as usize) < clients.len(),
                "fd {fd} is below the slots in use"
            );
            // Traffic on every connection (events on every slot).
            let talk = std::thread::spawn(move || {
                for mut c in clients {
                    c.write_all(b"ping").unwrap();
                    let mut buf = [0u8; 4];
                    c.read_exact(&mut buf).unwrap();
                }
            });
            run_until(&lp, LIMIT, || talk.is_finished());
            talk.join().unwrap();
            assert_eq!(fired.load(std::sync::atomic::Ordering::SeqCst), 0);
            lp.remove_reader(fd);
            server.close();
            drop(read_end);
        },
    );
}

/// `close()` releases every descriptor of the loop itself (the poller and
/// its eventfd), as asyncio's `close()` releases its self-pipe, although
/// clones, callback handles, tasks and futures of the loop are still held;
/// posts through them then fail with `Closed`.
#[test]
fn close_releases_the_loops_own_descriptors_while_handles_remain() {
    in_child(
        "close_releases_the_loops_own_descriptors_while_handles_remain",
        || {
            let before = open_fds();
            let lp = EventLoop::new().unwrap();
            assert!(open_fds() > before);
            let clone = lp.clone();
            let handle = lp.call_soon(|| ()).unwrap();
            let task = lp.create_task(std::future::pending::<()>()).unwrap();
            let fut = lp.create_future::<u8>();
            // A thread that keeps posting while the loop closes under it.
            let poster = {
                let lp = lp.clone();
                std::thread::spawn(move || {
                    while lp.call_soon_threadsafe(|| ()).is_ok() {
                        std::thread::yield_now();
                    }
                })
            };
            lp.close().unwrap();
            poster.join().unwrap();
            assert_eq!(open_fds(), before, "the loop's fds are closed");
            assert!(matches!(
                clone.call_soon_threadsafe(|| ()),
                Err(evloop::Error::Closed)
            ));
            assert!(task.cancelled());
            // Completing needs no loop when nothing awaits the future.
            fut.set_result(1).unwrap();
            assert!(fut.done());
            drop((clone, handle, task, fut, lp));
            assert_eq!(open_fds(), before);
        },
    );
}

/// `sendfile(2)` has no `MSG_NOSIGNAL`: to a connection that can no longer
/// send it raises `SIGPIPE`. In a process where `SIGPIPE` has its default
/// action (a host that embeds evloop, not a Rust `main`), that must be the
/// `EPIPE` error only, not the process's death.
#[test]
fn sendfile_to_a_closed_connection_does_not_kill_a_process_with_default_sigpipe() {
    in_child(
        "sendfile_to_a_closed_connection_does_not_kill_a_process_with_default_sigpipe",
        || {
            // Safety: restores the default disposition, as a C host has it.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            let lp = EventLoop::new().unwrap();
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let _server_side = listener.accept().unwrap();
            client.set_nonblocking(true).unwrap();
            // Our own side can no longer send: the next send is EPIPE (and
            // SIGPIPE, without MSG_NOSIGNAL).
            client.shutdown(std::net::Shutdown::Write).unwrap();
            let file = common::file_with("sendfile-sigpipe", &[7u8; 4096]);
            let sock = socket2::Socket::from(client);
            let err = lp
                .run_until_complete(lp.sock_sendfile(&sock, &file, 0, None, false))
                .unwrap()
                .unwrap_err();
            assert_eq!(
                err.os_error().and_then(|e| e.raw_os_error()),
                Some(libc::EPIPE),
                "{err:?}"
            );
            // Nothing of it is left pending for the process either.
            // Safety: plain data we own.
            let pending = unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigpending(&mut set);
                libc::sigismember(&set, libc::SIGPIPE)
            };
            assert_eq!(pending, 0);
            lp.close().unwrap();
        },
    );
}
