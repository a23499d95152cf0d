//! What transports answer to asyncio's `get_extra_info(name)`.

use socket2::SockAddr;
use std::os::fd::RawFd;

/// What [`Transport::get_extra_info`](crate::Transport::get_extra_info)
/// and [`DatagramTransport::get_extra_info`](crate::DatagramTransport::get_extra_info)
/// answer (asyncio's `get_extra_info(name)` keys `peername`, `sockname`
/// and `socket`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ExtraInfo {
    /// `peername` / `sockname`: an address.
    Address(SockAddr),
    /// `socket` / `pipe`: the file descriptor. Use it only while the
    /// transport is open, and never close it.
    Fd(RawFd),
    /// `peercert`: the TLS peer's certificate chain, DER-encoded, the
    /// peer's own first.
    Certificates(Vec<Vec<u8>>),
    /// `cipher` / `tls_version`: the negotiated cipher suite or protocol
    /// version, by name (`TLS13_AES_256_GCM_SHA384`, `TLSv1_3`).
    Text(String),
    /// `alpn_protocol`: the protocol ALPN chose (`b"h2"`).
    Bytes(Vec<u8>),
}
