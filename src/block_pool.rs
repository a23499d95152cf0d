//! Recycling of the small fixed-size blocks callbacks live in.
//!
//! `call_soon_threadsafe` allocates a callback on the posting thread and
//! the loop's thread frees it. The system allocator serves that pattern
//! badly: its per-thread caches are filled by frees and emptied by
//! allocations on the *same* thread, so here the loop's cache overflows
//! into the posting thread's arena (under that arena's lock) while the
//! posting thread's cache is always empty. Measured on glibc, malloc and
//! free were 42 % of the cost of a post whose closure captures nothing.
//!
//! The pool keeps, per thread, a *magazine* of free blocks: two lists of
//! at most [`BATCH`] blocks each (`current`, and a full `spare`). A thread
//! that frees more than it allocates hands full batches to a shared
//! *depot*; a thread that allocates more than it frees takes whole batches
//! from there, so the depot's mutex is taken once per [`BATCH`] blocks on
//! either side and never while user code runs. The depot is bounded
//! ([`DEPOT_MAX`] batches); beyond that, blocks go back to the allocator,
//! as do a thread's blocks when it exits. Every block has the same layout
//! and comes from the global allocator, so any block may be freed there
//! at any time: this is what makes the fallbacks (thread-local storage
//! already destroyed, depot full) trivially correct.
//!
//! Only allocations that will be freed on another thread should come from
//! here: for a thread's own short-lived allocations the allocator's
//! per-thread cache is already ideal, and a pool of uniform blocks only
//! adds memory traffic (measured: `call_soon` batches 60 % slower).
//!
//! The pool holds no lock-free protocol (one mutex, otherwise
//! thread-local state), so it has no loom model; under `cfg(loom)` the
//! callers use `Box` directly (see [`fits`]) so that loom's allocation
//! tracking still sees every callback.

use std::alloc::Layout;
use std::cell::Cell;
use std::ptr::{self, NonNull};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Size of a block: a callback header plus up to 32 bytes of captures
/// (the allocator's chunk for it is 128 bytes).
const BLOCK_SIZE: usize = 120;
/// Alignment of a block.
const BLOCK_ALIGN: usize = 8;
/// Blocks moved to or from the depot at once.
const BATCH: usize = 32;
/// Full batches the depot keeps at most (256 KiB of blocks).
const DEPOT_MAX: usize = 64;

const LAYOUT: Layout = match Layout::from_size_align(BLOCK_SIZE, BLOCK_ALIGN) {
    Ok(l) => l,
    Err(_) => panic!("bad block layout"),
};

/// Whether a value of type `T` is allocated from the pool.
pub(crate) const fn fits<T>() -> bool {
    !cfg!(loom) && size_of::<T>() <= BLOCK_SIZE && align_of::<T>() <= BLOCK_ALIGN
}

/// A free block, linked through its first word.
struct Free {
    next: *mut Free,
}

/// A list of exactly [`BATCH`] free blocks.
struct Batch(NonNull<Free>);

// Safety: a batch owns its blocks (raw memory, no values); any thread may
// take them over.
unsafe impl Send for Batch {}

static DEPOT: Mutex<Vec<Batch>> = Mutex::new(Vec::new());
/// The depot's length, readable without the lock: a thread that finds
/// the depot empty (when allocating) or full (when freeing) goes to the
/// allocator without taking the lock. A stale value only costs a wasted
/// lock or a batch less recycled; the lock decides.
static DEPOT_LEN: AtomicUsize = AtomicUsize::new(0);

fn depot() -> std::sync::MutexGuard<'static, Vec<Batch>> {
    // Nothing panics while the depot is locked, but a poisoned depot is
    // still a valid list of batches.
    DEPOT.lock().unwrap_or_else(|e| e.into_inner())
}

/// One thread's free blocks.
struct Magazine {
    /// Head of the list blocks are taken from and returned to.
    current: Cell<*mut Free>,
    /// Length of `current` (at most [`BATCH`]).
    len: Cell<usize>,
    /// A full batch (exactly [`BATCH`] blocks) or null.
    spare: Cell<*mut Free>,
}

thread_local! {
    static MAGAZINE: Magazine = const {
        Magazine {
            current: Cell::new(ptr::null_mut()),
            len: Cell::new(0),
            spare: Cell::new(ptr::null_mut()),
        }
    };
}

impl Magazine {
    fn alloc(&self) -> Option<NonNull<u8>> {
        if self.len.get() == 0 {
            let spare = self.spare.replace(ptr::null_mut());
            let refill = if spare.is_null() {
                if DEPOT_LEN.load(Relaxed) == 0 {
                    return None;
                }
                let mut depot = depot();
                let batch = depot.pop();
                DEPOT_LEN.store(depot.len(), Relaxed);
                batch?.0.as_ptr()
            } else {
                spare
            };
            self.current.set(refill);
            self.len.set(BATCH);
        }
        let head = self.current.get();
        // Safety: `len > 0`, so `head` is a free block this thread owns.
        self.current.set(unsafe { (*head).next });
        self.len.set(self.len.get() - 1);
        NonNull::new(head.cast())
    }

