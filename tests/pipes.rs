//! Pipe transports (asyncio's "Working with pipes"): connect_read_pipe and
//! connect_write_pipe over real pipes, with asyncio's callback order, EOF,
//! flow control, the reader going away, and refused descriptors.

mod common;

use common::net::{Ev, Rec, lost, received, run_until};
use common::{Log, capture_tracing, within};
use evloop::{Error, EventLoop, ExtraInfo, Transport};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// A new pipe: (read end, write end), both blocking.
fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // Safety: `fds` is a valid out-array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // Safety: both fds were just created and are owned by nobody else.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

fn read_transport(lp: &EventLoop, log: &Log<Ev>, end: File) -> Transport {
    let (tx, rx) = mpsc::channel();
    let rec = Rec::new(log).sending(&tx);
    lp.run_until_complete(lp.connect_read_pipe(move || rec, end))
        .unwrap()
        .unwrap();
    rx.recv_timeout(LIMIT).unwrap()
}

fn write_transport(lp: &EventLoop, log: &Log<Ev>, end: File) -> Transport {
    let rec = Rec::new(log);
    lp.run_until_complete(lp.connect_write_pipe(move || rec, end))
        .unwrap()
        .unwrap()
}

#[test]
fn a_read_pipe_delivers_data_then_eof_then_connection_lost() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let (r, mut w) = pipe();
        let t = read_transport(&lp, &log, r);
        let Some(ExtraInfo::Pipe(fd)) = t.get_extra_info("pipe") else {
            panic!("pipe: {:?}", t.get_extra_info("pipe"));
        };
        assert!(!fd.is_socket());
        // The descriptor is lent while the transport is open: a FIFO.
        let fifo = lp
            .run_until_complete(async {
                fd.with_fd(|fd| {
                    // Safety: an all-zero `stat` is valid for fstat to fill.
                    let mut st: libc::stat = unsafe { std::mem::zeroed() };
                    // Safety: `fd` is open for the call; `st` is valid.
                    let rc = unsafe { libc::fstat(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut st) };
                    rc == 0 && st.st_mode & libc::S_IFMT == libc::S_IFIFO
                })
            })
            .unwrap();
        assert_eq!(fifo, Some(true));
        assert!(fd.with_socket(|_| ()).is_none(), "a pipe is no socket");
        assert!(t.get_extra_info("socket").is_none());
        assert!(t.get_extra_info("peername").is_none());
        assert!(!t.can_write_eof());
        assert!(t.is_reading());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"pipe").unwrap();
        drop(w);
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert_eq!(received(&log), b"hello pipe");
        let events = log.get();
        assert_eq!(events.first(), Some(&Ev::Made));
        // asyncio: eof_received, then connection_lost(None), whatever
        // eof_received answers.
        assert_eq!(&events[events.len() - 2..], &[Ev::Eof, Ev::Lost(None)]);
        assert!(t.is_closing());
        assert!(t.get_extra_info("pipe").is_none());
        assert!(
            lp.run_until_complete(async { fd.with_fd(|_| ()) })
                .unwrap()
                .is_none()
        );
    });
}

#[test]
fn a_read_pipe_refuses_writes_and_write_eof() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let (r, _w) = pipe();
        let t = read_transport(&lp, &log, r);
        lp.run_until_complete(async {
            assert!(matches!(t.write(b"x"), Err(Error::InvalidState(_))));
            assert!(matches!(t.write_eof(), Err(Error::InvalidState(_))));
        })
        .unwrap();
        t.close();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert_eq!(log.get(), vec![Ev::Made, Ev::Lost(None)]);
    });
}

#[test]
fn a_paused_read_pipe_delivers_nothing_until_resumed() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let (r, mut w) = pipe();
        let t = read_transport(&lp, &log, r);
        t.pause_reading();
        assert!(!t.is_reading());
        w.write_all(b"held").unwrap();
        // Several iterations with the data waiting: nothing delivered.
        for _ in 0..5 {
            common::run_one_iteration(&lp);
        }
        assert_eq!(received(&log), b"");
        t.resume_reading();
        run_until(&lp, LIMIT, || received(&log) == b"held");
        drop(w);
        run_until(&lp, LIMIT, || lost(&log).is_some());
    });
}

#[test]
fn a_write_pipe_writes_and_write_eof_closes_it() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let (mut r, w) = pipe();
        let t = write_transport(&lp, &log, w);
        assert!(t.can_write_eof());
        assert!(!t.is_reading());
        assert!(matches!(t.get_extra_info("pipe"), Some(ExtraInfo::Pipe(_))));
        lp.run_until_complete(async {
            t.write(b"one ").unwrap();
            t.writelines([&b"two "[..], b"three"]).unwrap();
            t.write_eof().unwrap();
            assert!(t.is_closing());
            // asyncio drops writes to a closing pipe.
            t.write(b"dropped").unwrap();
        })
        .unwrap();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert_eq!(log.get(), vec![Ev::Made, Ev::Lost(None)]);
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"one two three");
    });
}

