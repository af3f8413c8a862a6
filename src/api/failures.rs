//! `retry_failed()`: forgetting a table's rejected papers so they are tried again.

use pgrx::prelude::*;

use crate::errors::UserError;
use crate::pg::identity::may_update;
use crate::table::failures::clear_all;
use crate::table::target::resolve;

/// Forgets the configured table's rejected papers, so they are tried again; returns how many.
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn retry_failed() -> i64 {
    let target = resolve().unwrap_or_else(|e| e.raise());
    if !may_update(target.relid) {
        UserError::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied for table {}", target.names.table),
        )
        .detail("Forgetting a table's rejected papers needs the right to update the table.")
        .raise();
    }
    clear_all(&target).unwrap_or_else(|e| e.raise())
}
