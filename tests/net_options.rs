//! The networking options and paths the other network tests leave out:
//! happy eyeballs, `interleave`, `all_errors`, `family` and `local_addr`
//! through `create_connection`; the server options (`backlog`,
//! `reuse_address`, `keep_alive`, `family`, asyncio's `sock=`) and
//! several connections taken per accept; `getaddrinfo`'s `proto` hint and
//! its IP literals; `write`'s immediate send; `sock_recv_into` and the
//! blocking-socket refusals; writes after `close`; the reset clients see
//! after `abort_clients`; `loop.sendfile`'s fallback over TCP.
//!
//! # Names with several addresses
//! Happy eyeballs needs a host name that resolves to several addresses,
//! of both families. The tests that need one run in a child process of
//! their own whose `/etc/hosts` is private (a mount namespace and a bind
//! mount, set up between fork and exec; nothing outside the child sees
//! it): there `evloop-dual.test` resolves to `::1` and `127.0.0.1`, and
//! `evloop-many.test` to two addresses of each family. Where that cannot
//! be set up (no IPv6 loopback, no namespaces, or
//! `EVLOOP_TEST_NO_PRIVATE_HOSTS` set) they run in this process with
//! `localhost` if it resolves to both families, and otherwise with
//! `127.0.0.1`, asserting the single-family (IPv4-only) behaviour.

mod common;

use common::net::{Echo, Ev, Rec, lost, reading_peer, received, run_until, tcp_pair};
use common::{Log, capture_tracing, within};
use evloop::{
    AddrInfoHints, ConnectOptions, Error, EventLoop, ExtraInfo, Protocol, Server, ServerOptions,
    Transport,
};
use futures::FutureExt;
use socket2::{Domain, SockAddr, Socket, Type};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

// ----- helpers -----------------------------------------------------------------------------

fn port_of(server: &Server) -> u16 {
    server.sockets()[0].as_socket().unwrap().port()
}

fn sa(addr: &SockAddr) -> SocketAddr {
    addr.as_socket().unwrap()
}

fn ipv6_loopback() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

/// A socket bound to `addr` (an IPv4-mapped IPv6 address is bound as the
/// IPv4 address it maps; a plain IPv6 one with IPV6_V6ONLY), listening
/// with `backlog` if given.
fn socket_at(addr: SocketAddr, backlog: Option<i32>) -> io::Result<Socket> {
    let addr = match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    };
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.bind(&addr.into())?;
    if let Some(backlog) = backlog {
        sock.listen(backlog)?;
    }
    Ok(sock)
}

/// Sockets on one port, one per `(ip, backlog)`: listening with that
/// backlog, or only bound (`None`: connecting there is refused, and
/// nobody else can listen there meanwhile).
fn at_one_port(specs: &[(IpAddr, Option<i32>)]) -> (u16, Vec<Socket>) {
    'retry: for _ in 0..50 {
        let (ip, backlog) = specs[0];
        let first = socket_at(SocketAddr::new(ip, 0), backlog).unwrap();
        let port = sa(&first.local_addr().unwrap()).port();
        let mut held = vec![first];
        for &(ip, backlog) in &specs[1..] {
            match socket_at(SocketAddr::new(ip, port), backlog) {
                Ok(s) => held.push(s),
                Err(e) if e.kind() == ErrorKind::AddrInUse => continue 'retry,
                Err(e) => panic!("binding {ip} port {port}: {e}"),
            }
        }
        return (port, held);
    }
    panic!("no port free on all of {specs:?}");
}

/// The IP addresses of `addrs` without repeats, IPv4-mapped ones as
/// IPv4.
fn distinct_ips(addrs: &[SocketAddr]) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = Vec::new();
    for a in addrs {
        let ip = a.ip().to_canonical();
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}

/// What `getaddrinfo` (the loop's) answers for a TCP connection to
/// `host`:`port`, in the resolver's order.
fn resolve(lp: &EventLoop, host: &str, port: u16) -> Vec<SocketAddr> {
    let hints = AddrInfoHints {
        socktype: Some(Type::STREAM),
        ..Default::default()
    };
    lp.run_until_complete(lp.getaddrinfo(Some(host), port, hints))
        .unwrap()
        .unwrap()
        .iter()
        .map(|i| sa(&i.addr))
        .collect()
}

/// An address as asyncio's messages show it.
fn repr(a: &SocketAddr) -> String {
    match a {
        SocketAddr::V4(a) => format!("('{}', {})", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("('{}', {}, 0, 0)", a.ip(), a.port()),
    }
}

/// asyncio's message for a refused attempt.
fn refused(a: &SocketAddr) -> String {
    format!("[Errno 111] Connect call failed {}", repr(a))
}

/// asyncio's `_interleave_addrinfos`, the reference the connection order
/// is checked against: families alternate, `first_count` of the first
/// family first.
fn interleaved(addrs: &[SocketAddr], first_count: usize) -> Vec<SocketAddr> {
    let mut groups: Vec<Vec<SocketAddr>> = Vec::new();
    for a in addrs {
        match groups.iter_mut().find(|g| g[0].is_ipv4() == a.is_ipv4()) {
            Some(g) => g.push(*a),
            None => groups.push(vec![*a]),
        }
    }
    let mut out = Vec::new();
    if first_count > 1 {
        let take = (first_count - 1).min(groups[0].len());
        out.extend(groups[0].drain(..take));
    }
    let longest = groups.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for g in &groups {
            if let Some(a) = g.get(i) {
                out.push(*a);
            }
        }
    }
    out
}

/// The inodes of the TCP sockets listening on `port` (any address), from
/// /proc/net/tcp and /proc/net/tcp6.
fn listening_inodes(port: u16) -> Vec<u64> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid
            // timeout inode ...
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && *state == "0A" {
                inodes.extend(inode.parse::<u64>().ok());
            }
        }
    }
    inodes
}

/// Duplicates of the listening sockets bound to `addrs` (a server's
/// `sockets()`), in `addrs`' order: the server hands out addresses, not
/// its sockets, so they are found among this process's descriptors (by
/// their inodes, so that no other test's descriptor is touched).
fn listeners_of(addrs: &[SockAddr]) -> Vec<Socket> {
    let mut found: Vec<Socket> = Vec::new();
    for addr in addrs {
        let wanted: Vec<String> = listening_inodes(sa(addr).port())
            .into_iter()
            .map(|inode| format!("socket:[{inode}]"))
            .collect();
        let mut sock = None;
        for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
            let entry = entry.unwrap();
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue;
            };
            if !wanted.iter().any(|w| target.as_os_str() == w.as_str()) {
                continue;
            }
            let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            // Safety: F_DUPFD_CLOEXEC on a descriptor that was this
            // listening socket a moment ago (if it was closed since, the
            // call fails, or the checks below reject what took its
            // number); a new descriptor is ours alone.
            let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
            if dup < 0 {
                continue;
            }
            // Safety: `dup` is an open descriptor owned by nobody else.
            let candidate = unsafe { Socket::from_raw_fd(dup) };
            if candidate.is_listener().unwrap_or(false)
                && candidate.local_addr().is_ok_and(|a| a == *addr)
            {
                sock = Some(candidate);
                break;
            }
        }
        found.push(sock.unwrap_or_else(|| panic!("no socket listening on {addr:?}")));
    }
    found
}

