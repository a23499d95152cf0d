//! Opening connections (asyncio's "Opening network connections"):
//! `create_connection` with happy eyeballs, `create_unix_connection`,
//! `connect_accepted_socket`, `create_datagram_endpoint`.

use super::datagram::DatagramProtocol;
use super::datagram::DatagramTransport;
use super::dns::{AddrInfo, AddrInfoHints};
use super::endpoint::Endpoint;
use super::tls::{TlsContext, TlsLayer};
use super::transport::{BufferedProtocol, Kind, Protocol, StreamProtocol, Transport};
use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::runners::Sleep;
use socket2::{Domain, SockAddr, Socket, Type};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// The options of [`EventLoop::create_connection_with`] (asyncio's keyword
/// arguments of `create_connection`); the default is asyncio's.
#[derive(Debug, Default)]
pub struct ConnectOptions {
    /// Only addresses of this family (`AF_INET`, `AF_INET6`).
    pub family: Option<Domain>,
    /// `AI_*` flags for the lookup.
    pub flags: i32,
    /// Bind the socket to this address before connecting.
    pub local_addr: Option<SocketAddr>,
    /// Happy eyeballs (RFC 8305): start the next address's attempt this
    /// long after the previous one started, if it has not finished (asyncio
    /// recommends 250 ms). `None`: one attempt at a time.
    pub happy_eyeballs_delay: Option<Duration>,
    /// Reorder the addresses so that families alternate, `interleave` of
    /// the first family first (asyncio: defaults to 1 when
    /// `happy_eyeballs_delay` is set, else 0: the resolver's order).
    pub interleave: Option<usize>,
    /// On failure report every attempt's error ([`Error::Multiple`],
    /// asyncio's `ExceptionGroup`) rather than one.
    pub all_errors: bool,
    /// An already connected socket to use instead of `host` and `port`
    /// (asyncio's `sock=`).
    pub sock: Option<Socket>,
    /// Speak TLS with this rustls configuration (asyncio's `ssl=`): the
    /// call returns once the handshake completed, and the protocol hears
    /// `connection_made` then.
    pub ssl: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// The name the server's certificate must carry (asyncio's
    /// `server_hostname`); defaults to `host`, required with `sock`.
    pub server_hostname: Option<String>,
    /// How long the TLS handshake may take (asyncio's default: 60 s).
    pub ssl_handshake_timeout: Option<Duration>,
    /// How long closing waits for the peer to take the rest (asyncio's
    /// default: 30 s).
    pub ssl_shutdown_timeout: Option<Duration>,
}

impl ConnectOptions {
    /// The TLS session these options ask for, checked as asyncio checks
    /// them, before anything connects.
    pub(crate) fn take_tls(&mut self, host: Option<&str>) -> Result<Option<TlsLayer>, Error> {
        let Some(config) = self.ssl.take() else {
            if self.server_hostname.is_some() {
                return Err(Error::InvalidArgument(
                    "server_hostname is only meaningful with ssl".into(),
                ));
            }
            if self.ssl_handshake_timeout.is_some() {
                return Err(Error::InvalidArgument(
                    "ssl_handshake_timeout is only meaningful with ssl".into(),
                ));
            }
            if self.ssl_shutdown_timeout.is_some() {
                return Err(Error::InvalidArgument(
                    "ssl_shutdown_timeout is only meaningful with ssl".into(),
                ));
            }
            return Ok(None);
        };
        let name = self
            .server_hostname
            .take()
            .or_else(|| host.map(str::to_owned));
        TlsLayer::new(
            &TlsContext::Client(config),
            Some(name.as_deref().ok_or_else(|| {
                Error::InvalidArgument(
                    "You must set server_hostname when using ssl without a host".into(),
                )
            })?),
            self.ssl_handshake_timeout,
            self.ssl_shutdown_timeout,
        )
        .map(Some)
    }
}

