//! Servers (asyncio's "Creating network servers"): `create_server`,
//! `create_unix_server`, and the [`Server`] they return.

use super::dns::AddrInfoHints;
use super::tls::{TlsContext, TlsLayer};
use super::transport::{BufferedProtocol, Protocol, StreamProtocol, Transport};
use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::event_loop::shared::Shared;
use crate::exception::ExceptionContext;
use crate::future::LoopFuture;
use crate::loop_cell::LoopCell;
use crate::readiness::{Direction, IoHandler, READABLE, Registration, ScheduledIo};
use crate::sched::Local;
use socket2::{Domain, SockAddr, Socket, Type};
use std::io;
use std::os::fd::AsRawFd;
use std::panic::Location;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long accepting pauses after running out of file descriptors or
/// memory (asyncio's `ACCEPT_RETRY_DELAY`).
const ACCEPT_RETRY_DELAY: Duration = Duration::from_secs(1);

/// The options of [`EventLoop::create_server_with`] (asyncio's keyword
/// arguments of `create_server`); the default is asyncio's.
#[derive(Debug)]
pub struct ServerOptions {
    /// Only addresses of this family.
    pub family: Option<Domain>,
    /// `AI_*` flags for the lookup (`AI_PASSIVE` is always added).
    pub flags: i32,
    /// The listen queue (asyncio: 100); also how many connections one
    /// readiness event accepts at most.
    pub backlog: u32,
    /// `SO_REUSEADDR` (asyncio's default on Unix: on).
    pub reuse_address: bool,
    /// `SO_REUSEPORT`: several sockets (several loops on several threads)
    /// serve one port, the kernel spreading connections among them.
    pub reuse_port: bool,
    /// `SO_KEEPALIVE` on accepted connections.
    pub keep_alive: bool,
    /// Start accepting at once (asyncio's default); otherwise call
    /// [`Server::start_serving`] or [`Server::serve_forever`].
    pub start_serving: bool,
    /// Already bound listening sockets to serve instead of resolving hosts
    /// (asyncio's `sock=`).
    pub sockets: Vec<Socket>,
    /// Serve TLS with this rustls configuration (asyncio's `ssl=`): each
    /// connection's protocol hears `connection_made` once its handshake
    /// completed; a failed handshake closes the connection unseen.
    pub ssl: Option<Arc<rustls::ServerConfig>>,
    /// How long a TLS handshake may take (asyncio's default: 60 s).
    pub ssl_handshake_timeout: Option<std::time::Duration>,
    /// How long a closing TLS connection waits for its peer to take the
    /// rest (asyncio's default: 30 s).
    pub ssl_shutdown_timeout: Option<std::time::Duration>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            family: None,
            flags: 0,
            backlog: 100,
            reuse_address: true,
            reuse_port: false,
            keep_alive: false,
            start_serving: true,
            sockets: Vec::new(),
            ssl: None,
            ssl_handshake_timeout: None,
            ssl_shutdown_timeout: None,
        }
    }
}

pub(crate) type Factory = Arc<dyn Fn() -> StreamProtocol + Send + Sync>;

struct Listener {
    sock: Socket,
    registration: Option<Registration>,
    /// Accepting paused after running out of resources.
    paused: bool,
}

struct State {
    listeners: Vec<Listener>,
    clients: Vec<(u64, Transport)>,
    next_client: u64,
    /// `serve_forever` is running.
    serving_forever: bool,
}

struct Inner {
    shared: Arc<Shared>,
    state: LoopCell<State>,
    factory: Factory,
    backlog: u32,
    keep_alive: bool,
    /// TLS for every connection: the context and the two timeouts.
    tls: Option<(
        TlsContext,
        Option<std::time::Duration>,
        Option<std::time::Duration>,
    )>,
    serving: AtomicBool,
    closed: AtomicBool,
    /// `close()` was called (from any thread): the sockets are no longer
    /// listed, even before the loop has closed them.
    closing: AtomicBool,
    addrs: Vec<SockAddr>,
    /// The Unix socket file this server created, removed on close.
    unix_path: Option<SocketFile>,
    /// Completed once the server is closed and every connection is gone.
    all_done: LoopFuture<()>,
    /// Completed when the server closes (ends `serve_forever`).
    closed_fut: LoopFuture<()>,
}

