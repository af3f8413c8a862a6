//! The SQL functions of the Batch API path: `submit_batches()`, `collect_batches()` and
//! `cancel_batches()`.

use pgrx::prelude::*;

use crate::batch_api::{collect, submit};
use crate::errors::UserError;
use crate::pg::identity::Acting;

/// Sends up to `max_papers` pending papers that are in no open batch through the Batch API, in
/// one batch (all of them, in as many batches as they take, when NULL); returns the batches
/// created and the papers and tokens in them, how many unrecorded batches were found on the API
/// and adopted first, and how many finished batches were collected first.
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn submit_batches(
    max_papers: default!(Option<i64>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(batches, i32),
        name!(papers, i64),
        name!(tokens, i64),
        name!(adopted, i32),
        name!(collected, i32),
    ),
> {
    if max_papers.is_some_and(|n| n < 0) {
        UserError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "max_papers must not be negative",
        )
        .raise();
    }
    let done = submit::submit(max_papers, Acting::Caller).unwrap_or_else(|e| e.raise());
    TableIterator::once((done.batches, done.papers, done.tokens, done.adopted, done.collected))
}

/// Polls the open batches and collects the finished ones: vectors written, rejected papers
/// recorded in `doctrove_embed.failures`, every other paper released to pending.
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn collect_batches() -> TableIterator<
    'static,
    (
        name!(batches_collected, i32),
        name!(batches_open, i32),
        name!(papers_written, i64),
        name!(papers_failed, i64),
        name!(papers_released, i64),
    ),
> {
    let all = collect::collect(Acting::Caller).unwrap_or_else(|e| e.raise());
    TableIterator::once((
        all.batches,
        all.still_open,
        all.totals.written,
        all.totals.failed,
        all.totals.released,
    ))
}

/// Cancels the open batches and releases their papers; returns how many were cancelled.
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn cancel_batches() -> i32 {
    collect::cancel(Acting::Caller).unwrap_or_else(|e| e.raise())
}
