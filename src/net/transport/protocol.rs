//! asyncio's stream protocols: the callbacks a stream transport drives,
//! next to the [`Transport`] they receive.
//!
//! A loop stores protocols and may later run on another thread, so they
//! are `Send + 'static`, like everything a loop stores (callbacks, tasks,
//! watchers; see `ARCHITECTURE.md`, "Ownership"). They are called on the
//! loop's thread, one callback at a time, never while evloop holds a lock
//! (see `net::protocol_slot`); a protocol may call its transport from
//! inside any callback.

use super::state::Transport;
use std::any::Any;
use std::io;

/// A stream protocol (asyncio: `asyncio.Protocol`): told of the
/// connection, handed the bytes that arrive, told when the peer stops
/// writing and when the connection is gone.
///
/// The usual pattern keeps the transport from `connection_made` to write
/// with:
///
/// ```
/// use evloop::{Protocol, Transport};
///
/// /// Echoes everything back.
/// #[derive(Default)]
/// struct Echo(Option<Transport>);
///
/// impl Protocol for Echo {
///     fn connection_made(&mut self, transport: Transport) {
///         self.0 = Some(transport);
///     }
///     fn data_received(&mut self, data: &[u8]) {
///         if let Some(t) = &self.0 {
///             let _ = t.write(data);
///         }
///     }
/// }
/// ```
pub trait Protocol: Any + Send {
    /// The connection is up (asyncio: `connection_made`). Keep the
    /// transport to write, close, or pause reading.
    fn connection_made(&mut self, transport: Transport) {
        let _ = transport;
    }

    /// Bytes arrived (asyncio: `data_received`). They are in the loop's
    /// own read buffer, valid only during the call.
    fn data_received(&mut self, data: &[u8]) {
        let _ = data;
    }

    /// The peer will send nothing more (asyncio: `eof_received`). Return
    /// `true` to keep the transport open for writing (a half-closed
    /// connection); `false` (the default) closes it.
    fn eof_received(&mut self) -> bool {
        false
    }

    /// The connection is gone (asyncio: `connection_lost`): `None` after a
    /// normal close or EOF, `Some(error)` after an error (a reset peer,
    /// say). The last call a protocol receives.
    fn connection_lost(&mut self, error: Option<io::Error>) {
        let _ = error;
    }

    /// The transport's write buffer went over its high-water mark (asyncio:
    /// `pause_writing`): stop writing until `resume_writing`.
    fn pause_writing(&mut self) {}

    /// The write buffer drained below its low-water mark (asyncio:
    /// `resume_writing`).
    fn resume_writing(&mut self) {}
}

/// A stream protocol that supplies the buffer reads go into (asyncio:
/// `asyncio.BufferedProtocol`): the bytes go from the socket straight into
/// the protocol's memory, with no copy.
///
/// ```
/// use evloop::{BufferedProtocol, Transport};
///
/// /// Counts the bytes it receives, into one reused buffer.
/// struct Counter { buf: Vec<u8>, total: usize }
///
/// impl BufferedProtocol for Counter {
///     fn get_buffer(&mut self, _size_hint: usize) -> &mut [u8] {
///         &mut self.buf
///     }
///     fn buffer_updated(&mut self, nbytes: usize) {
///         self.total += nbytes;
///     }
/// }
/// ```
pub trait BufferedProtocol: Any + Send {
    /// As [`Protocol::connection_made`].
    fn connection_made(&mut self, transport: Transport) {
        let _ = transport;
    }

    /// The buffer the next read goes into (asyncio: `get_buffer`);
    /// `size_hint` is how much the transport would like to read. An empty
    /// buffer is an error that closes the connection, as in asyncio.
    fn get_buffer(&mut self, size_hint: usize) -> &mut [u8];

    /// `nbytes` bytes were written at the start of the last buffer
    /// (asyncio: `buffer_updated`).
    fn buffer_updated(&mut self, nbytes: usize);

    /// As [`Protocol::eof_received`].
    fn eof_received(&mut self) -> bool {
        false
    }

    /// As [`Protocol::connection_lost`].
    fn connection_lost(&mut self, error: Option<io::Error>) {
        let _ = error;
    }

    /// As [`Protocol::pause_writing`].
    fn pause_writing(&mut self) {}

    /// As [`Protocol::resume_writing`].
    fn resume_writing(&mut self) {}
}

/// The protocol behind asyncio's streams (`net::streams`), as the
/// transport sees it: instead of `get_buffer` / `buffer_updated`, it lends
/// the unread end of its reader's buffer for the duration of one read, so
/// that the socket's bytes land in the reader with no copy. Defined here,
/// implemented by the streams, so that the transport needs nothing of
/// theirs.
pub(crate) trait ReaderProtocol: Send {
    fn connection_made(&mut self, transport: Transport);

    /// Lends the reader's spare room to `recv` (one read of the socket, no
    /// user code) and keeps what it wrote. Returns the byte count and
    /// whether `recv` filled all it was lent; `None` if the reader is out
    /// of reach.
    fn read_from(
        &mut self,
        recv: &mut dyn FnMut(&mut [u8]) -> Option<io::Result<usize>>,
    ) -> Option<io::Result<(usize, bool)>>;

    fn eof_received(&mut self) -> bool;

    fn connection_lost(&mut self, error: Option<io::Error>);

    fn pause_writing(&mut self);

    fn resume_writing(&mut self);
}

/// A stream transport's protocol, of any kind.
pub(crate) enum StreamProtocol {
    Plain(Box<dyn Protocol>),
    Buffered(Box<dyn BufferedProtocol>),
    /// The protocol behind streams.
    Stream(Box<dyn ReaderProtocol>),
}

impl StreamProtocol {
    pub(crate) fn connection_made(&mut self, t: Transport) {
        match self {
            StreamProtocol::Plain(p) => p.connection_made(t),
            StreamProtocol::Buffered(p) => p.connection_made(t),
            StreamProtocol::Stream(p) => p.connection_made(t),
        }
    }
    pub(crate) fn eof_received(&mut self) -> bool {
        match self {
            StreamProtocol::Plain(p) => p.eof_received(),
            StreamProtocol::Buffered(p) => p.eof_received(),
            StreamProtocol::Stream(p) => p.eof_received(),
        }
    }
    pub(crate) fn connection_lost(&mut self, e: Option<io::Error>) {
        match self {
            StreamProtocol::Plain(p) => p.connection_lost(e),
            StreamProtocol::Buffered(p) => p.connection_lost(e),
            StreamProtocol::Stream(p) => p.connection_lost(e),
        }
    }
    pub(crate) fn pause_writing(&mut self) {
        match self {
            StreamProtocol::Plain(p) => p.pause_writing(),
            StreamProtocol::Buffered(p) => p.pause_writing(),
            StreamProtocol::Stream(p) => p.pause_writing(),
        }
    }
    pub(crate) fn resume_writing(&mut self) {
        match self {
            StreamProtocol::Plain(p) => p.resume_writing(),
            StreamProtocol::Buffered(p) => p.resume_writing(),
            StreamProtocol::Stream(p) => p.resume_writing(),
        }
    }
    /// The user's protocol, to downcast (`get_protocol`); the streams'
    /// own protocol is no type a user can name.
    pub(crate) fn as_any(&mut self) -> Option<&mut dyn Any> {
        match self {
            StreamProtocol::Plain(p) => Some(p.as_mut() as &mut dyn Any),
            StreamProtocol::Buffered(p) => Some(p.as_mut() as &mut dyn Any),
            StreamProtocol::Stream(_) => None,
        }
    }
}
