//! asyncio's network layer below streams: low-level socket operations,
//! transports and protocols, connections, servers, datagrams, DNS and
//! sendfile, and pipes (asyncio's "Working with pipes"), on the readiness
//! layer (`crate::readiness`).

pub(crate) mod connect;
pub(crate) mod datagram;
pub(crate) mod dns;
mod endpoint;
pub(crate) mod extra;
pub(crate) mod flow;
pub(crate) mod io_error;
pub(crate) mod pipe;
pub(crate) mod protocol_slot;
mod sendfile;
pub(crate) mod server;
mod sock;
pub(crate) mod start_tls;
pub(crate) mod streams;
pub(crate) mod tcp;
pub(crate) mod tls;
pub(crate) mod transport;
#[cfg(feature = "native-roots")]
pub(crate) mod trust;

use crate::error::Error;
use socket2::SockAddr;

/// An address as asyncio's messages show it: `('127.0.0.1', 80)`,
/// `('::1', 80, 0, 0)`, `'/path'`.
pub(crate) fn addr_repr(addr: &SockAddr) -> String {
    match addr.as_socket() {
        Some(std::net::SocketAddr::V4(a)) => format!("('{}', {})", a.ip(), a.port()),
        Some(std::net::SocketAddr::V6(a)) => format!("('{}', {}, 0, 0)", a.ip(), a.port()),
        None => match addr.as_pathname() {
            Some(p) => format!("'{}'", p.display()),
            None => "<unnamed>".into(),
        },
    }
}

/// The text of an OS error as Python's `OSError` shows it after its
/// number (`strerror`, without Rust's "(os error N)").
pub(crate) fn strerror(e: &std::io::Error) -> String {
    let text = e.to_string();
    text.split(" (os error").next().unwrap_or(&text).to_string()
}

/// An OS error as Python raises it from a system call it does not wrap:
/// "[Errno 2] No such file or directory", the OS error inside.
pub(crate) fn os_error(e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(_) => Error::Os {
            context: strerror(&e),
            source: e,
        },
        None => Error::Io(e),
    }
}

/// The address of a Unix socket path, with Python's error for one too
/// long for `sun_path` ("AF_UNIX path too long").
pub(crate) fn unix_addr(path: &std::path::Path) -> Result<SockAddr, Error> {
    SockAddr::unix(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidInput {
            Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "AF_UNIX path too long",
            ))
        } else {
            Error::Io(e)
        }
    })
}

/// asyncio's bind failure: "error while attempting to bind on address
/// ('127.0.0.1', 80): address already in use", the OS error inside.
pub(crate) fn bind_error(addr: &SockAddr, e: std::io::Error) -> Error {
    // `strerror`, lower-cased.
    let why = strerror(&e).to_lowercase();
    Error::Os {
        context: format!(
            "error while attempting to bind on address {}: {why}",
            addr_repr(addr)
        ),
        source: e,
    }
}

/// Runs `op` on a loop-owned object: now if this thread holds the loop's
/// core (`here`), otherwise posted to the loop (dropped if it is closed:
/// closing closed the object already). What transports and servers do
/// with calls from other threads.
#[track_caller]
pub(crate) fn on_loop<T: Send + Sync + 'static>(
    shared: &std::sync::Arc<crate::event_loop::shared::Shared>,
    here: bool,
    target: &std::sync::Arc<T>,
    op: impl FnOnce(&std::sync::Arc<T>) + Send + 'static,
) {
    if here {
        op(target);
    } else {
        let target = target.clone();
        let _ = shared.call_soon(None, std::panic::Location::caller(), move || op(&target));
    }
}
