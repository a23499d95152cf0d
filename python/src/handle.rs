//! `Handle` and `TimerHandle`: asyncio's callback handles, and running one.
//!
//! A handle holds the callable, its arguments, the `contextvars.Context`
//! it runs in and the loop. The loop queues a `Py<Handle>` behind the
//! evloop callback that runs the iteration's batch (see
//! `event_loop::schedule`), which runs each handle with [`run_handle`], which enters the context, calls the
//! callable through vectorcall, and hands an exception to the loop's
//! `call_exception_handler` with asyncio's context dict, or, for
//! `KeyboardInterrupt` and `SystemExit` (and anything escaping the
//! exception handler), makes the run stop and re-raise it.

use crate::event_loop::LoopBase;
use crate::gil::GilCell;
use crate::helpers;
use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{PyTraverseError, PyVisit};
use std::sync::atomic::{AtomicBool, Ordering};

/// A callback scheduled by `call_soon` (asyncio.Handle's interface).
///
/// `cancel()` makes it a no-op and drops the callback and its arguments;
/// `cancelled()`, `get_context()`, and a `repr` in asyncio's format.
#[pyclass(module = "evloop", subclass, frozen, weakref)]
pub struct Handle {
    callback: GilCell<Option<Py<PyAny>>>,
    args: GilCell<Option<Py<PyTuple>>>,
    context: GilCell<Option<Py<PyAny>>>,
    pub(crate) loop_: GilCell<Option<Py<PyAny>>>,
    cancelled: AtomicBool,
    /// The frames that scheduled the callback, in debug mode (asyncio's
    /// `_source_traceback`).
    source_traceback: GilCell<Option<Py<PyAny>>>,
    /// The repr kept at `cancel()` in debug mode (asyncio keeps it so
    /// that slow-callback warnings still name the callback).
    repr: GilCell<Option<Py<PyAny>>>,
}

impl Handle {
    /// A handle for `callback(*args)` in `context` (a copy of the current
    /// context if `None`).
    pub(crate) fn new(
        py: Python<'_>,
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        context: Option<Py<PyAny>>,
        loop_: Py<PyAny>,
        source_traceback: Option<Py<PyAny>>,
    ) -> PyResult<Handle> {
        let context = match context {
            Some(c) if !c.is_none(py) => c,
            _ => copy_context(py)?,
        };
        Ok(Handle {
            callback: GilCell::new(Some(callback)),
            args: GilCell::new(Some(args)),
            context: GilCell::new(Some(context)),
            loop_: GilCell::new(Some(loop_)),
            cancelled: AtomicBool::new(false),
            source_traceback: GilCell::new(source_traceback),
            repr: GilCell::new(None),
        })
    }

    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    fn clone_field<T>(cell: &GilCell<Option<Py<T>>>, py: Python<'_>) -> Option<Py<T>> {
        cell.with(py, |v| v.as_ref().map(|o| o.clone_ref(py)))
    }

    fn info(slf: &Bound<'_, Handle>, when: Option<f64>) -> PyResult<String> {
        let py = slf.py();
        let h = slf.get();
        let mut info = vec![slf.get_type().name()?.to_string()];
        if h.is_cancelled() {
            info.push("cancelled".to_owned());
        }
        if let Some(when) = when {
            info.push(format!("when={}", helpers::float_repr(py, when)?));
        }
        if let Some(cb) = Self::clone_field(&h.callback, py) {
            let args = Self::clone_field(&h.args, py);
            info.push(helpers::format_callback_source(py, cb, args)?);
        }
        if let Some(tb) = Self::clone_field(&h.source_traceback, py) {
            let tb = tb.bind(py);
            if tb.len()? > 0 {
                let frame = tb.get_item(-1)?;
                info.push(format!(
                    "created at {}:{}",
                    frame.get_item(0)?.str()?,
                    frame.get_item(1)?.str()?
                ));
            }
        }
        Ok(format!("<{}>", info.join(" ")))
    }

