//! TLS for stream transports (asyncio's `ssl=` and `start_tls`), on
//! rustls with the ring provider: a connection's session ([`TlsLayer`]),
//! which the transport runs between its socket and its protocol (its side
//! is `net::transport::tls`; `net::start_tls` upgrades a transport).
//!
//! # Where it sits
//! asyncio layers TLS as a protocol (`SSLProtocol`) under a second,
//! plaintext transport handed to the application. evloop keeps one
//! [`Transport`](super::transport::Transport) and puts the TLS session
//! *inside* its I/O path, between the socket and the protocol: reads take
//! ciphertext from the socket into rustls and hand the protocol plaintext
//! (into the loop's read buffer, the buffered protocol's buffer, or a
//! stream reader's buffer, as without TLS); writes encrypt into
//! ciphertext that goes out through the transport's own write buffer.
//! The application sees the same `Transport` type, plaintext only, and
//! flow control holds end to end: the write buffer's marks count the
//! ciphertext waiting for the socket, so a peer that stops reading pauses
//! the protocol exactly as without TLS. One object instead of two also
//! means no second buffer and no second round of callbacks per read.
//!
//! # The session's life
//! - **Handshake.** A client's first flight goes out when the transport
//!   starts; while the handshake runs, readiness drives only the
//!   handshake (no plaintext is read), and `connection_made` is delivered
//!   when it completes; `create_connection` returns then. A handshake
//!   that fails, or outlasts `ssl_handshake_timeout` (asyncio's 60 s),
//!   aborts the connection with the error.
//! - **Data.** Plaintext that rustls already decrypted is read before the
//!   socket is touched again; a record's worth of plaintext may stay in
//!   rustls between reads.
//! - **Closing.** `close` sends `close_notify` ahead of the buffered
//!   ciphertext's end; if the peer does not take the rest within
//!   `ssl_shutdown_timeout` (asyncio's 30 s), the connection is aborted.
//!   The peer's `close_notify`, or its end of the stream without one,
//!   is the end of the stream: `eof_received`, then `connection_lost`
//!   (a TLS stream cannot be half-closed, as in asyncio).
//!
//! # Callbacks in the configurations
//! The rustls configurations' callbacks (certificate verifiers, server
//! certificate resolvers, key logs, session stores) run inside the
//! transport, on the loop's thread, in the middle of a read: they must not
//! call the transport or the loop, and must not block (every connection
//! of the loop would wait). A panic in one fails its connection with
//! "a TLS callback panicked", reported to the exception handler.

use crate::error::Error;
use crate::net::endpoint::Endpoint;
use crate::net::io_error::tls_error;
use rustls::pki_types::ServerName;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

/// asyncio's `SSL_HANDSHAKE_TIMEOUT`.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// asyncio's `SSL_SHUTDOWN_TIMEOUT`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// The TLS side of a connection: a rustls client or server configuration
/// (asyncio's `SSLContext`).
///
/// The configuration's callbacks (certificate verifiers, server
/// certificate resolvers, key logs, session stores, ticketers) run inside
/// the transport, on the loop's thread, in the middle of a read or a
/// handshake step: they must not call the transport or the loop (the
/// transport is busy; a call would be refused or posted), and must not
/// block (every connection of the loop waits meanwhile; do slow work such
/// as an OCSP fetch ahead of time, or on the executor). A panic in one
/// fails its connection ("a TLS callback panicked"), reported to the
/// exception handler ("SSL handshake failed").
#[derive(Clone, Debug)]
pub enum TlsContext {
    /// Connect as a client, verifying the server as the config says.
    Client(Arc<rustls::ClientConfig>),
    /// Accept as a server.
    Server(Arc<rustls::ServerConfig>),
}

/// What a TLS connection negotiated, published when its handshake
/// completes (`get_extra_info`'s `peercert`, `cipher`, `alpn_protocol`,
/// `tls_version`).
#[derive(Clone, Debug, Default)]
pub(crate) struct TlsInfo {
    pub(crate) peer_certificates: Vec<Vec<u8>>,
    pub(crate) cipher: Option<String>,
    pub(crate) alpn: Option<Vec<u8>>,
    pub(crate) version: Option<String>,
}

/// How a handshake step ended.
pub(crate) enum Handshake {
    Done,
    /// The socket has nothing more for now.
    Pending,
    /// The peer closed the connection first.
    Eof,
}

/// How much ciphertext one socket read takes at most: rustls itself asks
/// for 4 KiB at a time, which would cost a system call per 4 KiB.
const CIPHER_READ: usize = 64 * 1024;