/// A listening server (asyncio: `asyncio.Server`), returned by
/// [`EventLoop::create_server`]. Cheap to clone; usable from any thread
/// (as transports: off the loop's thread, operations are posted to it).
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct AcceptHandler {
    server: Arc<Inner>,
    index: usize,
}

impl IoHandler for AcceptHandler {
    fn ready(&mut self, io: &ScheduledIo, bits: usize, _local: &dyn Local) -> bool {
        if bits & READABLE != 0 {
            self.server.accept_ready(self.index, io);
        }
        !self.server.closed.load(Ordering::Acquire)
    }

    fn loop_closed(&mut self) {
        self.server.close_listeners();
    }
}

fn is_out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

impl Inner {
    /// Accepts up to `backlog` connections (asyncio accepts that many per
    /// readiness event), each into a transport with a new protocol.
    fn accept_ready(self: &Arc<Self>, index: usize, io: &ScheduledIo) {
        for _ in 0..self.backlog.max(1) {
            let Some(event) = io.ready_now(Direction::Read) else {
                return;
            };
            let accepted = self.state.with(|s| match s.listeners.get(index) {
                Some(l) if !l.paused => Some(l.sock.accept()),
                _ => None,
            });
            let accepted = match accepted.flatten() {
                Some(a) => a,
                None => return,
            };
            match accepted {
                Ok((conn, _addr)) => self.start_client(conn),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    io.clear(Direction::Read, event);
                    return;
                }
                Err(e) if is_out_of_resources(&e) => {
                    self.shared.call_exception_handler(
                        ExceptionContext::new(format!(
                            "socket.accept() out of system resource: {e}"
                        ))
                        .with_error(Arc::new(e)),
                    );
                    self.pause_accepting(index);
                    return;
                }
                // The peer went away before we accepted: try the next one.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ECONNABORTED | libc::EPROTO | libc::EINTR)
                    ) => {}
                // Anything else would fail again at once: reported, and
                // accepting waits for the next readiness event.
                Err(e) => {
                    self.shared.call_exception_handler(
                        ExceptionContext::new(format!("socket.accept() failed: {e}"))
                            .with_error(Arc::new(e)),
                    );
                    io.clear(Direction::Read, event);
                    return;
                }
            }
        }
        // More may be waiting: the next iteration continues.
        self.queue_accept(index);
    }

    fn start_client(self: &Arc<Self>, conn: Socket) {
        if self.keep_alive {
            let _ = conn.set_keepalive(true);
        }
        let Some(event_loop) = self.shared.event_loop() else {
            return;
        };
        let id = self
            .state
            .with(|s| {
                s.next_client += 1;
                s.next_client
            })
            .unwrap_or(0);
        let server = Arc::downgrade(self);
        let on_lost = Box::new(move || {
            if let Some(server) = server.upgrade() {
                server.client_gone(id);
            }
        });
        let protocol = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (self.factory)()
        })) {
            Ok(p) => p,
            Err(payload) => {
                // asyncio logs it and keeps serving; the connection closes.
                self.shared.report_panic(
                    ExceptionContext::new("Error on transport creation for incoming connection"),
                    payload,
                );
                return;
            }
        };
        let tls = match &self.tls {
            Some((context, handshake, shutdown)) => {
                match TlsLayer::new(context, None, *handshake, *shutdown) {
                    Ok(tls) => Some(tls),
                    Err(e) => {
                        self.shared
                            .call_exception_handler(ExceptionContext::new(format!(
                                "Error on transport creation for incoming connection: {e}"
                            )));
                        return;
                    }
                }
            }
            None => None,
        };
        match Transport::start(&event_loop, conn, protocol, Some(on_lost), None, tls) {
            Ok(t) => {
                self.state.with(|s| s.clients.push((id, t)));
            }
            Err(e) => self.shared.call_exception_handler(
                ExceptionContext::new(format!(
                    "Error on transport creation for incoming connection: {e}"
                ))
                .with_error(Arc::new(e)),
            ),
        }
    }

    fn client_gone(self: &Arc<Self>, id: u64) {
        self.state.with(|s| s.clients.retain(|(i, _)| *i != id));
        self.check_done();
    }

    fn check_done(&self) {
        let idle = self.state.with(|s| s.clients.is_empty()).unwrap_or(true);
        if idle && self.closed.load(Ordering::Acquire) {
            let _ = self.all_done.set_result(());
        }
    }

    fn pause_accepting(self: &Arc<Self>, index: usize) {
        self.state.with(|s| {
            if let Some(l) = s.listeners.get_mut(index) {
                l.paused = true;
            }
        });
        let server = self.clone();
        let resume = move || {
            server.state.with(|s| {
                if let Some(l) = s.listeners.get_mut(index) {
                    l.paused = false;
                }
            });
            server.queue_accept(index);
        };
        if let Some(lp) = self.shared.event_loop() {
            let _ = lp.call_later(ACCEPT_RETRY_DELAY, resume);
        }
    }

    /// Tries accepting again on the next iteration (readiness that was
    /// kept is not reported again).
    fn queue_accept(self: &Arc<Self>, index: usize) {
        let server = self.clone();
        let _ = self.shared.call_soon(None, Location::caller(), move || {
            if !server.serving.load(Ordering::Acquire) {
                return;
            }
            let io = server
                .state
                .with(|s| {
                    s.listeners
                        .get(index)
                        .and_then(|l| l.registration.as_ref().map(|r| r.io().clone()))
                })
                .flatten();
            if let Some(io) = io {
                server.accept_ready(index, &io);
            }
        });
    }

    fn start_serving(self: &Arc<Self>) -> Result<(), Error> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Runtime(format!(
                "server {} is closed",
                Server {
                    inner: self.clone()
                }
            )));
        }
        if !self.state.accessible() {
            return Err(Error::WrongThread);
        }
        let Some(event_loop) = self.shared.event_loop() else {
            return Err(Error::Closed);
        };
        if self.serving.load(Ordering::Acquire) {
            return Ok(());
        }
        let count = self.state.with(|s| s.listeners.len()).unwrap_or(0);
        for index in 0..count {
            if let Err(e) = self.register_listener(&event_loop, index) {
                // Nothing half-done: listeners registered so far go back.
                self.unregister_listeners();
                return Err(e);
            }
        }
        self.serving.store(true, Ordering::Release);
        for index in 0..count {
            // Connections may have queued before we registered.
            self.queue_accept(index);
        }
        Ok(())
    }

    fn register_listener(
        self: &Arc<Self>,
        event_loop: &EventLoop,
        index: usize,
    ) -> Result<(), Error> {
        let raw = self
            .state
            .with(|s| s.listeners[index].sock.as_raw_fd())
            .ok_or(Error::WrongThread)?;
        let mut registration = event_loop.register_source(raw)?;
        let handler = AcceptHandler {
            server: self.clone(),
            index,
        };
        if let Err(e) = registration.set_handler(Box::new(handler)) {
            registration.deregister(&mut mio::unix::SourceFd(&raw));
            return Err(e);
        }
        self.state
            .with(|s| s.listeners[index].registration = Some(registration));
        Ok(())
    }

    /// Takes the listeners out of the poller (their sockets stay open).
    fn unregister_listeners(&self) {
        self.state.with(|s| {
            for l in &mut s.listeners {
                if let Some(mut reg) = l.registration.take() {
                    let raw = l.sock.as_raw_fd();
                    reg.deregister(&mut mio::unix::SourceFd(&raw));
                }
            }
        });
    }

    fn close_listeners(&self) {
        self.serving.store(false, Ordering::Release);
        let listeners = self
            .state
            .with(|s| std::mem::take(&mut s.listeners))
            .unwrap_or_default();
        for mut l in listeners {
            if let Some(mut reg) = l.registration.take() {
                let raw = l.sock.as_raw_fd();
                reg.deregister(&mut mio::unix::SourceFd(&raw));
            }
        }
        if let Some(socket_file) = &self.unix_path {
            socket_file.remove_if_ours();
        }
    }

    fn close(self: &Arc<Self>) {
        if !self.state.accessible() {
            // Off the loop's thread (a `serve_forever` dropped there): the
            // loop closes the listeners.
            let me = self.clone();
            let _ = self
                .shared
                .call_soon(None, Location::caller(), move || me.close());
            return;
        }
        self.closing.store(true, Ordering::Release);
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.close_listeners();
        let _ = self.closed_fut.set_result(());
        self.check_done();
    }
}

