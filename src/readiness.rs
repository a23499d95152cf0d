//! The readiness layer: how the loop's own I/O sources (sockets, pipes)
//! learn that they can read or write.
//!
//! # Design
//! - **Registrations live in a slab owned by the loop's core**
//!   ([`IoSet`], loop thread only, no lock). A source registers once, for
//!   its whole life, edge-triggered for reading and writing; its mio token
//!   is its slot index plus the slot's generation ([`Token`]), so an event
//!   for a closed source can never reach the source that reused its slot
//!   (the generation differs) or its fd number (epoll keeps our token, not
//!   the number).
//! - **Readiness is cached per registration** in one atomic word
//!   ([`ScheduledIo`]): the loop sets bits when epoll reports an edge, and
//!   they are cleared when a read or write returns `WouldBlock`
//!   ([`ScheduledIo::clear`]) or, for stream sockets, when a read or write
//!   moves less than it asked for, which drains the socket as surely
//!   ([`ScheduledIo::clear_spent`]; a peer's hang-up or error stays set). The word also counts events (a tick), so a
//!   clear based on a stale observation cannot erase an edge that arrived
//!   after it. No `epoll_ctl` on the hot path: the only system calls are
//!   the reads and writes themselves and the loop's one `epoll_wait` per
//!   iteration.
//! - **Two faces on the same registration.** Futures (`sock_*`, streams,
//!   the ecosystem's I/O traits) wait with [`ScheduledIo::poll_ready`],
//!   one waker per direction, for the one task that owns the direction
//!   (`TcpStream::read` takes `&mut self`); any number of tasks may also
//!   wait for readiness together ([`ScheduledIo::poll_ready_shared`], a
//!   waiter list per direction, each entry removed when its future
//!   drops: `TcpStream::readable`, `TcpListener::accept`). Callbacks (transports) attach a
//!   [`IoHandler`]: when an event arrives the registration queues itself
//!   on the loop like any callback (at most once at a time) and the
//!   handler runs in step 5. Neither goes through the other.
//! - **Any thread may drop a source.** The source deregisters itself from
//!   epoll (`Registration::deregister`: `epoll_ctl(DEL)` through the
//!   thread-safe mio `Registry`) before it closes its fd: every source in
//!   evloop does so in its `Drop` or close path. Dropping the
//!   [`Registration`] does *not* deregister (it does not have the
//!   source); it frees the slab slot, on the loop's thread (directly
//!   there, through a posted callback elsewhere). A source that closed its
//!   fd without deregistering would leave epoll to drop the entry when the
//!   file's last descriptor closes; an event that came meanwhile carries
//!   the freed slot's old generation and is ignored.
//!
//! `add_reader` / `add_writer` keep their own table (`reactor`), with
//! asyncio's level-triggered contract; this layer is edge-triggered.
//!
//! The readiness word's protocol (loop sets with a new tick and wakes;
//! waiters check, register, check again; clears compare the tick) is
//! model-checked in `loom-tests/readiness.rs`.

use crate::atomic_waker::AtomicWaker;
use crate::runnable::{Header, Kind, Runnable, Vtable};
use crate::sched::{Local, Schedule};
use crate::sync::{AtomicBool, AtomicUsize, Mutex, Ordering, UnsafeCell};
use crate::waiters::WakerList;
use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::{Context, Poll};

// Tokens carry a generation in their high 32 bits.
#[cfg(not(target_pointer_width = "64"))]
compile_error!("evloop's readiness tokens need a 64-bit target");

/// The source can be read (or accept, or has data for `recv`).
pub(crate) const READABLE: usize = 1 << 0;
/// The source can be written.
pub(crate) const WRITABLE: usize = 1 << 1;
/// The peer closed its writing side (EOF or hang-up): reads will not block.
pub(crate) const READ_CLOSED: usize = 1 << 2;
/// Writing side closed (hang-up): writes will not block (they fail).
pub(crate) const WRITE_CLOSED: usize = 1 << 3;
/// An error is pending on the source: both sides wake to find it.
pub(crate) const ERROR: usize = 1 << 4;
/// The loop closed: nothing will ever be reported again.
pub(crate) const SHUTDOWN: usize = 1 << 5;
const READINESS_MASK: usize = (1 << 6) - 1;
/// Tasks wait in the read (write) direction's shared waiter list: the
/// loop must take the list's lock at the next edge in that direction.
const WAITING: [usize; 2] = [1 << 6, 1 << 7];
/// Where the tick starts: below it, the readiness bits and the waiting
/// flags, which a new tick keeps.
const TICK_SHIFT: usize = 8;
const LOW_MASK: usize = (1 << TICK_SHIFT) - 1;
const TICK_ONE: usize = 1 << TICK_SHIFT;

