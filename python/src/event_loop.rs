//! `LoopBase`: the Rust half of `evloop.Loop` (the Python class
//! `evloop.Loop` derives from it and from `asyncio.AbstractEventLoop`).
//!
//! It owns one [`evloop::EventLoop`] and implements the hot paths:
//! scheduling (`call_soon`, `call_later`, `call_at`,
//! `call_soon_threadsafe`), the clock, running and stopping, `create_future`
//! / `create_task`, and fd watching. Python callbacks scheduled in one
//! iteration are queued as `Py<Handle>`s behind one evloop callback, which
//! runs the batch with the GIL held (see `schedule`; the loop's thread
//! holds the GIL for its whole run, and the idle hook installed here gives
//! it up while the loop waits).

use crate::clock;
use crate::gil::GilCell;
use crate::handle::{Handle, TimerHandle, run_handle};
use crate::helpers;
use evloop::EventLoop;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyString, PyTuple};
use pyo3::{PyTraverseError, PyVisit};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The base class of `evloop.Loop`: the loop's state and its hot paths in
/// Rust. Not meant to be used on its own; use `evloop.Loop` or
/// `evloop.new_event_loop()`.
#[pyclass(module = "evloop._evloop", subclass, frozen, weakref)]
pub struct LoopBase {
    lp: EventLoop,
    debug: AtomicBool,
    slow_callback_duration: GilCell<f64>,
    /// `threading.get_ident()` of the running thread, 0 when not running.
    thread_id: AtomicU64,
    task_factory: GilCell<Option<Py<PyAny>>>,
    /// An exception that escaped a callback (`KeyboardInterrupt`,
    /// `SystemExit`, or one raised by the exception handler): the run stops
    /// and re-raises it.
    pending: GilCell<Option<PyErr>>,
    /// Set from the moment an exception escaped until the run returns:
    /// handles the stopping iteration still reaches are deferred.
    aborting: GilCell<bool>,
    /// Handles that were ready when an exception escaped, in order; they
    /// run first when the loop runs again (asyncio leaves them at the head
    /// of its ready queue).
    deferred: GilCell<VecDeque<Py<Handle>>>,
    /// Running the deferred handles now (no recursion into them).
    draining: GilCell<bool>,
    /// The handle running now, in debug mode (asyncio's
    /// `_current_handle`, which the default exception handler reads).
    current_handle: GilCell<Option<Py<Handle>>>,
    /// The rest of the batch of handles scheduled from threads other than
    /// the one running the loop (or while it is not running), in order
    /// (see `schedule`).
    outbox: GilCell<Vec<Py<Handle>>>,
    /// The outbox's batch callback is posted and has not started.
    outbox_posted: GilCell<bool>,
    /// The rest of the batch of handles scheduled on the loop's own thread
    /// during this iteration, in order.
    local: GilCell<Vec<Py<Handle>>>,
    /// The local batch's callback is queued and has not started.
    local_posted: GilCell<bool>,
    /// An empty batch vector kept for its capacity: a drain swaps it with
    /// the queue it runs, so that batches of one allocate nothing.
    spare: GilCell<Vec<Py<Handle>>>,
    hook_installed: AtomicBool,
}

/// A pointer to the `LoopBase` inside its Python object, captured by the
/// evloop callbacks of that loop. Those callbacks only run while the loop
/// runs, i.e. inside `_run_forever_core`, which borrows the object, so the
/// pointer is valid whenever it is used; dropping a callback never uses it.
#[derive(Clone, Copy)]
struct LoopPtr(*const LoopBase);
// Safety: see above; used only on the thread that runs the loop.
unsafe impl Send for LoopPtr {}
unsafe impl Sync for LoopPtr {}

impl LoopPtr {
    /// # Safety
    /// Only while the loop runs (see the type's docs).
    #[inline]
    unsafe fn get<'a>(self) -> &'a LoopBase {
        unsafe { &*self.0 }
    }
}

/// The `wait` closure of the idle hook, sent into `Python::detach` (it
/// runs on the same thread; PyO3 asks for `Send` to keep Python objects
/// out, and this closure touches none).
struct AssertSend<'a>(&'a mut dyn FnMut() -> bool);
// Safety: executed on the calling thread, without touching Python objects.
unsafe impl Send for AssertSend<'_> {}