impl Server {
    fn on_loop(&self, op: impl FnOnce(&Arc<Inner>) + Send + 'static) {
        super::on_loop(
            &self.inner.shared,
            self.inner.state.accessible(),
            &self.inner,
            op,
        );
    }

    /// Stops listening (asyncio: `Server.close`): the listening sockets
    /// close (a Unix socket's file is removed); connections already
    /// accepted stay open. Idempotent.
    pub fn close(&self) {
        self.inner.serving.store(false, Ordering::Release);
        self.inner.closing.store(true, Ordering::Release);
        self.on_loop(|inner| inner.close());
    }

    /// Closes every connection the server accepted (asyncio:
    /// `close_clients`): each transport's `close()`.
    pub fn close_clients(&self) {
        self.on_loop(|inner| {
            let clients: Vec<Transport> = inner
                .state
                .with(|s| s.clients.iter().map(|(_, t)| t.clone()).collect())
                .unwrap_or_default();
            for t in clients {
                t.close();
            }
        });
    }

    /// Aborts every connection the server accepted (asyncio:
    /// `abort_clients`).
    pub fn abort_clients(&self) {
        self.on_loop(|inner| {
            let clients: Vec<Transport> = inner
                .state
                .with(|s| s.clients.iter().map(|(_, t)| t.clone()).collect())
                .unwrap_or_default();
            for t in clients {
                t.abort();
            }
        });
    }