/// What a direction waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::Read => 0,
            Direction::Write => 1,
        }
    }

    /// The bits that end a wait in this direction.
    fn mask(self) -> usize {
        match self {
            Direction::Read => READABLE | READ_CLOSED | ERROR | SHUTDOWN,
            Direction::Write => WRITABLE | WRITE_CLOSED | ERROR | SHUTDOWN,
        }
    }

    /// The bits a `WouldBlock` in this direction clears: the readiness,
    /// and an error report (edge-triggered epoll reports an error once per
    /// new error; one the operation did not see would otherwise keep the
    /// source "ready" forever). Hang-ups stay: they are final.
    fn clears(self) -> usize {
        match self {
            Direction::Read => READABLE | ERROR,
            Direction::Write => WRITABLE | ERROR,
        }
    }
}

/// A readiness observation: which bits were set, and the tick they were
/// seen at (for [`ScheduledIo::clear`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadyEvent {
    pub(crate) bits: usize,
    tick: usize,
}

impl ReadyEvent {
    pub(crate) fn is_shutdown(&self) -> bool {
        self.bits & SHUTDOWN != 0
    }
}

/// The callback face: what a transport attaches to its registration.
/// Called on the loop's thread, in step 5, when an event arrived.
pub(crate) trait IoHandler: Send {
    /// New readiness was reported (`bits` is the current word's bits).
    /// Returns whether the handler stays attached.
    fn ready(&mut self, io: &ScheduledIo, bits: usize, local: &dyn Local) -> bool;

    /// The loop is closing (not running): release the source and tell
    /// whoever needs to know.
    fn loop_closed(&mut self);
}

/// The tasks of one direction waiting for readiness together. A waiter
/// registers under the list's lock, then sets the direction's `WAITING`
/// flag in the readiness word with one read-modify-write that also reads
/// the readiness; the loop's edge (one read-modify-write of the word)
/// sees the flag and wakes the list, or the waiter sees the edge. One
/// word for both, so no fence is needed (`loom-tests/readiness.rs`); when
/// nobody waits, an edge costs the list nothing.
#[derive(Default)]
struct SharedWaiters {
    list: Mutex<WakerList>,
}

/// How an operation waits for readiness: in the direction's one waker
/// slot (the task that owns the direction), or in its shared list with
/// the caller's entry.
enum Wait<'a> {
    Own,
    Shared(&'a mut Option<u64>),
}

/// One registration's shared state. Starts with a [`Header`] so it can be
/// queued on the loop (the callback face).
#[repr(C)]
pub(crate) struct ScheduledIo {
    header: Header,
    /// `tick << TICK_SHIFT | waiting flags | readiness bits`.
    readiness: AtomicUsize,
    reader: AtomicWaker,
    writer: AtomicWaker,
    /// Tasks waiting together for readiness, per direction (read, write).
    shared: [SharedWaiters; 2],
    /// The callback entry is in the ready queue.
    queued: AtomicBool,
    /// The transport's handler; only the loop thread touches it (set and
    /// taken there, run there).
    handler: UnsafeCell<Option<Box<dyn IoHandler>>>,
}

// Safety: the atomics are shared; `handler` is only used by the thread
// running the loop (see `set_handler` / `run`), and is `Send`.
unsafe impl Send for ScheduledIo {}
unsafe impl Sync for ScheduledIo {}

static IO_VTABLE: Vtable = Vtable {
    kind: Kind::Io,
    run: run_io,
    discard: discard_io,
};

/// The queued entry holds one `Arc<ScheduledIo>` reference.
unsafe fn run_io(ptr: NonNull<Header>, local: &dyn Local) {
    // Safety: the queue reference is an `Arc<ScheduledIo>` turned into a
    // pointer by `ScheduledIo::dispatch`.
    let io = unsafe { Arc::from_raw(ptr.cast::<ScheduledIo>().as_ptr()) };
    io.queued.store(false, Ordering::Release);
    let bits = io.readiness.load(Ordering::Acquire) & READINESS_MASK;
    // Safety: loop thread (we are run by the loop); the handler is taken
    // out while it runs, so a handler that replaces or removes itself
    // (closing its transport) does not free what is running.
    let handler = io.handler.with_mut(|h| unsafe { (*h).take() });
    if let Some(mut handler) = handler {
        // A panic is the handler's (a protocol factory, say): reported, and
        // the handler stays attached, as asyncio keeps a server serving.
        let keep = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handler.ready(&io, bits, local)
        })) {
            Ok(keep) => keep,
            Err(payload) => {
                local.report_panic(
                    crate::exception::ExceptionContext::new("Exception in an I/O handler"),
                    payload,
                );
                true
            }
        };
        let unused = io.handler.with_mut(|h| {
            // Safety: as above.
            let slot = unsafe { &mut *h };
            if keep && slot.is_none() {
                *slot = Some(handler);
                None
            } else {
                // Detached, or replaced while it ran.
                Some(handler)
            }
        });
        crate::util::drop_quietly(unused, "an I/O handler");
    }
}

unsafe fn discard_io(ptr: NonNull<Header>) {
    // Safety: as in `run_io`.
    drop(unsafe { Arc::from_raw(ptr.cast::<ScheduledIo>().as_ptr()) });
}