/// evloop's errors as the exceptions asyncio raises for them.
pub(crate) fn to_py_err(e: evloop::Error) -> PyErr {
    match e {
        evloop::Error::Io(io) => {
            PyOSError::new_err((io.raw_os_error().unwrap_or(0), io.to_string()))
        }
        evloop::Error::InvalidFd(_) | evloop::Error::InvalidArgument(_) => {
            PyValueError::new_err(e.to_string())
        }
        other => PyRuntimeError::new_err(other.to_string()),
    }
}

/// `threading.get_ident()` of the calling thread.
#[inline]
fn thread_ident() -> u64 {
    // Safety: no preconditions.
    unsafe { ffi::PyThread_get_thread_ident() as u64 }
}

/// asyncio's `selectors._fileobj_to_fd`: an int, or an object's `fileno()`
/// (that case through `selectors` itself, so its rules and messages hold).
fn fileobj_to_fd(obj: &Bound<'_, PyAny>) -> PyResult<i32> {
    let fd: i64 = if obj.is_instance_of::<PyInt>() {
        obj.extract()?
    } else {
        helpers::fileobj_to_fd_fn(obj.py())?
            .call1((obj,))?
            .extract()?
    };
    if fd < 0 {
        return Err(PyValueError::new_err(format!(
            "Invalid file descriptor: {fd}"
        )));
    }
    i32::try_from(fd).map_err(|_| PyValueError::new_err(format!("Invalid file descriptor: {fd}")))
}

