//! The loop's list of tasks that are not finished, so that `close()` can
//! drop the futures of tasks that wait on something and `all_tasks()` can
//! list them (asyncio keeps `_all_tasks` for the same reasons). A task
//! enters when the loop first sees it: at creation on the loop's thread,
//! when drained from the inbox otherwise. A slab: O(1) insert and remove,
//! the slot index kept in the task.

use std::ptr::NonNull;

/// One counted reference to a task, held by the registry. The pointer is
/// the task's header (`task::raw::TaskHeader`), kept opaque here so that
/// the registry, which the loop's interfaces name, depends on nothing; its
/// operations and its `Drop` (which releases the reference) are in
/// `task::raw`.
pub(crate) struct TaskRef(pub(crate) NonNull<()>);

// Safety: a task reference may be released from any thread.
unsafe impl Send for TaskRef {}

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
