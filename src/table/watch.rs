//! The DDL the extension builds (the watch triggers, indexes), and dropping a watch trigger.
//! The wake-up at commit that the statement trigger asks for is in `at_commit`.

use pgrx::prelude::*;

use crate::errors::UserError;
use crate::table::target::Target;

/// Runs a DDL statement the extension builds (triggers, indexes); `what` names it in the error.
/// It runs with the extension's own search_path, so a trigger's WHEN clause or an index
/// predicate resolves its operators in `pg_catalog`, whatever the caller's path holds.
pub fn run_ddl(statement: &str, what: &str) {
    crate::pg::identity::with_catalog_search_path(|| Spi::run(statement)).unwrap_or_else(|e| {
        UserError::new(pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("could not {what}: {e}")).raise()
    });
}

/// Drops trigger `name` of the papers table when it exists (quietly, unlike DROP IF EXISTS).
pub fn drop_trigger_if_present(target: &Target, name: &str) {
    let exists = crate::pg::identity::with_catalog_search_path(|| {
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