impl LoopBase {
    #[inline]
    pub(crate) fn debug(&self) -> bool {
        self.debug.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn slow_callback_duration(&self, py: Python<'_>) -> f64 {
        self.slow_callback_duration.get(py)
    }

    /// Records the handle running now (debug mode); returns the previous.
    pub(crate) fn set_current_handle(
        &self,
        py: Python<'_>,
        handle: Option<Py<Handle>>,
    ) -> Option<Py<Handle>> {
        self.current_handle.replace(py, handle)
    }

    #[inline]
    pub(crate) fn aborting(&self, py: Python<'_>) -> bool {
        self.aborting.get(py)
    }

    #[inline]
    pub(crate) fn has_deferred(&self, py: Python<'_>) -> bool {
        !self.draining.get(py) && self.deferred.with(py, |d| !d.is_empty())
    }

    pub(crate) fn defer(&self, py: Python<'_>, handle: Py<Handle>) {
        self.deferred.with(py, |d| d.push_back(handle));
    }

    /// An exception escaped a callback: keep the first, stop the run at the
    /// end of this iteration, and defer what the iteration still reaches.
    pub(crate) fn abort(&self, py: Python<'_>, err: PyErr) {
        let extra = self.pending.with(py, |p| match p {
            None => {
                *p = Some(err);
                None
            }
            Some(_) => Some(err),
        });
        // A second exception in the same iteration cannot be raised too;
        // asyncio would never have run its callback. Dropped outside the
        // cell's access (its destructor may run Python code).
        drop(extra);
        self.aborting.set(py, true);
        self.lp.stop();
    }

    /// Runs the handles deferred by an escaped exception, in order, until
    /// none is left or another exception escapes.
    pub(crate) fn run_deferred(&self, py: Python<'_>) {
        self.draining.set(py, true);
        while !self.aborting.get(py) {
            let Some(handle) = self.deferred.with(py, |d| d.pop_front()) else {
                break;
            };
            run_handle(py, self, handle.bind(py));
        }
        self.draining.set(py, false);
    }

    fn check_closed(&self) -> PyResult<()> {
        if self.lp.is_closed() {
            return Err(PyRuntimeError::new_err("Event loop is closed"));
        }
        Ok(())
    }

    /// asyncio's `_check_thread` (debug mode).
    fn check_thread(&self) -> PyResult<()> {
        let running = self.thread_id.load(Ordering::Relaxed);
        if running != 0 && running != thread_ident() {
            return Err(PyRuntimeError::new_err(
                "Non-thread-safe operation invoked on an event loop other than the current one",
            ));
        }
        Ok(())
    }

    /// Schedules `handle` to run on the loop's next iteration.
    ///
    /// Handles travel in batches, each batch one evloop callback that runs
    /// its handles in order:
    /// - On the thread running the loop, the first handle scheduled in an
    ///   iteration queues a batch callback on evloop's ready queue, and the
    ///   iteration's later handles join its batch. The batch holds
    ///   exactly what this iteration scheduled, and it runs in the next
    ///   one at the place of its first handle, ahead of that iteration's
    ///   I/O and timers, as asyncio's ready queue would: the other Python
    ///   callbacks (timers, fd watchers, the outbox) never enter evloop's
    ///   ready queue in between.
    /// - From any other thread (or while the loop is not running) the
    ///   handle joins the outbox, and the first of a batch posts a batch
    ///   callback through the loop's lock-free inbox
    ///   (waking the loop if it sleeps). Python threads post only while
    ///   holding the GIL, which already orders the posts.
    ///
    /// A batch saves each handle evloop's callback cell (an allocation and
    /// a free) and, across threads, the atomics and the loop's pointer
    /// chase through the inbox.
    fn schedule(&self, py: Python<'_>, handle: Py<Handle>) -> PyResult<()> {
        let running = self.thread_id.load(Ordering::Relaxed);
        let local = running != 0 && running == thread_ident();
        let (queue, posted) = if local {
            (&self.local, &self.local_posted)
        } else {
            (&self.outbox, &self.outbox_posted)
        };
        if posted.get(py) {
            queue.with(py, |q| q.push(handle));
            return Ok(());
        }
        // The batch's first handle travels in its callback (a batch of one,
        // the common case in a chain of callbacks, then touches no vector).
        posted.set(py, true);
        let ptr = LoopPtr(self);
        let queued = if local {
            self.lp.call_soon(move || {
                // Safety: evloop runs callbacks only inside
                // `_run_forever_core`, on the thread holding the GIL.
                let py = unsafe { Python::assume_attached() };
                let lb = unsafe { ptr.get() };
                lb.drain(py, handle, &lb.local, &lb.local_posted);
            })
        } else {
            self.lp.call_soon_threadsafe(move || {
                // Safety: as above.
                let py = unsafe { Python::assume_attached() };
                let lb = unsafe { ptr.get() };
                lb.drain(py, handle, &lb.outbox, &lb.outbox_posted);
            })
        };
        if let Err(e) = queued {
            posted.set(py, false);
            return Err(to_py_err(e));
        }
        Ok(())
    }

    /// Runs a batch (see `schedule`): its first handle, then the rest in
    /// order. Handles scheduled meanwhile start a new batch.
    fn drain(
        &self,
        py: Python<'_>,
        first: Py<Handle>,
        queue: &GilCell<Vec<Py<Handle>>>,
        posted: &GilCell<bool>,
    ) {
        posted.set(py, false);
        // Bound, so each drop is a plain decref (a `Py` drop checks a
        // thread-local for the GIL first).
        let first = first.into_bound(py);
        if queue.with(py, |q| q.is_empty()) {
            run_handle(py, self, &first);
            return;
        }
        let mut batch = queue.replace(py, self.spare.take(py));
        run_handle(py, self, &first);
        drop(first);
        for handle in batch.drain(..) {
            run_handle(py, self, &handle.into_bound(py));
        }
        // Kept for the next batch (drains never nest: the spare taken
        // above is still the empty one left there).
        self.spare.set(py, batch);
    }

    /// The idle hook: the GIL is released while the loop spins and sleeps;
    /// a sleep cut short by a signal schedules a callback that runs
    /// Python's signal handlers (`PyErr_CheckSignals`), whose exception
    /// (`KeyboardInterrupt` from Ctrl+C) stops the run and is raised by it.
    fn install_hook(&self) {
        if self.hook_installed.swap(true, Ordering::Relaxed) {
            return;
        }
        let ptr = LoopPtr(self);
        self.lp
            .set_idle_hook(Some(Arc::new(move |wait: &mut dyn FnMut() -> bool| {
                // Safety: the hook runs inside a run, on the thread that
                // holds the GIL (see `LoopPtr`).
                let py = unsafe { Python::assume_attached() };
                let wait = AssertSend(wait);
                let interrupted = py.detach(move || {
                    let wait = wait;
                    (wait.0)()
                });
                if interrupted {
                    let lb = unsafe { ptr.get() };
                    let _ = lb.lp.call_soon(move || {
                        let py = unsafe { Python::assume_attached() };
                        // Safety: GIL held.
                        if unsafe { ffi::PyErr_CheckSignals() } < 0 {
                            let err = PyErr::fetch(py);
                            unsafe { ptr.get() }.abort(py, err);
                        }
                    });
                }
            })));
    }

    /// The frames calling into the loop, in debug mode.
    fn source_traceback(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        if self.debug() {
            helpers::extract_stack(py).map(Some)
        } else {
            Ok(None)
        }
    }

    /// `call_soon` and `call_soon_threadsafe`.
    fn call_soon_impl(
        slf: &Bound<'_, Self>,
        callback: Py<PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Py<PyAny>>,
        method: &str,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let lb = slf.get();
        lb.check_closed()?;
        if lb.debug() {
            if method == "call_soon" {
                lb.check_thread()?;
            }
            // `evloop.Loop._check_callback`, as asyncio calls its own.
            slf.call_method1("_check_callback", (callback.bind(py), method))?;
        }
        let tb = lb.source_traceback(py)?;
        let handle = Py::new(
            py,
            Handle::new(
                py,
                callback,
                args.unbind(),
                context,
                slf.clone().into_any().unbind(),
                tb,
            )?,
        )?;
        lb.schedule(py, handle.clone_ref(py))?;
        Ok(handle)
    }
}

/// `float(x)` for `call_later`'s delay and `call_at`'s deadline, with the
/// error asyncio's `self.time() + delay` would raise.
fn seconds(value: &Bound<'_, PyAny>, what: &str) -> PyResult<f64> {
    value.extract::<f64>().map_err(|_| {
        let name = value
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "object".to_owned());
        match what {
            "delay" => PyTypeError::new_err(format!(
                "unsupported operand type(s) for +: 'float' and '{name}'"
            )),
            _ => PyTypeError::new_err(format!(
                "'<' not supported between instances of '{name}' and 'float'"
            )),
        }
    })
}