    /// The loop the server belongs to, while it exists.
    pub fn get_loop(&self) -> Option<EventLoop> {
        self.inner.shared.event_loop()
    }

    /// Whether the server is accepting connections (asyncio:
    /// `is_serving`).
    pub fn is_serving(&self) -> bool {
        self.inner.serving.load(Ordering::Acquire)
    }

    /// The addresses the server listens on (asyncio: `Server.sockets`, as
    /// addresses); none once [`Server::close`] was called, as asyncio's
    /// empty tuple.
    pub fn sockets(&self) -> Vec<SockAddr> {
        if self.inner.closing.load(Ordering::Acquire) {
            return Vec::new();
        }
        self.inner.addrs.clone()
    }

    /// Starts accepting (asyncio: `start_serving`), for a server created
    /// with `start_serving: false`. Error: [`Error::Runtime`] `"server
    /// <Server sockets=()> is closed"` once closed (asyncio fails there
    /// with a `TypeError` from deeper down); [`Error::WrongThread`] off
    /// the loop's thread.
    pub async fn start_serving(&self) -> Result<(), Error> {
        self.inner.start_serving()?;
        crate::runners::sleep(Duration::ZERO).await
    }

    /// Accepts connections until the server is closed (asyncio:
    /// `serve_forever`). Returns when [`Server::close`] is called (asyncio
    /// raises `CancelledError` there); if the task awaiting it is
    /// cancelled, the server is closed. Errors, asyncio's `RuntimeError`s
    /// ([`Error::Runtime`]): `"server <Server sockets=(...)> is already
    /// being awaited on serve_forever()"` while another `serve_forever`
    /// runs, `"server <Server sockets=()> is closed"` once closed.
    pub async fn serve_forever(&self) -> Result<(), Error> {
        let running = self
            .inner
            .state
            .with(|s| std::mem::replace(&mut s.serving_forever, true));
        match running {
            None => return Err(Error::WrongThread),
            Some(true) => {
                return Err(Error::Runtime(format!(
                    "server {self} is already being awaited on serve_forever()"
                )));
            }
            Some(false) => {}
        }
        struct Reset(Arc<Inner>);
        impl Drop for Reset {
            fn drop(&mut self) {
                self.0.state.with(|s| s.serving_forever = false);
                // Dropped before the server closed: the awaiting task was
                // cancelled, and the server closes with it, as in asyncio.
                if !self.0.closed.load(Ordering::Acquire) {
                    self.0.close();
                }
            }
        }
        let _reset = Reset(self.inner.clone());
        self.inner.start_serving()?;
        let _ = (&self.inner.closed_fut).await;
        Ok(())
    }

