//! `embed_pending()` and `get_papers_needing_embeddings_count()`, in the extension's schema (on
//! the default search_path, as the service they replace named them). Without a job name they
//! run the job `default`; with one, that job, as its table's owner, once the caller is found
//! allowed to run it.

use pgrx::prelude::*;

use crate::api::job_choice::choose;
use crate::live::batch::run_batch;
use crate::pg::at_commit;
use crate::pg::identity::Acting;
use crate::table::jobs::prepare;
use crate::table::pending::count_and_store;
use crate::table::rights::owner_rights_for;

/// Embeds up to `batch` pending papers of the job `default` in the caller's transaction.
// pgrx reads the result columns from the signature itself, so no type alias can shorten these.
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
    TableIterator::once(embed(batch, None))
}

/// Embeds up to `batch` pending papers of job `job` in the caller's transaction.
#[pg_extern(name = "embed_pending", parallel_unsafe)]
fn embed_pending_of_job(
    batch: i32,
    job: &str,
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
    TableIterator::once(embed(batch, Some(job)))
}

fn embed(batch: i32, job: Option<&str>) -> (i32, i32, f64, f64, f64) {
    let choice = choose(job, "embed_pending(integer)").unwrap_or_else(|e| e.raise());
    let outcome = run_batch(batch, &choice, Acting::Caller, &mut |_, _| {}).unwrap_or_else(|e| e.raise());
    at_commit::record_batch(outcome.figures());
    if let Some(error) = &outcome.stopped_by {
        // What was answered is written; the caller learns why the rest is still pending.
        error.clone().warn();
    }
    (
        outcome.successful,
        outcome.failed,
        outcome.fetch_ms,
        outcome.api_ms,
        outcome.db_ms,
    )
}

/// The exact number of papers of the job `default` still waiting for an embedding.
#[pg_extern(parallel_unsafe)]
fn get_papers_needing_embeddings_count() -> i64 {
    count(None)
}

/// The exact number of papers of job `job` still waiting for an embedding.
#[pg_extern(name = "get_papers_needing_embeddings_count", parallel_unsafe)]
fn get_papers_needing_embeddings_count_of_job(job: &str) -> i64 {
    count(Some(job))
}

fn count(job: Option<&str>) -> i64 {
    let counted = choose(job, "get_papers_needing_embeddings_count()").and_then(|choice| {
        let prepared = prepare(&choice, Acting::Caller)?;
        let target = prepared.target()?;
        count_and_store(&target, owner_rights_for(&target, prepared.acting)?)
    });
    counted.unwrap_or_else(|e| e.raise())
}