impl ScheduledIo {
    /// A registration's state outside any loop, for the loom model.
    #[cfg(loom)]
    pub(crate) fn new_for_model() -> ScheduledIo {
        ScheduledIo::new()
    }

    fn new() -> ScheduledIo {
        ScheduledIo {
            header: Header::new(&IO_VTABLE),
            readiness: AtomicUsize::new(0),
            reader: AtomicWaker::new(),
            writer: AtomicWaker::new(),
            shared: [SharedWaiters::default(), SharedWaiters::default()],
            queued: AtomicBool::new(false),
            handler: UnsafeCell::new(None),
        }
    }

    /// The loop reports readiness `bits` (from epoll): a new tick, the bits
    /// added, the waiting futures woken. Returns whether a handler is
    /// attached and the entry must be queued (`queue` then gets it).
    pub(crate) fn set_readiness(self: &Arc<Self>, bits: usize) -> Option<Runnable> {
        let prev = self.tick(bits);
        if bits & Direction::Read.mask() != 0 {
            self.reader.wake();
            if prev & WAITING[0] != 0 {
                self.wake_shared(Direction::Read);
            }
        }
        if bits & Direction::Write.mask() != 0 {
            self.writer.wake();
            if prev & WAITING[1] != 0 {
                self.wake_shared(Direction::Write);
            }
        }
        self.queue_handler()
    }