    /// Waits until the server is closed and every connection it accepted
    /// is gone (asyncio 3.12's `wait_closed`). Returns at once if that is
    /// already so; any number of tasks may wait.
    pub async fn wait_closed(&self) {
        let _ = (&self.inner.all_done).await;
    }
}

/// asyncio's `repr(server)`, with addresses where asyncio shows socket
/// objects: `<Server sockets=(('127.0.0.1', 8888),)>`, and
/// `<Server sockets=()>` once closed.
impl std::fmt::Display for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addrs = self.sockets();
        f.write_str("<Server sockets=(")?;
        for addr in &addrs {
            write!(f, "{},", super::addr_repr(addr))?;
        }
        f.write_str(")>")
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("sockets", &self.inner.addrs)
            .field("serving", &self.is_serving())
            .finish()
    }
}

/// A listening socket for `addr` with asyncio's options.
fn listen_on(addr: &SockAddr, options: &ServerOptions) -> Result<Socket, Error> {
    let domain = addr.domain();
    let sock = Socket::new(domain, Type::STREAM, None)?;
    sock.set_nonblocking(true)?;
    if domain != Domain::UNIX {
        if options.reuse_address {
            sock.set_reuse_address(true)?;
        }
        if options.reuse_port {
            sock.set_reuse_port(true)?;
        }
        if domain == Domain::IPV6 {
            // So that the IPv4 socket of the same port binds too.
            sock.set_only_v6(true)?;
        }
    }
    sock.bind(addr).map_err(|e| super::bind_error(addr, e))?;
    sock.listen(options.backlog.min(i32::MAX as u32) as i32)?;
    Ok(sock)
}

impl EventLoop {
    /// Listens on `host`:`port` — every address the host resolves to, both
    /// IPv4 and IPv6; `None` for every interface — and serves each
    /// connection with a protocol from `protocol_factory` (asyncio:
    /// `loop.create_server`). Port 0 picks a free port
    /// ([`Server::sockets`] tells which).
    ///
    /// Errors: [`Error::Os`] when binding fails (asyncio's "error while
    /// attempting to bind on address ('127.0.0.1', 8080): address already
    /// in use"), [`Error::AddressLookup`], [`Error::WrongThread`].
    ///
    /// ```no_run
    /// use evloop::{EventLoop, Protocol, Transport};
    ///
    /// #[derive(Default)]
    /// struct Echo(Option<Transport>);
    /// impl Protocol for Echo {
    ///     fn connection_made(&mut self, t: Transport) { self.0 = Some(t); }
    ///     fn data_received(&mut self, data: &[u8]) {
    ///         let _ = self.0.as_ref().unwrap().write(data);
    ///     }
    /// }
    ///
    /// let lp = EventLoop::new()?;
    /// lp.run_until_complete(async {
    ///     let server = lp.create_server(Echo::default, Some("127.0.0.1"), 8888).await?;
    ///     server.serve_forever().await
    /// })??;
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub async fn create_server<P, F>(
        &self,
        protocol_factory: F,
        host: Option<&str>,
        port: u16,
    ) -> Result<Server, Error>
    where
        P: Protocol,
        F: Fn() -> P + Send + Sync + 'static,
    {
        let hosts: Vec<&str> = host.into_iter().collect();
        self.create_server_with(protocol_factory, &hosts, port, ServerOptions::default())
            .await
    }

    /// [`EventLoop::create_server`] with several hosts (empty: every
    /// interface) and asyncio's options.
    pub async fn create_server_with<P, F>(
        &self,
        protocol_factory: F,
        hosts: &[&str],
        port: u16,
        options: ServerOptions,
    ) -> Result<Server, Error>
    where
        P: Protocol,
        F: Fn() -> P + Send + Sync + 'static,
    {
        let factory: Factory =
            Arc::new(move || StreamProtocol::Plain(Box::new(protocol_factory())));
        self.serve(factory, hosts, port, options).await
    }