    fn do_cancel(slf: &Bound<'_, Handle>) -> PyResult<bool> {
        let py = slf.py();
        let h = slf.get();
        if h.cancelled.swap(true, Ordering::Relaxed) {
            return Ok(false);
        }
        // Every handle is made by a `LoopBase`: its flag is read directly,
        // as `run_handle` does, not through a Python call per cancel.
        let debug = h.loop_.with(py, |lp| {
            lp.as_ref().is_some_and(|lp| {
                lp.bind(py)
                    .cast::<LoopBase>()
                    .is_ok_and(|lb| lb.get().debug())
            })
        });
        if debug {
            // Kept before the callback goes, so later reports name it.
            let repr = slf.repr()?;
            h.repr.set(py, Some(repr.into_any().unbind()));
        }
        let callback = h.callback.take(py);
        let args = h.args.take(py);
        drop((callback, args));
        Ok(true)
    }
}

#[pymethods]
impl Handle {
    /// Cancels the callback: it will not run, and the handle drops the
    /// callback and its arguments.
    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        Handle::do_cancel(slf).map(drop)
    }

    /// Whether `cancel()` was called.
    fn cancelled(&self) -> bool {
        self.is_cancelled()
    }

    /// The `contextvars.Context` the callback runs in.
    fn get_context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        Self::clone_field(&self.context, py)
    }

    /// The callable (`None` once cancelled), as asyncio's `_callback`.
    #[getter]
    fn _callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        Self::clone_field(&self.callback, py)
    }

    /// The arguments (`None` once cancelled), as asyncio's `_args`.
    #[getter]
    fn _args(&self, py: Python<'_>) -> Option<Py<PyTuple>> {
        Self::clone_field(&self.args, py)
    }

    /// The loop, as asyncio's `_loop`.
    #[getter]
    fn _loop(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        Self::clone_field(&self.loop_, py)
    }

    /// Whether cancelled, as asyncio's `_cancelled`.
    #[getter]
    fn _cancelled(&self) -> bool {
        self.is_cancelled()
    }

    /// The frames that scheduled the callback (debug mode), or `None`.
    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        Self::clone_field(&self.source_traceback, py)
    }

    /// Runs the callback now, as asyncio's `Handle._run()` (an exception
    /// goes to the loop's exception handler).
    fn _run(slf: &Bound<'_, Self>) -> PyResult<()> {
        invoke(slf.py(), slf.get()).or_else(|err| report(slf, err))
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let py = slf.py();
        if let Some(repr) = Self::clone_field(&slf.get().repr, py) {
            return repr.bind(py).extract();
        }
        Handle::info(slf, None)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Safety: called by the collector, with the GIL and no access
        // in progress.
        unsafe {
            visit.call(self.callback.peek())?;
            visit.call(self.args.peek())?;
            visit.call(self.context.peek())?;
            visit.call(self.loop_.peek())?;
            visit.call(self.source_traceback.peek())?;
            visit.call(self.repr.peek())?;
        }
        Ok(())
    }

    fn __clear__(&self, py: Python<'_>) {
        let parts = (
            self.callback.take(py),
            self.args.take(py),
            self.context.take(py),
            self.loop_.take(py),
            self.source_traceback.take(py),
            self.repr.take(py),
        );
        drop(parts);
    }
}

impl Drop for Handle {
    /// Releases the handle's references directly: a `Handle` is dropped by
    /// its Python object's deallocation, or by the front-end's own code
    /// before it became one, both with the GIL held. (PyO3's `Py` drop
    /// would check the GIL through a thread-local for each field.)
    fn drop(&mut self) {
        fn release<T>(field: &mut GilCell<Option<Py<T>>>) {
            if let Some(obj) = field.get_mut().take() {
                // Safety: the GIL is held (see above); the reference is
                // owned and released once.
                unsafe { ffi::Py_DECREF(obj.into_ptr()) };
            }
        }
        release(&mut self.callback);
        release(&mut self.args);
        release(&mut self.context);
        release(&mut self.loop_);
        release(&mut self.source_traceback);
        release(&mut self.repr);
    }
}

