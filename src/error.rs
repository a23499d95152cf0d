//! Typed errors. Messages use asyncio's wording wherever asyncio has one, so
//! that a log line reads the same whichever side of a port it came from.

use std::any::Any;
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

/// The payload of a caught panic, as `std::panic::catch_unwind` returns it.
pub type PanicPayload = Box<dyn Any + Send + 'static>;

/// An error as a future may carry it (`LoopFuture::set_exception`): shared,
/// because every awaiter of a future observes the same exception.
pub type SharedError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Misuse of the loop API, or a failure of the operating system underneath.
///
/// Every fallible call in evloop returns this type; none of them panics on bad
/// input. Messages are asyncio's where asyncio has one.
///
/// ```
/// use evloop::{Error, EventLoop};
///
/// let lp = EventLoop::new()?;
/// lp.close()?;
/// let err = lp.call_soon(|| ()).unwrap_err();
/// assert!(matches!(err, Error::Closed));
/// assert_eq!(err.to_string(), "Event loop is closed");
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The loop was closed (asyncio: `RuntimeError('Event loop is closed')`).
    Closed,
    /// `run_forever` / `run_until_complete` on a loop that is already running
    /// on some thread.
    AlreadyRunning,
    /// Running a loop on a thread where a different loop is already running.
    AnotherLoopRunning,
    /// `close()` called on a running loop.
    CloseRunning,
    /// `run_until_complete` returned because the loop was stopped before its
    /// future finished.
    StoppedBeforeComplete,
    /// `get_running_loop()` (or something that needs the running loop) was
    /// called on a thread where no loop runs.
    NoRunningLoop,
    /// The policy has no loop for this thread; evloop never creates one
    /// implicitly (as in Python 3.14).
    NoCurrentLoop {
        /// The name of the thread that asked.
        thread: String,
    },
    /// An operation that the object's state does not allow (asyncio's
    /// `InvalidStateError`), e.g. `set_result` on a finished future.
    InvalidState(&'static str),
    /// An operation refused where asyncio raises `RuntimeError` with this
    /// message: a write after `write_eof()`, a second `serve_forever()`, a
    /// handler for a signal that cannot be caught.
    Runtime(String),
    /// A negative file descriptor.
    InvalidFd(RawFd),
    /// The operating system refused an operation (bad descriptor, a regular
    /// file given to the reactor, poller creation failure, ...).
    Io(io::Error),
    /// Submission to an executor that was shut down.
    ExecutorShutdown,
    /// `run_in_executor(None, ..)` after `shutdown_default_executor`
    /// (asyncio: `RuntimeError('Executor shutdown has been called')`).
    DefaultExecutorShutdown,
    /// An executor could not start a worker thread, and no other worker was
    /// alive to run the job (Python: `RuntimeError("can't start new
    /// thread")`).
    ThreadSpawn(io::Error),
    /// `run_until_complete` was given a task or future of another loop
    /// (asyncio's `ValueError`).
    ForeignFuture,
    /// The outcome of a future or task whose code panicked, read by
    /// reference (`result()`, `exception()`, `(&fut).await`): the payload
    /// itself goes to whoever awaits the value, so readers get its message.
    Panicked(String),
    /// The executor already holds as many queued jobs as it was built to
    /// accept (`ThreadPoolBuilder::max_queued`); the job was not taken.
    QueueFull,
    /// A timeout expired (asyncio's `TimeoutError`).
    Timeout,
    /// An argument the operation refuses (asyncio's `ValueError`), e.g. a
    /// blocking socket given to `sock_recv`.
    InvalidArgument(String),
    /// An operation that must run on the thread running the loop was
    /// started elsewhere (asyncio's loop methods are not thread-safe;
    /// evloop refuses rather than race).
    WrongThread,
    /// `sendfile` cannot be used for this file or socket, and the fallback
    /// was refused (asyncio's `SendfileNotAvailableError`).
    SendfileNotAvailable(String),
    /// A name lookup failed (asyncio's `socket.gaierror`): the C library's
    /// `EAI_*` code and its message. Displayed as Python does, e.g.
    /// "[Errno -2] Name or service not known".
    AddressLookup {
        /// The `EAI_*` code.
        code: i32,
        /// `gai_strerror`'s message.
        message: String,
    },
    /// A system call failed, with asyncio's description of what was being
    /// done (e.g. "Connect call failed ('127.0.0.1', 1)"); the OS error is
    /// the `source`. Displayed as Python's `OSError`: "[Errno 111] ...".
    Os {
        /// What was being done.
        context: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// A stream ended before the read was satisfied (asyncio's
    /// `IncompleteReadError`): `partial` holds the bytes read before EOF,
    /// which the reader no longer has; `expected` is the size asked of
    /// `readexactly` (`None` for `readuntil`). Displayed as asyncio: "3
    /// bytes read on a total of 5 expected bytes".
    IncompleteRead {
        /// What was read before the end of the stream.
        partial: Vec<u8>,
        /// How many bytes were expected, if a count was.
        expected: Option<usize>,
    },
    /// `readuntil` / `readline` found no separator within the stream's
    /// limit (asyncio's `LimitOverrunError`; asyncio's `readline` turns it
    /// into a `ValueError` with the same message). `consumed` is how many
    /// bytes must be consumed to go on.
    LimitOverrun {
        /// asyncio's message, e.g. "Separator is not found, and chunk
        /// exceed the limit".
        message: &'static str,
        /// Bytes to consume.
        consumed: usize,
    },
    /// TLS failed (asyncio's `ssl.SSLError` family): a certificate that
    /// does not verify, a peer that speaks no TLS or sends garbage, a
    /// protocol violation. The rustls error says which. Displayed as
    /// "\[SSL\] " and rustls's message.
    Tls(rustls::Error),
    /// Several attempts failed (asyncio's `ExceptionGroup` from
    /// `create_connection(..., all_errors=True)`): every error, in the
    /// order the attempts were made.
    Multiple {
        /// What failed.
        context: String,
        /// Each attempt's error.
        errors: Vec<Error>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Closed => f.write_str("Event loop is closed"),
            Error::AlreadyRunning => f.write_str("This event loop is already running"),
            Error::AnotherLoopRunning => {
                f.write_str("Cannot run the event loop while another loop is running")
            }
            Error::CloseRunning => f.write_str("Cannot close a running event loop"),
            Error::StoppedBeforeComplete => {
                f.write_str("Event loop stopped before Future completed.")
            }
            Error::NoRunningLoop => f.write_str("no running event loop"),
            Error::NoCurrentLoop { thread } => {
                write!(f, "There is no current event loop in thread '{thread}'.")
            }
            Error::InvalidState(what) => f.write_str(what),
            Error::Runtime(what) => f.write_str(what),
            Error::InvalidFd(fd) => write!(f, "Invalid file descriptor: {fd}"),
            Error::Io(e) => write!(f, "{e}"),
            Error::ExecutorShutdown => f.write_str("cannot schedule new futures after shutdown"),
            Error::DefaultExecutorShutdown => f.write_str("Executor shutdown has been called"),
            Error::ThreadSpawn(e) => write!(f, "can't start new thread: {e}"),
            Error::ForeignFuture => f.write_str(
                "The future belongs to a different loop than the one specified as the loop argument",
            ),
            Error::Panicked(message) => write!(f, "panicked: {message}"),
            Error::InvalidArgument(what) => f.write_str(what),
            Error::WrongThread => {
                f.write_str("this must run on the thread that runs the event loop")
            }
            Error::SendfileNotAvailable(why) => write!(f, "sendfile is not available: {why}"),
            Error::AddressLookup { code, message } => write!(f, "[Errno {code}] {message}"),
            Error::Os { context, source } => match source.raw_os_error() {
                Some(errno) => write!(f, "[Errno {errno}] {context}"),
                None => write!(f, "{context}: {source}"),
            },
            Error::Multiple { context, errors } => {
                write!(f, "{context} ({} sub-exceptions)", errors.len())
            }
            Error::IncompleteRead { partial, expected } => match expected {
                Some(n) => write!(f, "{} bytes read on a total of {n} expected bytes", partial.len()),
                None => write!(
                    f,
                    "{} bytes read on a total of undefined expected bytes",
                    partial.len()
                ),
            },
            Error::LimitOverrun { message, .. } => f.write_str(message),
            Error::QueueFull => f.write_str("the executor's queue is full"),
            Error::Timeout => f.write_str("timed out"),
            Error::Tls(e) => write!(f, "[SSL] {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) | Error::ThreadSpawn(e) | Error::Os { source: e, .. } => Some(e),
            Error::Tls(e) => Some(e),
            _ => None,
        }
    }
}

impl Error {
    /// An I/O error from a connection, typed: one that carries a rustls
    /// error (what a TLS transport's `connection_lost` receives) becomes
    /// [`Error::Tls`], any other [`Error::Io`].
    pub fn from_connection(e: io::Error) -> Error {
        if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
            let inner = e.into_inner().expect("checked just above");
            match inner.downcast::<rustls::Error>() {
                Ok(tls) => return Error::Tls(*tls),
                Err(other) => return Error::Io(io::Error::new(io::ErrorKind::InvalidData, other)),
            }
        }
        Error::Io(e)
    }

    /// The operating system's error inside, if there is one
    /// ([`Error::Io`], [`Error::Os`], [`Error::ThreadSpawn`]).
    pub fn os_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io(e) | Error::ThreadSpawn(e) | Error::Os { source: e, .. } => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// How a task, a loop future or a concurrent future ended when it did not
/// produce a value.
///
/// ```
/// use evloop::{EventLoop, TaskError};
///
/// let lp = EventLoop::new()?;
/// let task = lp.create_task(async { panic!("bad input") })?;
/// match lp.run_until_complete(task)? {
///     Err(TaskError::Panicked(payload)) => {
///         assert_eq!(evloop::panic_message(&payload), "bad input")
///     }
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), evloop::Error>(())
/// ```
#[non_exhaustive]
pub enum TaskError {
    /// It was cancelled (asyncio's `CancelledError`), with the message
    /// given to `cancel_with`, if any.
    Cancelled(Option<Arc<str>>),
    /// Its code panicked; the payload is what the panic carried.
    Panicked(PanicPayload),
    /// `set_exception` completed it with this error.
    Exception(SharedError),
    /// A blocking wait (`ConcurrentFuture::result`) gave up before the result
    /// was ready; the computation itself goes on.
    Timeout,
}

