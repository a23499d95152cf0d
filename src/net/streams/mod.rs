//! asyncio's Streams: [`StreamReader`] and [`StreamWriter`] over a stream
//! transport, from [`EventLoop::open_connection`],
//! [`EventLoop::start_server`] and their Unix twins.
//!
//! A stream is a transport whose protocol (`protocol::StreamReaderProtocol`,
//! asyncio's `StreamReaderProtocol`) feeds a reader's buffer and tracks
//! the writer's flow control. The reader's buffer is filled by the
//! transport's `recv` directly (no intermediate copy), and a read that
//! finds its bytes buffered returns without touching the loop.

pub(crate) mod core;
mod feeder;
mod protocol;
mod reader;
mod writer;

pub use self::core::DEFAULT_LIMIT;
pub(crate) use self::protocol::StreamReaderProtocol;
pub use feeder::StreamFeeder;
pub use reader::StreamReader;
pub use writer::StreamWriter;

use self::core::StreamCore;
use self::protocol::OnConnect;
use super::connect::ConnectOptions;
use super::server::{Factory, Server, ServerOptions};
use super::tls::TlsLayer;
use super::transport::{StreamProtocol, Transport};
use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::exception::ExceptionContext;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Runs a client's future, closing its transport and reporting to the
/// loop's exception handler if it panics (asyncio: "Unhandled exception in
/// client_connected_cb").
struct ClientTask<F> {
    fut: Pin<Box<F>>,
    transport: Transport,
}

impl<F: Future<Output = ()>> Future for ClientTask<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        match std::panic::catch_unwind(AssertUnwindSafe(|| this.fut.as_mut().poll(cx))) {
            Ok(p) => p,
            Err(payload) => {
                if let Some(lp) = this.transport.get_loop() {
                    lp.inner.shared.report_panic(
                        ExceptionContext::new("Unhandled exception in client_connected_cb"),
                        payload,
                    );
                }
                this.transport.close();
                Poll::Ready(())
            }
        }
    }
}

impl EventLoop {
    fn stream_core(&self, limit: usize) -> Result<Arc<StreamCore>, Error> {
        if limit == 0 {
            return Err(Error::InvalidArgument("Limit cannot be <= 0".into()));
        }
        Ok(StreamCore::new(self.inner.shared.clone(), limit))
    }

    async fn open_stream(
        &self,
        sock: socket2::Socket,
        core: Arc<StreamCore>,
        tls: Option<TlsLayer>,
    ) -> Result<(StreamReader, StreamWriter), Error> {
        let protocol = StreamReaderProtocol::new(core.clone(), None);
        let transport = self
            .start_transport(sock, StreamProtocol::Stream(Box::new(protocol)), tls)
            .await?;
        Ok((
            StreamReader::from_core(core.clone()),
            StreamWriter::new(transport, core),
        ))
    }

    /// Opens a TCP connection and returns its reader and writer (asyncio:
    /// `asyncio.open_connection(host, port)`), with asyncio's default limit
    /// (64 KiB). Errors as [`EventLoop::create_connection`].
    pub async fn open_connection(
        &self,
        host: &str,
        port: u16,
    ) -> Result<(StreamReader, StreamWriter), Error> {
        self.open_connection_with(Some(host), port, ConnectOptions::default(), DEFAULT_LIMIT)
            .await
    }

    /// [`EventLoop::open_connection`] with [`EventLoop::create_connection_with`]'s
    /// options and the reader's `limit`.
    pub async fn open_connection_with(
        &self,
        host: Option<&str>,
        port: u16,
        mut options: ConnectOptions,
        limit: usize,
    ) -> Result<(StreamReader, StreamWriter), Error> {
        let core = self.stream_core(limit)?;
        let tls = options.take_tls(host)?;
        let sock = self.connect_socket(host, port, options).await?;
        self.open_stream(sock, core, tls).await
    }