#[test]
fn a_write_pipe_whose_reader_closes_with_nothing_buffered_closes_cleanly() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let (r, w) = pipe();
        let t = write_transport(&lp, &log, w);
        lp.run_until_complete(async { t.write(b"abc").unwrap() })
            .unwrap();
        drop(r);
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert_eq!(log.get(), vec![Ev::Made, Ev::Lost(None)]);
        assert!(t.is_closing());
    });
}

#[test]
fn a_write_pipe_with_bytes_buffered_when_its_reader_closes_reports_broken_pipe() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let (r, w) = pipe();
        let t = write_transport(&lp, &log, w);
        lp.run_until_complete(async {
            // More than the pipe holds (64 KiB) and the high-water mark.
            t.write(&vec![7u8; 200_000]).unwrap();
            assert!(t.get_write_buffer_size() > 0);
        })
        .unwrap();
        assert_eq!(log.get(), vec![Ev::Made, Ev::Pause]);
        drop(r);
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert_eq!(
            lost(&log),
            Some(Some(std::io::ErrorKind::BrokenPipe)),
            "{:?}",
            log.get()
        );
        assert_eq!(t.get_write_buffer_size(), 0);
    });
}

#[test]
fn a_write_pipe_pauses_above_the_high_mark_and_resumes_as_the_reader_drains() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let (mut r, w) = pipe();
        let t = write_transport(&lp, &log, w);
        t.set_write_buffer_limits(Some(1024), Some(256)).unwrap();
        lp.run_until_complete(async { t.write(&vec![1u8; 300_000]).unwrap() })
            .unwrap();
        assert_eq!(log.get(), vec![Ev::Made, Ev::Pause]);
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            r.read_to_end(&mut got).unwrap();
            got.len()
        });
        run_until(&lp, LIMIT, || log.get().contains(&Ev::Resume));
        t.close();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert_eq!(reader.join().unwrap(), 300_000);
        assert_eq!(lost(&log), Some(None));
    });
}

#[test]
fn regular_files_are_refused_with_asyncios_words() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let path = std::env::temp_dir().join(format!("evloop-pipe-{}", std::process::id()));
        let f = File::create(&path).unwrap();
        let g = f.try_clone().unwrap();
        std::fs::remove_file(&path).unwrap();
        let err = lp
            .run_until_complete(lp.connect_read_pipe(|| Rec::new(&Log::new()), f))
            .unwrap()
            .unwrap_err();
        assert_eq!(err.to_string(), "Pipe transport is for pipes/sockets only.");
        let err = lp
            .run_until_complete(lp.connect_write_pipe(|| Rec::new(&Log::new()), g))
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)));
        assert_eq!(
            err.to_string(),
            "Pipe transport is only for pipes, sockets and character devices"
        );
    });
}

#[test]
fn a_socket_works_as_a_pipe() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (tx, rx) = mpsc::channel();
        let rec = Rec::new(&log).sending(&tx);
        lp.run_until_complete(lp.connect_read_pipe(move || rec, OwnedFd::from(a)))
            .unwrap()
            .unwrap();
        let _t = rx.recv_timeout(LIMIT).unwrap();
        b.write_all(b"via a socket").unwrap();
        drop(b);
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert_eq!(received(&log), b"via a socket");
    });
}

#[test]
fn pipes_on_a_closed_loop_or_off_its_thread_are_refused() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let (r, w) = pipe();
        let other = lp.clone();
        // Off the loop's thread: the future is polled on another loop.
        let err = EventLoop::new()
            .unwrap()
            .run_until_complete(async move {
                other.connect_read_pipe(|| Rec::new(&Log::new()), r).await
            })
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, Error::WrongThread), "{err:?}");
        lp.close().unwrap();
        let err = lp
            .run_until_complete(lp.connect_write_pipe(|| Rec::new(&Log::new()), w))
            .unwrap_err();
        assert!(matches!(err, Error::Closed), "{err:?}");
    });
}

#[test]
fn a_write_pipe_on_a_tty_is_not_closed_by_input() {
    within(LIMIT, || {
        // A pseudo-terminal: the slave is a character device, readable
        // when the master writes (keyboard input), which must not read as
        // "the reader closed" (asyncio watches only FIFOs and sockets so).
        // Safety: plain libc calls on descriptors this test owns; ptsname's
        // static buffer is copied at once.
        let (master, slave) = unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            assert!(m >= 0);
            assert_eq!(libc::grantpt(m), 0);
            assert_eq!(libc::unlockpt(m), 0);
            let name = std::ffi::CStr::from_ptr(libc::ptsname(m)).to_owned();
            let s = libc::open(
                name.as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            );
            assert!(s >= 0);
            (File::from_raw_fd(m), File::from_raw_fd(s))
        };
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let t = write_transport(&lp, &log, slave);
        let mut input = master.try_clone().unwrap();
        input.write_all(b"typed\n").unwrap();
        lp.run_until_complete(async {
            t.write(b"shown\n").unwrap();
            // Several iterations with input pending on the device.
            for _ in 0..5 {
                evloop::sleep(Duration::ZERO).await.unwrap();
            }
        })
        .unwrap();
        assert!(!t.is_closing(), "{:?}", log.get());
        assert_eq!(log.get(), vec![Ev::Made]);
        t.close();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        let mut echoed = [0u8; 64];
        let n = (&master).read(&mut echoed).unwrap();
        assert!(n > 0);
    });
}