    /// A new tick with `bits` added (the waiting flags kept); the word
    /// before it.
    fn tick(&self, bits: usize) -> usize {
        let mut cur = self.readiness.load(Ordering::Acquire);
        loop {
            let next = ((cur & !LOW_MASK).wrapping_add(TICK_ONE)) | (cur & LOW_MASK) | bits;
            match self.readiness.compare_exchange_weak(
                cur,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return cur,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Wakes every task waiting together in `direction`, and lowers the
    /// direction's `WAITING` flag (under the list's lock, so that a waiter
    /// registering meanwhile raises it again after).
    fn wake_shared(&self, direction: Direction) {
        let wakers = {
            let mut list = crate::sync::lock(&self.shared[direction.index()].list);
            let wakers = list.take_all();
            self.readiness
                .fetch_and(!WAITING[direction.index()], Ordering::AcqRel);
            wakers
        };
        crate::waiters::wake_all(wakers);
    }

    /// Queues the handler's run, unless it has none or is queued already.
    fn queue_handler(self: &Arc<Self>) -> Option<Runnable> {
        // Safety: called on the loop thread (dispatch).
        let has_handler = self.handler.with(|h| unsafe { (*h).is_some() });
        if !has_handler || self.queued.swap(true, Ordering::AcqRel) {
            return None;
        }
        let ptr = NonNull::new(Arc::into_raw(self.clone()) as *mut Header)
            .expect("Arc pointers are non-null");
        // Safety: the Arc reference just leaked is the queue reference
        // `run_io` / `discard_io` take back.
        Some(unsafe { Runnable::from_raw(ptr) })
    }

    /// The current readiness, if it ends a wait in `direction`; otherwise
    /// registers `cx`'s waker for it and checks once more.
    pub(crate) fn poll_ready(
        &self,
        direction: Direction,
        cx: &mut Context<'_>,
    ) -> Poll<ReadyEvent> {
        if let Some(ev) = self.ready_now(direction) {
            return Poll::Ready(ev);
        }
        match direction {
            Direction::Read => self.reader.register(cx.waker()),
            Direction::Write => self.writer.register(cx.waker()),
        }
        match self.ready_now(direction) {
            Some(ev) => Poll::Ready(ev),
            None => Poll::Pending,
        }
    }

    /// The current readiness, if it ends a wait in `direction`.
    pub(crate) fn ready_now(&self, direction: Direction) -> Option<ReadyEvent> {
        let cur = self.readiness.load(Ordering::Acquire);
        Self::event_in(cur, direction)
    }

    /// The readiness word `word`, if it ends a wait in `direction`.
    fn event_in(word: usize, direction: Direction) -> Option<ReadyEvent> {
        let bits = word & READINESS_MASK;
        (bits & direction.mask() != 0).then_some(ReadyEvent {
            bits,
            tick: word >> TICK_SHIFT,
        })
    }

    /// [`ScheduledIo::poll_ready`] for one of several tasks waiting
    /// together: `id` is the caller's entry in the direction's waiter list
    /// (kept across polls, given back with
    /// [`ScheduledIo::forget_shared`] when the waiting future drops).
    pub(crate) fn poll_ready_shared(
        &self,
        direction: Direction,
        cx: &mut Context<'_>,
        id: &mut Option<u64>,
    ) -> Poll<ReadyEvent> {
        if let Some(ev) = self.ready_now(direction) {
            self.forget_shared(direction, id);
            return Poll::Ready(ev);
        }
        match self.wait_shared(direction, cx, id, None) {
            Some(ev) => {
                self.forget_shared(direction, id);
                Poll::Ready(ev)
            }
            None => Poll::Pending,
        }
    }

    /// Puts the caller in the direction's waiter list and raises the
    /// direction's `WAITING` flag, reading the readiness in the same step
    /// (see [`SharedWaiters`]): returns the readiness if it ends the wait
    /// now, i.e. if any is set and, with `past`, it comes from an edge
    /// after tick `past`.
    fn wait_shared(
        &self,
        direction: Direction,
        cx: &mut Context<'_>,
        id: &mut Option<u64>,
        past: Option<usize>,
    ) -> Option<ReadyEvent> {
        let waker = cx.waker().clone();
        let (replaced, word) = {
            let mut list = crate::sync::lock(&self.shared[direction.index()].list);
            let replaced = list.register(id, waker);
            let word = self
                .readiness
                .fetch_or(WAITING[direction.index()], Ordering::AcqRel);
            (replaced, word)
        };
        drop(replaced);
        Self::event_in(word, direction).filter(|ev| past.is_none_or(|tick| ev.tick != tick))
    }

    /// [`ScheduledIo::poll_op`] for one of several tasks using the source
    /// together (`sock_*` calls, `accept`): they wait in the direction's
    /// waiter list (`id` is the caller's entry, given back with
    /// [`ScheduledIo::forget_shared`] when its future drops).
    pub(crate) fn poll_op_shared<R>(
        &self,
        direction: Direction,
        cx: &mut Context<'_>,
        id: &mut Option<u64>,
        op: impl FnMut() -> io::Result<R>,
        spent: impl Fn(&R) -> bool,
    ) -> Poll<io::Result<R>> {
        self.poll_op_in(direction, cx, Wait::Shared(id), op, spent)
    }

    /// Gives back a [`ScheduledIo::poll_ready_shared`] entry.
    pub(crate) fn forget_shared(&self, direction: Direction, id: &mut Option<u64>) {
        if id.is_none() {
            return;
        }
        let removed = {
            let mut list = crate::sync::lock(&self.shared[direction.index()].list);
            let removed = list.remove(id);
            if list.is_empty() {
                self.readiness
                    .fetch_and(!WAITING[direction.index()], Ordering::AcqRel);
            }
            removed
        };
        // An entry the loop already took (to wake) is simply gone.
        drop(removed);
    }

    /// Runs `op` (a non-blocking system call) once the source is ready in
    /// `direction`; on `WouldBlock` clears the readiness and waits again.
    /// `spent(&r)`: the transfer moved less than asked, so the readiness
    /// it was attempted on is spent (cleared at once, saving the next call
    /// the `WouldBlock` it would return; an edge that arrived meanwhile
    /// keeps it). The loop having closed is an error.
    pub(crate) fn poll_op<R>(
        &self,
        direction: Direction,
        cx: &mut Context<'_>,
        op: impl FnMut() -> io::Result<R>,
        spent: impl Fn(&R) -> bool,
    ) -> Poll<io::Result<R>> {
        self.poll_op_in(direction, cx, Wait::Own, op, spent)
    }

    /// The retry loop of [`ScheduledIo::poll_op`] and
    /// [`ScheduledIo::poll_op_shared`], waiting as `wait` says.
    fn poll_op_in<R>(
        &self,
        direction: Direction,
        cx: &mut Context<'_>,
        mut wait: Wait<'_>,
        mut op: impl FnMut() -> io::Result<R>,
        spent: impl Fn(&R) -> bool,
    ) -> Poll<io::Result<R>> {
        loop {
            let ready = match &mut wait {
                Wait::Own => self.poll_ready(direction, cx),
                Wait::Shared(id) => self.poll_ready_shared(direction, cx, id),
            };
            let ev = match ready {
                Poll::Ready(ev) if ev.is_shutdown() => return Poll::Ready(Err(loop_closed())),
                Poll::Ready(ev) => ev,
                Poll::Pending => return Poll::Pending,
            };
            match op() {
                Ok(r) => {
                    if spent(&r) {
                        self.clear_spent(direction, ev);
                    }
                    return Poll::Ready(Ok(r));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.clear(direction, ev);
                    let only_final = |now: ReadyEvent| now.tick == ev.tick;
                    if self.ready_now(direction).is_some_and(only_final) {
                        // Only a final bit (a hang-up) is left, and the call
                        // still would block: wait for the next edge rather
                        // than retry forever. Registered first, then checked
                        // again: an edge that came in between woke whoever
                        // was registered before, not us.
                        let no_new_edge = match &mut wait {
                            Wait::Own => {
                                self.register(direction, cx.waker());
                                self.ready_now(direction).is_some_and(only_final)
                            }
                            Wait::Shared(id) => {
                                self.wait_shared(direction, cx, id, Some(ev.tick)).is_none()
                            }
                        };
                        if no_new_edge {
                            return Poll::Pending;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// An operation in `direction` returned `WouldBlock` after `event` was
    /// observed: clears the direction's readiness, unless a new event has
    /// arrived since (then the bit stays, and the caller tries again).
    pub(crate) fn clear(&self, direction: Direction, event: ReadyEvent) {
        self.clear_bits(direction.clears(), event);
    }

    /// A transfer in `direction` moved less than asked after `event` was
    /// observed, so the socket is drained (or full): clears the readiness
    /// bit only. An error report or a hang-up stays, for the next call to
    /// meet (no new edge would announce it again).
    pub(crate) fn clear_spent(&self, direction: Direction, event: ReadyEvent) {
        let bit = match direction {
            Direction::Read => READABLE,
            Direction::Write => WRITABLE,
        };
        self.clear_bits(bit, event);
    }

    fn clear_bits(&self, bits: usize, event: ReadyEvent) {
        let mut cur = self.readiness.load(Ordering::Acquire);
        loop {
            if cur >> TICK_SHIFT != event.tick {
                return;
            }
            let next = cur & !bits;
            if next == cur {
                return;
            }
            match self.readiness.compare_exchange_weak(
                cur,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Swaps the callback face.
    ///
    /// # Safety
    /// The caller holds the core of the loop this registration belongs to
    /// (runs it, or closes it): `run_io` is the slot's only other user,
    /// and runs there too.
    unsafe fn swap_handler(
        &self,
        handler: Option<Box<dyn IoHandler>>,
    ) -> Option<Box<dyn IoHandler>> {
        // Safety: the caller's contract.
        self.handler
            .with_mut(|h| unsafe { std::mem::replace(&mut *h, handler) })
    }

    /// Registers `waker` for the next edge in `direction`.
    fn register(&self, direction: Direction, waker: &std::task::Waker) {
        match direction {
            Direction::Read => self.reader.register(waker),
            Direction::Write => self.writer.register(waker),
        }
    }

    /// The loop closed: marks the source shut down for good (a new tick,
    /// so that no `clear` races it), wakes every waiter, and detaches the
    /// handler for the caller to close.
    ///
    /// # Safety
    /// As [`ScheduledIo::swap_handler`].
    unsafe fn shut_down(&self) -> Option<Box<dyn IoHandler>> {
        self.tick(SHUTDOWN);
        self.reader.wake();
        self.writer.wake();
        self.wake_shared(Direction::Read);
        self.wake_shared(Direction::Write);
        // Safety: the caller's contract.
        unsafe { self.swap_handler(None) }
    }
}

/// Linux's `SO_COOKIE` (not every target's libc names it).
#[cfg(all(
    target_os = "linux",
    not(any(target_arch = "sparc", target_arch = "sparc64"))
))]
const SO_COOKIE: libc::c_int = 57;

/// The kernel's cookie of the socket `fd` (Linux 4.12+): an id unique for
/// the boot, never reused, so it tells one socket from a later one that
/// got the same fd number. `None` for anything else, or where unknown.
pub(crate) fn socket_cookie(fd: RawFd) -> Option<u64> {
    #[cfg(all(
        target_os = "linux",
        not(any(target_arch = "sparc", target_arch = "sparc64"))
    ))]
    {
        let mut cookie: u64 = 0;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        // Safety: getsockopt writes at most `len` bytes into `cookie`,
        // which we own; `fd` is only read.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                SO_COOKIE,
                (&mut cookie as *mut u64).cast(),
                &mut len,
            )
        };
        (r == 0 && len as usize == std::mem::size_of::<u64>()).then_some(cookie)
    }
    #[cfg(not(all(
        target_os = "linux",
        not(any(target_arch = "sparc", target_arch = "sparc64"))
    )))]
    {
        let _ = fd;
        None
    }
}

