//! asyncio's "Watch a file descriptor for read events": a socket pair, a
//! reader registered with add_reader, and data "received" from the network
//! (written by a callback).

use evloop::EventLoop;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

fn main() -> Result<(), evloop::Error> {
    let lp = EventLoop::new()?;
    // A pair of connected sockets; the loop reads from `rsock`.
    let (rsock, mut wsock) = UnixStream::pair()?;
    rsock.set_nonblocking(true)?;
    let fd = rsock.as_raw_fd();
    let rsock = Arc::new(Mutex::new(rsock));

    let reader_loop = lp.clone();
    let sock = rsock.clone();
    lp.add_reader(fd, move || {
        let mut buf = [0u8; 100];
        let n = sock.lock().unwrap().read(&mut buf).unwrap_or(0);
        println!("Received: {}", String::from_utf8_lossy(&buf[..n]));
        // We are done: unregister the file descriptor and stop the loop.
        reader_loop.remove_reader(fd);
        reader_loop.stop();
    })?;

    // Simulate the reception of data from the network.
    lp.call_soon(move || wsock.write_all(b"abc").expect("socket pair is open"))?;

    lp.run_forever()?;
    lp.close()
}
