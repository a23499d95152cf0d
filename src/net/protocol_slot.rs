//! The protocol slot: how every transport (stream, datagram, subprocess)
//! calls its protocol, written once.
//!
//! A transport's protocol lives in the transport's [`LoopCell`] state,
//! and user code must never run inside that cell. So a callback takes the
//! protocol out of its slot, runs it outside the cell under
//! `catch_unwind`, and puts it back, unless it was replaced meanwhile
//! (`set_protocol` from inside the callback) or the connection ended.
//! While it is out, the protocol is *busy*: a call that comes due then (a
//! `write` inside `data_received` crossing the high-water mark owes
//! `pause_writing`) cannot be made re-entrantly, as asyncio would, because
//! the protocol is `&mut` inside its callback. It is *owed* instead and
//! made as soon as the running callback returns, in order; a call that
//! undoes the one owed just before it (a resume after a pause) cancels
//! it, since the protocol never saw the first.
//!
//! The slot also keeps the order asyncio guarantees: `connection_made`
//! once and first (calls due before it are owed until it ran),
//! `connection_lost` once and last (calls still owed are made before it),
//! and never `connection_lost` without `connection_made`.
//!
//! A transport plugs in through [`SlotOwner`]: where its cell and slot
//! are, how to make an owed call, and what a panicking callback does to
//! the connection.

use crate::error::PanicPayload;
use crate::event_loop::shared::Shared;
use crate::exception::{ExceptionContext, TransportInfo};
use crate::loop_cell::LoopCell;
use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

/// A protocol call that may have to wait for a busy protocol.
pub(crate) trait OwedCall {
    /// The protocol method's name (`"pause_writing"`), for reports.
    fn name(&self) -> &'static str;

    /// Whether `next`, owed right after `self`, undoes it (a resume after
    /// a pause): then neither is made.
    fn cancelled_by(&self, next: &Self) -> bool;
}

/// Where the protocol is in its life. Each step is taken once.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// `connection_made` has not run: owed calls wait for it.
    Unmade,
    /// `connection_made` ran (or is running): from here on the protocol
    /// hears `connection_lost`, whatever happens.
    Made,
    /// `connection_lost` ran, or the protocol was abandoned: the slot is
    /// empty for good and calls are dropped.
    Ended,
}

/// A transport's protocol and the calls it owes it.
pub(crate) struct ProtocolSlot<P, C> {
    /// `None` while one of its callbacks runs, and once ended.
    protocol: Option<P>,
    phase: Phase,
    owed: VecDeque<C>,
}

impl<P, C: OwedCall> ProtocolSlot<P, C> {
    pub(crate) fn new(protocol: P) -> Self {
        ProtocolSlot {
            protocol: Some(protocol),
            phase: Phase::Unmade,
            owed: VecDeque::new(),
        }
    }

    /// Whether `connection_made` was delivered (or is being delivered).
    pub(crate) fn is_made(&self) -> bool {
        self.phase == Phase::Made
    }

    /// Whether the protocol heard `connection_lost` or was abandoned.
    pub(crate) fn has_ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// The protocol, if it is in its slot (not busy, not ended).
    pub(crate) fn peek(&self) -> Option<&P> {
        self.protocol.as_ref()
    }

    /// Installs `protocol` (asyncio's `set_protocol`): from inside one of
    /// the old protocol's callbacks too, whose protocol is then dropped
    /// when the callback returns. Returns what the caller must drop
    /// outside the cell: the old protocol, or the new one if the slot
    /// has ended.
    pub(crate) fn replace(&mut self, protocol: P) -> Option<P> {
        match self.phase {
            Phase::Ended => Some(protocol),
            Phase::Unmade | Phase::Made => self.protocol.replace(protocol),
        }
    }

    /// Ends the slot without `connection_lost` (a subprocess whose loop
    /// closed). Returns the protocol (if it is not busy) and the calls it
    /// was owed, to drop outside the cell.
    pub(crate) fn abandon(&mut self) -> (Option<P>, VecDeque<C>) {
        self.phase = Phase::Ended;
        (self.protocol.take(), std::mem::take(&mut self.owed))
    }

