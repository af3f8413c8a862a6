//! The one way this extension waits: on the process latch, for at most a given time, acting on
//! interrupts afterwards. A cancel or SIGTERM ends the wait at once (`CHECK_FOR_INTERRUPTS`
//! raises), and the postmaster's death ends the process.
//!
//! Every wait notes whether it found the latch set ([`take_set`]): a worker woken for new papers
//! while it waited for something else (an HTTP answer, a retry's pause) still looks again.

use std::cell::Cell;
use std::time::{Duration, Instant};

use pgrx::pg_sys;

/// Longest single wait of [`sleep`], so a cancel is acted on promptly even when nobody sets
/// the latch.
const STEP: Duration = Duration::from_millis(20);

thread_local! {
    static SET_SEEN: Cell<bool> = const { Cell::new(false) };
}

/// Waits until the latch is set or `timeout` passes, then acts on interrupts.
pub fn wait(timeout: Duration) {
    // SAFETY: the standard latch wait of a backend or background worker.
    let events = unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            timeout.as_millis().clamp(1, i32::MAX as u128) as std::ffi::c_long,
            pg_sys::PG_WAIT_EXTENSION,
        )
    };
    // Reset only a latch this wait saw set: one set after a timeout stays set for the next wait.
    if events & pg_sys::WL_LATCH_SET as i32 != 0 {
        // SAFETY: resets this process's own latch.
        unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
        SET_SEEN.with(|seen| seen.set(true));
    }
    pg_sys::check_for_interrupts!();
}

/// Whether a wait found the latch set since the last call.
pub fn take_set() -> bool {
    SET_SEEN.with(|seen| seen.replace(false))
}

/// Waits one short step (for a loop that polls something else between steps).
pub fn step() {
    wait(STEP);
}

/// Sleeps the whole of `duration` in short steps, acting on interrupts between them.
pub fn sleep(duration: Duration) {
    let end = Instant::now() + duration;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        wait(left.min(STEP));
    }
}