/// A listening TCP socket's accept queue: (connections waiting to be
/// accepted, the queue's size), as TCP_INFO reports them for LISTEN.
fn accept_queue(listener: &Socket) -> (u32, u32) {
    // Safety: a zeroed tcp_info is a valid output buffer.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // Safety: getsockopt into our buffer, with its length.
    let rc = unsafe {
        libc::getsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", io::Error::last_os_error());
    (info.tcpi_unacked, info.tcpi_sacked)
}

/// Waits (bounded) until `listener` holds `n` connections not yet
/// accepted: the kernel finished their handshakes.
fn wait_for_queued(listener: &Socket, n: u32) {
    let deadline = Instant::now() + LIMIT;
    while accept_queue(listener).0 < n {
        assert!(Instant::now() < deadline, "{n} connections never queued");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Bytes received and not yet read on a transport's socket (loop thread).
fn unread(t: &Transport) -> usize {
    t.with_socket(|s| {
        let mut n: libc::c_int = 0;
        // Safety: FIONREAD into our int, on an open socket.
        let rc = unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) };
        assert_eq!(rc, 0);
        n as usize
    })
    .unwrap_or(0)
}

/// Connects a blocking client, writes `msg` and reads the echo, while the
/// loop runs.
fn echoes(lp: &EventLoop, addr: SocketAddr, msg: &'static [u8]) {
    let client = std::thread::spawn(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(LIMIT)).unwrap();
        c.write_all(msg).unwrap();
        let mut buf = vec![0u8; msg.len()];
        c.read_exact(&mut buf).unwrap();
        buf
    });
    run_until(lp, LIMIT, || client.is_finished());
    assert_eq!(client.join().unwrap(), msg, "echoed through {addr}");
}

// ----- names with several addresses (see the module docs) -----------------------------------

const CHILD: &str = "EVLOOP_TEST_CHILD";

/// The host names a test body connects to.
#[derive(Clone, Copy, Debug)]
struct Names {
    /// One address of each family.
    dual: &'static str,
    /// Several addresses of each family (where available).
    many: &'static str,
    /// Whether the names resolve to both families; otherwise to
    /// 127.0.0.1 only.
    both_families: bool,
}

const PRIVATE: Names = Names {
    dual: "evloop-dual.test",
    many: "evloop-many.test",
    both_families: true,
};

const LOCALHOST: Names = Names {
    dual: "localhost",
    many: "localhost",
    both_families: true,
};

const IPV4_ONLY: Names = Names {
    dual: "127.0.0.1",
    many: "127.0.0.1",
    both_families: false,
};

/// The child's /etc/hosts lines (after the machine's own).
const PRIVATE_HOSTS: &str = "
::1 evloop-dual.test
127.0.0.1 evloop-dual.test
::1 evloop-many.test
127.0.0.1 evloop-many.test
127.0.0.3 evloop-many.test
::ffff:127.0.0.2 evloop-many.test
";

/// Resolves `host` and checks it gives what `names` promises.
fn resolve_names(lp: &EventLoop, names: Names, host: &str, port: u16) -> Vec<SocketAddr> {
    let addrs = resolve(lp, host, port);
    let v4 = addrs.iter().filter(|a| a.is_ipv4()).count();
    let v6 = addrs.len() - v4;
    if names.both_families {
        assert!(
            v4 > 0 && v6 > 0,
            "{host} resolves to both families: {addrs:?}"
        );
    } else {
        assert_eq!(addrs, [SocketAddr::from(([127, 0, 0, 1], port))]);
    }
    addrs
}

fn localhost_has_both_families() -> bool {
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = ("localhost", 0)
        .to_socket_addrs()
        .map(|a| a.collect())
        .unwrap_or_default();
    addrs.iter().any(|a| a.is_ipv4()) && addrs.iter().any(|a| a.is_ipv6())
}

/// Runs `body` with names resolving to several addresses: in a child
/// process with a private /etc/hosts where possible, else here (see the
/// module docs).
fn with_several_addresses(test: &str, body: fn(Names)) {
    if std::env::var(CHILD).as_deref() == Ok(test) {
        within(LIMIT, move || body(PRIVATE));
        return;
    }
    if let Some((status, out)) = run_with_private_hosts(test) {
        assert!(status.success(), "the child running {test} failed:\n{out}");
        assert!(
            out.contains("test result: ok. 1 passed"),
            "the child ran no test:\n{out}"
        );
        return;
    }
    let names = if ipv6_loopback() && localhost_has_both_families() {
        LOCALHOST
    } else {
        IPV4_ONLY
    };
    eprintln!("{test}: no private /etc/hosts here; running with {names:?}");
    within(LIMIT, move || body(names));
}

/// Runs the test `test` in a child process whose /etc/hosts has
/// `PRIVATE_HOSTS` added; `None` if that cannot be set up here.
fn run_with_private_hosts(test: &str) -> Option<(std::process::ExitStatus, String)> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    if std::env::var_os("EVLOOP_TEST_NO_PRIVATE_HOSTS").is_some() || !ipv6_loopback() {
        return None;
    }
    let tag = format!("{}-{test}", std::process::id());
    let hosts = std::env::temp_dir().join(format!("evloop-hosts-{tag}"));
    let mut content = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    content.push_str(PRIVATE_HOSTS);
    std::fs::write(&hosts, content).unwrap();
    let hosts_c = std::ffi::CString::new(hosts.as_os_str().as_bytes()).unwrap();
    // Safety: getuid / getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let uid_map = format!("0 {uid} 1");
    let gid_map = format!("0 {gid} 1");
    let log_path = std::env::temp_dir().join(format!("evloop-child-{tag}"));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // Safety: the closure makes raw system calls only, on data prepared
    // before the fork.
    unsafe {
        cmd.pre_exec(move || private_hosts(&hosts_c, uid_map.as_bytes(), gid_map.as_bytes()));
    }
    let spawned = cmd.spawn();
    // The child's mount holds the file's inode; the name can go now.
    let _ = std::fs::remove_file(&hosts);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            eprintln!("{test}: cannot give a child a private /etc/hosts: {e}");
            let _ = std::fs::remove_file(&log_path);
            return None;
        }
    };
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(LIMIT * 2) {
        Ok(status) => status.unwrap(),
        Err(_) => {
            // Safety: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = rx.recv();
            panic!("the child running {test} did not finish");
        }
    };
    let out = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    Some((status, out))
}

/// Between fork and exec: a mount namespace of the child's own (in a user
/// namespace of its own if it lacks the privilege), every mount in it
/// private (so nothing propagates out), and `hosts` bind-mounted on
/// /etc/hosts.
fn private_hosts(hosts: &std::ffi::CStr, uid_map: &[u8], gid_map: &[u8]) -> io::Result<()> {
    fn check(rc: libc::c_int) -> io::Result<()> {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    fn write_file(path: &std::ffi::CStr, data: &[u8]) -> io::Result<()> {
        // Safety: open / write / close on a NUL-terminated path and our
        // own bytes.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = libc::write(fd, data.as_ptr().cast(), data.len());
            libc::close(fd);
            if n != data.len() as isize {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
    // Safety: unshare and mount with valid NUL-terminated strings (or
    // null where mount(2) allows it).
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            check(libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS))?;
            write_file(c"/proc/self/setgroups", b"deny")?;
            write_file(c"/proc/self/uid_map", uid_map)?;
            write_file(c"/proc/self/gid_map", gid_map)?;
        }
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        check(libc::mount(
            hosts.as_ptr(),
            c"/etc/hosts".as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        ))?;
    }
    Ok(())
}