    fn owe(&mut self, call: C) {
        match self.owed.back() {
            Some(last) if last.cancelled_by(&call) => {
                self.owed.pop_back();
            }
            _ => self.owed.push_back(call),
        }
    }
}

/// A transport that keeps its protocol in a [`ProtocolSlot`] inside a
/// [`LoopCell`].
pub(crate) trait SlotOwner: Sized {
    type Protocol;
    type Call: OwedCall;
    type State;

    /// How reports name the protocol ("protocol", asyncio's word for a
    /// transport's).
    const NAME: &'static str;

    fn cell(&self) -> &LoopCell<Self::State>;

    /// The loop, for reports.
    fn shared(&self) -> &Shared;

    fn slot(state: &mut Self::State) -> &mut ProtocolSlot<Self::Protocol, Self::Call>;

    /// Makes an owed call on the protocol.
    fn make(protocol: &mut Self::Protocol, call: Self::Call);

    /// One of the protocol's callbacks (`what`) panicked: report it, and
    /// close the connection if that is the transport's rule.
    fn panicked(self: &Arc<Self>, what: &'static str, payload: PanicPayload);
}

/// Runs `f` on the protocol, taken out of its slot, then makes the calls
/// owed meanwhile. `None` if the protocol is not available (busy, or
/// ended) or `f` panicked (reported through [`SlotOwner::panicked`]).
pub(crate) fn with<O: SlotOwner, R>(
    owner: &Arc<O>,
    what: &'static str,
    f: impl FnOnce(&mut O::Protocol) -> R,
) -> Option<R> {
    let protocol = owner
        .cell()
        .with(|s| O::slot(s).protocol.take())
        .flatten()?;
    run(owner, protocol, what, f)
}

/// Delivers `connection_made` through `f`: the slot is made first, so
/// that `connection_lost` follows whatever `f` does, then the calls owed
/// until now are made. `false` if `f` panicked or the protocol was not
/// there.
pub(crate) fn connection_made<O: SlotOwner>(
    owner: &Arc<O>,
    f: impl FnOnce(&mut O::Protocol),
) -> bool {
    let protocol = owner
        .cell()
        .with(|s| {
            let slot = O::slot(s);
            if slot.phase != Phase::Unmade {
                return None;
            }
            slot.phase = Phase::Made;
            slot.protocol.take()
        })
        .flatten();
    match protocol {
        Some(p) => run(owner, p, "connection_made", f).is_some(),
        None => false,
    }
}

/// Makes `call` now if the protocol is free, or owes it until it is (see
/// the module docs); drops it once the slot has ended.
pub(crate) fn call<O: SlotOwner>(owner: &Arc<O>, call: O::Call) {
    let name = call.name();
    let call = Cell::new(Some(call));
    call_with(
        owner,
        name,
        |p| {
            if let Some(c) = call.take() {
                O::make(p, c);
            }
        },
        || call.take(),
    );
}

/// [`call`] for a call whose owed form must own what `now` borrows (a
/// subprocess's pipe data, copied only if the protocol is busy): `now`
/// runs on the protocol if it is free, else `later()` is owed.
pub(crate) fn call_with<O: SlotOwner>(
    owner: &Arc<O>,
    what: &'static str,
    now: impl FnOnce(&mut O::Protocol),
    later: impl FnOnce() -> Option<O::Call>,
) {
    let mut later = Some(later);
    let outcome = owner.cell().with(|s| {
        let slot = O::slot(s);
        let free = slot.phase == Phase::Made && slot.owed.is_empty();
        match (slot.phase, free.then(|| slot.protocol.take()).flatten()) {
            (_, Some(p)) => Ok(p),
            (Phase::Ended, None) => Err(later.take().and_then(|l| l())),
            (Phase::Unmade | Phase::Made, None) => {
                if let Some(call) = later.take().and_then(|l| l()) {
                    slot.owe(call);
                }
                Err(None)
            }
        }
    });
    match outcome {
        Some(Ok(protocol)) => {
            run(owner, protocol, what, now);
        }
        // Dropped outside the cell: it may carry a user's error.
        Some(Err(dropped)) => drop(dropped),
        None => {}
    }
}

/// Delivers `connection_lost` through `f`, after the calls still owed,
/// if the protocol heard `connection_made`; a protocol never told of the
/// connection hears nothing of its end. The slot is empty for good
/// afterwards; a panic in `f` is reported (asyncio: "Exception in
/// callback protocol.connection_lost()"), nothing more can fail.
pub(crate) fn connection_lost<O: SlotOwner>(owner: &Arc<O>, f: impl FnOnce(&mut O::Protocol)) {
    make_owed(owner);
    let taken = owner.cell().with(|s| {
        let slot = O::slot(s);
        let made = slot.phase == Phase::Made;
        let (protocol, owed) = slot.abandon();
        (protocol.filter(|_| made), owed)
    });
    let (protocol, owed) = taken.unwrap_or((None, VecDeque::new()));
    crate::util::drop_quietly(owed, "a protocol call");
    let Some(mut protocol) = protocol else { return };
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut protocol)));
    crate::util::drop_quietly(protocol, "a protocol");
    if let Err(payload) = outcome {
        owner.shared().report_panic(
            ExceptionContext::new(format!(
                "Exception in callback {}.connection_lost()",
                O::NAME
            )),
            payload,
        );
    }
}

