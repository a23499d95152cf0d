//! The loop's list of tasks that wait on something, so that `close()` can
//! drop their futures and `all_tasks()` can list them (asyncio keeps
//! `_all_tasks` for the same reasons), and the count of the loop's tasks
//! that are not done. A task is counted when the loop first sees it (at
//! creation on the loop's thread, when drained from the inbox otherwise),
//! and enters the list only when a step of it returns `Pending` without
//! being queued again: until then its queue entry holds it, and the
//! queues are where `close()` and `all_tasks()` find it. A task that runs
//! to completion in one step never touches the list. A slab: O(1) insert
//! and remove, the slot index kept in the task.

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
    /// Tasks the loop has seen that are not done, listed or not.
    live: usize,
}

impl TaskRegistry {
    /// The loop saw a task (not done) for the first time.
    pub(crate) fn count_in(&mut self) {
        self.live += 1;
    }

    /// A task the loop had seen is done.
    pub(crate) fn count_out(&mut self) {
        self.live -= 1;
    }

    /// The loop's tasks that are not done.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    pub(crate) fn insert(&mut self, task: TaskRef) -> usize {
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
        self.free.push(idx);
        Some(task)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &TaskRef> {
        self.slots.iter().flatten()
    }

    pub(crate) fn drain(&mut self) -> Vec<TaskRef> {
        self.free.clear();
        self.live = 0;
        self.slots.drain(..).flatten().collect()
    }
}