// ----- create_connection: happy eyeballs, interleave, all_errors, family, local_addr ---------

#[test]
fn happy_eyeballs_tries_the_other_family_at_once_when_the_first_refuses() {
    with_several_addresses(
        "happy_eyeballs_tries_the_other_family_at_once_when_the_first_refuses",
        |names| {
            let lp = EventLoop::new().unwrap();
            let addrs = resolve_names(&lp, names, names.dual, 0);
            let first = addrs[0];
            let other = addrs.iter().find(|a| a.is_ipv4() != first.is_ipv4());
            // The other family listens; the first, tried first, refuses.
            let (port, _held) = match other {
                Some(other) => at_one_port(&[(other.ip(), Some(16)), (first.ip(), None)]),
                None => at_one_port(&[(first.ip(), Some(16))]),
            };
            let winner = SocketAddr::new(other.unwrap_or(&first).ip(), port);
            let log = Log::new();
            let rec = Rec::new(&log);
            // An hour's delay: only the refusal can start the next attempt
            // within the test's limit.
            let t = lp
                .run_until_complete(lp.create_connection_with(
                    move || rec,
                    Some(names.dual),
                    port,
                    ConnectOptions {
                        happy_eyeballs_delay: Some(Duration::from_secs(3600)),
                        ..Default::default()
                    },
                ))
                .unwrap()
                .unwrap();
            assert_eq!(t.peername().map(|a| sa(&a)), Some(winner));
            assert_eq!(
                t.sockname().unwrap().is_ipv4(),
                winner.is_ipv4(),
                "the socket is of the winner's family"
            );
            assert_eq!(log.get(), [Ev::Made]);
            t.abort();
            run_until(&lp, LIMIT, || lost(&log).is_some());
            assert_eq!(lp.stats().io_sources, 0, "the refused attempt left nothing");
        },
    );
}

#[test]
fn happy_eyeballs_starts_the_other_family_after_the_delay_when_the_first_hangs() {
    with_several_addresses(
        "happy_eyeballs_starts_the_other_family_after_the_delay_when_the_first_hangs",
        |names| {
            let lp = EventLoop::new().unwrap();
            let addrs = resolve_names(&lp, names, names.dual, 0);
            let first = addrs[0];
            let Some(other) = addrs.iter().find(|a| a.is_ipv4() != first.is_ipv4()) else {
                // One address only: nothing to race; the delay changes
                // nothing and the one attempt connects.
                let (port, _held) = at_one_port(&[(first.ip(), Some(16))]);
                let t = lp
                    .run_until_complete(lp.create_connection_with(
                        Echo::default,
                        Some(names.dual),
                        port,
                        ConnectOptions {
                            happy_eyeballs_delay: Some(Duration::from_millis(200)),
                            ..Default::default()
                        },
                    ))
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    t.peername().map(|a| sa(&a)),
                    Some(SocketAddr::new(first.ip(), port))
                );
                t.abort();
                return;
            };
            // The first address listens with a full accept queue: the
            // kernel drops further handshakes, and connects there hang.
            let (port, held) = at_one_port(&[(first.ip(), Some(0)), (other.ip(), Some(16))]);
            let filler = TcpStream::connect(SocketAddr::new(first.ip(), port)).unwrap();
            wait_for_queued(&held[0], 1);

            // One attempt at a time (no delay): the first never finishes.
            let one_at_a_time = lp
                .run_until_complete(evloop::wait_for(
                    lp.create_connection(Echo::default, names.dual, port),
                    Duration::from_millis(300),
                ))
                .unwrap();
            assert!(
                matches!(one_at_a_time, Err(Error::Timeout)),
                "{one_at_a_time:?}"
            );
            common::run_one_iteration(&lp);
            assert_eq!(lp.stats().io_sources, 0);

            // With a delay, the other family's attempt starts once it
            // passed, and wins.
            let delay = Duration::from_millis(200);
            let started = Instant::now();
            let t = lp
                .run_until_complete(lp.create_connection_with(
                    Echo::default,
                    Some(names.dual),
                    port,
                    ConnectOptions {
                        happy_eyeballs_delay: Some(delay),
                        ..Default::default()
                    },
                ))
                .unwrap()
                .unwrap();
            assert!(
                started.elapsed() >= delay,
                "the second attempt waited for the delay"
            );
            assert_eq!(
                t.peername().map(|a| sa(&a)),
                Some(SocketAddr::new(other.ip(), port))
            );
            t.abort();
            common::run_one_iteration(&lp);
            common::run_one_iteration(&lp);
            assert_eq!(
                lp.stats().io_sources,
                0,
                "the hanging attempt was dropped with its registration"
            );
            drop(filler);
        },
    );
}

#[test]
fn interleave_orders_the_attempts_by_alternating_families_as_asyncio() {
    with_several_addresses(
        "interleave_orders_the_attempts_by_alternating_families_as_asyncio",
        |names| {
            let lp = EventLoop::new().unwrap();
            let ips = distinct_ips(&resolve_names(&lp, names, names.many, 0));
            // Every address refuses: all_errors lists the attempts in the
            // order they started.
            let specs: Vec<(IpAddr, Option<i32>)> = ips.iter().map(|ip| (*ip, None)).collect();
            let (port, _held) = at_one_port(&specs);
            let addrs = resolve_names(&lp, names, names.many, port);
            let resolver = addrs.clone();
            if names.many == PRIVATE.many {
                // Two of each family, so that the orders below differ.
                assert_eq!(addrs.len(), 4, "{addrs:?}");
                assert_ne!(resolver, interleaved(&addrs, 1));
                assert_ne!(resolver, interleaved(&addrs, 2));
                assert_ne!(interleaved(&addrs, 1), interleaved(&addrs, 2));
            }
            let cases = [
                // asyncio: no delay, no interleave: the resolver's order.
                (None, None, resolver.clone()),
                // A delay turns interleave = 1 on.
                (
                    Some(Duration::from_secs(3600)),
                    None,
                    interleaved(&addrs, 1),
                ),
                // interleave without a delay: attempts one at a time, in
                // that order.
                (None, Some(2), interleaved(&addrs, 2)),
                // interleave = 0 keeps the resolver's order, delay or not.
                (Some(Duration::from_secs(3600)), Some(0), resolver.clone()),
            ];
            for (delay, interleave, order) in cases {
                let err = lp
                    .run_until_complete(lp.create_connection_with(
                        Echo::default,
                        Some(names.many),
                        port,
                        ConnectOptions {
                            happy_eyeballs_delay: delay,
                            interleave,
                            all_errors: true,
                            ..Default::default()
                        },
                    ))
                    .unwrap()
                    .unwrap_err();
                let Error::Multiple { errors, .. } = err else {
                    panic!("{err:?}");
                };
                let got: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                let want: Vec<String> = order.iter().map(refused).collect();
                assert_eq!(got, want, "delay {delay:?}, interleave {interleave:?}");
            }
            assert_eq!(lp.stats().io_sources, 0);
        },
    );
}

