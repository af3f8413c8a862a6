//! `retry_failed()`: forgetting a table's rejected papers so they are tried again.

use pgrx::prelude::*;

use crate::pg::identity::Acting;
use crate::table::failures::clear_all;
use crate::table::rights::check_may_write;
use crate::table::target::resolve;

/// Forgets the configured table's rejected papers, so they are tried again; returns how many.
/// Only a role that may write the table's embeddings may.
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn retry_failed() -> i64 {
    let target = resolve().unwrap_or_else(|e| e.raise());
    check_may_write(&target, Acting::Caller).unwrap_or_else(|e| e.raise());
    clear_all(&target).unwrap_or_else(|e| e.raise())
}
