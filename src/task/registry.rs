//! The loop's list of tasks that are not finished, so that `close()` can
//! drop the futures of tasks that wait on something and `all_tasks()` can
//! list them (asyncio keeps `_all_tasks` for the same reasons). A task
//! enters when the loop first sees it: at creation on the loop's thread,
//! when drained from the inbox otherwise. A slab: O(1) insert and remove,
//! the slot index kept in the task.

use super::raw::{self, TaskHeader};
use std::ptr::NonNull;

/// One counted reference to a task, held by the registry.
pub(crate) struct TaskRef(pub(crate) NonNull<TaskHeader>);

// Safety: a task reference may be released from any thread.
unsafe impl Send for TaskRef {}

impl TaskRef {
    /// Requests cancellation; `true` if the task was not done.
    pub(crate) fn cancel(&self) -> bool {
        // Safety: we hold a reference.
        let head = unsafe { self.0.as_ref() };
        if head.state.request_cancel() {
            raw::wake_by_ref(self.0);
            true
        } else {
            false
        }
    }

    /// The task's description, unless it is done.
    pub(crate) fn info_if_pending(&self) -> Option<crate::exception::TaskInfo> {
        // Safety: we hold a reference.
        let head = unsafe { self.0.as_ref() };
        (head.state.load() & super::state::COMPLETE == 0).then(|| head.info())
    }

    /// Drops the task's future and completes it as cancelled, unless it is
    /// done.
    pub(crate) fn close(&self) {
        // Safety: we hold a reference.
        unsafe { raw::close(self.0) }
    }
}

impl Drop for TaskRef {
    fn drop(&mut self) {
        // Safety: we own the reference.
        unsafe { raw::release(self.0) }
    }
}

#[derive(Default)]
pub(crate) struct TaskRegistry {
    slots: Vec<Option<TaskRef>>,
    free: Vec<usize>,
    len: usize,
}

impl TaskRegistry {
    pub(crate) fn insert(&mut self, task: TaskRef) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(idx) => {
                self.slots[idx] = Some(task);
                idx
            }
            None => {
                self.slots.push(Some(task));
                self.slots.len() - 1
            }
        }
    }

    pub(crate) fn remove(&mut self, idx: usize) -> Option<TaskRef> {
        let task = self.slots.get_mut(idx)?.take()?;
        self.len -= 1;
        self.free.push(idx);
        Some(task)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &TaskRef> {
        self.slots.iter().flatten()
    }

    pub(crate) fn drain(&mut self) -> Vec<TaskRef> {
        self.free.clear();
        self.len = 0;
        self.slots.drain(..).flatten().collect()
    }
}