    /// [`EventLoop::create_server_with`] for a [`BufferedProtocol`].
    pub async fn create_buffered_server<P, F>(
        &self,
        protocol_factory: F,
        hosts: &[&str],
        port: u16,
        options: ServerOptions,
    ) -> Result<Server, Error>
    where
        P: BufferedProtocol,
        F: Fn() -> P + Send + Sync + 'static,
    {
        let factory: Factory =
            Arc::new(move || StreamProtocol::Buffered(Box::new(protocol_factory())));
        self.serve(factory, hosts, port, options).await
    }

    pub(crate) async fn serve(
        &self,
        factory: Factory,
        hosts: &[&str],
        port: u16,
        mut options: ServerOptions,
    ) -> Result<Server, Error> {
        check_tls_options(&options)?;
        let mut sockets = std::mem::take(&mut options.sockets);
        if sockets.is_empty() {
            let hints = AddrInfoHints {
                family: options.family,
                socktype: Some(Type::STREAM),
                protocol: 0,
                flags: options.flags | libc::AI_PASSIVE,
            };
            let mut addrs: Vec<SockAddr> = Vec::new();
            let lookups: Vec<Option<&str>> = if hosts.is_empty() {
                vec![None]
            } else {
                hosts.iter().map(|h| Some(*h)).collect()
            };
            for host in lookups {
                for info in self.getaddrinfo(host, port, hints).await? {
                    if !addrs.iter().any(|a| a == &info.addr) {
                        addrs.push(info.addr);
                    }
                }
            }
            for addr in &addrs {
                sockets.push(listen_on(addr, &options)?);
            }
        } else {
            if !hosts.is_empty() {
                return Err(Error::InvalidArgument(
                    "host/port and sock can not be specified at the same time".into(),
                ));
            }
            for s in &sockets {
                if s.r#type()? != Type::STREAM {
                    return Err(Error::InvalidArgument(format!(
                        "A Stream Socket was expected, got {:?}",
                        s.r#type()?
                    )));
                }
                s.set_nonblocking(true)?;
                // asyncio listens on given sockets too (again is harmless).
                s.listen(options.backlog.min(i32::MAX as u32) as i32)?;
            }
        }
        self.build_server(factory, sockets, &options, None)
    }

    /// Builds the server around listening sockets (loop thread).
    fn build_server(
        &self,
        factory: Factory,
        sockets: Vec<Socket>,
        options: &ServerOptions,
        unix_path: Option<SocketFile>,
    ) -> Result<Server, Error> {
        let shared = self.inner.shared.clone();
        let addrs = sockets.iter().filter_map(|s| s.local_addr().ok()).collect();
        let tls = options.ssl.as_ref().map(|config| {
            (
                TlsContext::Server(config.clone()),
                options.ssl_handshake_timeout,
                options.ssl_shutdown_timeout,
            )
        });
        let inner = Arc::new(Inner {
            state: LoopCell::new(
                shared.id(),
                State {
                    listeners: sockets
                        .into_iter()
                        .map(|sock| Listener {
                            sock,
                            registration: None,
                            paused: false,
                        })
                        .collect(),
                    clients: Vec::new(),
                    next_client: 0,
                    serving_forever: false,
                },
            ),
            shared,
            factory,
            backlog: options.backlog,
            keep_alive: options.keep_alive,
            tls,
            serving: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            addrs,
            unix_path,
            all_done: self.create_future(),
            closed_fut: self.create_future(),
        });
        let server = Server { inner };
        if options.start_serving {
            server.inner.start_serving()?;
        }
        Ok(server)
    }

    /// Listens on the Unix socket `path` (asyncio:
    /// `loop.create_unix_server`). A stale socket file at `path` is
    /// removed first — only if it is a socket; anything else there is an
    /// error, as in asyncio ("[Errno 98] Address '/tmp/x' is already in
    /// use"). The file is removed when the server closes (asyncio 3.13's
    /// `cleanup_socket`). To serve Unix stream sockets you bound yourself,
    /// give an empty `path` and the sockets in `options.sockets` (asyncio's
    /// `sock=`). Errors (asyncio's `ValueError`s, [`Error::InvalidArgument`]):
    /// "path and sock can not be specified at the same time", "path was
    /// not specified, and no sock specified", "A UNIX Domain Stream Socket
    /// was expected, got ..."; an over-long path is `OSError` "AF_UNIX
    /// path too long".
    pub async fn create_unix_server<P, F>(
        &self,
        protocol_factory: F,
        path: impl AsRef<Path>,
        options: ServerOptions,
    ) -> Result<Server, Error>
    where
        P: Protocol,
        F: Fn() -> P + Send + Sync + 'static,
    {
        let factory: Factory =
            Arc::new(move || StreamProtocol::Plain(Box::new(protocol_factory())));
        self.serve_unix(factory, path.as_ref(), options)
    }

    /// [`EventLoop::create_unix_server`] for any protocol kind.
    pub(crate) fn serve_unix(
        &self,
        factory: Factory,
        path: &Path,
        mut options: ServerOptions,
    ) -> Result<Server, Error> {
        use std::os::unix::fs::FileTypeExt;
        check_tls_options(&options)?;
        let given = std::mem::take(&mut options.sockets);
        match (path.as_os_str().is_empty(), given.is_empty()) {
            (false, false) => {
                return Err(Error::InvalidArgument(
                    "path and sock can not be specified at the same time".into(),
                ));
            }
            (true, true) => {
                return Err(Error::InvalidArgument(
                    "path was not specified, and no sock specified".into(),
                ));
            }
            (true, false) => {
                for sock in &given {
                    if sock.domain()? != Domain::UNIX || sock.r#type()? != Type::STREAM {
                        return Err(Error::InvalidArgument(format!(
                            "A UNIX Domain Stream Socket was expected, got {sock:?}"
                        )));
                    }
                    sock.set_nonblocking(true)?;
                    sock.listen(options.backlog.min(i32::MAX as u32) as i32)?;
                }
                return self.build_server(factory, given, &options, None);
            }
            (false, true) => {}
        }
        let path = path.to_path_buf();
        let addr = super::unix_addr(&path)?;
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if meta.file_type().is_socket() {
                std::fs::remove_file(&path)?;
            }
        }
        let sock = listen_on(&addr, &options).map_err(|e| match e {
            Error::Os { source, .. } if source.raw_os_error() == Some(libc::EADDRINUSE) => {
                Error::Os {
                    context: format!("Address '{}' is already in use", path.display()),
                    source,
                }
            }
            other => other,
        })?;
        let file = SocketFile::of(path);
        self.build_server(factory, vec![sock], &options, file)
    }
}