/// A registration's mio token: the slot's generation (never 0, so the
/// token cannot be an fd number of the `add_reader` table, whose tokens
/// are the numbers themselves) in the high half, the slot index in the
/// low half.
fn token(index: u32, generation: u32) -> mio::Token {
    mio::Token(((generation as usize) << 32) | index as usize)
}

fn parts(token: mio::Token) -> (u32, u32) {
    ((token.0 & 0xffff_ffff) as u32, (token.0 >> 32) as u32)
}

/// The token of the loop's own eventfd waker. The poller's token space
/// is shared three ways: this one, registrations of this layer (a
/// generation in the high half), and the fd numbers of the `add_reader`
/// table (`reactor`).
pub(crate) const WAKER_TOKEN: mio::Token = mio::Token(usize::MAX);

/// Whether a token belongs to this layer (and not to the `add_reader`
/// table or the loop's waker).
pub(crate) fn is_registration(token: mio::Token) -> bool {
    token.0 >> 32 != 0 && token != WAKER_TOKEN
}

struct Slot {
    generation: u32,
    io: Option<Arc<ScheduledIo>>,
}

/// The loop's registrations (owned by its core; loop thread only).
pub(crate) struct IoSet {
    registry: Arc<mio::Registry>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    /// Sockets the loop does not own, registered for `sock_*` waits and
    /// kept for the next wait on the same socket (see
    /// [`IoSet::borrow_socket`]), by fd number.
    borrowed: std::collections::HashMap<std::os::fd::RawFd, Borrowed>,
    /// `borrowed`'s size at which stale entries are next swept out.
    sweep_at: usize,
}