/// The session of one connection.
pub(crate) struct TlsLayer {
    conn: rustls::Connection,
    /// Ciphertext read from the socket and not yet taken by rustls:
    /// `cipher_in[in_start..in_end]`.
    cipher_in: Vec<u8>,
    in_start: usize,
    in_end: usize,
    /// The socket reported its end (rustls was told).
    socket_eof: bool,
    /// What rustls's last processing said: plaintext ready, and whether
    /// the peer sent `close_notify`.
    plaintext: usize,
    peer_closed: bool,
    /// The socket may hold more: the last read of this call filled its
    /// buffer, or the call did not need the socket at all.
    socket_full: bool,
    close_notify_sent: bool,
    /// How long the handshake may take (the transport's timer).
    pub(crate) handshake_timeout: Duration,
    /// How long closing waits for the peer (the transport's timer).
    pub(crate) shutdown_timeout: Duration,
}

impl TlsLayer {
    pub(crate) fn new(
        context: &TlsContext,
        server_hostname: Option<&str>,
        handshake_timeout: Option<Duration>,
        shutdown_timeout: Option<Duration>,
    ) -> Result<TlsLayer, Error> {
        let conn = match context {
            TlsContext::Client(config) => {
                let name = server_hostname.ok_or_else(|| {
                    Error::InvalidArgument(
                        "You must set server_hostname when using ssl without a host".into(),
                    )
                })?;
                let name = ServerName::try_from(name.to_owned()).map_err(|_| {
                    Error::InvalidArgument(format!("invalid server_hostname {name:?}"))
                })?;
                rustls::ClientConnection::new(config.clone(), name).map(rustls::Connection::Client)
            }
            TlsContext::Server(config) => {
                if server_hostname.is_some() {
                    return Err(Error::InvalidArgument(
                        "server_hostname is only meaningful with ssl".into(),
                    ));
                }
                rustls::ServerConnection::new(config.clone()).map(rustls::Connection::Server)
            }
        }
        .map_err(Error::Tls)?;
        let mut conn = conn;
        // The transport's write buffer is the bound; rustls would refuse
        // plaintext written during a handshake past 64 KiB otherwise.
        conn.set_buffer_limit(None);
        let positive = |d: Option<Duration>, default: Duration, what: &str| match d {
            Some(d) if d.is_zero() => Err(Error::InvalidArgument(format!(
                "{what} should be a positive number, got {}",
                d.as_secs_f64()
            ))),
            Some(d) => Ok(d),
            None => Ok(default),
        };
        Ok(TlsLayer {
            conn,
            cipher_in: Vec::new(),
            in_start: 0,
            in_end: 0,
            socket_eof: false,
            plaintext: 0,
            peer_closed: false,
            socket_full: false,
            close_notify_sent: false,
            handshake_timeout: positive(
                handshake_timeout,
                DEFAULT_HANDSHAKE_TIMEOUT,
                "ssl_handshake_timeout",
            )?,
            shutdown_timeout: positive(
                shutdown_timeout,
                DEFAULT_SHUTDOWN_TIMEOUT,
                "ssl_shutdown_timeout",
            )?,
        })
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Runs rustls over what it was fed (where certificate verifiers and
    /// other configured callbacks run: a panic there fails the
    /// connection instead of unwinding through the loop).
    fn process(&mut self) -> io::Result<()> {
        let state = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.conn.process_new_packets()
        }))
        .map_err(|_| io::Error::other("a TLS callback panicked"))?
        .map_err(tls_error)?;
        self.plaintext = state.plaintext_bytes_to_read();
        self.peer_closed = state.peer_has_closed();
        Ok(())
    }

    /// Feeds rustls the ciphertext already read, or one socket read's
    /// worth: `Ok(false)` once the socket would block.
    fn feed(&mut self, endpoint: &Endpoint) -> io::Result<bool> {
        if self.in_start == self.in_end && !self.socket_eof {
            if self.cipher_in.len() < CIPHER_READ {
                self.cipher_in.resize(CIPHER_READ, 0);
            }
            match endpoint.read(&mut self.cipher_in) {
                Ok(0) => self.socket_eof = true,
                Ok(n) => {
                    self.socket_full = n == self.cipher_in.len();
                    self.in_start = 0;
                    self.in_end = n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.socket_full = false;
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        if self.in_start < self.in_end {
            let mut pending = &self.cipher_in[self.in_start..self.in_end];
            let n = self.conn.read_tls(&mut pending)?;
            self.in_start += n;
        } else {
            // The end of the stream: rustls learns it from an empty read.
            let mut end: &[u8] = &[];
            self.conn.read_tls(&mut end)?;
        }
        self.process()?;
        Ok(true)
    }

    /// Feeds the socket's ciphertext to the handshake until it completes
    /// or the socket runs dry. Plaintext (or ciphertext) that came with
    /// the last flight stays for the reads that follow.
    pub(crate) fn handshake(&mut self, endpoint: &Endpoint) -> io::Result<Handshake> {
        while self.conn.is_handshaking() {
            if self.socket_eof && self.in_start == self.in_end {
                return Ok(Handshake::Eof);
            }
            match self.feed(endpoint) {
                Ok(true) => {}
                Ok(false) => return Ok(Handshake::Pending),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Handshake::Done)
    }

    /// Reads plaintext into `buf`, as a socket read would: `Ok(0)` is the
    /// end of the stream (the peer's `close_notify`, or its end of the
    /// connection without one), `WouldBlock` when neither rustls nor the
    /// socket has more. Fills `buf` as far as what was already received
    /// allows, with at most one socket read when nothing was.
    pub(crate) fn read(&mut self, endpoint: &Endpoint, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        // Unless this call reads the socket and finds it drained.
        self.socket_full = true;
        loop {
            if self.plaintext > 0 || self.peer_closed || self.socket_eof {
                match self.conn.reader().read(&mut buf[filled..]) {
                    Ok(0) => return Ok(filled),
                    Ok(n) => {
                        filled += n;
                        self.plaintext = self.plaintext.saturating_sub(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.plaintext = 0,
                    // The peer ended the TCP stream without close_notify:
                    // the end of the stream all the same.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(filled),
                    Err(e) => return Err(e),
                }
                if filled == buf.len() {
                    return Ok(filled);
                }
            }
            // More ciphertext: what was read already; the socket only if
            // nothing was delivered yet (after data, another read would
            // mostly find it empty).
            if filled > 0 && self.in_start == self.in_end {
                return Ok(filled);
            }
            match self.feed(endpoint) {
                Ok(true) => {}
                Ok(false) => return Err(io::Error::from(io::ErrorKind::WouldBlock)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether a read may find more without a new readiness event:
    /// plaintext or ciphertext held here, the peer's close, or a socket
    /// that may hold more.
    pub(crate) fn has_more(&self) -> bool {
        self.socket_full || self.plaintext_pending()
    }

    /// Whether a read would find something without the socket: plaintext
    /// rustls holds, ciphertext read and not yet decrypted, or the
    /// peer's close not yet reported.
    pub(crate) fn plaintext_pending(&self) -> bool {
        self.plaintext > 0 || self.peer_closed || self.in_start < self.in_end
    }

    /// Encrypts `data` and appends the ciphertext to `out`. rustls
    /// takes no more than its buffer limit at a time; the ciphertext is
    /// moved out as it comes, so any amount goes through.
    pub(crate) fn encrypt(&mut self, data: &[&[u8]], out: &mut Vec<u8>) -> io::Result<()> {
        for d in data {
            let mut rest: &[u8] = d;
            while !rest.is_empty() {
                let n = self.conn.writer().write(rest)?;
                if n == 0 {
                    let before = out.len();
                    self.output(out);
                    if out.len() == before {
                        return Err(io::Error::new(
                            io::ErrorKind::WriteZero,
                            "the TLS session takes no more data",
                        ));
                    }
                }
                rest = &rest[n..];
            }
            self.output(out);
        }
        Ok(())
    }

    /// Appends what rustls has to send (handshake flights, alerts,
    /// tickets, key updates, encrypted records) to `out`.
    pub(crate) fn output(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            match self.conn.write_tls(out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// `close_notify`, once; appended to `out`.
    pub(crate) fn close_notify(&mut self, out: &mut Vec<u8>) {
        if !std::mem::replace(&mut self.close_notify_sent, true) {
            self.conn.send_close_notify();
            self.output(out);
        }
    }

    pub(crate) fn info(&self) -> TlsInfo {
        TlsInfo {
            peer_certificates: self
                .conn
                .peer_certificates()
                .map(|certs| certs.iter().map(|c| c.as_ref().to_vec()).collect())
                .unwrap_or_default(),
            cipher: self
                .conn
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .map(str::to_owned),
            alpn: self.conn.alpn_protocol().map(<[u8]>::to_vec),
            // Python's spelling: "TLSv1.3".
            version: self
                .conn
                .protocol_version()
                .and_then(|v| v.as_str())
                .map(|v| v.replace('_', ".")),
        }
    }
}
