//! `embed_pending()` and `get_papers_needing_embeddings_count()`, in the extension's schema (on
//! the default search_path, as the service they replace named them).

use pgrx::prelude::*;

use crate::live::batch::run_batch;
use crate::pg::at_commit;
use crate::pg::identity::Acting;
use crate::table::pending::count_and_store;
use crate::table::target::resolve;

/// Embeds up to `batch` pending papers of the configured table in the caller's transaction.
#[pg_extern(parallel_unsafe)]
fn embed_pending(
    batch: default!(i32, 250),
) -> TableIterator<
    'static,
    (
        name!(successful_embeddings, i32),
        name!(failed_embeddings, i32),
        name!(fetch_ms, f64),
        name!(api_ms, f64),
        name!(db_ms, f64),
    ),
> {
    let outcome = run_batch(batch, Acting::Caller, &mut |_, _| {}).unwrap_or_else(|e| e.raise());
    at_commit::record_batch(outcome.figures());
    if let Some(error) = &outcome.stopped_by {
        // What was answered is written; the caller learns why the rest is still pending.
        error.clone().warn();
    }
    TableIterator::once((
        outcome.successful,
        outcome.failed,
        outcome.fetch_ms,
        outcome.api_ms,
        outcome.db_ms,
    ))
}

/// The exact number of papers in the configured table still waiting for an embedding.
#[pg_extern(parallel_unsafe)]
fn get_papers_needing_embeddings_count() -> i64 {
    let target = resolve().unwrap_or_else(|e| e.raise());
    count_and_store(&target, Acting::Caller).unwrap_or_else(|e| e.raise())
}