/// A socket registered for `sock_*` waits: its identity (the kernel's
/// socket cookie, unique for the boot and never reused) and its slot.
struct Borrowed {
    cookie: u64,
    token: mio::Token,
}

/// The fewest borrowed sockets at which a sweep runs.
const SWEEP_MIN: usize = 64;

impl IoSet {
    pub(crate) fn new(registry: mio::Registry) -> IoSet {
        IoSet {
            registry: Arc::new(registry),
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            borrowed: std::collections::HashMap::new(),
            sweep_at: SWEEP_MIN,
        }
    }

    /// Registered sources the loop owns (transports, servers, waits of
    /// evloop's own): sockets kept registered for `sock_*` waits are not
    /// counted.
    pub(crate) fn len(&self) -> usize {
        self.live - self.borrowed.len()
    }

    /// Whether anything at all is in the poller through this set, kept
    /// `sock_*` registrations included (the loop must then sleep in the
    /// poller, not on a futex).
    pub(crate) fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Registers `fd` for reading and writing, edge-triggered, for the
    /// life of the returned [`Registration`]; `sched` is the loop (to free
    /// the slot when the registration is dropped elsewhere). A socket kept
    /// registered for `sock_*` waits gives way: its registration goes, so
    /// that its new owner (a transport made from a socket that
    /// `sock_connect` connected, say) can register it.
    pub(crate) fn register(
        &mut self,
        fd: RawFd,
        sched: Arc<dyn Schedule>,
    ) -> io::Result<Registration> {
        let (tok, io) = match self.add(fd) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && self.yield_borrowed(fd) => {
                self.add(fd)?
            }
            other => other?,
        };
        Ok(Registration {
            io,
            token: tok,
            registry: self.registry.clone(),
            sched,
            deregistered: false,
        })
    }

    /// Takes a slot and adds `fd` to the poller under its token.
    fn add(&mut self, fd: RawFd) -> io::Result<(mio::Token, Arc<ScheduledIo>)> {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(self.slots.len())
                    .map_err(|_| io::Error::other("too many registered sources"))?;
                self.slots.push(Slot {
                    generation: 0,
                    io: None,
                });
                i
            }
        };
        let slot = &mut self.slots[index as usize];
        // Generations run 1..u32::MAX (u32::MAX would collide with the
        // waker's token).
        slot.generation = if slot.generation >= u32::MAX - 1 {
            1
        } else {
            slot.generation + 1
        };
        let tok = token(index, slot.generation);
        let interest = mio::Interest::READABLE | mio::Interest::WRITABLE;
        if let Err(e) = self
            .registry
            .register(&mut mio::unix::SourceFd(&fd), tok, interest)
        {
            self.free.push(index);
            return Err(e);
        }
        let io = Arc::new(ScheduledIo::new());
        slot.io = Some(io.clone());
        self.live += 1;
        Ok((tok, io))
    }

    /// The registration of the socket `fd` for `sock_*` waits: the one kept
    /// from an earlier wait if `fd` is still that socket (`cookie`, its
    /// socket cookie, says), or a new one. The socket itself is registered,
    /// not a duplicate, so that its owner's `close` closes it; when it is
    /// closed the kernel drops it from the poller, and its entry here goes
    /// at the next wait on a socket with its fd number, or at a sweep.
    /// Error: the poller refused (`EEXIST`: the fd is watched otherwise,
    /// by `add_reader` or a transport; the caller then waits on a
    /// duplicate).
    pub(crate) fn borrow_socket(&mut self, fd: RawFd, cookie: u64) -> io::Result<Arc<ScheduledIo>> {
        if let Some(b) = self.borrowed.get(&fd) {
            if b.cookie == cookie {
                if let Some(io) = self.lookup_token(b.token) {
                    return Ok(io.clone());
                }
            }
            // Another socket now has the number: the old one was closed.
            self.forget_borrowed(fd);
        }
        if self.borrowed.len() >= self.sweep_at {
            self.sweep();
        }
        let (token, io) = self.add(fd)?;
        self.borrowed.insert(fd, Borrowed { cookie, token });
        Ok(io)
    }

    /// Drops `fd`'s borrowed entry (its slot, not its poller entry: the
    /// socket it was is closed, or not ours to touch).
    fn forget_borrowed(&mut self, fd: RawFd) {
        if let Some(b) = self.borrowed.remove(&fd) {
            drop(self.free(b.token));
        }
    }

    /// `fd` could not be added because it is registered: if that is our
    /// own `sock_*` registration of the same socket, removes it (from the
    /// poller too) and says so.
    fn yield_borrowed(&mut self, fd: RawFd) -> bool {
        let Some(b) = self.borrowed.get(&fd) else {
            return false;
        };
        if socket_cookie(fd) != Some(b.cookie) {
            return false;
        }
        let _ = self.registry.deregister(&mut mio::unix::SourceFd(&fd));
        self.forget_borrowed(fd);
        true
    }

    /// Drops the borrowed entries whose fd numbers no longer hold their
    /// socket; the next sweep waits until twice as many remain.
    fn sweep(&mut self) {
        let stale: Vec<RawFd> = self
            .borrowed
            .iter()
            .filter(|(fd, b)| socket_cookie(**fd) != Some(b.cookie))
            .map(|(fd, _)| *fd)
            .collect();
        for fd in stale {
            self.forget_borrowed(fd);
        }
        self.sweep_at = (self.borrowed.len() * 2).max(SWEEP_MIN);
    }

    /// Frees the slot of `token`, if it is still that registration's.
    fn free(&mut self, token: mio::Token) -> Option<Arc<ScheduledIo>> {
        let (index, generation) = parts(token);
        let slot = self.slots.get_mut(index as usize)?;
        if slot.generation != generation {
            return None;
        }
        let io = slot.io.take()?;
        self.free.push(index);
        self.live -= 1;
        Some(io)
    }

    /// Records an event for a registration (stale tokens are ignored) and
    /// queues its handler, if it has one.
    ///
    /// Finds the registration an event is for (stale tokens: none) and the
    /// readiness bits it reports. The caller records them with
    /// [`ScheduledIo::set_readiness`] once this set is no longer borrowed:
    /// that wakes futures, whose wakers are foreign code that may drop or
    /// create registrations.
    pub(crate) fn lookup(&self, event: &mio::event::Event) -> Option<(Arc<ScheduledIo>, usize)> {
        let io = self.lookup_token(event.token())?;
        let mut bits = 0;
        if event.is_readable() {
            bits |= READABLE;
        }
        if event.is_writable() {
            bits |= WRITABLE;
        }
        if event.is_read_closed() {
            bits |= READ_CLOSED;
        }
        if event.is_write_closed() {
            bits |= WRITE_CLOSED;
        }
        if event.is_error() {
            bits |= ERROR;
        }
        Some((io.clone(), bits))
    }

    /// The registration `token` stands for, unless its slot was freed
    /// (and perhaps reused, with a new generation) since.
    pub(crate) fn lookup_token(&self, token: mio::Token) -> Option<&Arc<ScheduledIo>> {
        let (index, generation) = parts(token);
        let slot = self.slots.get(index as usize)?;
        match (slot.generation == generation, &slot.io) {
            (true, Some(io)) => Some(io),
            _ => None,
        }
    }

    /// The loop closes: every slot is freed, and its registration handed
    /// to the caller for [`shut_down_all`] (outside this set's borrow).
    pub(crate) fn take_all(&mut self) -> Vec<Arc<ScheduledIo>> {
        let taken = self
            .slots
            .iter_mut()
            .filter_map(|slot| slot.io.take())
            .collect();
        self.free.clear();
        self.slots.clear();
        self.borrowed.clear();
        self.live = 0;
        taken
    }
}

