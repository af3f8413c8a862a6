//! Wake-up on new papers: the statement trigger `doctrove_embed.wake_workers()` marks the
//! transaction, and a transaction callback sets every worker's latch once it commits (never
//! before: a worker woken earlier would not see the rows yet, and an aborted insert wakes no one).

use std::cell::Cell;

use pgrx::prelude::*;

use crate::errors::UserError;
use crate::shared_state;
use crate::target::Target;

thread_local! {
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
    static WAKE_AT_COMMIT: Cell<bool> = const { Cell::new(false) };
}

#[pg_guard]
unsafe extern "C-unwind" fn on_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT => {
            if WAKE_AT_COMMIT.with(|w| w.replace(false)) {
                shared_state::wake_all_workers();
            }
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => WAKE_AT_COMMIT.with(|w| w.set(false)),
        _ => {}
    }
}

/// Asks for the workers to be woken when the current transaction commits.
pub fn wake_workers_at_commit() {
    if !shared_state::available() {
        return; // no workers in this server
    }
    if !CALLBACK_REGISTERED.with(|r| r.replace(true)) {
        // SAFETY: registers a callback that lives as long as the library.
        unsafe { pg_sys::RegisterXactCallback(Some(on_transaction_end), std::ptr::null_mut()) };
    }
    WAKE_AT_COMMIT.with(|w| w.set(true));
}

/// Runs a DDL statement the extension builds (triggers, indexes); `what` names it in the error.
/// It runs with the extension's own search_path, so a trigger's WHEN clause or an index
/// predicate resolves its operators in `pg_catalog`, whatever the caller's path holds.
pub fn run_ddl(statement: &str, what: &str) {
    crate::identity::with_catalog_search_path(|| Spi::run(statement)).unwrap_or_else(|e| {
        UserError::new(pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("could not {what}: {e}")).raise()
    });
}

/// Drops trigger `name` of the papers table when it exists (quietly, unlike DROP IF EXISTS).
pub fn drop_trigger_if_present(target: &Target, name: &str) {
    let exists = crate::identity::with_catalog_search_path(|| {
        Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = $1 AND tgname = $2)",
            &[target.relid.into(), name.into()],
        )
    })
    .ok()
    .flatten()
    .unwrap_or(false);
    if exists {
        run_ddl(&target.names.drop_trigger(name), "drop the trigger");
    }
}