/// Calls `callable(*args, **dict(zip(names, kwvalues)))` through vectorcall.
fn vectorcall<'py>(
    py: Python<'py>,
    callable: &Bound<'py, PyAny>,
    args: &[*mut ffi::PyObject],
    kwnames: Option<&Bound<'py, PyTuple>>,
) -> PyResult<Bound<'py, PyAny>> {
    let nkw = kwnames.map_or(0, |k| k.len());
    let nargs = args.len() - nkw;
    // Safety: GIL held; `args` holds borrowed live references for the call.
    unsafe {
        let result = ffi::PyObject_Vectorcall(
            callable.as_ptr(),
            args.as_ptr(),
            nargs,
            kwnames.map_or(std::ptr::null_mut(), |k| k.as_ptr()),
        );
        Bound::from_owned_ptr_or_err(py, result)
    }
}

fn kwnames<'py>(py: Python<'py>, names: &'static [&'static str]) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(py, names.iter().map(|n| PyString::intern(py, n)))
}

#[pymethods]
impl LoopBase {
    #[new]
    fn new() -> PyResult<Self> {
        let lp = EventLoop::new().map_err(to_py_err)?;
        // Debug reporting is the front-end's (asyncio's logger and
        // wording), not the Rust crate's.
        lp.set_debug(false);
        Ok(LoopBase {
            lp,
            debug: AtomicBool::new(false),
            slow_callback_duration: GilCell::new(0.1),
            thread_id: AtomicU64::new(0),
            task_factory: GilCell::new(None),
            pending: GilCell::new(None),
            aborting: GilCell::new(false),
            deferred: GilCell::new(VecDeque::new()),
            draining: GilCell::new(false),
            current_handle: GilCell::new(None),
            outbox: GilCell::new(Vec::new()),
            outbox_posted: GilCell::new(false),
            local: GilCell::new(Vec::new()),
            local_posted: GilCell::new(false),
            spare: GilCell::new(Vec::new()),
            hook_installed: AtomicBool::new(false),
        })
    }

