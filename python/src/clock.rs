//! The loop's clock: `loop.time()` is `time.monotonic()` (CLOCK_MONOTONIC),
//! the clock evloop's `Instant` deadlines use on Linux. Floats and
//! `Instant`s are converted through one base pair read at start-up, so a
//! deadline converted back and forth stays the same float.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Seconds on CLOCK_MONOTONIC, as `time.monotonic()` returns them.
#[inline]
pub(crate) fn monotonic() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Safety: a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// An `Instant` and the float time of the same moment (the float is the
/// midpoint of two clock reads around the `Instant`).
fn base() -> &'static (Instant, f64) {
    static BASE: OnceLock<(Instant, f64)> = OnceLock::new();
    BASE.get_or_init(|| {
        let before = monotonic();
        let instant = Instant::now();
        let after = monotonic();
        (instant, (before + after) / 2.0)
    })
}

/// How far in the future a deadline that cannot be represented (infinite,
/// NaN, absurdly far) is put: it never fires in practice.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The `Instant` of float time `when` on the loop's clock.
pub(crate) fn to_instant(when: f64) -> Instant {
    let (instant, secs) = *base();
    let delta = when - secs;
    if delta >= 0.0 {
        Duration::try_from_secs_f64(delta)
            .ok()
            .filter(|d| *d < FAR_FUTURE)
            .and_then(|d| instant.checked_add(d))
            .unwrap_or(instant + FAR_FUTURE)
    } else if delta.is_nan() {
        instant + FAR_FUTURE
    } else {
        // A deadline in the past: due at once, still ordered by `when`.
        Duration::try_from_secs_f64(-delta)
            .ok()
            .and_then(|d| instant.checked_sub(d))
            .unwrap_or(instant)
    }
}