/// Reports a failed protocol callback as asyncio's transports do ("Fatal
/// error: protocol.data_received() call failed.", with the transport),
/// and returns the error the connection is then closed with.
pub(crate) fn report_fatal_panic(
    shared: &Shared,
    what: &'static str,
    payload: PanicPayload,
    transport: TransportInfo,
) -> io::Error {
    shared.report_panic(
        ExceptionContext::new(format!("Fatal error: protocol.{what}() call failed."))
            .with_transport(transport),
        payload,
    );
    io::Error::other(format!("protocol.{what}() panicked"))
}

/// Runs `f` on `protocol` (taken out of the slot by the caller), puts it
/// back, and makes the owed calls.
fn run<O: SlotOwner, R>(
    owner: &Arc<O>,
    protocol: O::Protocol,
    what: &'static str,
    f: impl FnOnce(&mut O::Protocol) -> R,
) -> Option<R> {
    let (outcome, owed) = run_once(owner, protocol, what, f);
    if owed {
        make_owed(owner);
    }
    outcome
}

/// One callback: runs `f` on `protocol` under `catch_unwind` and puts it
/// back unless it was replaced or the slot ended meanwhile. Returns the
/// outcome and whether calls are owed.
fn run_once<O: SlotOwner, R>(
    owner: &Arc<O>,
    mut protocol: O::Protocol,
    what: &'static str,
    f: impl FnOnce(&mut O::Protocol) -> R,
) -> (Option<R>, bool) {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut protocol)));
    let mut protocol = Some(protocol);
    let owed = owner
        .cell()
        .with(|s| {
            let slot = O::slot(s);
            if slot.protocol.is_none() && slot.phase != Phase::Ended {
                slot.protocol = protocol.take();
            }
            !slot.owed.is_empty()
        })
        .unwrap_or(false);
    // Replaced, or the connection ended meanwhile.
    crate::util::drop_quietly(protocol, "a protocol");
    match outcome {
        Ok(r) => (Some(r), owed),
        Err(payload) => {
            owner.panicked(what, payload);
            (None, owed)
        }
    }
}

/// Makes the owed calls, one at a time, while the protocol is free (a
/// call owed by one of them joins the queue behind the rest).
fn make_owed<O: SlotOwner>(owner: &Arc<O>) {
    loop {
        let next = owner
            .cell()
            .with(|s| {
                let slot = O::slot(s);
                if slot.phase != Phase::Made || slot.protocol.is_none() {
                    return None;
                }
                let call = slot.owed.pop_front()?;
                Some((slot.protocol.take()?, call))
            })
            .flatten();
        let Some((protocol, call)) = next else { return };
        let what = call.name();
        run_once(owner, protocol, what, |p| O::make(p, call));
    }
}