/// asyncio's `_interleave_addrinfos`: families alternate, `first_count` of
/// the first family leading.
fn interleave(infos: Vec<AddrInfo>, first_count: usize) -> Vec<AddrInfo> {
    let mut by_family: Vec<(Domain, Vec<AddrInfo>)> = Vec::new();
    for info in infos {
        match by_family.iter_mut().find(|(f, _)| *f == info.family) {
            Some((_, list)) => list.push(info),
            None => by_family.push((info.family, vec![info])),
        }
    }
    let mut queues: Vec<std::collections::VecDeque<AddrInfo>> =
        by_family.into_iter().map(|(_, l)| l.into()).collect();
    let mut out = Vec::new();
    if first_count > 1 {
        if let Some(first) = queues.first_mut() {
            for _ in 0..first_count - 1 {
                if let Some(i) = first.pop_front() {
                    out.push(i);
                }
            }
        }
    }
    loop {
        let mut any = false;
        for q in &mut queues {
            if let Some(i) = q.pop_front() {
                out.push(i);
                any = true;
            }
        }
        if !any {
            return out;
        }
    }
}

/// One attempt: a socket of `info`'s family, bound to `local` if given,
/// connected to `info.addr`.
async fn attempt(
    event_loop: &EventLoop,
    info: AddrInfo,
    local: Option<SocketAddr>,
) -> Result<Socket, Error> {
    if let Some(local) = local {
        // asyncio binds only local addresses of the attempt's family.
        if Domain::for_address(local) != info.family {
            let family = if info.family == Domain::IPV6 {
                "AF_INET6: 10"
            } else {
                "AF_INET: 2"
            };
            return Err(Error::Io(std::io::Error::other(format!(
                "no matching local address with family=<AddressFamily.{family}> found"
            ))));
        }
    }
    let sock = Socket::new(info.family, Type::STREAM, None)?;
    sock.set_nonblocking(true)?;
    if let Some(local) = local {
        let local = SockAddr::from(local);
        if let Err(e) = sock.bind(&local) {
            return Err(super::bind_error(&local, e));
        }
    }
    match event_loop.sock_connect(&sock, &info.addr).await {
        Ok(()) => Ok(sock),
        Err(Error::Io(e)) => Err(Error::Os {
            context: format!("Connect call failed {}", super::addr_repr(&info.addr)),
            source: e,
        }),
        Err(e) => Err(e),
    }
}

type Attempt<'a> = Pin<Box<dyn Future<Output = Result<Socket, Error>> + Send + 'a>>;

/// asyncio's `staggered_race`: attempts start one after another, each
/// `delay` after the previous (or at once when it fails); the first to
/// connect wins and the others are dropped (their sockets closed).
struct StaggeredRace<'a> {
    pending: Vec<AddrInfo>,
    start: Box<dyn FnMut(AddrInfo) -> Attempt<'a> + Send + 'a>,
    running: Vec<(usize, Attempt<'a>)>,
    started: usize,
    delay: Option<Duration>,
    timer: Option<Sleep>,
    errors: Vec<(usize, Error)>,
    /// The most recently started attempt failed: the next starts at once.
    latest_failed: bool,
}

impl Future for StaggeredRace<'_> {
    type Output = Result<Socket, Vec<Error>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            // Start the next attempt if none runs, the latest one failed,
            // or the delay passed (asyncio's `staggered_race`).
            let due = this.running.is_empty()
                || this.latest_failed
                || match (&mut this.timer, this.delay) {
                    (Some(t), Some(_)) => Pin::new(t).poll(cx).is_ready(),
                    _ => false,
                };
            if due && !this.pending.is_empty() {
                let info = this.pending.remove(0);
                let attempt = (this.start)(info);
                this.running.push((this.started, attempt));
                this.started += 1;
                this.latest_failed = false;
                this.timer = this.delay.map(crate::runners::sleep);
            }
            let mut progressed = false;
            let mut i = 0;
            while i < this.running.len() {
                match this.running[i].1.as_mut().poll(cx) {
                    Poll::Ready(Ok(sock)) => {
                        // The winner: dropping the others closes them.
                        this.running.clear();
                        return Poll::Ready(Ok(sock));
                    }
                    Poll::Ready(Err(e)) => {
                        let (n, _) = this.running.remove(i);
                        this.latest_failed |= n + 1 == this.started;
                        this.errors.push((n, e));
                        progressed = true;
                    }
                    Poll::Pending => i += 1,
                }
            }
            if this.running.is_empty() && this.pending.is_empty() {
                let mut errors = std::mem::take(&mut this.errors);
                errors.sort_by_key(|(n, _)| *n);
                return Poll::Ready(Err(errors.into_iter().map(|(_, e)| e).collect()));
            }
            if !progressed {
                if let (Some(t), Some(_)) = (&mut this.timer, this.delay) {
                    if Pin::new(t).poll(cx).is_ready() && !this.pending.is_empty() {
                        continue;
                    }
                }
                return Poll::Pending;
            }
        }
    }
}