/// A callback scheduled by `call_later` / `call_at` (asyncio.TimerHandle's
/// interface): a [`Handle`] with a deadline, `when()`, and ordering by it.
#[pyclass(module = "evloop", extends = Handle, frozen, weakref)]
pub struct TimerHandle {
    pub(crate) when: f64,
    /// evloop's timer, cancelled with the handle (so that the timer queue
    /// purges it as asyncio's does).
    pub(crate) timer: GilCell<Option<evloop::TimerHandle>>,
}

impl TimerHandle {
    pub(crate) fn new(when: f64) -> TimerHandle {
        TimerHandle {
            when,
            timer: GilCell::new(None),
        }
    }
}

#[pymethods]
impl TimerHandle {
    /// The deadline, on the loop's clock (`loop.time()`).
    fn when(&self) -> f64 {
        self.when
    }

    /// Cancels the timer: it will not run, and the loop's timer queue
    /// counts it for purging.
    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        if Handle::do_cancel(slf.as_super())? {
            if let Some(timer) = slf.get().timer.take(py) {
                timer.cancel();
            }
        }
        Ok(())
    }

    /// The deadline, as asyncio's `_when`.
    #[getter]
    fn _when(&self) -> f64 {
        self.when
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let py = slf.py();
        let base = slf.as_super();
        if let Some(repr) = Handle::clone_field(&base.get().repr, py) {
            return repr.bind(py).extract();
        }
        Handle::info(base, Some(slf.get().when))
    }

    /// asyncio's `hash(self._when)`: Python's float hash, so equal
    /// deadlines (0.0 and -0.0, 1.0 and 1) hash alike.
    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        pyo3::types::PyFloat::new(py, self.when).hash()
    }

    fn __richcmp__(
        slf: &Bound<'_, Self>,
        other: &Bound<'_, PyAny>,
        op: pyo3::basic::CompareOp,
    ) -> PyResult<Py<PyAny>> {
        use pyo3::basic::CompareOp::*;
        let py = slf.py();
        let Ok(other) = other.cast::<TimerHandle>() else {
            return Ok(py.NotImplemented());
        };
        let (a, b) = (slf.get().when, other.get().when);
        let equal = || -> PyResult<bool> {
            if a != b {
                return Ok(false);
            }
            let (x, y) = (slf.as_super().get(), other.as_super().get());
            if x.is_cancelled() != y.is_cancelled() {
                return Ok(false);
            }
            let same = |p: Option<Py<PyAny>>, q: Option<Py<PyAny>>| -> PyResult<bool> {
                match (p, q) {
                    (None, None) => Ok(true),
                    (Some(p), Some(q)) => p.bind(py).eq(q.bind(py)),
                    _ => Ok(false),
                }
            };
            Ok(same(
                Handle::clone_field(&x.callback, py),
                Handle::clone_field(&y.callback, py),
            )? && same(
                Handle::clone_field(&x.args, py).map(Py::into_any),
                Handle::clone_field(&y.args, py).map(Py::into_any),
            )?)
        };
        let result = match op {
            Lt => a < b,
            Gt => a > b,
            Le => a < b || equal()?,
            Ge => a > b || equal()?,
            Eq => equal()?,
            Ne => !equal()?,
        };
        Ok(pyo3::types::PyBool::new(py, result)
            .to_owned()
            .into_any()
            .unbind())
    }
}

/// A copy of the current `contextvars.Context`.
#[inline]
pub(crate) fn copy_context(py: Python<'_>) -> PyResult<Py<PyAny>> {
    // Safety: GIL held; a new reference or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent()).map(Bound::unbind) }
}

