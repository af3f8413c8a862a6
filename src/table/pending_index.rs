//! The partial index over pending papers: finding it, warning when it is missing, creating it,
//! and steering the count and the batch fetch onto it.

use pgrx::prelude::*;

use crate::errors::UserError;
use crate::table::target::{Target, SETTINGS_JOB};

/// The name of a valid partial index on the table whose predicate holds
/// `<embedding> IS NULL`, if there is one.
pub fn find(target: &Target) -> Option<String> {
    crate::pg::identity::with_catalog_search_path(|| find_with_catalog_path(target))
}

fn find_with_catalog_path(target: &Target) -> Option<String> {
    Spi::get_one_with_args::<String>(
        "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = $1 AND indisvalid AND indpred IS NOT NULL \
         AND position(quote_ident($2) || ' IS NULL' IN pg_get_expr(indpred, indrelid)) > 0 \
         ORDER BY indexrelid LIMIT 1",
        &[target.relid.into(), target.names.embedding.clone().into()],
    )
    .ok()
    .flatten()
}

/// Logs a WARNING, with the command that fixes it, when the table has no such index.
/// Returns whether an index exists.
pub fn check(target: &Target) -> bool {
    if find(target).is_some() {
        return true;
    }
    UserError::new(
        pgrx::PgSqlErrorCode::ERRCODE_WARNING,
        format!("table {} has no partial index on pending papers", target.names.table),
    )
    .detail("Counting and fetching pending papers reads the whole table.")
    .hint(if target.job == SETTINGS_JOB {
        format!(
            "Create it with: {}; (or SELECT doctrove_embed.create_pending_index(); which locks writes while it builds)",
            target.names.create_pending_index(true)
        )
    } else {
        format!("Create it with: {};", target.names.create_pending_index(true))
    })
    .warn();
    false
}

/// Runs a query over pending papers: through the partial index when the table has one (see
/// [`preferring_index`]), otherwise as it is, after [`check`]'s WARNING.
pub fn over_pending<R>(target: &Target, f: impl FnOnce() -> R) -> R {
    if check(target) {
        preferring_index(f)
    } else {
        f()
    }
}

/// Runs `f` with sequential scans discouraged, so that the planner takes the partial index even
/// while most of the table is pending; the previous setting is back afterwards.
fn preferring_index<R>(f: impl FnOnce() -> R) -> R {
    crate::pg::identity::with_setting(c"enable_seqscan", c"off", f)
}

/// Creates the partial index on pending papers (without CONCURRENTLY: it blocks writes to the
/// table while it builds) unless one exists; returns its name.
pub fn create(target: &Target) -> Result<String, UserError> {
    if let Some(existing) = find(target) {
        return Ok(existing);
    }
    crate::pg::ddl::run_ddl(&target.names.create_pending_index(false), "create the index")?;
    Ok(find(target).unwrap_or_else(|| target.names.pending_index_name()))
}