#[test]
fn sendfile_over_a_write_pipe_uses_asyncios_fallback() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let (mut r, w) = pipe();
        let t = write_transport(&lp, &log, w);
        let content: Vec<u8> = (0..300_000).map(|i| (i % 239) as u8).collect();
        let file = common::file_with("pipe-sendfile", &content);
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            r.read_to_end(&mut got).unwrap();
            got
        });
        let err = lp
            .run_until_complete(lp.sendfile(&t, &file, 0, None, false))
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&err, Error::Runtime(m) if m.starts_with("fallback is disabled and native sendfile is not supported for transport")),
            "{err:?}"
        );
        let sent = lp
            .run_until_complete(lp.sendfile(&t, &file, 0, None, true))
            .unwrap()
            .unwrap();
        assert_eq!(sent, content.len() as u64);
        t.close();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert!(reader.join().unwrap() == content);
    });
}

/// Closes the pipe's read end when told of the connection, so that the
/// reader is gone just as the transport starts reading.
struct DropsReader(Rec, Option<File>);

impl evloop::Protocol for DropsReader {
    fn connection_made(&mut self, transport: Transport) {
        self.1 = None;
        self.0.connection_made(transport);
    }
    fn connection_lost(&mut self, error: Option<std::io::Error>) {
        self.0.connection_lost(error);
    }
}

#[test]
fn a_write_pipe_whose_reader_goes_as_it_starts_closes_cleanly_and_never_reads() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        for _ in 0..20 {
            let log = Log::new();
            let (r, w) = pipe();
            let rec = Rec::new(&log);
            let t = lp
                .run_until_complete(lp.connect_write_pipe(move || DropsReader(rec, Some(r)), w))
                .unwrap()
                .unwrap();
            run_until(&lp, LIMIT, || lost(&log).is_some());
            // Not EBADF from reading a write end: asyncio's clean close.
            assert_eq!(log.get(), vec![Ev::Made, Ev::Lost(None)]);
            assert!(t.is_closing());
        }
    });
}

#[test]
fn writes_after_a_write_pipe_closed_are_dropped_and_warned_from_the_sixth() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let (_r, w) = pipe();
        let t = write_transport(&lp, &log, w);
        t.close();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        // asyncio's pipe does not count its close as a lost write (its
        // socket does, and warns from the fifth).
        let warning = "pipe closed by peer or os.write(pipe, data) raised exception.";
        let (_, five) = capture_tracing(|| {
            lp.run_until_complete(async {
                for _ in 0..5 {
                    t.write(b"gone").unwrap();
                }
            })
            .unwrap()
        });
        assert!(!five.contains(warning), "{five}");
        let (_, sixth) = capture_tracing(|| {
            lp.run_until_complete(async { t.write(b"gone").unwrap() })
                .unwrap()
        });
        assert!(sixth.contains(warning), "{sixth}");
        assert_eq!(t.get_write_buffer_size(), 0);
    });
}

#[test]
fn writes_from_another_thread_count_at_once_and_drive_flow_control() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let (mut r, w) = pipe();
        let t = write_transport(&lp, &log, w);
        t.set_write_buffer_limits(Some(16 * 1024), None).unwrap();
        // The loop is held while another thread writes 32 KiB, twice the
        // high mark; the pipe (64 KiB) would take each write at once.
        let t2 = t.clone();
        let writer = common::while_loop_held(&lp, move || {
            for _ in 0..4 {
                t2.write(&[7; 8192]).unwrap();
            }
            t2.get_write_buffer_size()
        });
        let reader = std::thread::spawn(move || {
            let mut got = vec![0; 32 * 1024];
            r.read_exact(&mut got).unwrap();
            // The read end stays open: the transport is not closed.
            (got, r)
        });
        run_until(&lp, LIMIT, || reader.is_finished());
        // Counted the moment they were written, not when the loop got to
        // them.
        assert_eq!(writer.join().unwrap(), 32 * 1024);
        let (got, _r) = reader.join().unwrap();
        assert_eq!(got, vec![7; 32 * 1024]);
        run_until(&lp, LIMIT, || log.get().contains(&Ev::Resume));
        // Over the mark while they waited: pause_writing, then
        // resume_writing once the loop sent them.
        assert_eq!(log.get(), vec![Ev::Made, Ev::Pause, Ev::Resume]);
        assert_eq!(t.get_write_buffer_size(), 0);
    });
}