impl TaskError {
    /// Whether this is [`TaskError::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TaskError::Cancelled(_))
    }

    /// The cancellation message, if this is a cancellation that carries
    /// one (asyncio: `CancelledError.args[0]`).
    pub fn cancel_message(&self) -> Option<&str> {
        match self {
            TaskError::Cancelled(Some(m)) => Some(m),
            _ => None,
        }
    }

    /// A copy for a reader that does not take the outcome: errors are
    /// shared; a panic's payload cannot be copied, so the reader gets an
    /// [`Error::Panicked`] with its message.
    pub(crate) fn share(&self) -> TaskError {
        match self {
            TaskError::Cancelled(m) => TaskError::Cancelled(m.clone()),
            TaskError::Exception(e) => TaskError::Exception(e.clone()),
            TaskError::Timeout => TaskError::Timeout,
            TaskError::Panicked(p) => {
                TaskError::Exception(Arc::new(Error::Panicked(panic_message(p).to_string())))
            }
        }
    }

    /// [`TaskError::share`] that gives every reader of one panic the same
    /// error object (asyncio's `exception()` returns the same exception
    /// each time): the first read makes it, into `cache`, which the
    /// outcome's owner keeps.
    pub(crate) fn share_cached(&self, cache: &mut Option<SharedError>) -> TaskError {
        match self {
            TaskError::Panicked(p) => TaskError::Exception(
                cache
                    .get_or_insert_with(|| Arc::new(Error::Panicked(panic_message(p).to_string())))
                    .clone(),
            ),
            other => other.share(),
        }
    }

    /// An `InvalidState` exception (asyncio's `InvalidStateError`).
    pub(crate) fn invalid(what: &'static str) -> TaskError {
        TaskError::Exception(Arc::new(Error::InvalidState(what)))
    }

    /// Whether this is [`TaskError::Panicked`].
    pub fn is_panic(&self) -> bool {
        matches!(self, TaskError::Panicked(_))
    }

    /// The panic payload, if this is [`TaskError::Panicked`], so that a caller
    /// can `std::panic::resume_unwind` it.
    pub fn into_panic(self) -> Option<PanicPayload> {
        match self {
            TaskError::Panicked(p) => Some(p),
            _ => None,
        }
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Cancelled(None) => f.write_str("Cancelled"),
            TaskError::Cancelled(Some(m)) => write!(f, "Cancelled({m:?})"),
            TaskError::Panicked(p) => write!(f, "Panicked({:?})", panic_message(p)),
            TaskError::Exception(e) => write!(f, "Exception({e:?})"),
            TaskError::Timeout => f.write_str("Timeout"),
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Cancelled(None) => f.write_str("CancelledError"),
            TaskError::Cancelled(Some(m)) => write!(f, "CancelledError: {m}"),
            TaskError::Panicked(p) => write!(f, "panicked: {}", panic_message(p)),
            TaskError::Exception(e) => write!(f, "{e}"),
            TaskError::Timeout => f.write_str("timed out"),
        }
    }
}

impl std::error::Error for TaskError {}

/// The text of a panic payload when it is a string (as `panic!("...")`
/// makes it), or a placeholder.
pub fn panic_message(payload: &PanicPayload) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "Box<dyn Any>"
    }
}