    /// Connects to the Unix socket at `path` (asyncio:
    /// `asyncio.open_unix_connection`); `limit` as
    /// [`EventLoop::open_connection_with`].
    pub async fn open_unix_connection(
        &self,
        path: impl AsRef<Path>,
        limit: usize,
    ) -> Result<(StreamReader, StreamWriter), Error> {
        let core = self.stream_core(limit)?;
        let sock = self.connect_unix(path.as_ref()).await?;
        self.open_stream(sock, core, None).await
    }

    /// Starts a TCP server whose every connection runs
    /// `client_connected(reader, writer)` as a task of this loop (asyncio:
    /// `asyncio.start_server(client_connected_cb, host, port)`). A client
    /// task that panics is reported to the loop's exception handler and its
    /// connection closed. See [`EventLoop::create_server`] for the server.
    ///
    /// ```no_run
    /// use evloop::EventLoop;
    ///
    /// let lp = EventLoop::new()?;
    /// lp.run_until_complete(async {
    ///     let server = lp
    ///         .start_server(
    ///             |mut reader, writer| async move {
    ///                 while let Ok(line) = reader.readline().await {
    ///                     if line.is_empty() || writer.write(&line).is_err() {
    ///                         break;
    ///                     }
    ///                     if writer.drain().await.is_err() {
    ///                         break;
    ///                     }
    ///                 }
    ///                 writer.close();
    ///             },
    ///             Some("127.0.0.1"),
    ///             8888,
    ///         )
    ///         .await?;
    ///     server.serve_forever().await
    /// })??;
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub async fn start_server<C, Fut>(
        &self,
        client_connected: C,
        host: Option<&str>,
        port: u16,
    ) -> Result<Server, Error>
    where
        C: Fn(StreamReader, StreamWriter) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let hosts: Vec<&str> = host.into_iter().collect();
        self.start_server_with(
            client_connected,
            &hosts,
            port,
            ServerOptions::default(),
            DEFAULT_LIMIT,
        )
        .await
    }

    /// [`EventLoop::start_server`] with several hosts, the server options
    /// of [`EventLoop::create_server_with`], and the readers' `limit`.
    pub async fn start_server_with<C, Fut>(
        &self,
        client_connected: C,
        hosts: &[&str],
        port: u16,
        options: ServerOptions,
        limit: usize,
    ) -> Result<Server, Error>
    where
        C: Fn(StreamReader, StreamWriter) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let factory = self.stream_factory(client_connected, limit)?;
        self.serve(factory, hosts, port, options).await
    }

    /// Serves streams on the Unix socket `path` (asyncio:
    /// `asyncio.start_unix_server`); see [`EventLoop::create_unix_server`].
    pub async fn start_unix_server<C, Fut>(
        &self,
        client_connected: C,
        path: impl AsRef<Path>,
        options: ServerOptions,
        limit: usize,
    ) -> Result<Server, Error>
    where
        C: Fn(StreamReader, StreamWriter) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let factory = self.stream_factory(client_connected, limit)?;
        self.serve_unix(factory, path.as_ref(), options)
    }

    fn stream_factory<C, Fut>(&self, client_connected: C, limit: usize) -> Result<Factory, Error>
    where
        C: Fn(StreamReader, StreamWriter) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // Checked once here; each connection then builds its own core.
        self.stream_core(limit)?;
        let shared = self.inner.shared.clone();
        let client_connected = Arc::new(client_connected);
        Ok(Arc::new(move || {
            let cb = client_connected.clone();
            let on_connect: OnConnect = Box::new(move |core, transport: Transport| {
                let reader = StreamReader::from_core(core.clone());
                let writer = StreamWriter::new(transport.clone(), core);
                let kept = writer.clone();
                let fut = cb(reader, writer);
                let task = ClientTask {
                    fut: Box::pin(fut),
                    transport: transport.clone(),
                };
                let spawned = transport.get_loop().map(|lp| lp.create_task(task));
                if !matches!(spawned, Some(Ok(_))) {
                    transport.abort();
                }
                kept
            });
            let core = StreamCore::new(shared.clone(), limit);
            StreamProtocol::Stream(Box::new(StreamReaderProtocol::new(core, Some(on_connect))))
        }))
    }
}