#[test]
fn all_errors_lists_every_failed_attempt_in_order() {
    with_several_addresses("all_errors_lists_every_failed_attempt_in_order", |names| {
        let lp = EventLoop::new().unwrap();
        let ips = distinct_ips(&resolve_names(&lp, names, names.dual, 0));
        let specs: Vec<(IpAddr, Option<i32>)> = ips.iter().map(|ip| (*ip, None)).collect();
        let (port, _held) = at_one_port(&specs);
        let addrs = resolve_names(&lp, names, names.dual, port);
        let connect = |all_errors: bool| {
            lp.run_until_complete(lp.create_connection_with(
                Echo::default,
                Some(names.dual),
                port,
                ConnectOptions {
                    all_errors,
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap_err()
        };
        // asyncio's ExceptionGroup("create_connection failed", [...]).
        let err = connect(true);
        assert_eq!(
            err.to_string(),
            format!("create_connection failed ({} sub-exceptions)", addrs.len())
        );
        let Error::Multiple { context, errors } = err else {
            panic!("{err:?}");
        };
        assert_eq!(context, "create_connection failed");
        assert_eq!(errors.len(), addrs.len(), "one error per attempt");
        for (e, a) in errors.iter().zip(&addrs) {
            assert_eq!(e.to_string(), refused(a));
            assert_eq!(e.os_error().unwrap().kind(), ErrorKind::ConnectionRefused);
        }
        // Without all_errors: one error if there was one attempt, else
        // asyncio's OSError("Multiple exceptions: ...") naming each.
        let err = connect(false);
        if addrs.len() == 1 {
            assert_eq!(err.to_string(), refused(&addrs[0]));
            assert_eq!(err.os_error().unwrap().kind(), ErrorKind::ConnectionRefused);
        } else {
            let each: Vec<String> = addrs.iter().map(refused).collect();
            assert_eq!(
                err.to_string(),
                format!("Multiple exceptions: {}", each.join(", "))
            );
        }
        assert_eq!(lp.stats().io_sources, 0);
    });
}

#[test]
fn create_connection_family_keeps_only_the_addresses_of_that_family() {
    with_several_addresses(
        "create_connection_family_keeps_only_the_addresses_of_that_family",
        |names| {
            let lp = EventLoop::new().unwrap();
            let ips = distinct_ips(&resolve_names(&lp, names, names.dual, 0));
            let specs: Vec<(IpAddr, Option<i32>)> = ips.iter().map(|ip| (*ip, Some(16))).collect();
            let (port, _held) = at_one_port(&specs);
            let connect = |family: Domain| {
                lp.run_until_complete(lp.create_connection_with(
                    Echo::default,
                    Some(names.dual),
                    port,
                    ConnectOptions {
                        family: Some(family),
                        ..Default::default()
                    },
                ))
                .unwrap()
            };
            // Both listen: the family alone decides where it goes.
            let v4 = connect(Domain::IPV4).unwrap();
            assert_eq!(
                v4.peername().map(|a| sa(&a)),
                Some(SocketAddr::from(([127, 0, 0, 1], port)))
            );
            v4.abort();
            if names.both_families {
                let v6 = connect(Domain::IPV6).unwrap();
                assert_eq!(
                    v6.peername().map(|a| sa(&a)),
                    Some(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)))
                );
                v6.abort();
            } else {
                // IPv4 only: nothing of the other family to connect to
                // (asyncio: socket.gaierror).
                let err = connect(Domain::IPV6).unwrap_err();
                assert!(matches!(err, Error::AddressLookup { .. }), "{err:?}");
            }
            // An IP literal of the other family: asyncio's gaierror.
            let err = lp
                .run_until_complete(lp.create_connection_with(
                    Echo::default,
                    Some("127.0.0.1"),
                    port,
                    ConnectOptions {
                        family: Some(Domain::IPV6),
                        ..Default::default()
                    },
                ))
                .unwrap()
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                "[Errno -9] Address family for hostname not supported"
            );
            assert!(
                matches!(err, Error::AddressLookup { code: -9, .. }),
                "{err:?}"
            );
        },
    );
}

#[test]
fn local_addr_of_one_family_makes_the_connection_use_that_family() {
    with_several_addresses(
        "local_addr_of_one_family_makes_the_connection_use_that_family",
        |names| {
            let lp = EventLoop::new().unwrap();
            let ips = distinct_ips(&resolve_names(&lp, names, names.dual, 0));
            let specs: Vec<(IpAddr, Option<i32>)> = ips.iter().map(|ip| (*ip, Some(16))).collect();
            let (port, _held) = at_one_port(&specs);
            // Whatever the resolver's order, an attempt of the other
            // family cannot use the local address; with happy eyeballs
            // (an hour's delay) the next starts at once.
            for local in ips {
                let local_addr = SocketAddr::new(local, 0);
                let t = lp
                    .run_until_complete(lp.create_connection_with(
                        Echo::default,
                        Some(names.dual),
                        port,
                        ConnectOptions {
                            local_addr: Some(local_addr),
                            happy_eyeballs_delay: Some(Duration::from_secs(3600)),
                            ..Default::default()
                        },
                    ))
                    .unwrap()
                    .unwrap();
                assert_eq!(t.sockname().map(|a| sa(&a).ip()), Some(local));
                assert_eq!(
                    t.peername().map(|a| sa(&a)),
                    Some(SocketAddr::new(local, port))
                );
                t.abort();
            }
        },
    );
}

#[test]
fn local_addr_of_another_family_fails_with_asyncios_no_matching_local_address() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        // An IPv6 attempt with an IPv4 local address (and the other way
        // round, where the machine has IPv6): asyncio skips the local
        // address and fails the attempt without an errno.
        let mut cases = vec![(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            "::1",
            "no matching local address with family=<AddressFamily.AF_INET6: 10> found",
        )];
        if ipv6_loopback() {
            cases.push((
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0)),
                "127.0.0.1",
                "no matching local address with family=<AddressFamily.AF_INET: 2> found",
            ));
        }
        for (local, host, message) in cases {
            let err = lp
                .run_until_complete(lp.create_connection_with(
                    Echo::default,
                    Some(host),
                    9,
                    ConnectOptions {
                        local_addr: Some(local),
                        ..Default::default()
                    },
                ))
                .unwrap()
                .unwrap_err();
            assert_eq!(err.to_string(), message);
            assert_eq!(err.os_error().and_then(io::Error::raw_os_error), None);
        }
        assert_eq!(lp.stats().io_sources, 0);
    });
}

#[test]
fn local_addr_makes_the_connection_leave_from_the_chosen_address_and_port() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let (tx, rx) = mpsc::channel();
        let l = log.clone();
        let server = lp
            .run_until_complete(lp.create_server(
                move || Rec::new(&l).sending(&tx),
                Some("127.0.0.1"),
                0,
            ))
            .unwrap()
            .unwrap();
        let port = port_of(&server);
        // A free port on 127.0.0.3 (taken meanwhile by someone else: try
        // another).
        let mut attempt = 0;
        let (t, local) = loop {
            attempt += 1;
            let probe = TcpListener::bind("127.0.0.3:0").unwrap();
            let local = probe.local_addr().unwrap();
            drop(probe);
            let connected = lp
                .run_until_complete(lp.create_connection_with(
                    Echo::default,
                    Some("127.0.0.1"),
                    port,
                    ConnectOptions {
                        local_addr: Some(local),
                        ..Default::default()
                    },
                ))
                .unwrap();
            match connected {
                Ok(t) => break (t, local),
                Err(e)
                    if attempt < 10
                        && e.os_error().map(|e| e.kind()) == Some(ErrorKind::AddrInUse) => {}
                Err(e) => panic!("{e:?}"),
            }
        };
        assert_eq!(t.sockname().map(|a| sa(&a)), Some(local));
        match t.get_extra_info("sockname") {
            Some(ExtraInfo::Address(a)) => assert_eq!(sa(&a), local),
            other => panic!("sockname: {other:?}"),
        }
        // The server sees the connection come from there.
        run_until(&lp, LIMIT, || log.get().contains(&Ev::Made));
        let accepted: Transport = rx.recv_timeout(LIMIT).unwrap();
        assert_eq!(accepted.peername().map(|a| sa(&a)), Some(local));
        t.abort();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        server.close();
        lp.run_until_complete(server.wait_closed()).unwrap();
    });
}

