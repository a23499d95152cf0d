//! Python objects the front-end calls, looked up once per interpreter:
//! asyncio's `Future` and `Task` (the C implementations), `selectors`'
//! file-object check, and the helpers in `evloop._compat` (formatting and stack extraction, the one place
//! that knows which Python version runs).

use crate::handle::Handle;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyFloat, PyTuple};

macro_rules! cached {
    ($name:ident, $module:literal, $attr:literal) => {
        pub(crate) fn $name(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
            static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
            Ok(CELL
                .get_or_try_init(py, || -> PyResult<Py<PyAny>> {
                    Ok(py.import($module)?.getattr($attr)?.unbind())
                })?
                .bind(py))
        }
    };
}

cached!(future_class, "asyncio", "Future");
cached!(task_class, "asyncio", "Task");
cached!(
    format_callback_source_fn,
    "evloop._compat",
    "format_callback_source"
);
cached!(extract_stack_fn, "evloop._compat", "extract_stack");
cached!(log_slow_callback_fn, "evloop._compat", "log_slow_callback");
cached!(create_task_fn, "evloop._compat", "create_task");
cached!(fileobj_to_fd_fn, "selectors", "_fileobj_to_fd");

/// asyncio's `format_helpers._format_callback_source(callback, args)`.
pub(crate) fn format_callback_source(
    py: Python<'_>,
    callback: Py<PyAny>,
    args: Option<Py<PyTuple>>,
) -> PyResult<String> {
    format_callback_source_fn(py)?
        .call1((callback, args))?
        .extract()
}

/// Python's `repr(float)`.
pub(crate) fn float_repr(py: Python<'_>, value: f64) -> PyResult<String> {
    Ok(PyFloat::new(py, value).repr()?.to_string())
}

/// The frames of the Python code calling into the front-end (asyncio's
/// `_source_traceback`), for debug mode.
pub(crate) fn extract_stack(py: Python<'_>) -> PyResult<Py<PyAny>> {
    Ok(extract_stack_fn(py)?.call0()?.unbind())
}

/// asyncio's "Executing <Handle ...> took 0.123 seconds" warning.
pub(crate) fn log_slow_callback(
    py: Python<'_>,
    handle: &Bound<'_, Handle>,
    dt: f64,
) -> PyResult<()> {
    log_slow_callback_fn(py)?.call1((handle, dt)).map(drop)
}