    /// Schedules `callback(*args)` for the next iteration, in `context`
    /// (a copy of the current one by default); returns its `Handle`.
    #[pyo3(signature = (callback, *args, context=None))]
    fn call_soon(
        slf: &Bound<'_, Self>,
        callback: Py<PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<Handle>> {
        LoopBase::call_soon_impl(slf, callback, args, context, "call_soon")
    }

    /// `call_soon` from any thread: posted through evloop's lock-free
    /// inbox, waking the loop if it sleeps.
    #[pyo3(signature = (callback, *args, context=None))]
    fn call_soon_threadsafe(
        slf: &Bound<'_, Self>,
        callback: Py<PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<Handle>> {
        LoopBase::call_soon_impl(slf, callback, args, context, "call_soon_threadsafe")
    }

    /// Schedules `callback(*args)` to run `delay` seconds from now; returns
    /// its `TimerHandle`.
    #[pyo3(signature = (delay, callback, *args, context=None))]
    fn call_later(
        slf: &Bound<'_, Self>,
        delay: &Bound<'_, PyAny>,
        callback: Py<PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        if delay.is_none() {
            return Err(PyTypeError::new_err("delay must not be None"));
        }
        let delay = seconds(delay, "delay")?;
        LoopBase::timer(
            slf,
            clock::monotonic() + delay,
            callback,
            args,
            context,
            "call_later",
        )
    }

    /// Schedules `callback(*args)` to run at `when` on the loop's clock
    /// (`loop.time()`); returns its `TimerHandle`.
    #[pyo3(signature = (when, callback, *args, context=None))]
    fn call_at(
        slf: &Bound<'_, Self>,
        when: &Bound<'_, PyAny>,
        callback: Py<PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        if when.is_none() {
            return Err(PyTypeError::new_err("when cannot be None"));
        }
        let when = seconds(when, "when")?;
        LoopBase::timer(slf, when, callback, args, context, "call_at")
    }

    /// The loop's clock: `time.monotonic()`.
    fn time(&self) -> f64 {
        clock::monotonic()
    }

    /// Stops the loop after the current iteration (or makes the next run
    /// do one iteration).
    fn stop(&self) {
        self.lp.stop();
    }

    /// Whether the loop is running.
    fn is_running(&self) -> bool {
        self.lp.is_running()
    }

    /// Whether the loop was closed.
    fn is_closed(&self) -> bool {
        self.lp.is_closed()
    }

    /// Whether debug mode is on.
    fn get_debug(&self) -> bool {
        self.debug()
    }

    /// Switches debug mode (slow-callback warnings, thread checks, source
    /// tracebacks).
    fn set_debug(&self, enabled: bool) {
        self.debug.store(enabled, Ordering::Relaxed);
    }

    /// The duration (seconds) above which a callback is reported as slow in
    /// debug mode (0.1 by default).
    #[getter]
    fn get_slow_callback_duration(&self, py: Python<'_>) -> f64 {
        self.slow_callback_duration.get(py)
    }

    #[setter]
    fn set_slow_callback_duration(&self, py: Python<'_>, value: f64) {
        self.slow_callback_duration.set(py, value);
    }

    /// `threading.get_ident()` of the thread running the loop, or `None`.
    #[getter]
    fn _thread_id(&self) -> Option<u64> {
        match self.thread_id.load(Ordering::Relaxed) {
            0 => None,
            id => Some(id),
        }
    }

    /// The handle running now, in debug mode (else `None`).
    #[getter]
    fn _current_handle(&self, py: Python<'_>) -> Option<Py<Handle>> {
        self.current_handle
            .with(py, |h| h.as_ref().map(|h| h.clone_ref(py)))
    }

    /// Raises asyncio's error if the loop is closed.
    fn _check_closed(&self) -> PyResult<()> {
        self.check_closed()
    }

    /// Raises asyncio's error if called from a thread other than the one
    /// running the loop.
    fn _check_thread(&self) -> PyResult<()> {
        self.check_thread()
    }

    /// Runs the loop until `stop()`; the Python `run_forever` wraps it with
    /// asyncio's checks and hooks. An exception that escaped a callback is
    /// raised here.
    fn _run_forever_core(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let lb = slf.get();
        lb.install_hook();
        if lb.deferred.with(py, |d| !d.is_empty()) {
            // Runs the deferred handles first thing, if nothing else does.
            let ptr = LoopPtr(lb);
            lb.lp
                .call_soon(move || {
                    let py = unsafe { Python::assume_attached() };
                    let lb = unsafe { ptr.get() };
                    if lb.has_deferred(py) {
                        lb.run_deferred(py);
                    }
                })
                .map_err(to_py_err)?;
        }
        lb.thread_id.store(thread_ident(), Ordering::Relaxed);
        let result = lb.lp.run_forever();
        lb.thread_id.store(0, Ordering::Relaxed);
        lb.aborting.set(py, false);
        if let Some(err) = lb.pending.take(py) {
            return Err(err);
        }
        result.map_err(to_py_err)
    }

    /// Closes the evloop loop: drops every pending callback and timer and
    /// stops watching every fd. The Python `close` adds asyncio's steps.
    fn _close_core(&self, py: Python<'_>) -> PyResult<()> {
        self.lp.close().map_err(to_py_err)?;
        let dropped = (
            self.deferred.take(py),
            self.outbox.take(py),
            self.local.take(py),
        );
        self.outbox_posted.set(py, false);
        self.local_posted.set(py, false);
        drop(dropped);
        Ok(())
    }

    /// A `Handle` for `callback(*args)` in a copy of the current context,
    /// not scheduled (a signal's handler, run with `_schedule_handle`).
    fn _make_handle(
        slf: &Bound<'_, Self>,
        callback: Py<PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let tb = slf.get().source_traceback(py)?;
        Py::new(
            py,
            Handle::new(
                py,
                callback,
                args.unbind(),
                None,
                slf.clone().into_any().unbind(),
                tb,
            )?,
        )
    }

    /// Runs an existing handle on the next iteration (a signal's handler).
    fn _schedule_handle(&self, py: Python<'_>, handle: Py<Handle>) -> PyResult<()> {
        self.check_closed()?;
        self.schedule(py, handle)
    }

    /// A new `asyncio.Future` attached to this loop.
    fn create_future<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        static NAMES: pyo3::sync::PyOnceLock<Py<PyTuple>> = pyo3::sync::PyOnceLock::new();
        let names = NAMES.get_or_try_init(py, || kwnames(py, &["loop"]).map(Bound::unbind))?;
        vectorcall(
            py,
            helpers::future_class(py)?,
            &[slf.as_ptr()],
            Some(names.bind(py)),
        )
    }

    /// Schedules a coroutine as an `asyncio.Task` (or what the task factory
    /// makes), with asyncio's `name=` and `context=`. (On Pythons whose
    /// `create_task` forwards further keywords, `evloop.Loop` wraps this.)
    #[pyo3(signature = (coro, *, name=None, context=None))]
    fn create_task<'py>(
        slf: &Bound<'py, Self>,
        coro: &Bound<'py, PyAny>,
        name: Option<&Bound<'py, PyAny>>,
        context: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let lb = slf.get();
        lb.check_closed()?;
        let factory = lb
            .task_factory
            .with(py, |f| f.as_ref().map(|f| f.clone_ref(py)));
        let name = name.filter(|n| !n.is_none());
        let context = context.filter(|c| !c.is_none());
        if let Some(factory) = factory {
            if name.is_none() && context.is_none() {
                // What every Python's asyncio reduces to here.
                return factory.bind(py).call1((slf, coro));
            }
            return helpers::create_task_fn(py)?.call1((
                slf,
                factory,
                coro,
                name,
                context,
                PyDict::new(py),
            ));
        }
        // Only the keywords given reach Task's argument parsing.
        static LOOP: pyo3::sync::PyOnceLock<Py<PyTuple>> = pyo3::sync::PyOnceLock::new();
        static ALL: pyo3::sync::PyOnceLock<Py<PyTuple>> = pyo3::sync::PyOnceLock::new();
        let task = helpers::task_class(py)?;
        if name.is_none() && context.is_none() {
            let names = LOOP.get_or_try_init(py, || kwnames(py, &["loop"]).map(Bound::unbind))?;
            return vectorcall(
                py,
                task,
                &[coro.as_ptr(), slf.as_ptr()],
                Some(names.bind(py)),
            );
        }
        let names = ALL.get_or_try_init(py, || {
            kwnames(py, &["loop", "name", "context"]).map(Bound::unbind)
        })?;
        let none = py.None();
        let name = name.map_or(none.as_ptr(), |n| n.as_ptr());
        let context = context.map_or(none.as_ptr(), |c| c.as_ptr());
        vectorcall(
            py,
            task,
            &[coro.as_ptr(), slf.as_ptr(), name, context],
            Some(names.bind(py)),
        )
    }