// ----- servers ------------------------------------------------------------------------------

#[test]
fn listening_sockets_get_the_backlog_and_reuse_address_asked_for() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4096);
        // asyncio's defaults: backlog 100, SO_REUSEADDR on.
        let default = lp
            .run_until_complete(lp.create_server(Echo::default, Some("127.0.0.1"), 0))
            .unwrap()
            .unwrap();
        let listener = &listeners_of(&default.sockets())[0];
        assert!(
            listener.reuse_address().unwrap(),
            "SO_REUSEADDR on by default"
        );
        assert_eq!(accept_queue(listener).1, 100.min(somaxconn));
        // Both options as given.
        let custom = lp
            .run_until_complete(lp.create_server_with(
                Echo::default,
                &["127.0.0.1"],
                0,
                ServerOptions {
                    backlog: 7,
                    reuse_address: false,
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap();
        let listener = &listeners_of(&custom.sockets())[0];
        assert!(!listener.reuse_address().unwrap());
        assert_eq!(accept_queue(listener).1, 7);
        echoes(&lp, sa(&custom.sockets()[0]), b"backlog 7");
        default.close();
        custom.close();
        lp.run_until_complete(async {
            default.wait_closed().await;
            custom.wait_closed().await;
        })
        .unwrap();
    });
}

#[test]
fn keep_alive_sets_so_keepalive_on_accepted_connections() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        for keep_alive in [false, true] {
            let log = Log::new();
            let (tx, rx) = mpsc::channel();
            let l = log.clone();
            let server = lp
                .run_until_complete(lp.create_server_with(
                    move || Rec::new(&l).sending(&tx),
                    &["127.0.0.1"],
                    0,
                    ServerOptions {
                        keep_alive,
                        ..Default::default()
                    },
                ))
                .unwrap()
                .unwrap();
            let client = TcpStream::connect(("127.0.0.1", port_of(&server))).unwrap();
            run_until(&lp, LIMIT, || log.get().contains(&Ev::Made));
            let accepted: Transport = rx.recv_timeout(LIMIT).unwrap();
            let on = lp
                .run_until_complete(async { accepted.with_socket(|s| s.keepalive().unwrap()) })
                .unwrap();
            assert_eq!(on, Some(keep_alive), "keep_alive: {keep_alive}");
            // The listening socket is not what carries it.
            assert!(!listeners_of(&server.sockets())[0].keepalive().unwrap());
            drop(client);
            run_until(&lp, LIMIT, || lost(&log).is_some());
            server.close();
            lp.run_until_complete(server.wait_closed()).unwrap();
        }
    });
}

#[test]
fn server_family_restricts_the_addresses_bound_and_no_family_binds_both() {
    with_several_addresses(
        "server_family_restricts_the_addresses_bound_and_no_family_binds_both",
        |names| {
            let lp = EventLoop::new().unwrap();
            let serve = |family: Option<Domain>| {
                lp.run_until_complete(lp.create_server_with(
                    Echo::default,
                    &[names.dual],
                    0,
                    ServerOptions {
                        family,
                        ..Default::default()
                    },
                ))
                .unwrap()
            };
            let ips_of = |server: &Server| -> Vec<IpAddr> {
                server.sockets().iter().map(|a| sa(a).ip()).collect()
            };
            let v4: IpAddr = [127, 0, 0, 1].into();
            let v6: IpAddr = std::net::Ipv6Addr::LOCALHOST.into();
            // No family: every address the name resolves to is bound.
            let all = serve(None).unwrap();
            let mut bound = ips_of(&all);
            bound.sort();
            if names.both_families {
                assert_eq!(bound, [v4, v6]);
            } else {
                assert_eq!(bound, [v4]);
            }
            for (addr, listener) in all.sockets().iter().zip(listeners_of(&all.sockets())) {
                if addr.is_ipv6() {
                    assert!(listener.only_v6().unwrap(), "IPV6_V6ONLY, as asyncio");
                }
                echoes(&lp, sa(addr), b"all families");
            }
            all.close();
            // One family: only its addresses.
            let only4 = serve(Some(Domain::IPV4)).unwrap();
            assert_eq!(ips_of(&only4), [v4]);
            echoes(&lp, sa(&only4.sockets()[0]), b"ipv4");
            only4.close();
            if names.both_families {
                let only6 = serve(Some(Domain::IPV6)).unwrap();
                assert_eq!(ips_of(&only6), [v6]);
                echoes(&lp, sa(&only6.sockets()[0]), b"ipv6");
                only6.close();
            } else {
                let err = serve(Some(Domain::IPV6)).unwrap_err();
                assert!(matches!(err, Error::AddressLookup { .. }), "{err:?}");
            }
        },
    );
}

