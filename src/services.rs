//! Per-loop services that plug in from above: state a module above the
//! loop keeps for each loop (the default executor, the signal handlers,
//! the SIGCHLD watcher's children) and that must be released when the
//! loop closes.
//!
//! The loop knows none of these modules. It holds a [`Services`] map,
//! keyed by the service's type, that each module fills on first use and
//! that `close()` empties, calling every service's [`LoopService::close`]
//! once. A module reaches its own state with
//! [`Services::get_or_insert_with`]; nothing else names it.

use crate::error::Error;
use std::any::{Any, TypeId};
use std::sync::{Arc, Mutex};

/// A module's per-loop state.
pub(crate) trait LoopService: Any + Send + Sync {
    /// The loop is closing: release what the service holds (unregister
    /// signal actions, hand children to reapers, shut an executor down).
    /// Called once, with no lock held, before the loop's core shuts down
    /// (so sources the service registered are still there to deregister,
    /// and its transports hear `connection_lost` afterwards).
    fn close(&self);
}

struct Entry {
    type_id: TypeId,
    any: Arc<dyn Any + Send + Sync>,
    service: Arc<dyn LoopService>,
}

#[derive(Default)]
struct Slots {
    entries: Vec<Entry>,
    closed: bool,
}

/// A loop's services, one per type, in the order they were first used.
#[derive(Default)]
pub(crate) struct Services {
    slots: Mutex<Slots>,
}

impl Services {
    /// The service of type `T`, if it has been created.
    pub(crate) fn get<T: LoopService>(&self) -> Option<Arc<T>> {
        let slots = crate::sync::lock(&self.slots);
        let entry = slots
            .entries
            .iter()
            .find(|e| e.type_id == TypeId::of::<T>())?;
        entry.any.clone().downcast::<T>().ok()
    }

    /// The service of type `T`, created by `make` on first use. `make`
    /// runs under the map's lock: it must run no user code. Error:
    /// [`Error::Closed`] once the loop has closed (its services are gone).
    pub(crate) fn get_or_insert_with<T: LoopService>(
        &self,
        make: impl FnOnce() -> T,
    ) -> Result<Arc<T>, Error> {
        let mut slots = crate::sync::lock(&self.slots);
        if slots.closed {
            return Err(Error::Closed);
        }
        if let Some(entry) = slots
            .entries
            .iter()
            .find(|e| e.type_id == TypeId::of::<T>())
        {
            if let Ok(service) = entry.any.clone().downcast::<T>() {
                return Ok(service);
            }
        }
        let service = Arc::new(make());
        slots.entries.push(Entry {
            type_id: TypeId::of::<T>(),
            any: service.clone(),
            service: service.clone(),
        });
        Ok(service)
    }

    /// Closes every service, in the order they were created, and refuses
    /// new ones. Idempotent.
    pub(crate) fn close(&self) {
        let entries = {
            let mut slots = crate::sync::lock(&self.slots);
            slots.closed = true;
            std::mem::take(&mut slots.entries)
        };
        for entry in &entries {
            entry.service.close();
        }
        drop(entries);
    }
}
