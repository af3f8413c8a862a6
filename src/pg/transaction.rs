//! A background worker's transactions: each piece of work in a transaction of its own, an
//! ERROR inside it caught and rolled back so the worker carries on.

use pgrx::prelude::*;

use crate::errors::UserError;

/// Runs `f` in its own transaction: committed on `Ok`, rolled back on `Err`. An ERROR raised
/// inside (a trigger or constraint of the table, a lock timeout, a cancel) is caught and comes
/// back as `Err` after the rollback, so the worker carries on; the abort also restores the
/// worker's own identity and settings. Only FATAL (SIGTERM, postmaster death) ends the worker.
pub fn in_transaction<R>(f: impl FnOnce() -> Result<R, UserError>) -> Result<R, UserError> {
    // SAFETY: the usual start of a background worker transaction with an active snapshot.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    /// How the transaction's work ended.
    enum Ended<R> {
        Done(R),
        Failed(UserError),
        Raised(UserError),
    }
    // The work's state is not looked at after an ERROR (the transaction is aborted), so
    // unwinding through it is safe.
    let ended = PgTryBuilder::new(std::panic::AssertUnwindSafe(|| match f() {
        Ok(value) => Ended::Done(value),
        Err(error) => Ended::Failed(error),
    }))
    .catch_others(|caught| Ended::Raised(UserError::from_caught(caught)))
    .execute();
    // SAFETY: ends the transaction started above. After a raised ERROR the snapshot stack (and
    // all else the failed statement left) is released by the abort itself.
    unsafe {
        match &ended {
            Ended::Done(_) => {
                pg_sys::PopActiveSnapshot();
                pg_sys::CommitTransactionCommand();
            }
            Ended::Failed(_) => {
                pg_sys::PopActiveSnapshot();
                pg_sys::AbortCurrentTransaction();
            }
            Ended::Raised(_) => pg_sys::AbortCurrentTransaction(),
        }
        pg_sys::pgstat_report_stat(false);
    }
    match ended {
        Ended::Done(value) => Ok(value),
        Ended::Failed(error) | Ended::Raised(error) => Err(error),
    }
}

/// Refuses to run `what` in a REPEATABLE READ or SERIALIZABLE transaction: those keep one
/// snapshot, so papers another session locked, wrote or claimed for a batch since the transaction
/// began would look pending still and be paid for twice.
pub fn refuse_snapshot_isolation(what: &str) -> Result<(), UserError> {
    // SAFETY: reads this backend's transaction isolation level.
    let level = unsafe { pg_sys::XactIsoLevel };
    if level < pg_sys::XACT_REPEATABLE_READ as i32 {
        return Ok(());
    }
    let name = if level == pg_sys::XACT_SERIALIZABLE as i32 {
        "SERIALIZABLE"
    } else {
        "REPEATABLE READ"
    };
    Err(UserError::new(
        pgrx::PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_STATE,
        format!("{what} cannot run in a {name} transaction"),
    )
    .detail("Its snapshot would not see papers other sessions embed or claim meanwhile, which would then be paid for twice.")
    .hint("Call it in a READ COMMITTED transaction (the default), for example outside BEGIN ... COMMIT."))
}