#[test]
fn a_server_serves_the_listening_sockets_it_is_given() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        // One listening already, one only bound; both blocking.
        let listening = TcpListener::bind("127.0.0.1:0").unwrap();
        let bound = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        bound
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let addrs = vec![
            SockAddr::from(listening.local_addr().unwrap()),
            bound.local_addr().unwrap(),
        ];
        let dups = [
            Socket::from(listening.try_clone().unwrap()),
            bound.try_clone().unwrap(),
        ];
        let server = lp
            .run_until_complete(lp.create_server_with(
                Echo::default,
                &[],
                0,
                ServerOptions {
                    sockets: vec![listening.into(), bound],
                    backlog: 5,
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap();
        assert_eq!(server.sockets(), addrs);
        assert!(server.is_serving());
        for dup in &dups {
            assert!(dup.nonblocking().unwrap(), "made non-blocking");
            assert!(dup.is_listener().unwrap(), "listening");
            assert_eq!(accept_queue(dup).1, 5, "with the backlog asked for");
        }
        echoes(&lp, sa(&addrs[0]), b"first socket");
        echoes(&lp, sa(&addrs[1]), b"second socket");
        server.close();
        lp.run_until_complete(server.wait_closed()).unwrap();

        // Hosts and sockets together, or a datagram socket: refused.
        let extra = TcpListener::bind("127.0.0.1:0").unwrap();
        let err = lp
            .run_until_complete(lp.create_server_with(
                Echo::default,
                &["127.0.0.1"],
                0,
                ServerOptions {
                    sockets: vec![extra.into()],
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "host/port and sock can not be specified at the same time"
        );
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let err = lp
            .run_until_complete(lp.create_server_with(
                Echo::default,
                &[],
                0,
                ServerOptions {
                    sockets: vec![udp.into()],
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap_err();
        assert!(
            err.to_string().starts_with("A Stream Socket was expected"),
            "{err}"
        );
    });
}

#[test]
fn one_accept_pass_takes_every_connection_pending_before_serving_started() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        // The iteration in which each protocol was made (accepting runs
        // the factory at once).
        let made_in: Arc<Mutex<Vec<u64>>> = Arc::default();
        let (m, weak) = (made_in.clone(), lp.downgrade());
        let server = lp
            .run_until_complete(lp.create_server_with(
                move || {
                    let lp = weak.upgrade().unwrap();
                    m.lock().unwrap().push(lp.stats().iterations);
                    Echo::default()
                },
                &["127.0.0.1"],
                0,
                ServerOptions {
                    start_serving: false,
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap();
        let addr = sa(&server.sockets()[0]);
        let clients: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
        // All five wait in the listen queue before serving starts.
        wait_for_queued(&listeners_of(&server.sockets())[0], 5);
        assert!(made_in.lock().unwrap().is_empty());
        lp.run_until_complete(server.start_serving())
            .unwrap()
            .unwrap();
        run_until(&lp, LIMIT, || made_in.lock().unwrap().len() == 5);
        let made_in = made_in.lock().unwrap().clone();
        assert!(
            made_in.iter().all(|i| *i == made_in[0]),
            "all accepted in one iteration: {made_in:?}"
        );
        // And every one is served.
        for (i, mut c) in clients.into_iter().enumerate() {
            let msg = [i as u8; 3];
            c.write_all(&msg).unwrap();
            c.set_read_timeout(Some(LIMIT)).unwrap();
            let reader = std::thread::spawn(move || {
                let mut buf = [0u8; 3];
                c.read_exact(&mut buf).unwrap();
                buf
            });
            run_until(&lp, LIMIT, || reader.is_finished());
            assert_eq!(reader.join().unwrap(), msg);
        }
        server.close();
    });
}

// ----- getaddrinfo ----------------------------------------------------------------------------

/// An executor that counts its jobs (and runs each on a thread).
#[derive(Default)]
struct Counting(AtomicUsize);

impl evloop::Executor for Counting {
    fn execute(&self, job: evloop::Job) -> Result<(), Error> {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::thread::spawn(job);
        Ok(())
    }
    fn shutdown(&self, _wait: bool) {}
}

#[test]
fn getaddrinfo_answers_ip_literals_at_once_without_the_executor() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let jobs = Arc::new(Counting::default());
        lp.set_default_executor(jobs.clone());
        let stream = AddrInfoHints {
            socktype: Some(Type::STREAM),
            ..Default::default()
        };
        for literal in ["127.0.0.1", "::1"] {
            // Complete at the first poll, with no loop running.
            let found = lp
                .getaddrinfo(Some(literal), 8080, stream)
                .now_or_never()
                .expect("answered at once")
                .unwrap();
            let ip: IpAddr = literal.parse().unwrap();
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(sa(&found[0].addr), SocketAddr::new(ip, 8080));
            assert_eq!(found[0].family, Domain::for_address(SocketAddr::new(ip, 0)));
            assert_eq!(found[0].socktype, Type::STREAM);
            assert_eq!(found[0].protocol, libc::IPPROTO_TCP);
            assert_eq!(found[0].canonname, "");
        }
        assert_eq!(jobs.0.load(Ordering::SeqCst), 0, "no lookup ran");
        // A name is looked up, on the default executor.
        let found = lp
            .run_until_complete(lp.getaddrinfo(Some("localhost"), 8080, stream))
            .unwrap()
            .unwrap();
        assert!(
            found
                .iter()
                .any(|i| sa(&i.addr) == SocketAddr::from(([127, 0, 0, 1], 8080))),
            "{found:?}"
        );
        assert_eq!(jobs.0.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn getaddrinfo_proto_hint_selects_the_protocol_and_socket_type() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let lookup = |host: &str, socktype: Option<Type>, protocol: i32| {
            lp.run_until_complete(lp.getaddrinfo(
                Some(host),
                53,
                AddrInfoHints {
                    socktype,
                    protocol,
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap()
        };
        // A name: the C library's answer, one socket type per protocol.
        let udp = lookup("localhost", None, libc::IPPROTO_UDP);
        assert!(!udp.is_empty());
        for i in &udp {
            assert_eq!(
                (i.socktype, i.protocol),
                (Type::DGRAM, libc::IPPROTO_UDP),
                "{i:?}"
            );
        }
        let tcp = lookup("localhost", None, libc::IPPROTO_TCP);
        assert!(!tcp.is_empty());
        for i in &tcp {
            assert_eq!(
                (i.socktype, i.protocol),
                (Type::STREAM, libc::IPPROTO_TCP),
                "{i:?}"
            );
        }
        // Without the hint, both.
        let any = lookup("localhost", None, 0);
        assert!(any.iter().any(|i| i.protocol == libc::IPPROTO_TCP));
        assert!(any.iter().any(|i| i.protocol == libc::IPPROTO_UDP));
        // A literal with a type and its protocol.
        let literal = lookup("127.0.0.1", Some(Type::DGRAM), libc::IPPROTO_UDP);
        assert_eq!(literal.len(), 1, "{literal:?}");
        assert_eq!(
            (
                literal[0].socktype,
                literal[0].protocol,
                sa(&literal[0].addr)
            ),
            (
                Type::DGRAM,
                libc::IPPROTO_UDP,
                SocketAddr::from(([127, 0, 0, 1], 53))
            )
        );
    });
}

// ----- transports ------------------------------------------------------------------------------

#[test]
fn write_sends_at_once_when_nothing_is_buffered() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (first_tx, first_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut first = [0u8; 5];
            s.read_exact(&mut first).unwrap();
            first_tx.send(first).unwrap();
            go_rx.recv().unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).unwrap();
            rest
        });
        let log = Log::new();
        let rec = Rec::new(&log);
        let t = lp
            .run_until_complete(lp.create_connection(move || rec, "127.0.0.1", port))
            .unwrap()
            .unwrap();
        let big: Vec<u8> = (0..16u32 << 20).map(|i| (i % 253) as u8).collect();
        lp.run_until_complete(async {
            t.write(b"hello").unwrap();
            assert_eq!(t.get_write_buffer_size(), 0, "nothing was buffered");
            // The loop is held right here: only write() itself can have
            // sent the bytes the peer now reads.
            let first = first_rx
                .recv_timeout(LIMIT)
                .expect("the bytes left during write()");
            assert_eq!(&first, b"hello");
            // More than the socket takes (the peer has stopped reading):
            // some goes at once, the rest is buffered.
            t.write(&big).unwrap();
            let buffered = t.get_write_buffer_size();
            assert!(
                buffered > 0 && buffered < big.len(),
                "{buffered} of {} buffered",
                big.len()
            );
        })
        .unwrap();
        go_tx.send(()).unwrap();
        t.close();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert_eq!(lost(&log), Some(None));
        let rest = peer.join().unwrap();
        assert!(rest == big, "the rest arrived intact");
    });
}

#[test]
fn writes_after_close_are_dropped_counted_and_warned_from_the_fifth() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let (port, peer) = reading_peer(None);
        let log = Log::new();
        let rec = Rec::new(&log);
        let t = lp
            .run_until_complete(lp.create_connection(move || rec, "127.0.0.1", port))
            .unwrap()
            .unwrap();
        // close() with nothing buffered: the connection counts as lost at
        // once (asyncio), so even the writes before connection_lost runs
        // are dropped.
        let (_, four) = capture_tracing(|| {
            lp.run_until_complete(async {
                t.write(b"before").unwrap();
                t.close();
                assert!(t.is_closing());
                for _ in 0..4 {
                    t.write(b"after").unwrap();
                }
                assert_eq!(t.get_write_buffer_size(), 0);
            })
            .unwrap()
        });
        assert!(!four.contains("socket.send() raised exception."), "{four}");
        for n in [5, 6] {
            let (_, warned) = capture_tracing(|| {
                lp.run_until_complete(async { t.write(b"after").unwrap() })
                    .unwrap()
            });
            assert!(
                warned.contains("socket.send() raised exception."),
                "write {n}: {warned}"
            );
        }
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert_eq!(lost(&log), Some(None));
        assert_eq!(t.get_write_buffer_size(), 0);
        // Only what was written before close() arrived.
        assert_eq!(peer.join().unwrap(), b"before");
    });
}

