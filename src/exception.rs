//! What goes to a loop's exception handler when a callback or task fails
//! with nobody to report to (asyncio's `call_exception_handler` context).

use crate::error::{PanicPayload, SharedError, panic_message};
use std::any::Any;
use std::fmt;
use std::panic::Location;
use std::sync::Arc;
use std::time::Instant;

/// Which task an [`ExceptionContext`] is about.
#[derive(Clone, Debug)]
pub struct TaskInfo {
    /// The task's id (unique in this process).
    pub id: u64,
    /// The task's name at the time of the report.
    pub name: String,
    /// Where the task was created.
    pub created_at: &'static Location<'static>,
}

impl fmt::Display for TaskInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<Task name='{}' created at {}>",
            self.name, self.created_at
        )
    }
}

/// What an [`ExceptionContext`] says about the callback that failed.
#[derive(Clone, Debug)]
pub struct HandleInfo {
    /// The callback's allocation, to compare with a `Handle` (see
    /// [`HandleInfo::is`](crate::HandleInfo::is)).
    pub(crate) addr: usize,
    /// The timer's deadline, for a timer callback.
    pub when: Option<Instant>,
    /// Where the callback was scheduled from.
    pub scheduled_at: &'static Location<'static>,
}

impl fmt::Display for HandleInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.when {
            Some(_) => write!(f, "<TimerHandle scheduled at {}>", self.scheduled_at),
            None => write!(f, "<Handle scheduled at {}>", self.scheduled_at),
        }
    }
}

/// The transport an [`ExceptionContext`] is about (asyncio's `transport`
/// key; its `protocol` key is the protocol inside, which
/// `Transport::with_protocol` reaches).
///
/// ```
/// use evloop::{ExceptionContext, Transport};
///
/// fn closing_transport(ctx: &ExceptionContext) -> Option<&Transport> {
///     ctx.transport.as_ref()?.downcast::<Transport>()
/// }
/// ```
#[derive(Clone)]
pub struct TransportInfo {
    handle: Arc<dyn Any + Send + Sync>,
    description: String,
}

impl TransportInfo {
    /// `transport` (a handle the report keeps), described by its `Debug`.
    pub(crate) fn new<T: Any + Send + Sync + fmt::Debug>(transport: T) -> TransportInfo {
        TransportInfo {
            description: format!("{transport:?}"),
            handle: Arc::new(transport),
        }
    }

    /// The transport, if it is a `T`: a [`Transport`](crate::Transport)
    /// or a [`DatagramTransport`](crate::DatagramTransport).
    pub fn downcast<T: Any>(&self) -> Option<&T> {
        self.handle.downcast_ref::<T>()
    }
}

impl fmt::Display for TransportInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

impl fmt::Debug for TransportInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

/// The details of an error reported to the exception handler.
///
/// asyncio passes a dict; these are typed fields for the keys evloop
/// fills: `message`; `exception` as [`panic`](Self::panic) (a panic's
/// payload) or [`error`](Self::error) (an error value); `handle`;
/// `task`; `transport` (whose protocol, asyncio's `protocol` key, is
/// reached through the transport). asyncio's `future` key has no field:
/// a future's unread failure is reported with its message alone.
///
/// ```
/// use evloop::EventLoop;
/// use std::sync::{Arc, Mutex};
///
/// let lp = EventLoop::new()?;
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let s = seen.clone();
/// lp.set_exception_handler(Some(Arc::new(move |_lp, ctx| {
///     s.lock().unwrap().push(format!("{}: {:?}", ctx.message, ctx.panic_message()));
/// })));
/// lp.call_soon(|| panic!("callback failed"))?;
/// lp.call_soon(|| ())?; // still runs: the loop goes on
/// lp.stop();
/// lp.run_forever()?;
/// let seen = seen.lock().unwrap();
/// assert!(seen[0].starts_with("Exception in callback"));
/// assert!(seen[0].ends_with("Some(\"callback failed\")"));
/// # Ok::<(), evloop::Error>(())
/// ```
#[non_exhaustive]
pub struct ExceptionContext {
    /// What happened, in asyncio's words where asyncio has them
    /// ("Exception in callback ...", "Task exception was never retrieved").
    pub message: String,
    /// The payload of the panic that caused the report, if any.
    pub panic: Option<PanicPayload>,
    /// The error that caused the report, if it was an error value.
    pub error: Option<SharedError>,
    /// The callback involved.
    pub handle: Option<HandleInfo>,
    /// The task involved.
    pub task: Option<TaskInfo>,
    /// The transport involved: a transport's fatal error, or a failed
    /// protocol callback.
    pub transport: Option<TransportInfo>,
}

impl ExceptionContext {
    /// A context with only a message, for `call_exception_handler`.
    pub fn new(message: impl Into<String>) -> ExceptionContext {
        ExceptionContext {
            message: message.into(),
            panic: None,
            error: None,
            handle: None,
            task: None,
            transport: None,
        }
    }

    /// Attaches an error value.
    pub fn with_error(mut self, error: SharedError) -> ExceptionContext {
        self.error = Some(error);
        self
    }

    /// Attaches a panic payload.
    pub fn with_panic(mut self, panic: PanicPayload) -> ExceptionContext {
        self.panic = Some(panic);
        self
    }

    /// Attaches the callback involved.
    pub fn with_handle(mut self, handle: HandleInfo) -> ExceptionContext {
        self.handle = Some(handle);
        self
    }

    /// Attaches the task involved.
    pub fn with_task(mut self, task: TaskInfo) -> ExceptionContext {
        self.task = Some(task);
        self
    }

    /// Attaches the transport involved.
    pub(crate) fn with_transport(mut self, transport: TransportInfo) -> ExceptionContext {
        self.transport = Some(transport);
        self
    }

    /// The panic message, if the report carries a panic whose payload is a
    /// string.
    pub fn panic_message(&self) -> Option<&str> {
        self.panic.as_ref().map(panic_message)
    }
}

impl fmt::Display for ExceptionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(h) = &self.handle {
            write!(f, "\nhandle: {h}")?;
        }
        if let Some(t) = &self.task {
            write!(f, "\ntask: {t}")?;
        }
        if let Some(t) = &self.transport {
            write!(f, "\ntransport: {t}")?;
        }
        if let Some(p) = &self.panic {
            write!(f, "\npanic: {}", panic_message(p))?;
        }
        if let Some(e) = &self.error {
            write!(f, "\nexception: {e}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ExceptionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExceptionContext")
            .field("message", &self.message)
            .field("panic", &self.panic_message())
            .field("error", &self.error)
            .field("handle", &self.handle)
            .field("task", &self.task)
            .field("transport", &self.transport)
            .finish()
    }
}

/// The handler every loop starts with: logs the context with
/// `tracing::error!` (asyncio's `default_exception_handler` logs with
/// `logger.error`). With no `tracing` subscriber installed it writes to
/// standard error instead, as Python's unconfigured logging does (its
/// "last resort" handler), so a program that merely links evloop does not
/// lose its errors.
pub fn default_exception_handler(context: &ExceptionContext) {
    crate::util::log_error(format_args!("{context}"));
}
