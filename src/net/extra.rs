//! What transports answer to asyncio's `get_extra_info(name)`.

use socket2::{SockAddr, SockRef};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Weak};

/// What [`Transport::get_extra_info`](crate::Transport::get_extra_info)
/// and [`DatagramTransport::get_extra_info`](crate::DatagramTransport::get_extra_info)
/// answer (asyncio's `get_extra_info(name)`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ExtraInfo {
    /// `peername` / `sockname`: an address.
    Address(SockAddr),
    /// `socket`: the transport's socket, lent while the transport is open
    /// (asyncio's `TransportSocket`).
    Socket(TransportFd),
    /// `pipe`: a pipe transport's descriptor, lent while it is open.
    Pipe(TransportFd),
    /// `peercert`: the TLS peer's certificate chain, DER-encoded, the
    /// peer's own first.
    Certificates(Vec<Vec<u8>>),
    /// `cipher` / `tls_version`: the negotiated cipher suite or protocol
    /// version, by name (`TLS13_AES_256_GCM_SHA384`, `TLSv1_3`).
    Text(String),
    /// `alpn_protocol`: the protocol ALPN chose (`b"h2"`).
    Bytes(Vec<u8>),
}

/// A transport's descriptor as `get_extra_info("socket")` and `("pipe")`
/// hand it out: not a number, which could name another file once the
/// transport closed and the number was reused, but access that lasts as
/// long as the transport is open (asyncio's `TransportSocket` refuses
/// what would break the transport in the same spirit).
///
/// Each access runs on the loop's thread, on a duplicate of the
/// descriptor (the same socket, with the same options, connection and
/// peer) that closes after the call, so the closure may call the
/// transport; it answers `None` once the transport closed its descriptor,
/// or off the loop's thread. Do not read from it, write to it or shut it
/// down: that is the transport's.
///
/// ```no_run
/// use evloop::{EventLoop, ExtraInfo, Protocol};
///
/// struct Quiet;
/// impl Protocol for Quiet {}
///
/// let lp = EventLoop::new()?;
/// lp.run_until_complete(async {
///     let t = lp.create_connection(|| Quiet, "127.0.0.1", 8888).await?;
///     if let Some(ExtraInfo::Socket(sock)) = t.get_extra_info("socket") {
///         let keepalive = sock.with_socket(|s| s.set_keepalive(true));
///         assert!(matches!(keepalive, Some(Ok(()))));
///     }
///     Ok::<(), evloop::Error>(())
/// })??;
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Clone)]
pub struct TransportFd {
    source: Weak<dyn FdSource>,
    socket: bool,
}

/// A transport whose descriptor a [`TransportFd`] lends.
pub(crate) trait FdSource: Send + Sync {
    /// A duplicate of the open descriptor, on the loop's thread.
    fn dup_fd(&self) -> Option<OwnedFd>;
}

impl TransportFd {
    /// Access to `source`'s descriptor; `socket` if it is a socket.
    pub(crate) fn new<S: FdSource + 'static>(source: &Arc<S>, socket: bool) -> TransportFd {
        let source: Arc<dyn FdSource> = source.clone();
        TransportFd {
            source: Arc::downgrade(&source),
            socket,
        }
    }

    /// Runs `f` on the descriptor while the transport is open (loop
    /// thread only).
    pub fn with_fd<R>(&self, f: impl FnOnce(BorrowedFd<'_>) -> R) -> Option<R> {
        let fd = self.source.upgrade()?.dup_fd()?;
        Some(f(fd.as_fd()))
    }

    /// Runs `f` on the socket while the transport is open (loop thread
    /// only), for options asyncio does not expose; `None` for a pipe.
    pub fn with_socket<R>(&self, f: impl FnOnce(SockRef<'_>) -> R) -> Option<R> {
        if !self.socket {
            return None;
        }
        with_socket_of(&*self.source.upgrade()?, f)
    }

    /// Whether the descriptor is a socket.
    pub fn is_socket(&self) -> bool {
        self.socket
    }
}

/// Runs `f` on a duplicate of `source`'s socket (what the transports'
/// `with_socket` and [`TransportFd::with_socket`] do): user code, so it
/// runs outside the transport's state, on a descriptor that stays valid
/// for the call whatever the closure does to the transport.
pub(crate) fn with_socket_of<R>(
    source: &dyn FdSource,
    f: impl FnOnce(SockRef<'_>) -> R,
) -> Option<R> {
    let fd = source.dup_fd()?;
    Some(f(SockRef::from(&fd)))
}

impl std::fmt::Debug for TransportFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportFd")
            .field("socket", &self.socket)
            .field("transport_alive", &(self.source.strong_count() > 0))
            .finish()
    }
}