/// asyncio's choice of what to raise when every attempt failed.
fn combine(errors: Vec<Error>, all_errors: bool) -> Error {
    if all_errors || errors.is_empty() {
        return Error::Multiple {
            context: "create_connection failed".into(),
            errors,
        };
    }
    if errors.len() == 1 {
        return errors.into_iter().next().expect("one error");
    }
    let first = errors[0].to_string();
    if errors.iter().all(|e| e.to_string() == first) {
        return errors.into_iter().next().expect("errors");
    }
    let all: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    Error::Io(std::io::Error::other(format!(
        "Multiple exceptions: {}",
        all.join(", ")
    )))
}

impl EventLoop {
    /// Opens a TCP connection to `host`:`port` and wraps it in a transport
    /// whose protocol `protocol_factory` builds (asyncio:
    /// `loop.create_connection(protocol_factory, host, port)`). Returns the
    /// transport once `connection_made` has run (as asyncio); asyncio also returns the
    /// protocol, which here lives in the transport
    /// ([`Transport::with_protocol`]). The host is resolved with
    /// [`EventLoop::getaddrinfo`] and each address is tried in turn.
    ///
    /// Errors: [`Error::AddressLookup`] for a name that does not resolve;
    /// [`Error::Os`] with the OS error inside ("Connect call failed
    /// ('127.0.0.1', 1)", `ConnectionRefused`) when every attempt fails;
    /// [`Error::WrongThread`] off the loop's thread. For a timeout, wrap
    /// the call in [`wait_for`](crate::wait_for).
    pub async fn create_connection<P, F>(
        &self,
        protocol_factory: F,
        host: &str,
        port: u16,
    ) -> Result<Transport, Error>
    where
        P: Protocol,
        F: FnOnce() -> P,
    {
        self.create_connection_with(
            protocol_factory,
            Some(host),
            port,
            ConnectOptions::default(),
        )
        .await
    }

    /// [`EventLoop::create_connection`] with asyncio's options (happy
    /// eyeballs, `local_addr`, `all_errors`, `sock`, ...); with
    /// `options.sock` set, `host` must be `None`.
    pub async fn create_connection_with<P, F>(
        &self,
        protocol_factory: F,
        host: Option<&str>,
        port: u16,
        mut options: ConnectOptions,
    ) -> Result<Transport, Error>
    where
        P: Protocol,
        F: FnOnce() -> P,
    {
        let tls = options.take_tls(host)?;
        let sock = self.connect_socket(host, port, options).await?;
        self.start_transport(
            sock,
            StreamProtocol::Plain(Box::new(protocol_factory())),
            tls,
        )
        .await
    }

    /// [`EventLoop::create_connection_with`] for a [`BufferedProtocol`].
    pub async fn create_buffered_connection<P, F>(
        &self,
        protocol_factory: F,
        host: Option<&str>,
        port: u16,
        mut options: ConnectOptions,
    ) -> Result<Transport, Error>
    where
        P: BufferedProtocol,
        F: FnOnce() -> P,
    {
        let tls = options.take_tls(host)?;
        let sock = self.connect_socket(host, port, options).await?;
        self.start_transport(
            sock,
            StreamProtocol::Buffered(Box::new(protocol_factory())),
            tls,
        )
        .await
    }

    /// Wraps a connected socket in a transport and returns once
    /// `connection_made` has run, as asyncio's connection methods do.
    pub(crate) async fn start_transport(
        &self,
        sock: Socket,
        protocol: StreamProtocol,
        tls: Option<TlsLayer>,
    ) -> Result<Transport, Error> {
        self.start_endpoint(Endpoint::Socket(sock), Kind::Socket, protocol, None, tls)
            .await
    }

