//! `evloop._evloop`: the extension module behind the Python package
//! `evloop`, a drop-in asyncio event loop on the evloop crate.
//!
//! The module holds the Rust half of the loop ([`event_loop::LoopBase`],
//! which the Python class `evloop.Loop` derives from together with
//! `asyncio.AbstractEventLoop`) and asyncio's handle types
//! ([`handle::Handle`], [`handle::TimerHandle`]). Futures and tasks are
//! asyncio's own C types. See ARCHITECTURE.md, "Python front-end".

mod clock;
pub mod event_loop;
mod gil;
pub mod handle;
mod helpers;

use pyo3::prelude::*;

/// The extension module. It declares that it needs the GIL: `GilCell`'s
/// safety rests on the GIL serialising every access, so a free-threaded
/// interpreter must keep the GIL on while this module is loaded.
#[pymodule(gil_used = true)]
fn _evloop(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<event_loop::LoopBase>()?;
    m.add_class::<handle::Handle>()?;
    m.add_class::<handle::TimerHandle>()?;
    Ok(())
}
