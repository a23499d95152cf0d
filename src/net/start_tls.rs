//! `loop.start_tls`: upgrades a connected stream transport to TLS in
//! place (see `net::tls` for where the session sits).

use super::tls::{TlsContext, TlsLayer};
use super::transport::Transport;
use crate::error::Error;
use std::time::Duration;

/// The options of [`EventLoop::start_tls`](crate::EventLoop::start_tls)
/// (asyncio's keyword arguments of `loop.start_tls`).
#[derive(Clone, Debug, Default)]
pub struct StartTlsOptions {
    /// The name the server's certificate must carry; required for a
    /// client.
    pub server_hostname: Option<String>,
    /// How long the handshake may take (asyncio's default: 60 s).
    pub ssl_handshake_timeout: Option<Duration>,
    /// How long closing waits for the peer to take the rest (asyncio's
    /// default: 30 s).
    pub ssl_shutdown_timeout: Option<Duration>,
}

impl crate::event_loop::EventLoop {
    /// Upgrades a connected stream transport to TLS (asyncio:
    /// `loop.start_tls(transport, protocol, sslcontext)`): a client or a
    /// server handshake per `context`, over the same connection. Returns
    /// once the handshake completed; from then on the transport's
    /// protocol reads and writes plaintext. asyncio returns a new
    /// transport and takes the protocol to use; evloop upgrades the
    /// transport in place (the returned handle is the same transport) and
    /// keeps its protocol, which is not told `connection_made` again
    /// (replace it with `set_protocol` if needed). Bytes that arrived
    /// before the upgrade were already delivered as plaintext, as in
    /// asyncio.
    ///
    /// Errors: [`Error::Tls`] for a failed handshake (a certificate that
    /// does not verify, a peer that speaks no TLS); [`Error::Io`] with
    /// `ConnectionAborted` ("SSL handshake is taking longer than 60.0
    /// seconds: aborting the connection") or the connection's own error;
    /// [`Error::InvalidState`] for a transport that is closing, already
    /// TLS or sending a file; [`Error::InvalidArgument`] for a pipe
    /// transport or a client without `server_hostname`;
    /// [`Error::WrongThread`]. The connection is closed on a failed
    /// handshake; a refusal before it starts (a transport that is already
    /// TLS, closing, or busy) leaves the connection as it was.
    pub async fn start_tls(
        &self,
        transport: &Transport,
        context: TlsContext,
        options: StartTlsOptions,
    ) -> Result<Transport, Error> {
        let tls = TlsLayer::new(
            &context,
            options.server_hostname.as_deref(),
            options.ssl_handshake_timeout,
            options.ssl_shutdown_timeout,
        )?;
        let made = self.create_future();
        transport.upgrade(tls, made.clone())?;
        /// Closes the connection if the caller gives up mid-handshake.
        struct Abort<'a>(Option<&'a Transport>);
        impl Drop for Abort<'_> {
            fn drop(&mut self) {
                if let Some(t) = self.0.take() {
                    t.abort();
                }
            }
        }
        let mut guard = Abort(Some(transport));
        let outcome = made.await;
        guard.0 = None;
        match outcome {
            Ok(()) => Ok(transport.clone()),
            Err(_) => Err(transport
                .take_start_failure()
                .map_or(Error::Closed, Error::from_connection)),
        }
    }
}