/// Shuts down registrations the closing loop took from its set: waiters
/// are woken for good, handlers detached and returned for the caller to
/// close.
///
/// # Safety
/// The caller holds the core of the loop the registrations belong to.
pub(crate) unsafe fn shut_down_all(taken: Vec<Arc<ScheduledIo>>) -> Vec<Box<dyn IoHandler>> {
    taken
        .into_iter()
        // Safety: the caller's contract.
        .filter_map(|io| unsafe { io.shut_down() })
        .collect()
}

/// A source's registration, kept by the source for its whole life. The
/// source must call [`Registration::deregister`] before it closes its fd;
/// dropping the registration frees its slot in the loop but does not
/// deregister (see the module docs).
pub(crate) struct Registration {
    io: Arc<ScheduledIo>,
    token: mio::Token,
    registry: Arc<mio::Registry>,
    sched: Arc<dyn Schedule>,
    deregistered: bool,
}

impl Registration {
    pub(crate) fn io(&self) -> &Arc<ScheduledIo> {
        &self.io
    }

    /// The registration's token (slot and generation).
    #[cfg(loom)]
    pub(crate) fn token(&self) -> mio::Token {
        self.token
    }

    /// Attaches the callback face (a transport's handler). Error:
    /// [`Error::WrongThread`](crate::Error::WrongThread) unless called
    /// where the registration's loop runs.
    pub(crate) fn set_handler(&self, handler: Box<dyn IoHandler>) -> Result<(), crate::Error> {
        if !crate::sched::holds_core(self.sched.id()) {
            return Err(crate::Error::WrongThread);
        }
        // Safety: checked just above; the handler slot is the loop's.
        crate::util::drop_quietly(
            unsafe { self.io.swap_handler(Some(handler)) },
            "an I/O handler",
        );
        Ok(())
    }

    /// Attaches a handler that owns this registration (built by `make`
    /// from it): for a source whose handler is its only owner, such as a
    /// child's pidfd. The cycle through the loop's slab ends when the
    /// handler detaches (returns `false` from `ready`) or the loop closes.
    /// Error: as [`Registration::set_handler`].
    pub(crate) fn attach_owned(
        self,
        make: impl FnOnce(Registration) -> Box<dyn IoHandler>,
    ) -> Result<(), crate::Error> {
        if !crate::sched::holds_core(self.sched.id()) {
            return Err(crate::Error::WrongThread);
        }
        let io = self.io.clone();
        let handler = make(self);
        // Safety: checked just above; the handler slot is the loop's.
        crate::util::drop_quietly(unsafe { io.swap_handler(Some(handler)) }, "an I/O handler");
        Ok(())
    }

