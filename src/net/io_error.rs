//! `io::Error` is not `Clone`, yet one connection's error often has more
//! than one reader (the protocol's `connection_lost`, a stream reader's
//! exception, the start that failed, the exception handler's report).

use std::io;

/// A second copy of `e`: the same rustls error inside (a TLS failure
/// stays one), or the same OS code, or the same kind and message.
pub(crate) fn copy_io_error(e: &io::Error) -> io::Error {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return tls_error(tls.clone());
    }
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// Whether asyncio would see `e` as an `OSError`, which its transports'
/// `_fatal_error` only logs in debug mode: an error of the operating
/// system, or of a kind Python maps to an `OSError` subclass (a reset
/// peer, a broken pipe, an aborted or timed-out connection, a TLS error:
/// `ssl.SSLError` is one). An `Other` error with no OS code is one evloop
/// raised for a broken rule (asyncio's `RuntimeError` and the like, an
/// empty buffer from `get_buffer`, a panicking TLS callback): those are
/// reported to the exception handler.
pub(crate) fn is_os_error(e: &io::Error) -> bool {
    e.raw_os_error().is_some() || e.kind() != io::ErrorKind::Other
}

/// A rustls error as an I/O error (what `connection_lost` carries; the
/// rustls error is its inner error).
pub(crate) fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}