    /// Safety: `block` is a pool block no one else uses.
    unsafe fn free(&self, block: NonNull<u8>) {
        if self.len.get() == BATCH {
            let full = self.current.replace(ptr::null_mut());
            self.len.set(0);
            let old_spare = self.spare.replace(full);
            if let Some(batch) = NonNull::new(old_spare) {
                let kept = DEPOT_LEN.load(Relaxed) < DEPOT_MAX && {
                    let mut depot = depot();
                    let room = depot.len() < DEPOT_MAX;
                    if room {
                        depot.push(Batch(batch));
                        DEPOT_LEN.store(depot.len(), Relaxed);
                    }
                    room
                };
                if !kept {
                    // Safety: the batch is ours and holds BATCH blocks.
                    unsafe { release_list(batch.as_ptr()) };
                }
            }
        }
        let block = block.cast::<Free>().as_ptr();
        // Safety: the block is ours, at least pointer-sized and aligned.
        unsafe {
            block.write(Free {
                next: self.current.get(),
            })
        };
        self.current.set(block);
        self.len.set(self.len.get() + 1);
    }
}

impl Drop for Magazine {
    fn drop(&mut self) {
        // Safety: both lists are this thread's, and it is exiting.
        unsafe {
            release_list(self.current.get());
            release_list(self.spare.get());
        }
    }
}

/// Returns every block of a null-terminated list to the allocator.
///
/// Safety: the caller owns the list.
unsafe fn release_list(mut head: *mut Free) {
    while !head.is_null() {
        // Safety: every block of an owned list is a live pool block.
        unsafe {
            let next = (*head).next;
            std::alloc::dealloc(head.cast(), LAYOUT);
            head = next;
        }
    }
}

/// A block of [`BLOCK_SIZE`] bytes aligned to [`BLOCK_ALIGN`].
pub(crate) fn alloc() -> NonNull<u8> {
    if let Ok(Some(block)) = MAGAZINE.try_with(Magazine::alloc) {
        return block;
    }
    // Safety: the layout has a non-zero size.
    let block = unsafe { std::alloc::alloc(LAYOUT) };
    NonNull::new(block).unwrap_or_else(|| std::alloc::handle_alloc_error(LAYOUT))
}

/// Gives back a block from [`alloc`].
///
/// Safety: `block` came from [`alloc`], holds no live value and is not
/// used again by the caller.
pub(crate) unsafe fn free(block: NonNull<u8>) {
    // Safety: forwarded from the caller.
    let pooled = MAGAZINE.try_with(|m| unsafe { m.free(block) });
    if pooled.is_err() {
        // This thread's magazine is gone (thread exit).
        // Safety: every block is allocated with `LAYOUT`.
        unsafe { std::alloc::dealloc(block.as_ptr(), LAYOUT) };
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn blocks_flow_from_a_freeing_thread_to_an_allocating_one() {
        // One thread frees what another allocated, for many batches: the
        // depot must carry blocks across without losing or sharing any.
        let (tx, rx) = std::sync::mpsc::sync_channel::<usize>(1024);
        let consumer = std::thread::spawn(move || {
            let mut n = 0;
            while let Ok(addr) = rx.recv() {
                let block = NonNull::new(addr as *mut u8).unwrap();
                // Safety: the producer gave up the block.
                unsafe {
                    assert_eq!(block.as_ptr().read(), 0xA5);
                    free(block);
                }
                n += 1;
            }
            n
        });
        for _ in 0..BATCH * 40 {
            let block = alloc();
            assert_eq!(block.as_ptr() as usize % BLOCK_ALIGN, 0);
            // Safety: the block is ours and BLOCK_SIZE bytes long.
            unsafe { block.as_ptr().write_bytes(0xA5, BLOCK_SIZE) };
            tx.send(block.as_ptr() as usize).unwrap();
        }
        drop(tx);
        assert_eq!(consumer.join().unwrap(), BATCH * 40);
    }

    #[test]
    fn distinct_live_blocks_never_overlap() {
        let blocks: Vec<_> = (0..BATCH * 3 + 5).map(|_| alloc()).collect();
        let mut addrs: Vec<usize> = blocks.iter().map(|b| b.as_ptr() as usize).collect();
        addrs.sort_unstable();
        assert!(addrs.windows(2).all(|w| w[1] - w[0] >= BLOCK_SIZE));
        for b in blocks {
            // Safety: each block came from `alloc` and is freed once.
            unsafe { free(b) };
        }
    }
}
