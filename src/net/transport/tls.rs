//! TLS inside a stream transport (the design is in `net::tls`): the
//! handshake driven by readability under its timer, `connection_made`
//! when it completes, writes encrypted into ciphertext for the plain write
//! path, what the session has to send by itself (flights, alerts,
//! tickets), `close_notify` and the shutdown timer, and `start_tls`'s
//! upgrade of a plain transport.

use super::state::{Handshaking, Inner, Kind, TlsState, Transport, WriteSide};
use super::write::{closing, sendfile_in_progress};
use crate::error::Error;
use crate::future::LoopFuture;
use crate::handle::TimerHandle;
use crate::net::protocol_slot;
use crate::net::tls::{Handshake, TlsLayer};
use std::io;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// What one handshake step came to (for the read path).
pub(super) enum HandshakeStep {
    /// Done: plaintext may follow at once.
    Complete,
    /// The socket has nothing more for now.
    Pending,
    /// The handshake failed and the connection is closing.
    Failed,
}

impl Inner {
    /// Feeds the handshake what the socket has (on readability).
    pub(super) fn handshake_step(self: &Arc<Self>) -> HandshakeStep {
        let step = self
            .state
            .with(|s| match (&mut s.tls, s.conn.endpoint()) {
                (Some(tls), Some(endpoint)) => tls.session.handshake(endpoint),
                _ => Ok(Handshake::Pending),
            })
            .unwrap_or(Ok(Handshake::Pending));
        // The step's own flight (or an alert) goes out first.
        self.send_tls_output();
        match step {
            Ok(Handshake::Done) => {
                self.handshake_complete();
                HandshakeStep::Complete
            }
            Ok(Handshake::Pending) => HandshakeStep::Pending,
            Ok(Handshake::Eof) => {
                self.fatal_error(
                    io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "Connection lost during the SSL handshake",
                    ),
                    "SSL handshake failed",
                );
                HandshakeStep::Failed
            }
            Err(e) => {
                // asyncio's words for a certificate that does not verify.
                let message = match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                    Some(rustls::Error::InvalidCertificate(_)) => {
                        "SSL handshake failed on verifying the certificate"
                    }
                    _ => "SSL handshake failed",
                };
                self.fatal_error(e, message);
                HandshakeStep::Failed
            }
        }
    }

    /// Sends what the TLS session has to send outside `write` (handshake
    /// flights, alerts, tickets, key updates).
    pub(super) fn send_tls_output(self: &Arc<Self>) {
        // A plain connection (every read asks) has nothing to send.
        if !self.tls.load(Ordering::Acquire) {
            return;
        }
        let out = self
            .state
            .with(|s| {
                let tls = s.tls.as_mut()?;
                let mut out = Vec::new();
                tls.session.output(&mut out);
                (!out.is_empty()).then_some(out)
            })
            .flatten();
        if let Some(out) = out {
            if let Err(e) = self.write_raw(&[&out]) {
                tracing::debug!(target: "evloop", "TLS output not sent: {e}");
            }
        }
    }

    /// The handshake completed: what it negotiated is published, the
    /// timer cancelled, the protocol told (`connection_made`, unless this
    /// is `start_tls`), and whoever waits for the connection released.
    fn handshake_complete(self: &Arc<Self>) {
        let taken = self.state.with(|s| {
            let tls = s.tls.as_mut()?;
            let _ = self.tls_info.set(tls.session.info());
            let handshake = tls.handshake.take()?;
            Some((handshake, s.start.take()))
        });
        let Some(Some((handshake, start))) = taken else {
            return;
        };
        if let Some(timer) = handshake.timer {
            timer.cancel();
        }
        if handshake.call_made {
            let t = self.handle();
            if !protocol_slot::connection_made(self, |p| p.connection_made(t)) {
                // It panicked and the transport is closing: the start
                // fails with the connection.
                self.state.with(|s| s.start = start);
                return;
            }
        }
        if let Some(start) = start {
            let _ = start.set_result(());
        }
        // Plaintext may have come with the last flight.
        self.queue_read();
    }

    /// Installs a TLS session and starts its handshake (loop thread): the
    /// client's first flight goes out, the timer starts, and readiness
    /// drives the rest. `call_made`: the protocol hears `connection_made`
    /// when the handshake completes (a new connection, not `start_tls`).
    pub(super) fn begin_tls(
        self: &Arc<Self>,
        session: TlsLayer,
        call_made: bool,
    ) -> Result<(), Error> {
        let timeout = session.handshake_timeout;
        let tls = TlsState {
            session,
            handshake: Some(Handshaking {
                timer: None,
                call_made,
            }),
            out_buf: Vec::new(),
            shutdown_timer: None,
            failure: None,
        };
        self.state
            .with(|s| s.tls = Some(Box::new(tls)))
            .ok_or(Error::WrongThread)?;
        self.tls.store(true, Ordering::Release);
        let inner = self.clone();
        let timer = self.shared.call_soon(
            Some(Instant::now() + timeout),
            Location::caller(),
            move || {
                let pending = inner.state.with(|s| s.handshaking()).unwrap_or(false);
                if pending {
                    let secs = timeout.as_secs_f64();
                    inner.fatal_error(
                        io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            format!(
                                "SSL handshake is taking longer than {secs:?} seconds: \
                                 aborting the connection"
                            ),
                        ),
                        "SSL handshake timed out",
                    );
                }
            },
        )?;
        self.state.with(|s| {
            if let Some(handshake) = s.tls.as_mut().and_then(|t| t.handshake.as_mut()) {
                handshake.timer = Some(TimerHandle::new(timer));
            }
        });
        self.send_tls_output();
        // Bytes may be waiting already (a server's peer spoke first).
        self.queue_read();
        Ok(())
    }

    /// A write of plaintext: encrypted here (into a buffer the session
    /// keeps for it), the ciphertext takes the plain path.
    pub(super) fn write_tls(self: &Arc<Self>, data: &[&[u8]]) -> Result<(), Error> {
        let cipher = self.state.with(|s| {
            if matches!(s.write, WriteSide::Sendfile { .. }) {
                return Err(sendfile_in_progress());
            }
            let total: usize = data.iter().map(|d| d.len()).sum();
            if total == 0 {
                return Ok(None);
            }
            if !s.conn.is_open() {
                // After close_notify nothing more may go (asyncio drops
                // these too).
                self.drop_lost_write(s);
                return Ok(None);
            }
            let Some(tls) = &mut s.tls else {
                return Ok(None);
            };
            let mut out = std::mem::take(&mut tls.out_buf);
            out.clear();
            match tls.session.encrypt(data, &mut out) {
                Ok(()) => Ok(Some(out)),
                Err(e) => {
                    tls.out_buf = out;
                    Err(Error::Io(e))
                }
            }
        });
        match cipher {
            Some(Ok(Some(out))) => {
                let sent = self.write_raw(&[&out]);
                // The buffer goes back for the next write (unless it grew
                // large for one big write).
                if out.capacity() <= 256 * 1024 {
                    self.state.with(|s| {
                        if let Some(tls) = &mut s.tls {
                            tls.out_buf = out;
                        }
                    });
                }
                sent
            }
            Some(Ok(None)) => Ok(()),
            Some(Err(e)) => Err(e),
            None => Err(Error::InvalidState("the transport is busy")),
        }
    }

    /// `close()` of a TLS transport sends `close_notify` after what is
    /// buffered (nothing for a plain transport).
    pub(super) fn send_close_notify(self: &Arc<Self>) {
        let notify = self
            .state
            .with(|s| {
                if !s.conn.is_open() {
                    return None;
                }
                let mut out = Vec::new();
                s.tls.as_mut()?.session.close_notify(&mut out);
                Some(out)
            })
            .flatten();
        if let Some(out) = notify {
            let _ = self.write_raw(&[&out]);
        }
    }

    /// A closing TLS connection whose buffer did not drain: a peer that
    /// never takes the rest is given `ssl_shutdown_timeout` (asyncio),
    /// then the connection is aborted.
    pub(super) fn start_shutdown_timer(self: &Arc<Self>) {
        let timeout = self
            .state
            .with(|s| s.tls.as_ref().map(|tls| tls.session.shutdown_timeout))
            .flatten();
        let Some(timeout) = timeout else { return };
        let inner = self.clone();
        let timer = self.shared.call_soon(
            Some(Instant::now() + timeout),
            Location::caller(),
            move || {
                inner.force_close(Some(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "SSL shutdown timed out",
                )))
            },
        );
        if let Ok(timer) = timer {
            self.state.with(|s| {
                if let Some(tls) = &mut s.tls {
                    tls.shutdown_timer = Some(TimerHandle::new(timer));
                }
            });
        }
    }
}

