//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod net;
pub mod tls;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// An ordered log that callbacks on any thread append to.
#[derive(Clone, Default)]
pub struct Log<T>(Arc<Mutex<Vec<T>>>);

impl<T: Clone + Send + 'static> Log<T> {
    pub fn new() -> Self {
        Log(Arc::new(Mutex::new(Vec::new())))
    }
    pub fn push(&self, v: T) {
        self.0.lock().unwrap().push(v);
    }
    pub fn get(&self) -> Vec<T> {
        self.0.lock().unwrap().clone()
    }
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    /// A callback that appends `v`.
    pub fn cb(&self, v: T) -> impl FnOnce() + Send + 'static {
        let log = self.clone();
        move || log.push(v)
    }
}

/// Counts how many of its tokens were dropped.
#[derive(Clone, Default)]
pub struct DropCounter(Arc<AtomicUsize>);

pub struct Token(Arc<AtomicUsize>);

impl Drop for Token {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl DropCounter {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn token(&self) -> Token {
        Token(self.0.clone())
    }
    pub fn dropped(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Installs a handler that records every exception context's message and
/// panic text.
pub fn record_exceptions(lp: &evloop::EventLoop) -> Log<(String, Option<String>)> {
    let log = Log::new();
    let l = log.clone();
    lp.set_exception_handler(Some(Arc::new(move |_lp, ctx| {
        l.push((ctx.message.clone(), ctx.panic_message().map(str::to_string)));
    })));
    log
}

/// Captures what `tracing` logs on the current thread while `f` runs.
pub fn capture_tracing<R>(f: impl FnOnce() -> R) -> (R, String) {
    use std::io::Write;
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let r = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    (r, text)
}

/// A file holding `content`, opened for reading and already unlinked
/// (nothing is left behind), for the sendfile tests.
#[allow(dead_code)]
pub fn file_with(name: &str, content: &[u8]) -> std::fs::File {
    let path = std::env::temp_dir().join(format!("evloop-{name}-{}", std::process::id()));
    std::fs::write(&path, content).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    file
}

/// Runs `f` on a new thread and fails the test if it takes longer than
/// `limit` (instead of hanging the suite).
pub fn within<R: Send + 'static>(
    limit: std::time::Duration,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(r)) => r,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("did not finish within {limit:?}"),
    }
}

/// Runs exactly one iteration of `lp` (asyncio: `stop()` then
/// `run_forever()`).
pub fn run_one_iteration(lp: &evloop::EventLoop) {
    lp.stop();
    lp.run_forever().unwrap();
}

/// Runs the test `name` of this binary in a child process of its own, whose
/// only work is `body` (for what must not share a process with other
/// tests: counting fds, lowering limits, signals that kill). In the child
/// this runs `body` and returns `None`; in the parent it returns the
/// child's exit status and output, failing if the child outlives `limit`.
#[allow(dead_code)]
pub fn run_in_child(
    name: &str,
    limit: std::time::Duration,
    body: fn(),
) -> Option<(std::process::ExitStatus, String)> {
    const CHILD: &str = "EVLOOP_TEST_CHILD";
    if std::env::var(CHILD).as_deref() == Ok(name) {
        body();
        return None;
    }
    let log_path = std::env::temp_dir().join(format!("evloop-child-{}-{name}", std::process::id()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    // A thread waits for the child; we wait for it, bounded.
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(limit) {
        Ok(status) => status.unwrap(),
        Err(_) => {
            // Safety: kill(2) on the pid of our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = rx.recv();
            panic!("the child running {name} did not finish within {limit:?}");
        }
    };
    let out = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    // libtest prints this before the body starts: without it the name
    // matched no test, and an exit status of 0 would prove nothing.
    assert!(
        out.contains("running 1 test"),
        "the child ran no test named {name}:\n{out}"
    );
    Some((status, out))
}

/// Runs `f` on another thread while the thread running `lp` is held in a
/// callback (queued now, so it runs once the loop runs): what `f` does to
/// the loop's objects waits, posted, until `f` returns and the loop goes
/// on. The handle gives `f`'s result.
pub fn while_loop_held<R: Send + 'static>(
    lp: &evloop::EventLoop,
    f: impl FnOnce() -> R + Send + 'static,
) -> std::thread::JoinHandle<R> {
    let limit = std::time::Duration::from_secs(30);
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    lp.call_soon(move || {
        held_tx.send(()).unwrap();
        go_rx.recv_timeout(limit).unwrap();
    })
    .unwrap();
    std::thread::spawn(move || {
        held_rx.recv_timeout(limit).unwrap();
        let r = f();
        go_tx.send(()).unwrap();
        r
    })
}
