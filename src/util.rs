//! Small helpers shared across modules.

use std::panic::{AssertUnwindSafe, catch_unwind};

/// The name asyncio would print for the current thread.
pub(crate) fn thread_name() -> String {
    let t = std::thread::current();
    match t.name() {
        Some(name) => name.to_string(),
        None => format!("{:?}", t.id()),
    }
}

/// Drops `value`, which may own user values, without letting a panicking
/// destructor unwind into the loop's machinery: the panic is logged as
/// "`what` panicked while being dropped" and the caller goes on.
///
/// Every place that drops a user's closure, future or output on behalf of
/// the loop goes through here.
#[inline]
pub(crate) fn drop_quietly<T>(value: T, what: &str) {
    if std::mem::needs_drop::<T>() && catch_unwind(AssertUnwindSafe(|| drop(value))).is_err() {
        log_error(format_args!("{what} panicked while being dropped"));
    }
}

/// Logs an error evloop cannot hand to anyone: through `tracing`, or to
/// standard error when no `tracing` subscriber is installed (Python's
/// unconfigured logging prints errors the same way).
pub(crate) fn log_error(message: std::fmt::Arguments<'_>) {
    let unobserved =
        tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>());
    if unobserved {
        eprintln!("evloop: {message}");
    } else {
        tracing::error!(target: "evloop", "{message}");
    }
}

/// Logs a warning the way [`log_error`] logs an error (Python's
/// unconfigured logging prints warnings to standard error too).
pub(crate) fn log_warning(message: std::fmt::Arguments<'_>) {
    let unobserved =
        tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>());
    if unobserved {
        eprintln!("evloop: {message}");
    } else {
        tracing::warn!(target: "evloop", "{message}");
    }
}

/// Sets `O_NONBLOCK` on an open descriptor the caller owns or borrows.
pub(crate) fn set_nonblocking(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    // Safety: fcntl(F_GETFL / F_SETFL) on an fd the caller keeps open for
    // the call; neither touches memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK == 0 {
        // Safety: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
