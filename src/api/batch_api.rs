//! The SQL functions of the Batch API path: `submit_batches()`, `collect_batches()`,
//! `cancel_batches()`, and the figures behind the status view's batch columns.

#[pgrx::pg_schema]
mod doctrove_embed {
    use pgrx::prelude::*;

    use crate::live::batch::Acting;

    /// Sends up to `max_papers` pending papers that are in no open batch (all of them when NULL)
    /// through the Batch API; returns the batches created and the papers and tokens in them,
    /// how many unrecorded batches were found on the API and adopted first, and how many
    /// finished batches were collected first.
    #[pg_extern(parallel_unsafe)]
    fn submit_batches(
        max_papers: default!(Option<i64>, "NULL"),
    ) -> TableIterator<
        'static,
        (name!(batches, i32), name!(papers, i64), name!(tokens, i64), name!(adopted, i32), name!(collected, i32)),
    > {
        if max_papers.is_some_and(|n| n < 0) {
            crate::errors::UserError::new(pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "max_papers must not be negative").raise();
        }
        let done = crate::batch_api::submit::submit(max_papers, Acting::Caller).unwrap_or_else(|e| e.raise());
        TableIterator::once((done.batches, done.papers, done.tokens, done.adopted, done.collected))
    }

    /// Polls the open batches and collects the finished ones: vectors written, rejected papers
    /// recorded in `doctrove_embed.failures`, every other paper released to pending.
    #[pg_extern(parallel_unsafe)]
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
        let all = crate::batch_api::collect::collect(Acting::Caller).unwrap_or_else(|e| e.raise());
        TableIterator::once((all.batches, all.still_open, all.totals.written, all.totals.failed, all.totals.released))
    }

    /// Cancels the open batches and releases their papers; returns how many were cancelled.
    #[pg_extern(parallel_unsafe)]
    fn cancel_batches() -> i32 {
        crate::batch_api::collect::cancel(Acting::Caller).unwrap_or_else(|e| e.raise())
    }
}

/// The Batch API figures of the status view: papers in open batches, the tokens collected from
/// batches since the server started, and what the live and batch tokens cost.
pub fn snapshot() -> (i64, i64, f64, f64) {
    let target = crate::table::target::resolve().unwrap_or_else(|e| e.raise());
    let in_batches = crate::batch_api::jobs_store::papers_in_open_batches(&target);
    let (live, batch) = crate::pg::shared_state::snapshot().map(|s| (s.tokens, s.batch_tokens)).unwrap_or((0, 0));
    let price = crate::settings::gucs::PRICE_PER_MILLION_TOKENS.get();
    (in_batches, batch as i64, live as f64 * price / 1e6, batch as f64 * price / 2.0 / 1e6)
}