    /// Starts a transport of `kind` over `endpoint` (non-blocking) and
    /// returns it once `connection_made` has run; `on_lost` runs once
    /// after its `connection_lost`.
    pub(crate) async fn start_endpoint(
        &self,
        endpoint: Endpoint,
        kind: Kind,
        protocol: StreamProtocol,
        on_lost: Option<Box<dyn FnOnce() + Send>>,
        tls: Option<TlsLayer>,
    ) -> Result<Transport, Error> {
        let made = self.create_future();
        let transport = Transport::start_endpoint(
            self,
            endpoint,
            kind,
            protocol,
            on_lost,
            Some(made.clone()),
            tls,
        )?;
        /// Aborts the transport if the caller gives up (a timeout, a
        /// cancelled task) before it is handed over: nobody else could
        /// ever close it (asyncio closes it on any exception too).
        struct Unclaimed(Option<Transport>);
        impl Drop for Unclaimed {
            fn drop(&mut self) {
                if let Some(t) = self.0.take() {
                    t.abort();
                }
            }
        }
        let mut guard = Unclaimed(Some(transport));
        match made.await {
            Ok(()) => Ok(guard.0.take().expect("claimed once")),
            // The connection ended before it was up (a failed TLS
            // handshake), or the loop closed first (closing it too).
            Err(_) => {
                let failure = guard.0.as_ref().and_then(Transport::take_start_failure);
                Err(failure.map_or(Error::Closed, Error::from_connection))
            }
        }
    }

    /// Resolves and connects, with happy eyeballs when asked.
    pub(crate) async fn connect_socket(
        &self,
        host: Option<&str>,
        port: u16,
        mut options: ConnectOptions,
    ) -> Result<Socket, Error> {
        if let Some(sock) = options.sock.take() {
            if host.is_some() {
                return Err(Error::InvalidArgument(
                    "host/port and sock can not be specified at the same time".into(),
                ));
            }
            return Ok(sock);
        }
        let Some(host) = host else {
            return Err(Error::InvalidArgument(
                "host and port was not specified and no sock specified".into(),
            ));
        };
        let hints = AddrInfoHints {
            family: options.family,
            socktype: Some(Type::STREAM),
            protocol: 0,
            flags: options.flags,
        };
        let mut infos = self.getaddrinfo(Some(host), port, hints).await?;
        if infos.is_empty() {
            return Err(Error::Io(std::io::Error::other(
                "getaddrinfo() returned empty list",
            )));
        }
        let first = options
            .interleave
            .unwrap_or(usize::from(options.happy_eyeballs_delay.is_some()));
        if first > 0 {
            infos = interleave(infos, first);
        }
        let local = options.local_addr;
        let race = StaggeredRace {
            pending: infos,
            start: Box::new(move |info| Box::pin(attempt(self, info, local))),
            running: Vec::new(),
            started: 0,
            delay: options.happy_eyeballs_delay,
            timer: None,
            errors: Vec::new(),
            latest_failed: false,
        };
        race.await
            .map_err(|errors| combine(errors, options.all_errors))
    }

    /// Connects to the Unix socket at `path` (asyncio:
    /// `loop.create_unix_connection`). Errors as
    /// [`EventLoop::create_connection`].
    pub async fn create_unix_connection<P, F>(
        &self,
        protocol_factory: F,
        path: impl AsRef<Path>,
    ) -> Result<Transport, Error>
    where
        P: Protocol,
        F: FnOnce() -> P,
    {
        let sock = self.connect_unix(path.as_ref()).await?;
        self.start_transport(
            sock,
            StreamProtocol::Plain(Box::new(protocol_factory())),
            None,
        )
        .await
    }

    /// A non-blocking Unix stream socket connected to `path`.
    /// Errors as Python's `socket.connect` raises them: "[Errno 2] No
    /// such file or directory", "AF_UNIX path too long".
    pub(crate) async fn connect_unix(&self, path: &Path) -> Result<Socket, Error> {
        let addr = super::unix_addr(path)?;
        let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        sock.set_nonblocking(true)?;
        match self.sock_connect(&sock, &addr).await {
            Ok(()) => Ok(sock),
            Err(Error::Io(e)) => Err(super::os_error(e)),
            Err(e) => Err(e),
        }
    }

