//! asyncio's `StreamReaderProtocol`: the protocol that feeds a stream's
//! [`StreamCore`] from its transport, as the transport's zero-copy
//! [`ReaderProtocol`].

use super::core::StreamCore;
use super::writer::StreamWriter;
use crate::net::io_error::copy_io_error;
use crate::net::transport::{ReaderProtocol, Transport};
use std::io;
use std::sync::Arc;

/// What a server's protocol does once connected: build the writer and
/// start the client's task.
/// It returns the writer, which the protocol keeps until the connection
/// is lost (asyncio's `_stream_writer`): a client task that drops its
/// writer early does not close the connection under its reader.
pub(crate) type OnConnect = Box<dyn FnOnce(Arc<StreamCore>, Transport) -> StreamWriter + Send>;

/// asyncio's `StreamReaderProtocol`: feeds a [`StreamCore`] from a
/// transport.
pub(crate) struct StreamReaderProtocol {
    core: Arc<StreamCore>,
    on_connect: Option<OnConnect>,
    /// A server connection's writer, until `connection_lost`.
    writer: Option<StreamWriter>,
}

impl StreamReaderProtocol {
    pub(crate) fn new(core: Arc<StreamCore>, on_connect: Option<OnConnect>) -> Self {
        StreamReaderProtocol {
            core,
            on_connect,
            writer: None,
        }
    }
}

impl ReaderProtocol for StreamReaderProtocol {
    fn connection_made(&mut self, transport: Transport) {
        let _ = self.core.with(|s| s.transport = Some(transport.clone()));
        if let Some(on_connect) = self.on_connect.take() {
            self.writer = Some(on_connect(self.core.clone(), transport));
        }
    }

    fn read_from(
        &mut self,
        recv: &mut dyn FnMut(&mut [u8]) -> Option<io::Result<usize>>,
    ) -> Option<io::Result<(usize, bool)>> {
        self.core.read_from(recv)
    }

    fn eof_received(&mut self) -> bool {
        let _ = self.core.feed_eof();
        // Keep the transport open: the writer may still write. Not over
        // TLS, which cannot half-close (asyncio returns False there, which
        // also spares the transport's warning).
        let tls = self
            .core
            .with(|s| s.transport.as_ref().is_some_and(Transport::is_tls))
            .unwrap_or(false);
        !tls
    }

    fn connection_lost(&mut self, error: Option<io::Error>) {
        let mut wake = Vec::new();
        let (transport, old_error) = self
            .core
            .with(|s| {
                let old_error = match &error {
                    None => {
                        s.eof = true;
                        None
                    }
                    Some(e) => s.error.replace(copy_io_error(e)),
                };
                wake.extend(s.wake_reader());
                s.lost = true;
                s.lost_error = error;
                wake.extend(s.drain_waiters.take_all());
                wake.extend(s.closed_waiters.take_all());
                wake.extend(s.io_write_waiters.take_all());
                wake.extend(s.io_close_waiters.take_all());
                // Breaks the cycle transport -> protocol -> core -> transport.
                (s.transport.take(), old_error)
            })
            .unwrap_or((None, None));
        drop(old_error);
        drop(transport);
        drop(self.writer.take());
        crate::waiters::wake_all(wake);
    }

    fn pause_writing(&mut self) {
        let _ = self.core.with(|s| s.write_paused = true);
    }

    fn resume_writing(&mut self) {
        let wake = self
            .core
            .with(|s| {
                s.write_paused = false;
                let mut wake = s.drain_waiters.take_all();
                wake.extend(s.io_write_waiters.take_all());
                wake
            })
            .unwrap_or_default();
        crate::waiters::wake_all(wake);
    }
}