/// TLS on an existing transport (see `net::tls`).
impl Transport {
    /// Why the start failed, after it failed: the error that ended the
    /// connection before it was up (loop thread).
    pub(crate) fn take_start_failure(&self) -> Option<io::Error> {
        self.inner
            .state
            .with(|s| s.tls.as_mut().and_then(|tls| tls.failure.take()))
            .flatten()
    }

    /// Upgrades the connection to TLS in place (`loop.start_tls`): the
    /// protocol stays and is not told `connection_made` again; `made`
    /// completes when the handshake does. Loop thread only.
    pub(crate) fn upgrade(&self, tls: TlsLayer, made: LoopFuture<()>) -> Result<(), Error> {
        self.inner
            .state
            .with(|s| {
                if self.inner.kind != Kind::Socket {
                    return Err(Error::InvalidArgument(
                        "start_tls needs a socket transport".into(),
                    ));
                }
                if s.tls.is_some() {
                    return Err(Error::InvalidState("the transport is already TLS"));
                }
                if !s.conn.is_open() {
                    return Err(closing());
                }
                if matches!(s.write, WriteSide::Sendfile { .. }) {
                    return Err(sendfile_in_progress());
                }
                if !s.slot.is_made() {
                    return Err(Error::InvalidState("the transport is not connected yet"));
                }
                s.start = Some(made);
                Ok(())
            })
            .ok_or(Error::WrongThread)??;
        let begun = self.inner.begin_tls(tls, false);
        if begun.is_err() {
            // Half installed (the loop is closing): the connection ends.
            self.abort();
        }
        begun
    }
}
