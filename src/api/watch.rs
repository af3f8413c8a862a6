//! `watch()` and `unwatch()`, and the statement trigger they install that wakes a worker.

use pgrx::prelude::*;

use crate::api::job_choice::owned_job_target;
use crate::table::target::resolve;

/// Installs the triggers that keep the configured table's embeddings current: new papers
/// wake the background workers when their transaction commits, and an edit of the title or
/// abstract clears the embedding so the paper is embedded again. Idempotent.
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn watch() -> String {
    let target = resolve().unwrap_or_else(|e| e.raise());
    crate::table::watch::watch(&target).unwrap_or_else(|e| e.raise());
    format!("watching {}", target.names.table)
}

/// Removes the triggers `watch()` installed.
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn unwatch() -> String {
    let target = resolve().unwrap_or_else(|e| e.raise());
    crate::table::watch::unwatch(&target).unwrap_or_else(|e| e.raise());
    format!("no longer watching {}", target.names.table)
}

/// `watch()` for job `job`'s column (by its table's owner): its own triggers, named after the
/// column, so each job on a table is kept current.
#[pg_extern(schema = "doctrove_embed", name = "watch", parallel_unsafe)]
fn watch_job(job: &str) -> String {
    let target = owned_job_target(job, "doctrove_embed.watch()", "watch a job's column").unwrap_or_else(|e| e.raise());
    crate::table::watch::watch(&target).unwrap_or_else(|e| e.raise());
    format!("watching {} for job {job}", target.names.table)
}

/// Removes the triggers `watch(job)` installed.
#[pg_extern(schema = "doctrove_embed", name = "unwatch", parallel_unsafe)]
fn unwatch_job(job: &str) -> String {
    let target = owned_job_target(job, "doctrove_embed.unwatch()", "watch a job's column").unwrap_or_else(|e| e.raise());
    crate::table::watch::unwatch(&target).unwrap_or_else(|e| e.raise());
    format!("no longer watching {} for job {job}", target.names.table)
}

/// The extension's one `#[pg_schema]` module: `#[pg_trigger]` takes its schema only from the
/// module it is in (every `#[pg_extern]` names its schema itself).
#[pg_schema]
mod doctrove_embed {
    use pgrx::prelude::*;

    /// Statement trigger: wake an idle background worker when this transaction commits.
    #[pg_trigger]
    fn wake_workers<'a>(
        _trigger: &'a pgrx::PgTrigger<'a>,
    ) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgHeapTupleError> {
        crate::pg::at_commit::wake_a_worker();
        Ok(None)
    }
}
