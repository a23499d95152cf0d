//! asyncio's write flow control (`_FlowControlMixin`), shared by the
//! stream and datagram transports: over the high-water mark the protocol
//! hears `pause_writing`, at or below the low mark `resume_writing`.

use crate::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// asyncio's default high-water mark for a transport's write buffer.
pub const DEFAULT_HIGH_WATER: usize = 64 * 1024;

/// A transport's marks and whether its protocol is paused (loop side).
pub(crate) struct WriteFlow {
    high: usize,
    low: usize,
    /// `pause_writing` was called and `resume_writing` not yet.
    paused: bool,
}

impl Default for WriteFlow {
    fn default() -> Self {
        WriteFlow {
            high: DEFAULT_HIGH_WATER,
            low: DEFAULT_HIGH_WATER / 4,
            paused: false,
        }
    }
}

impl WriteFlow {
    /// asyncio's `set_write_buffer_limits` arguments as `(high, low)`:
    /// `high` defaults to 64 KiB (or 4 × `low` when only `low` is given),
    /// `low` to `high / 4`. Error: [`Error::InvalidArgument`] unless
    /// `high >= low`, with asyncio's wording.
    pub(crate) fn limits(high: Option<usize>, low: Option<usize>) -> Result<(usize, usize), Error> {
        let high = high.unwrap_or_else(|| low.map_or(DEFAULT_HIGH_WATER, |l| 4 * l));
        let low = low.unwrap_or(high / 4);
        if high < low {
            return Err(Error::InvalidArgument(format!(
                "high ({high}) must be >= low ({low}) must be >= 0"
            )));
        }
        Ok((high, low))
    }

    pub(crate) fn set(&mut self, high: usize, low: usize) {
        self.high = high;
        self.low = low;
    }

    /// With `size` bytes waiting: is `pause_writing` due now?
    pub(crate) fn pause_due(&mut self, size: usize) -> bool {
        let due = !self.paused && size > self.high;
        self.paused |= due;
        due
    }

    /// With `size` bytes waiting: is `resume_writing` due now?
    pub(crate) fn resume_due(&mut self, size: usize) -> bool {
        let due = self.paused && size <= self.low;
        self.paused &= !due;
        due
    }
}

/// Bytes written from other threads and posted to the loop, counted from
/// the post until the loop applies them, so that the write buffer's size
/// and flow control see them at once (a thread that writes faster than
/// the loop applies would otherwise never be told to stop).
#[derive(Default)]
pub(crate) struct PostedBytes(AtomicUsize);

impl PostedBytes {
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// One posted write's share of [`PostedBytes`], given back when dropped:
/// when the loop applies the write, or when a closing loop drops it unrun.
pub(crate) struct PostedWrite<T: AsRef<PostedBytes>> {
    owner: Arc<T>,
    len: usize,
}

impl<T: AsRef<PostedBytes>> PostedWrite<T> {
    pub(crate) fn new(owner: &Arc<T>, len: usize) -> PostedWrite<T> {
        counter(&**owner).fetch_add(len, Ordering::AcqRel);
        PostedWrite {
            owner: owner.clone(),
            len,
        }
    }

    /// The transport, and the count given back: the loop is applying the
    /// write, whose bytes are its own to count from here on.
    pub(crate) fn apply(self) -> Arc<T> {
        let owner = self.owner.clone();
        drop(self);
        owner
    }
}

impl<T: AsRef<PostedBytes>> Drop for PostedWrite<T> {
    fn drop(&mut self) {
        counter(&*self.owner).fetch_sub(self.len, Ordering::AcqRel);
    }
}

fn counter<T: AsRef<PostedBytes>>(owner: &T) -> &AtomicUsize {
    &<T as AsRef<PostedBytes>>::as_ref(owner).0
}