#[test]
fn a_write_after_close_while_data_is_still_buffered_is_sent_before_the_end() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (port, peer) = reading_peer(Some(go_rx));
        let log = Log::new();
        let rec = Rec::new(&log);
        let t = lp
            .run_until_complete(lp.create_connection(move || rec, "127.0.0.1", port))
            .unwrap()
            .unwrap();
        let big = vec![3u8; 8 << 20];
        let (_, logged) = capture_tracing(|| {
            lp.run_until_complete(async {
                t.write(&big).unwrap();
                let before = t.get_write_buffer_size();
                assert!(before > 0, "the peer is not reading yet");
                t.close();
                // asyncio's socket transport takes writes until the
                // connection is lost; close() waits for the buffer.
                t.write(b"tail").unwrap();
                assert_eq!(t.get_write_buffer_size(), before + 4);
            })
            .unwrap()
        });
        assert!(
            !logged.contains("socket.send() raised exception."),
            "{logged}"
        );
        assert!(lost(&log).is_none());
        go_tx.send(()).unwrap();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert_eq!(lost(&log), Some(None));
        let got = peer.join().unwrap();
        let mut want = big;
        want.extend_from_slice(b"tail");
        assert!(got == want, "got {} bytes, want {}", got.len(), want.len());
    });
}

/// Does not read what it is sent, and greets with more than the
/// connection can hold; hands its transport out.
struct Unread {
    log: Log<Ev>,
    tx: mpsc::Sender<Transport>,
}

impl Protocol for Unread {
    fn connection_made(&mut self, transport: Transport) {
        self.log.push(Ev::Made);
        transport.pause_reading();
        // A fixed, small socket buffer: the kernel cannot take the
        // greeting whole, whatever its autotuning would allow.
        transport
            .with_socket(|s| s.set_send_buffer_size(64 * 1024))
            .unwrap()
            .unwrap();
        transport.write(&vec![5u8; 4 << 20]).unwrap();
        let _ = self.tx.send(transport);
    }
    fn connection_lost(&mut self, error: Option<io::Error>) {
        self.log.push(Ev::Lost(error.map(|e| e.kind())));
    }
}

#[test]
fn abort_clients_drops_their_buffers_and_the_clients_see_a_reset() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let (tx, rx) = mpsc::channel();
        let l = log.clone();
        let server = lp
            .run_until_complete(lp.create_server(
                move || Unread {
                    log: l.clone(),
                    tx: tx.clone(),
                },
                Some("127.0.0.1"),
                0,
            ))
            .unwrap()
            .unwrap();
        let port = port_of(&server);
        let clients: Vec<TcpStream> = (0..2)
            .map(|_| {
                // A small receive buffer too: the client never reads.
                let c = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
                c.set_recv_buffer_size(64 * 1024).unwrap();
                c.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())
                    .unwrap();
                let mut c = TcpStream::from(c);
                c.write_all(b"unread").unwrap();
                c
            })
            .collect();
        // Both accepted, each with the client's bytes waiting unread and
        // part of its greeting still buffered.
        let transports: Mutex<Vec<Transport>> = Mutex::default();
        run_until(&lp, LIMIT, || {
            let mut ts = transports.lock().unwrap();
            ts.extend(rx.try_iter());
            ts.len() == 2
                && ts
                    .iter()
                    .all(|t| unread(t) >= 6 && t.get_write_buffer_size() > 0)
        });
        server.abort_clients();
        run_until(&lp, LIMIT, || {
            log.get()
                .iter()
                .filter(|e| matches!(e, Ev::Lost(_)))
                .count()
                == 2
        });
        // Aborted: connection_lost(None) at once, the buffer dropped.
        assert_eq!(
            log.get().iter().filter(|e| **e == Ev::Lost(None)).count(),
            2
        );
        for t in transports.lock().unwrap().iter() {
            assert_eq!(t.get_write_buffer_size(), 0);
            assert!(t.is_closing());
        }
        // Each client: whatever greeting reached it, then a reset, never
        // a clean end of stream.
        for mut c in clients {
            c.set_read_timeout(Some(LIMIT)).unwrap();
            let mut buf = vec![0u8; 1 << 16];
            let end = loop {
                match c.read(&mut buf) {
                    Ok(0) => break None,
                    Ok(_) => {}
                    Err(e) => break Some(e.kind()),
                }
            };
            assert_eq!(end, Some(ErrorKind::ConnectionReset));
        }
        server.close();
        lp.run_until_complete(server.wait_closed()).unwrap();
    });
}

// ----- sock_* ---------------------------------------------------------------------------------

#[test]
fn sock_recv_into_fills_the_callers_buffer_and_waits_for_data() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let (a, mut b) = tcp_pair();
        lp.run_until_complete(async {
            // Waits for data that comes later.
            let mut buf = [0xEEu8; 8];
            let (n, ()) = futures::join!(lp.sock_recv_into(&a, &mut buf), async {
                evloop::sleep(Duration::ZERO).await.unwrap();
                b.write_all(b"abc").unwrap();
            });
            assert_eq!(n.unwrap(), 3);
            assert_eq!(
                &buf, b"abc\xEE\xEE\xEE\xEE\xEE",
                "only the bytes received are written"
            );
            // A buffer smaller than what is there: filled, the rest kept.
            b.write_all(b"defgh").unwrap();
            let mut small = [0u8; 2];
            assert_eq!(lp.sock_recv_into(&a, &mut small).await.unwrap(), 2);
            assert_eq!(&small, b"de");
            let mut rest = [0u8; 8];
            assert_eq!(lp.sock_recv_into(&a, &mut rest).await.unwrap(), 3);
            assert_eq!(&rest[..3], b"fgh");
            // The peer closes: 0.
            drop(b);
            assert_eq!(lp.sock_recv_into(&a, &mut rest).await.unwrap(), 0);
        })
        .unwrap();
        assert_eq!(lp.stats().io_sources, 0, "the wait's registration is gone");
    });
}

#[test]
fn sendall_accept_and_connect_refuse_a_blocking_socket() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let refusal = |r: Result<(), Error>| {
            let err = r.unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
            assert_eq!(err.to_string(), "the socket must be non-blocking");
        };
        // sock_sendall: nothing sent.
        let (a, b) = tcp_pair();
        a.set_nonblocking(false).unwrap();
        refusal(lp.run_until_complete(lp.sock_sendall(&a, b"x")).unwrap());
        let mut buf = [0u8; 1];
        assert_eq!(
            (&b).read(&mut buf).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        // sock_accept: the pending connection is not taken.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).unwrap();
        refusal(
            lp.run_until_complete(lp.sock_accept(&listener))
                .unwrap()
                .map(|_| ()),
        );
        listener.set_nonblocking(true).unwrap();
        let (conn, _) = lp
            .run_until_complete(lp.sock_accept(&listener))
            .unwrap()
            .unwrap();
        assert_eq!(
            conn.peer_addr().unwrap().as_socket(),
            client.local_addr().ok()
        );
        // sock_connect: not connected.
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        refusal(
            lp.run_until_complete(lp.sock_connect(&sock, &addr.into()))
                .unwrap(),
        );
        assert_eq!(
            sock.peer_addr().unwrap_err().raw_os_error(),
            Some(libc::ENOTCONN)
        );
        assert_eq!(listener.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
        assert_eq!(lp.stats().io_sources, 0);
    });
}