    /// Sets the factory `create_task` uses (`factory(loop, coro)`), or
    /// `None` for asyncio's `Task`.
    fn set_task_factory(&self, py: Python<'_>, factory: Option<Py<PyAny>>) -> PyResult<()> {
        let factory = factory.filter(|f| !f.is_none(py));
        if let Some(f) = &factory {
            if !f.bind(py).is_callable() {
                return Err(PyTypeError::new_err(
                    "task factory must be a callable or None",
                ));
            }
        }
        self.task_factory.set(py, factory);
        Ok(())
    }

    /// The task factory, or `None`.
    fn get_task_factory(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.task_factory
            .with(py, |f| f.as_ref().map(|f| f.clone_ref(py)))
    }

    /// Calls `callback(*args)` whenever `fd` (an int or an object with
    /// `fileno()`) is readable, level-triggered; replaces a previous reader.
    #[pyo3(signature = (fd, callback, *args))]
    fn add_reader(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Py<PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        LoopBase::add_watcher(slf, fd, callback, args, true)
    }

    /// Stops watching `fd` for reading; returns whether it was watched.
    fn remove_reader(&self, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        if self.lp.is_closed() {
            return Ok(false);
        }
        Ok(self.lp.remove_reader(fileobj_to_fd(fd)?))
    }

