//! The one way this extension waits: on the process latch, for at most a given time, acting on
//! interrupts afterwards. A cancel or SIGTERM ends the wait at once (`CHECK_FOR_INTERRUPTS`
//! raises), and the postmaster's death ends the process.

use std::time::{Duration, Instant};

use pgrx::pg_sys;

/// Longest single wait of [`sleep`], so a cancel is acted on promptly even when nobody sets
/// the latch.
const STEP: Duration = Duration::from_millis(20);

/// Waits until the latch is set or `timeout` passes, then acts on interrupts.
pub fn wait(timeout: Duration) {
    // SAFETY: the standard latch wait of a backend or background worker.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            timeout.as_millis().clamp(1, i32::MAX as u128) as std::ffi::c_long,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    pg_sys::check_for_interrupts!();
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
