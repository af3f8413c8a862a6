//! Running work in a subtransaction of its own, so an ERROR it raises (a trigger, a constraint,
//! a lock timeout) rolls back that work alone and comes back as a value.

use std::panic::AssertUnwindSafe;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::errors::UserError;

/// Runs `f` in a new subtransaction: released on success, rolled back (with all `f` did) on an
/// ERROR, which is returned. The memory context and resource owner are the caller's again
/// afterwards, as PL/Python and PL/Perl do around their subtransactions.
pub fn in_subtransaction<R>(f: impl FnOnce() -> R) -> Result<R, UserError> {
    try_in_subtransaction(|| Ok(f()))
}

/// Runs `f` in a new subtransaction that is kept only when `f` returns `Ok`: an `Err` it returns
/// and an ERROR it raises both roll back all it did, and come back as `Err`.
pub fn try_in_subtransaction<R>(f: impl FnOnce() -> Result<R, UserError>) -> Result<R, UserError> {
    subtransaction(true, f)
}

/// Runs `f` in a new subtransaction that is always rolled back, whatever it did: a trial of a
/// statement whose effects must not stay. Returns what `f` returned, or the ERROR it raised.
pub fn rolled_back<R>(f: impl FnOnce() -> Result<R, UserError>) -> Result<R, UserError> {
    subtransaction(false, f)
}

/// Runs `f` in a new subtransaction, released when `keep` and `f` succeeded, else rolled back.
fn subtransaction<R>(keep: bool, f: impl FnOnce() -> Result<R, UserError>) -> Result<R, UserError> {
    // SAFETY: the standard internal-subtransaction sequence; the saved context and owner
    // belong to the enclosing transaction, which outlives the subtransaction.
    let (context, owner) = unsafe {
        let saved = (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner);
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(saved.0);
        saved
    };
    // After an ERROR nothing `f` built is used again: the subtransaction's abort releases it.
    let result = PgTryBuilder::new(AssertUnwindSafe(f))
        .catch_others(|caught| Err(UserError::from_caught(caught)))
        .execute();
    // SAFETY: ends the subtransaction begun above.
    unsafe {
        if keep && result.is_ok() {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
    }
    result
}