    /// Wraps a connection accepted outside the loop (or any connected
    /// stream socket) in a transport (asyncio:
    /// `loop.connect_accepted_socket`). The socket is made non-blocking.
    pub async fn connect_accepted_socket<P, F>(
        &self,
        protocol_factory: F,
        sock: impl Into<Socket>,
    ) -> Result<Transport, Error>
    where
        P: Protocol,
        F: FnOnce() -> P,
    {
        let sock: Socket = sock.into();
        match sock.r#type()? {
            t if t == Type::STREAM => {}
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "A Stream Socket was expected, got {:?}",
                    sock.r#type()?
                )));
            }
        }
        self.start_transport(
            sock,
            StreamProtocol::Plain(Box::new(protocol_factory())),
            None,
        )
        .await
    }

    /// Opens a datagram endpoint (asyncio:
    /// `loop.create_datagram_endpoint`): a UDP socket bound to `local_addr`
    /// and/or connected to `remote_addr`, driving the protocol
    /// `protocol_factory` builds. See [`DatagramOptions`] for
    /// `reuse_port`, `allow_broadcast`, `family` and `sock`.
    pub async fn create_datagram_endpoint<P, F>(
        &self,
        protocol_factory: F,
        options: DatagramOptions,
    ) -> Result<DatagramTransport, Error>
    where
        P: DatagramProtocol,
        F: FnOnce() -> P,
    {
        let DatagramOptions {
            local_addr,
            remote_addr,
            family,
            reuse_port,
            allow_broadcast,
            sock,
        } = options;
        let (sock, remote) = match sock {
            Some(sock) => {
                if local_addr.is_some() || remote_addr.is_some() {
                    return Err(Error::InvalidArgument(
                        "socket modifier keyword arguments can not be used when sock is specified"
                            .into(),
                    ));
                }
                if sock.r#type()? != Type::DGRAM {
                    return Err(Error::InvalidArgument(format!(
                        "A datagram socket was expected, got {:?}",
                        sock.r#type()?
                    )));
                }
                let remote = sock.peer_addr().ok();
                (sock, remote)
            }
            None => {
                // asyncio finds no family both addresses (and `family`)
                // share: "can not get address information".
                let families = [local_addr, remote_addr].map(|a| a.map(Domain::for_address));
                let mismatch = |a: Option<Domain>, b: Option<Domain>| matches!((a, b), (Some(a), Some(b)) if a != b);
                if mismatch(families[0], families[1])
                    || mismatch(family, families[0])
                    || mismatch(family, families[1])
                {
                    return Err(Error::InvalidArgument(
                        "can not get address information".into(),
                    ));
                }
                let domain = match (family, local_addr, remote_addr) {
                    (Some(f), _, _) => f,
                    (None, Some(a), _) | (None, None, Some(a)) => Domain::for_address(a),
                    (None, None, None) => {
                        return Err(Error::InvalidArgument("unexpected address family".into()));
                    }
                };
                let sock = Socket::new(domain, Type::DGRAM, None)?;
                sock.set_nonblocking(true)?;
                if reuse_port {
                    sock.set_reuse_port(true)?;
                }
                if allow_broadcast {
                    sock.set_broadcast(true)?;
                }
                if let Some(local) = local_addr {
                    let local = SockAddr::from(local);
                    sock.bind(&local)
                        .map_err(|e| super::bind_error(&local, e))?;
                }
                let remote = match remote_addr {
                    Some(r) => {
                        let r = SockAddr::from(r);
                        self.sock_connect(&sock, &r).await?;
                        Some(r)
                    }
                    None => None,
                };
                (sock, remote)
            }
        };
        let made = self.create_future();
        let transport = DatagramTransport::start(
            self,
            sock,
            remote,
            Box::new(protocol_factory()),
            Some(made.clone()),
        )?;
        // Returned once `connection_made` has run, as asyncio.
        match made.await {
            Ok(()) => Ok(transport),
            Err(_) => Err(Error::Closed),
        }
    }
}

/// The options of [`EventLoop::create_datagram_endpoint`] (asyncio's
/// keyword arguments).
#[derive(Debug, Default)]
pub struct DatagramOptions {
    /// Bind here (port 0: any free port).
    pub local_addr: Option<SocketAddr>,
    /// Connect to this peer: `sendto(data, None)` goes there, and only its
    /// datagrams are received.
    pub remote_addr: Option<SocketAddr>,
    /// The address family, when neither address says it.
    pub family: Option<Domain>,
    /// `SO_REUSEPORT`: several endpoints (on several loops) share the port.
    pub reuse_port: bool,
    /// `SO_BROADCAST`.
    pub allow_broadcast: bool,
    /// An existing datagram socket to use instead.
    pub sock: Option<Socket>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    fn info(addr: &str) -> AddrInfo {
        let addr: SocketAddr = addr.parse().unwrap();
        AddrInfo {
            family: Domain::for_address(addr),
            socktype: Type::STREAM,
            protocol: 0,
            canonname: String::new(),
            addr: addr.into(),
        }
    }