    /// Calls `callback(*args)` whenever `fd` is writable, level-triggered;
    /// replaces a previous writer.
    #[pyo3(signature = (fd, callback, *args))]
    fn add_writer(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Py<PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        LoopBase::add_watcher(slf, fd, callback, args, false)
    }

    /// Stops watching `fd` for writing; returns whether it was watched.
    fn remove_writer(&self, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        if self.lp.is_closed() {
            return Ok(false);
        }
        Ok(self.lp.remove_writer(fileobj_to_fd(fd)?))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Safety: called by the collector, with the GIL and no access in
        // progress.
        unsafe {
            visit.call(self.task_factory.peek())?;
            visit.call(self.current_handle.peek())?;
            let queued = self.outbox.peek().iter().chain(self.local.peek());
            for h in self.deferred.peek().iter().chain(queued) {
                visit.call(h)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self, py: Python<'_>) {
        let parts = (
            self.task_factory.take(py),
            self.deferred.take(py),
            self.current_handle.take(py),
            self.outbox.take(py),
            self.local.take(py),
        );
        drop(parts);
    }
}

impl LoopBase {
    fn timer(
        slf: &Bound<'_, Self>,
        when: f64,
        callback: Py<PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Py<PyAny>>,
        method: &str,
    ) -> PyResult<Py<TimerHandle>> {
        let py = slf.py();
        let lb = slf.get();
        lb.check_closed()?;
        if lb.debug() {
            lb.check_thread()?;
            // `evloop.Loop._check_callback`, as asyncio calls its own.
            slf.call_method1("_check_callback", (callback.bind(py), method))?;
        }
        let tb = lb.source_traceback(py)?;
        let base = Handle::new(
            py,
            callback,
            args.unbind(),
            context,
            slf.clone().into_any().unbind(),
            tb,
        )?;
        let handle = Py::new(
            py,
            pyo3::PyClassInitializer::from(base).add_subclass(TimerHandle::new(when)),
        )?;
        let ptr = LoopPtr(lb);
        let run = handle.clone_ref(py);
        let timer = lb
            .lp
            .call_at(clock::to_instant(when), move || {
                // Safety: as in `schedule`.
                let py = unsafe { Python::assume_attached() };
                let run = run.into_bound(py);
                run_handle(py, unsafe { ptr.get() }, run.as_super());
            })
            .map_err(to_py_err)?;
        handle.get().timer.set(py, Some(timer));
        Ok(handle)
    }

    fn add_watcher(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Py<PyAny>,
        args: Bound<'_, PyTuple>,
        read: bool,
    ) -> PyResult<()> {
        let py = slf.py();
        let lb = slf.get();
        let fd = fileobj_to_fd(fd)?;
        lb.check_closed()?;
        let handle = Py::new(
            py,
            Handle::new(
                py,
                callback,
                args.unbind(),
                None,
                slf.clone().into_any().unbind(),
                None,
            )?,
        )?;
        let ptr = LoopPtr(lb);
        let run = move || {
            // Safety: as in `schedule`.
            let py = unsafe { Python::assume_attached() };
            run_handle(py, unsafe { ptr.get() }, handle.bind(py));
        };
        let added = if read {
            lb.lp.add_reader(fd, run)
        } else {
            lb.lp.add_writer(fd, run)
        };
        added.map_err(to_py_err)
    }
}
