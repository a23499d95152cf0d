//! Protocols the networking tests share.

use super::Log;
use evloop::{BufferedProtocol, DatagramProtocol, DatagramTransport, Protocol, Transport};
use socket2::SockAddr;
use std::io;
use std::sync::mpsc;

/// What a protocol heard, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Made,
    Data(Vec<u8>),
    Eof,
    Lost(Option<io::ErrorKind>),
    Pause,
    Resume,
}

/// Echoes what it receives.
#[derive(Default)]
pub struct Echo {
    transport: Option<Transport>,
}

impl Protocol for Echo {
    fn connection_made(&mut self, transport: Transport) {
        self.transport = Some(transport);
    }
    fn data_received(&mut self, data: &[u8]) {
        if let Some(t) = &self.transport {
            t.write(data).unwrap();
        }
    }
}

/// Records every callback; hands its transport out through a channel.
pub struct Rec {
    pub log: Log<Ev>,
    pub transports: Option<mpsc::Sender<Transport>>,
    /// What `eof_received` answers.
    pub keep_open: bool,
    /// Written on `connection_made`.
    pub greeting: Vec<u8>,
}

impl Rec {
    pub fn new(log: &Log<Ev>) -> Rec {
        Rec {
            log: log.clone(),
            transports: None,
            keep_open: false,
            greeting: Vec::new(),
        }
    }
    pub fn sending(mut self, tx: &mpsc::Sender<Transport>) -> Rec {
        self.transports = Some(tx.clone());
        self
    }
}

impl Protocol for Rec {
    fn connection_made(&mut self, transport: Transport) {
        self.log.push(Ev::Made);
        if !self.greeting.is_empty() {
            transport.write(&self.greeting).unwrap();
        }
        if let Some(tx) = &self.transports {
            let _ = tx.send(transport);
        }
    }
    fn data_received(&mut self, data: &[u8]) {
        self.log.push(Ev::Data(data.to_vec()));
    }
    fn eof_received(&mut self) -> bool {
        self.log.push(Ev::Eof);
        self.keep_open
    }
    fn connection_lost(&mut self, error: Option<io::Error>) {
        self.log.push(Ev::Lost(error.map(|e| e.kind())));
    }
    fn pause_writing(&mut self) {
        self.log.push(Ev::Pause);
    }
    fn resume_writing(&mut self) {
        self.log.push(Ev::Resume);
    }
}

/// A connection to 127.0.0.1:`port` whose [`Rec`] logs to the returned
/// log.
pub fn connect_rec(lp: &evloop::EventLoop, port: u16) -> (Transport, Log<Ev>) {
    let log = Log::new();
    let rec = Rec::new(&log);
    let t = lp
        .run_until_complete(lp.create_connection(move || rec, "127.0.0.1", port))
        .unwrap()
        .unwrap();
    (t, log)
}

/// All the bytes in a log's `Data` events.
pub fn received(log: &Log<Ev>) -> Vec<u8> {
    log.get()
        .into_iter()
        .flat_map(|e| match e {
            Ev::Data(d) => d,
            _ => Vec::new(),
        })
        .collect()
}

/// Whether the log ends with `connection_lost`.
pub fn lost(log: &Log<Ev>) -> Option<Option<io::ErrorKind>> {
    log.get().into_iter().find_map(|e| match e {
        Ev::Lost(k) => Some(k),
        _ => None,
    })
}

/// A buffered protocol collecting what it receives in its own buffer.
pub struct Collect {
    pub buf: Vec<u8>,
    pub filled: usize,
    pub log: Log<Ev>,
}

impl BufferedProtocol for Collect {
    fn connection_made(&mut self, _t: Transport) {
        self.log.push(Ev::Made);
    }
    fn get_buffer(&mut self, _hint: usize) -> &mut [u8] {
        if self.filled == self.buf.len() {
            self.buf.resize(self.buf.len() + 4096, 0);
        }
        &mut self.buf[self.filled..]
    }
    fn buffer_updated(&mut self, n: usize) {
        self.log
            .push(Ev::Data(self.buf[self.filled..self.filled + n].to_vec()));
        self.filled += n;
    }
    fn eof_received(&mut self) -> bool {
        self.log.push(Ev::Eof);
        false
    }
    fn connection_lost(&mut self, error: Option<io::Error>) {
        self.log.push(Ev::Lost(error.map(|e| e.kind())));
    }
}

/// What a datagram protocol heard.
#[derive(Debug, Clone)]
pub enum Dg {
    Made,
    Datagram(Vec<u8>, SockAddr),
    Error(io::ErrorKind),
    Lost,
}

/// Records datagram callbacks; echoes when `echo` is set.
pub struct DgRec {
    pub log: Log<Dg>,
    pub echo: bool,
    pub transport: Option<DatagramTransport>,
}

impl DatagramProtocol for DgRec {
    fn connection_made(&mut self, transport: DatagramTransport) {
        self.log.push(Dg::Made);
        self.transport = Some(transport);
    }
    fn datagram_received(&mut self, data: &[u8], addr: SockAddr) {
        self.log.push(Dg::Datagram(data.to_vec(), addr.clone()));
        if self.echo {
            if let Some(t) = &self.transport {
                t.sendto(data, Some(addr)).unwrap();
            }
        }
    }
    fn error_received(&mut self, error: io::Error) {
        self.log.push(Dg::Error(error.kind()));
    }
    fn connection_lost(&mut self, _error: Option<io::Error>) {
        self.log.push(Dg::Lost);
    }
}

/// Runs the loop until `done` holds, failing after `limit`.
pub fn run_until(lp: &evloop::EventLoop, limit: std::time::Duration, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    lp.run_until_complete(async {
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "condition not met within {limit:?}"
            );
            evloop::sleep(std::time::Duration::from_millis(1))
                .await
                .unwrap();
        }
    })
    .unwrap();
}

/// A blocking peer on another thread: accepts one connection on a new
/// 127.0.0.1 listener and, once `go` fires (at once if `None`), reads
/// everything until EOF. Returns the port and what it read.
#[allow(dead_code)]
pub fn reading_peer(go: Option<mpsc::Receiver<()>>) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        if let Some(go) = go {
            go.recv().unwrap();
        }
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        all
    });
    (port, peer)
}

/// A connected pair of non-blocking TCP sockets on loopback.
pub fn tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (b, _) = listener.accept().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

/// A blocking peer on another thread: accepts one connection on a new
/// 127.0.0.1 listener and runs `script` on it. Returns the port.
pub fn peer(script: impl FnOnce(std::net::TcpStream) + Send + 'static) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        script(conn);
    });
    port
}
