//! The functions behind the `doctrove_embed.status` and `doctrove_embed.workers` views: figures
//! read from shared memory, so the views answer in milliseconds however large the table.

use pgrx::prelude::*;

use crate::batch_api::jobs_store::papers_in_open_jobs;
use crate::pg::shared_state;
use crate::settings::gucs;
use crate::table::status::{status, workers};
use crate::table::target::resolve;

/// The figures behind the `doctrove_embed.status` view.
// pgrx reads the result columns from the signature itself, so no type alias can shorten it.
#[allow(clippy::type_complexity)]
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn status_snapshot() -> TableIterator<
    'static,
    (
        name!(pending, Option<i64>),
        name!(pending_counted_at, Option<f64>),
        name!(embedded, i64),
        name!(failed_since_start, i64),
        name!(papers_per_min_1m, f64),
        name!(papers_per_min_10m, f64),
        name!(eta_seconds, Option<f64>),
        name!(tokens_used, i64),
        name!(workers_running, i32),
        name!(workers_configured, i32),
        name!(enabled, bool),
        name!(hnsw_index, Option<String>),
    ),
> {
    // The view is public and never fails: settings that name no usable table leave the
    // table's own figures NULL.
    let s = status(resolve().ok().as_ref());
    TableIterator::once((
        s.pending,
        s.pending_counted_at,
        s.embedded,
        s.failed,
        s.per_minute_1m,
        s.per_minute_10m,
        s.eta_seconds,
        s.tokens,
        s.workers_running,
        s.workers_configured,
        s.enabled,
        s.hnsw_index,
    ))
}

/// The Batch API figures of the `doctrove_embed.status` view: papers in open jobs, the tokens
/// collected from batches since the server started, and what the live and batch tokens cost.
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn batch_snapshot() -> TableIterator<
    'static,
    (
        name!(papers_in_batches, i64),
        name!(batch_tokens_used, i64),
        name!(live_cost_usd, f64),
        name!(batch_cost_usd, f64),
    ),
> {
    let in_batches = match resolve() {
        Ok(target) => papers_in_open_jobs(&target).unwrap_or_else(|e| e.raise()),
        Err(_) => 0,
    };
    let (live, batch) = shared_state::snapshot().map(|s| (s.tokens, s.batch_tokens)).unwrap_or((0, 0));
    let price = gucs::PRICE_PER_MILLION_TOKENS.get();
    TableIterator::once((
        in_batches,
        batch as i64,
        live as f64 * price / 1e6,
        batch as f64 * price / 2.0 / 1e6,
    ))
}

/// The query embeddings cache's figures since the server started, for the status view.
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn query_cache_snapshot() -> TableIterator<'static, (name!(hits, i64), name!(misses, i64), name!(entries, i32))> {
    let (hits, misses, entries) = crate::pg::query_cache::counts();
    TableIterator::once((hits as i64, misses as i64, entries as i32))
}

/// The figures behind the `doctrove_embed.workers` view.
// pgrx reads the result columns from the signature itself, so no type alias can shorten it.
#[allow(clippy::type_complexity)]
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn worker_snapshot() -> TableIterator<
    'static,
    (
        name!(worker, i32),
        name!(pid, i32),
        name!(database_oid, Option<pg_sys::Oid>),
        name!(state, String),
        name!(batches, i64),
        name!(papers_embedded, i64),
        name!(failures, i64),
        name!(last_error, Option<String>),
        name!(last_batch_at, Option<f64>),
    ),
> {
    TableIterator::new(workers().into_iter().map(|w| {
        (
            w.worker,
            w.pid,
            w.database.map(pg_sys::Oid::from),
            w.state,
            w.batches,
            w.embedded,
            w.failures,
            w.last_error,
            w.last_batch_at,
        )
    }))
}
