//! How a task ended: what its done callbacks are told.

use crate::exception::TaskInfo;

/// How a task ended, as its done callbacks are told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskOutcome {
    /// The future returned its output.
    Returned,
    /// The future panicked; awaiting the task gives [`TaskError::Panicked`](crate::TaskError::Panicked).
    Panicked,
    /// The task was cancelled (or closed with its loop).
    Cancelled,
}

/// What a task's done callback receives (see [`Task::add_done_callback`](crate::Task::add_done_callback)).
#[derive(Clone, Debug)]
pub struct TaskDone {
    /// Which task: id, name, where it was created.
    pub info: TaskInfo,
    /// How it ended.
    pub outcome: TaskOutcome,
}

impl TaskDone {
    /// Whether the task was cancelled (asyncio: `task.cancelled()`).
    pub fn cancelled(&self) -> bool {
        self.outcome == TaskOutcome::Cancelled
    }
}