/// The file a Unix server's bind created, known by its inode: closing the
/// server removes it only if it is still that file (asyncio 3.13), not one
/// another server has bound at the same path since.
pub(crate) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    fn of(path: PathBuf) -> Option<SocketFile> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(&path).ok()?;
        Some(SocketFile {
            dev: meta.dev(),
            ino: meta.ino(),
            path,
        })
    }

    fn remove_if_ours(&self) {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if meta.dev() == self.dev && meta.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// asyncio's refusal of TLS timeouts without TLS.
fn check_tls_options(options: &ServerOptions) -> Result<(), Error> {
    if options.ssl.is_none() {
        if options.ssl_handshake_timeout.is_some() {
            return Err(Error::InvalidArgument(
                "ssl_handshake_timeout is only meaningful with ssl".into(),
            ));
        }
        if options.ssl_shutdown_timeout.is_some() {
            return Err(Error::InvalidArgument(
                "ssl_shutdown_timeout is only meaningful with ssl".into(),
            ));
        }
    }
    // The timeouts are checked once here, as each connection would.
    if let Some(config) = &options.ssl {
        TlsLayer::new(
            &TlsContext::Server(config.clone()),
            None,
            options.ssl_handshake_timeout,
            options.ssl_shutdown_timeout,
        )?;
    }
    Ok(())
}