    /// Waits until the source is ready in `direction`. Error: the loop was
    /// closed.
    pub(crate) fn poll_ready(
        &self,
        direction: Direction,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<ReadyEvent>> {
        match self.io.poll_ready(direction, cx) {
            Poll::Ready(ev) if ev.is_shutdown() => Poll::Ready(Err(loop_closed())),
            Poll::Ready(ev) => Poll::Ready(Ok(ev)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Runs `op` (a non-blocking system call) once the source is ready in
    /// `direction`; on `WouldBlock` clears the readiness and waits again.
    pub(crate) fn poll_io<R>(
        &self,
        direction: Direction,
        cx: &mut Context<'_>,
        op: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        self.poll_op(direction, cx, op, |_| false)
    }

    /// [`Registration::poll_io`] for a read or write of `len` bytes: a
    /// transfer shorter than asked means the socket is drained (a read) or
    /// full (a write), so the readiness it was attempted on is cleared at
    /// once, saving the next call the `WouldBlock` it would return (tokio
    /// does the same). An event that arrived meanwhile keeps it set.
    pub(crate) fn poll_transfer(
        &self,
        direction: Direction,
        cx: &mut Context<'_>,
        len: usize,
        op: impl FnMut() -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        self.poll_op(direction, cx, op, |&n| n > 0 && n < len)
    }

    fn poll_op<R>(
        &self,
        direction: Direction,
        cx: &mut Context<'_>,
        op: impl FnMut() -> io::Result<R>,
        spent: impl Fn(&R) -> bool,
    ) -> Poll<io::Result<R>> {
        self.io.poll_op(direction, cx, op, spent)
    }

    /// Waits, as one of any number of tasks, until the source is ready in
    /// `direction` (see [`ScheduledIo::poll_ready_shared`]). Error: the
    /// loop was closed.
    pub(crate) fn poll_ready_shared(
        &self,
        direction: Direction,
        cx: &mut Context<'_>,
        id: &mut Option<u64>,
    ) -> Poll<io::Result<ReadyEvent>> {
        match self.io.poll_ready_shared(direction, cx, id) {
            Poll::Ready(ev) if ev.is_shutdown() => Poll::Ready(Err(loop_closed())),
            Poll::Ready(ev) => Poll::Ready(Ok(ev)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Runs `op` if the source is ready in `direction` now, without
    /// waiting: `WouldBlock` if it is not, or if `op` says so (then the
    /// readiness is cleared, as after a waited operation). `spent` as for
    /// [`ScheduledIo::poll_op`].
    pub(crate) fn try_io<R>(
        &self,
        direction: Direction,
        op: impl FnOnce() -> io::Result<R>,
        spent: impl Fn(&R) -> bool,
    ) -> io::Result<R> {
        let Some(ev) = self.io.ready_now(direction) else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        if ev.is_shutdown() {
            return Err(loop_closed());
        }
        match op() {
            Ok(r) => {
                if spent(&r) {
                    self.io.clear_spent(direction, ev);
                }
                Ok(r)
            }
            Err(e) => {
                if e.kind() == io::ErrorKind::WouldBlock {
                    self.io.clear(direction, ev);
                }
                Err(e)
            }
        }
    }

    /// Removes `source` from the poller (it must be the registered one).
    /// Call it before closing the source's fd.
    pub(crate) fn deregister(&mut self, source: &mut dyn mio::event::Source) {
        if !self.deregistered {
            self.deregistered = true;
            // The loop may be closed already (the poller is gone): ignore.
            let _ = self.registry.deregister(source);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let token = self.token;
        let freed = crate::sched::with_local(self.sched.id(), (), |local, ()| local.free_io(token));
        if freed != Ok(true) {
            // Elsewhere, or busy (a waker dropping us while the loop
            // dispatches): the loop frees the slot when it runs this (a
            // closed loop has freed everything already).
            let _ = self.sched.call_soon(
                std::panic::Location::caller(),
                Box::new(move || {
                    crate::sched::with_any(|_, local| local.free_io(token));
                }),
            );
        }
    }
}

/// Frees `token`'s slot in `set` unless the set is busy (`false`); what
/// the slot held is dropped after the borrow ends (a transport's handler
/// may run user destructors). The core's [`Local::free_io`].
pub(crate) fn free_in(set: &std::cell::RefCell<IoSet>, token: mio::Token) -> bool {
    let Ok(mut borrowed) = set.try_borrow_mut() else {
        return false;
    };
    let freed = borrowed.free(token);
    drop(borrowed);
    drop(freed);
    true
}

/// The error of a wait on a source whose loop closed.
pub(crate) fn loop_closed() -> io::Error {
    io::Error::other(crate::error::Error::Closed)
}