/// Calls the handle's callback inside its context; `Err(e)`: the callback
/// raised `e`, or the context could not be entered or left.
#[inline]
fn invoke(py: Python<'_>, h: &Handle) -> PyResult<()> {
    // Own references for the call: the callback may cancel its own
    // handle, which drops the handle's.
    // Bound, so that their drops are plain decrefs.
    let Some(callback) = Handle::clone_field(&h.callback, py) else {
        return Ok(());
    };
    let callback = callback.into_bound(py);
    let args = Handle::clone_field(&h.args, py).map(|a| a.into_bound(py));
    let Some(context) = Handle::clone_field(&h.context, py) else {
        return Ok(());
    };
    let context = context.into_bound(py);
    // Safety: GIL held; every pointer is an owned, live reference for the
    // duration of the calls; the tuple's items are read while it is alive.
    unsafe {
        if ffi::PyContext_Enter(context.as_ptr()) < 0 {
            return Err(PyErr::fetch(py));
        }
        let (items, n) = match &args {
            Some(t) => {
                let tuple = t.as_ptr() as *mut ffi::PyTupleObject;
                ((*tuple).ob_item.as_ptr(), ffi::PyTuple_GET_SIZE(t.as_ptr()))
            }
            None => (std::ptr::null(), 0),
        };
        let result =
            ffi::PyObject_Vectorcall(callback.as_ptr(), items, n as usize, std::ptr::null_mut());
        let exited = ffi::PyContext_Exit(context.as_ptr());
        if result.is_null() || exited < 0 {
            if !result.is_null() {
                ffi::Py_DECREF(result);
            }
            return Err(PyErr::fetch(py));
        }
        ffi::Py_DECREF(result);
    }
    Ok(())
}

/// What asyncio's `Handle._run` does with an exception from the callback:
/// `KeyboardInterrupt` and `SystemExit` propagate, anything else goes to
/// the loop's `call_exception_handler` (whose own exceptions propagate).
fn report(slf: &Bound<'_, Handle>, err: PyErr) -> PyResult<()> {
    let py = slf.py();
    if err.is_instance_of::<PyKeyboardInterrupt>(py) || err.is_instance_of::<PySystemExit>(py) {
        return Err(err);
    }
    let h = slf.get();
    let callback = Handle::clone_field(&h.callback, py);
    let args = Handle::clone_field(&h.args, py);
    let cb = match callback {
        Some(cb) => helpers::format_callback_source(py, cb, args)?,
        None => "None".to_owned(),
    };
    let context = PyDict::new(py);
    context.set_item("message", format!("Exception in callback {cb}"))?;
    context.set_item("exception", err.into_value(py))?;
    context.set_item("handle", slf)?;
    if let Some(tb) = Handle::clone_field(&h.source_traceback, py) {
        if tb.bind(py).is_truthy()? {
            context.set_item("source_traceback", tb)?;
        }
    }
    match Handle::clone_field(&h.loop_, py) {
        Some(lp) => lp
            .bind(py)
            .call_method1("call_exception_handler", (context,))
            .map(drop),
        None => Ok(()),
    }
}

/// Runs a scheduled handle on its loop's thread, as one entry of asyncio's
/// ready queue: skipped if cancelled, deferred if the run is stopping on an
/// escaped exception, timed in debug mode. An exception that must leave
/// the run (see [`report`]) is handed to the loop, which stops.
#[inline]
pub(crate) fn run_handle(py: Python<'_>, lb: &LoopBase, handle: &Bound<'_, Handle>) {
    if lb.aborting(py) {
        lb.defer(py, handle.clone().unbind());
        return;
    }
    if lb.has_deferred(py) {
        lb.run_deferred(py);
        if lb.aborting(py) {
            lb.defer(py, handle.clone().unbind());
            return;
        }
    }
    let h = handle.get();
    if h.is_cancelled() {
        return;
    }
    let debug = lb.debug();
    let (t0, outer) = if debug {
        let outer = lb.set_current_handle(py, Some(handle.clone().unbind()));
        (crate::clock::monotonic(), outer)
    } else {
        (0.0, None)
    };
    if let Err(err) = invoke(py, h).or_else(|err| report(handle, err)) {
        lb.abort(py, err);
    }
    if debug {
        let dt = crate::clock::monotonic() - t0;
        let this = lb.set_current_handle(py, outer);
        drop(this);
        if dt >= lb.slow_callback_duration(py) {
            if let Err(err) = helpers::log_slow_callback(py, handle, dt) {
                lb.abort(py, err);
            }
        }
    }
}
