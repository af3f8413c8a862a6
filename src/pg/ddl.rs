//! Running DDL the extension builds (triggers, indexes) with the extension's own search_path, so
//! a trigger's WHEN clause or an index predicate resolves its operators in `pg_catalog`, whatever
//! the caller's path holds.

use pgrx::prelude::*;

use crate::errors::UserError;
use crate::pg::identity::with_catalog_search_path;

/// Runs `statement`; `what` names it in the error (`could not create the index: ...`).
pub fn run_ddl(statement: &str, what: &str) -> Result<(), UserError> {
    with_catalog_search_path(|| Spi::run(statement))
        .map_err(|e| UserError::new(pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("could not {what}: {e}")))
}
