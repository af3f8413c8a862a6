//! The SQL functions of the Batch API path: `submit_batches()`, `collect_batches()` and
//! `cancel_batches()`, for the job `default` (the settings) and, each with a job name, for a
//! recorded job, as its table's owner once the caller is found allowed to run it.

use pgrx::prelude::*;

use crate::api::job_choice::{choose, named};
use crate::batch_api::{collect, submit};
use crate::errors::UserError;
use crate::pg::identity::Acting;

type SubmittedRow = (i32, i64, i64, i32, i32);

type CollectedRow = (i32, i32, i64, i64, i64);

fn submit_row(max_papers: Option<i64>, job: Option<&str>) -> SubmittedRow {
    if max_papers.is_some_and(|n| n < 0) {
        UserError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "max_papers must not be negative",
        )
        .raise();
    }
    let done = choose(job, "doctrove_embed.submit_batches(bigint)")
        .and_then(|choice| submit::submit(max_papers, &choice, Acting::Caller))
        .unwrap_or_else(|e| e.raise());
    (done.batches, done.papers, done.tokens, done.adopted, done.collected)
}

/// Sends up to `max_papers` pending papers of the job `default` that are in no open batch
/// through the Batch API, in one batch (all of them, in as many batches as they take, when
/// NULL); returns the batches created and the papers and tokens in them, how many unrecorded
/// batches were found on the API and adopted first, and how many finished batches were
/// collected first.
// pgrx reads the result columns from the signature itself, so no type alias can shorten these.
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
    TableIterator::once(submit_row(max_papers, None))
}

/// `submit_batches(max_papers)` for job `job`: its batches go to its first endpoint, with its
/// model, and are written into its column alone.
#[pg_extern(schema = "doctrove_embed", name = "submit_batches", parallel_unsafe)]
fn submit_batches_of_job(
    max_papers: Option<i64>,
    job: Option<&str>,
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
    TableIterator::once(submit_row(max_papers, Some(named(job))))
}

fn collect_row(job: Option<&str>) -> CollectedRow {
    let all = choose(job, "doctrove_embed.collect_batches()")
        .and_then(|choice| collect::collect(&choice, Acting::Caller))
        .unwrap_or_else(|e| e.raise());
    (
        all.batches,
        all.still_open,
        all.totals.written,
        all.totals.failed,
        all.totals.released,
    )
}

/// Polls the open batches of the job `default` and collects the finished ones: vectors
/// written, rejected papers recorded in `doctrove_embed.failures`, every other paper released
/// to pending.
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
    TableIterator::once(collect_row(None))
}

/// `collect_batches()` for job `job`.
#[pg_extern(schema = "doctrove_embed", name = "collect_batches", parallel_unsafe)]
fn collect_batches_of_job(
    job: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(batches_collected, i32),
        name!(batches_open, i32),
        name!(papers_written, i64),
        name!(papers_failed, i64),
        name!(papers_released, i64),
    ),
> {
    TableIterator::once(collect_row(Some(named(job))))
}

/// Cancels the open batches of the job `default` and releases their papers; returns how many
/// were cancelled.
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn cancel_batches() -> i32 {
    collect::cancel(&crate::table::jobs::JobChoice::Settings, Acting::Caller).unwrap_or_else(|e| e.raise())
}

/// `cancel_batches()` for job `job`.
#[pg_extern(schema = "doctrove_embed", name = "cancel_batches", parallel_unsafe)]
fn cancel_batches_of_job(job: Option<&str>) -> i32 {
    choose(Some(named(job)), "doctrove_embed.cancel_batches()")
        .and_then(|choice| collect::cancel(&choice, Acting::Caller))
        .unwrap_or_else(|e| e.raise())
}
