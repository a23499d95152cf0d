//! [`StreamFeeder`]: the feeding end of a `StreamReader`, for protocols
//! of one's own (asyncio: a protocol calling its reader's `feed_data`).

use super::core::StreamCore;
use crate::error::Error;
use crate::net::transport::Transport;
use std::io;
use std::sync::Arc;

/// What a protocol holds to feed a [`StreamReader`](crate::StreamReader)
/// that a task reads:
/// asyncio's `feed_data`, `feed_eof`, `set_exception` and
/// `set_transport`, as its `StreamReaderProtocol` calls them, for stream
/// protocols of one's own. Get one with
/// [`StreamReader::feeder`](crate::StreamReader::feeder); clones
/// feed the same reader.
///
/// Feeding copies the bytes into the reader's buffer (the streams of
/// [`EventLoop::open_connection`](crate::EventLoop::open_connection)
/// receive into it directly instead). It belongs to the reader's loop:
/// call it on that loop's thread (a protocol's callbacks run there);
/// elsewhere it is [`Error::WrongThread`], and [`Error::Closed`] once the
/// loop closed.
///
/// ```
/// use evloop::{EventLoop, Protocol, StreamFeeder, StreamReader, Transport};
/// use std::io::Write;
///
/// /// Feeds what arrives into a reader (asyncio's StreamReaderProtocol,
/// /// reduced to its reading half).
/// struct Feed(StreamFeeder);
///
/// impl Protocol for Feed {
///     fn connection_made(&mut self, transport: Transport) {
///         // Flow control: reading pauses while the reader holds too much.
///         let _ = self.0.set_transport(&transport);
///     }
///     fn data_received(&mut self, data: &[u8]) {
///         let _ = self.0.feed_data(data);
///     }
///     fn eof_received(&mut self) -> bool {
///         let _ = self.0.feed_eof();
///         false
///     }
///     fn connection_lost(&mut self, error: Option<std::io::Error>) {
///         let _ = match error {
///             Some(e) => self.0.set_exception(e),
///             None => self.0.feed_eof(),
///         };
///     }
/// }
///
/// let lp = EventLoop::new()?;
/// let (ours, mut theirs) = std::os::unix::net::UnixStream::pair()?;
/// theirs.write_all(b"hello\nworld")?;
/// drop(theirs);
/// lp.run_until_complete(async {
///     let mut reader = StreamReader::new(&lp, evloop::DEFAULT_LIMIT)?;
///     let feeder = reader.feeder();
///     lp.connect_read_pipe(move || Feed(feeder), ours).await?;
///     assert_eq!(reader.readline().await?, b"hello\n");
///     assert_eq!(reader.read_until_eof().await?, b"world");
///     Ok::<(), evloop::Error>(())
/// })??;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct StreamFeeder {
    core: Arc<StreamCore>,
}

impl StreamFeeder {
    pub(crate) fn new(core: Arc<StreamCore>) -> StreamFeeder {
        StreamFeeder { core }
    }

    /// Appends bytes (asyncio: `feed_data`); a waiting read wakes up.
    /// With a transport set, reading pauses once the reader holds more
    /// than twice its limit. Error: [`Error::InvalidState`] after
    /// [`StreamFeeder::feed_eof`] (asyncio asserts).
    pub fn feed_data(&self, data: &[u8]) -> Result<(), Error> {
        self.core.feed_data(data)
    }

    /// Ends the stream (asyncio: `feed_eof`).
    pub fn feed_eof(&self) -> Result<(), Error> {
        self.core.feed_eof()
    }

    /// Makes every later read fail with `error` (asyncio: `set_exception`),
    /// e.g. the one `connection_lost` got.
    pub fn set_exception(&self, error: io::Error) -> Result<(), Error> {
        self.core.set_exception(error)
    }

    /// The transport whose reading follows the reader (asyncio:
    /// `set_transport`): paused once the reader holds more than twice its
    /// limit, resumed when it is back at the limit or a read has to wait.
    /// Error: [`Error::InvalidState`] if one was set already (asyncio
    /// asserts).
    pub fn set_transport(&self, transport: &Transport) -> Result<(), Error> {
        self.core.set_transport(transport)
    }
}

impl std::fmt::Debug for StreamFeeder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamFeeder")
            .field("limit", &self.core.limit)
            .finish()
    }
}