// ----- sendfile ------------------------------------------------------------------------------

/// Whether sendfile(2) refuses `file` (EINVAL: the kernel cannot splice
/// from it).
fn native_sendfile_refuses(file: &std::fs::File) -> bool {
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut offset: libc::off_t = 0;
    // Safety: sendfile between two open descriptors, into our offset.
    let n = unsafe { libc::sendfile(a.as_raw_fd(), file.as_raw_fd(), &mut offset, 4) };
    n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL)
}

#[test]
fn sendfile_over_tcp_falls_back_to_reads_and_writes_for_a_file_the_kernel_refuses() {
    within(LIMIT, || {
        use std::io::Seek;
        let lp = EventLoop::new().unwrap();
        // This process's command line: fixed for its life, and a /proc
        // file sendfile(2) refuses on most kernels.
        let path = "/proc/self/cmdline";
        let content = std::fs::read(path).unwrap();
        assert!(content.len() > 4);
        let file = std::fs::File::open(path).unwrap();
        let refuses = native_sendfile_refuses(&file);
        if !refuses {
            eprintln!("sendfile(2) takes {path} here: the fallback is not exercised");
        }
        let (port, peer) = reading_peer(None);
        let log = Log::new();
        let rec = Rec::new(&log);
        let t = lp
            .run_until_complete(lp.create_connection(move || rec, "127.0.0.1", port))
            .unwrap()
            .unwrap();
        let len = content.len() as u64;
        let mut want = b"head:".to_vec();
        lp.run_until_complete(async {
            t.write(b"head:").unwrap();
            // Without the fallback: refused where the kernel refuses,
            // and the transport is handed back intact.
            let native = lp.sendfile(&t, &file, 0, Some(len), false).await;
            if refuses {
                assert!(
                    matches!(native, Err(Error::SendfileNotAvailable(_))),
                    "{native:?}"
                );
            } else {
                assert_eq!(native.unwrap(), len);
                want.extend_from_slice(&content);
            }
            assert!(t.is_reading());
            // With it: read and written, from the offset.
            let sent = lp
                .sendfile(&t, &file, 2, Some(len - 2), true)
                .await
                .unwrap();
            assert_eq!(sent, len - 2);
            want.extend_from_slice(&content[2..]);
            t.write(b":tail").unwrap();
            want.extend_from_slice(b":tail");
        })
        .unwrap();
        assert_eq!(
            (&file).stream_position().unwrap(),
            len,
            "the file's offset ends past what was sent"
        );
        t.close();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert_eq!(lost(&log), Some(None));
        let got = peer.join().unwrap();
        assert_eq!(got, want);
        assert!(received(&log).is_empty());
    });
}

/// asyncio: `await loop.sock_recv_into(sock, bytearray(0))` returns 0 at
/// once (CPython's socket module does not call recv(2) for 0 bytes);
/// recv(2) itself answers EAGAIN when nothing is pending, and evloop then
/// waits for data that may never come.
#[test]
fn sock_recv_into_an_empty_buffer_returns_zero_at_once() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_b, _) = listener.accept().unwrap();
        a.set_nonblocking(true).unwrap();
        let got = lp
            .run_until_complete(evloop::wait_for(
                lp.sock_recv_into(&a, &mut []),
                Duration::from_secs(1),
            ))
            .unwrap();
        assert!(matches!(got, Ok(Ok(0))), "{got:?}");
        let got = lp
            .run_until_complete(evloop::wait_for(
                lp.sock_recv(&a, 0),
                Duration::from_secs(1),
            ))
            .unwrap();
        assert!(matches!(&got, Ok(Ok(v)) if v.is_empty()), "{got:?}");
    });
}

/// asyncio (and getaddrinfo(3)) for `getaddrinfo("127.0.0.1", 80,
/// proto=IPPROTO_UDP)`: one entry, SOCK_DGRAM / 17. evloop's literal
/// shortcut answers SOCK_STREAM / 17 as well, an entry no lookup gives.
#[test]
fn getaddrinfo_of_a_literal_with_a_proto_hint_answers_as_a_lookup_would() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let found = lp
            .run_until_complete(lp.getaddrinfo(
                Some("127.0.0.1"),
                80,
                AddrInfoHints {
                    protocol: libc::IPPROTO_UDP,
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap();
        let got: Vec<(Type, i32)> = found.iter().map(|i| (i.socktype, i.protocol)).collect();
        assert_eq!(got, [(Type::DGRAM, libc::IPPROTO_UDP)]);
    });
}

/// asyncio's `loop.getaddrinfo("127.0.0.1", 80)` (no hints) is
/// getaddrinfo(3)'s answer: SOCK_STREAM / 6, SOCK_DGRAM / 17 and
/// SOCK_RAW / 0. evloop's literal shortcut leaves out SOCK_RAW.
#[test]
fn getaddrinfo_of_a_literal_without_hints_answers_as_a_lookup_would() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let found = lp
            .run_until_complete(lp.getaddrinfo(Some("127.0.0.1"), 80, AddrInfoHints::default()))
            .unwrap()
            .unwrap();
        let got: Vec<(Type, i32)> = found.iter().map(|i| (i.socktype, i.protocol)).collect();
        assert_eq!(
            got,
            [
                (Type::STREAM, libc::IPPROTO_TCP),
                (Type::DGRAM, libc::IPPROTO_UDP),
                (Type::RAW, 0)
            ]
        );
    });
}

/// `getaddrinfo("127.0.0.1", 80, type=SOCK_STREAM, flags=AI_CANONNAME)`
/// names the literal after itself (the C library does; CPython shows
/// '127.0.0.1'), with or without evloop's literal shortcut.
#[test]
fn getaddrinfo_of_a_literal_with_ai_canonname_names_it_after_itself() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        for host in ["127.0.0.1", "::1"] {
            for flags in [
                libc::AI_CANONNAME,
                libc::AI_CANONNAME | libc::AI_NUMERICHOST,
            ] {
                let found = lp
                    .run_until_complete(lp.getaddrinfo(
                        Some(host),
                        80,
                        AddrInfoHints {
                            socktype: Some(Type::STREAM),
                            flags,
                            ..Default::default()
                        },
                    ))
                    .unwrap()
                    .unwrap();
                assert_eq!(found.len(), 1, "{host}");
                assert_eq!(found[0].canonname, host);
            }
            // Without the flag, no name (as the C library).
            let found = lp
                .run_until_complete(lp.getaddrinfo(
                    Some(host),
                    80,
                    AddrInfoHints {
                        socktype: Some(Type::STREAM),
                        ..Default::default()
                    },
                ))
                .unwrap()
                .unwrap();
            assert_eq!(found[0].canonname, "");
        }
    });
}
