//! The bytes a stream transport could not send yet.

use crate::net::endpoint::Endpoint;
use std::collections::VecDeque;
use std::io::{self, IoSlice};

/// Buffered chunks one vectored write sends at most (the kernel refuses
/// more than `IOV_MAX`).
pub(super) const MAX_IOVECS: usize = 64;

/// Writes up to this size coalesce into the last chunk.
const COALESCE: usize = 16 * 1024;

#[derive(Default)]
pub(super) struct WriteBuffer {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes of the front chunk already sent.
    offset: usize,
    len: usize,
}

impl WriteBuffer {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn push(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        // Small writes coalesce into the last chunk.
        if let Some(last) = self.chunks.back_mut() {
            if last.len() + data.len() <= COALESCE && last.capacity() - last.len() >= data.len() {
                last.extend_from_slice(data);
                return;
            }
        }
        self.chunks.push_back(data.to_vec());
    }

    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                return;
            };
            let left = front.len() - self.offset;
            if n < left {
                self.offset += n;
                return;
            }
            n -= left;
            self.offset = 0;
            self.chunks.pop_front();
        }
    }

    pub(super) fn clear(&mut self) {
        self.chunks.clear();
        self.offset = 0;
        self.len = 0;
    }

    /// Sends as much as the socket takes, with vectored writes: `Ok(true)`
    /// if all went, `Ok(false)` if the socket would block.
    pub(super) fn flush(&mut self, endpoint: &Endpoint) -> io::Result<bool> {
        while self.len > 0 {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (i, chunk) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
                let from = if i == 0 { self.offset } else { 0 };
                slices[i] = IoSlice::new(&chunk[from..]);
                count += 1;
            }
            match endpoint.write_vectored(&slices[..count]) {
                Ok(n) => self.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}
