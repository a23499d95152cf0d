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

/// asyncio's bind failure: "error while attempting to bind on address
/// ('127.0.0.1', 80): address already in use", the OS error inside.
pub(crate) fn bind_error(addr: &SockAddr, e: std::io::Error) -> Error {
    let text = e.to_string();
    // `strerror`, lower-cased, without Rust's "(os error N)".
    let why = text
        .split(" (os error")
        .next()
        .unwrap_or(&text)
        .to_lowercase();
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