    fn ports(infos: &[AddrInfo]) -> Vec<u16> {
        infos
            .iter()
            .map(|i| i.addr.as_socket().unwrap().port())
            .collect()
    }

    #[test]
    fn interleave_alternates_families_as_asyncio() {
        let infos = vec![
            info("[::1]:1"),
            info("[::1]:2"),
            info("[::1]:3"),
            info("127.0.0.1:4"),
            info("127.0.0.1:5"),
        ];
        assert_eq!(ports(&interleave(infos.clone(), 1)), [1, 4, 2, 5, 3]);
        assert_eq!(ports(&interleave(infos, 2)), [1, 2, 4, 3, 5]);
    }

    /// Attempts scripted per address: port 1 hangs, port 2 fails at once,
    /// port 3 connects after 20 ms.
    fn scripted<'a>(
        lp: &'a EventLoop,
        started: Arc<Mutex<Vec<(u16, Instant)>>>,
    ) -> Box<dyn FnMut(AddrInfo) -> Attempt<'a> + Send + 'a> {
        Box::new(move |info: AddrInfo| {
            let port = info.addr.as_socket().unwrap().port();
            started.lock().unwrap().push((port, Instant::now()));
            let _ = lp;
            Box::pin(async move {
                match port {
                    1 => {
                        std::future::pending::<()>().await;
                        unreachable!()
                    }
                    2 => Err(Error::InvalidArgument(format!("attempt {port} failed"))),
                    _ => {
                        crate::runners::sleep(Duration::from_millis(20)).await?;
                        Ok(Socket::new(Domain::IPV4, Type::STREAM, None)?)
                    }
                }
            }) as Attempt<'a>
        })
    }

    fn race<'a>(
        lp: &'a EventLoop,
        ports: &[u16],
        delay: Option<Duration>,
        started: &Arc<Mutex<Vec<(u16, Instant)>>>,
    ) -> StaggeredRace<'a> {
        StaggeredRace {
            pending: ports
                .iter()
                .map(|p| info(&format!("127.0.0.1:{p}")))
                .collect(),
            start: scripted(lp, started.clone()),
            running: Vec::new(),
            started: 0,
            delay,
            timer: None,
            errors: Vec::new(),
            latest_failed: false,
        }
    }

    #[test]
    fn a_hanging_attempt_is_overtaken_after_the_delay() {
        let lp = EventLoop::new().unwrap();
        let started = Arc::new(Mutex::new(Vec::new()));
        let t0 = Instant::now();
        let won = lp
            .run_until_complete(race(
                &lp,
                &[1, 3],
                Some(Duration::from_millis(30)),
                &started,
            ))
            .unwrap();
        assert!(won.is_ok());
        let started = started.lock().unwrap();
        assert_eq!(started.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 3]);
        // The second began once the delay passed, not before.
        assert!(started[1].1 - t0 >= Duration::from_millis(30));
    }

    #[test]
    fn a_failed_attempt_starts_the_next_at_once() {
        let lp = EventLoop::new().unwrap();
        let started = Arc::new(Mutex::new(Vec::new()));
        let won = lp
            .run_until_complete(race(&lp, &[2, 3], Some(Duration::from_secs(60)), &started))
            .unwrap();
        assert!(won.is_ok(), "the 60 s delay was not waited for");
        assert_eq!(started.lock().unwrap().len(), 2);
    }

    #[test]
    fn every_failure_is_kept_in_order_for_all_errors() {
        let lp = EventLoop::new().unwrap();
        let started = Arc::new(Mutex::new(Vec::new()));
        let errors = lp
            .run_until_complete(race(&lp, &[2, 2], None, &started))
            .unwrap()
            .unwrap_err();
        assert_eq!(errors.len(), 2);
        let combined = combine(errors, true);
        assert_eq!(
            combined.to_string(),
            "create_connection failed (2 sub-exceptions)"
        );
        let one = combine(
            vec![
                Error::InvalidArgument("a".into()),
                Error::InvalidArgument("a".into()),
            ],
            false,
        );
        assert_eq!(one.to_string(), "a");
        let many = combine(
            vec![
                Error::InvalidArgument("a".into()),
                Error::InvalidArgument("b".into()),
            ],
            false,
        );
        assert_eq!(many.to_string(), "Multiple exceptions: a, b");
    }
}
