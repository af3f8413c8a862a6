//! `retry_failed()`: forgetting a job's rejected papers so they are tried again.

use pgrx::prelude::*;

use crate::api::job_choice::{choose, named};
use crate::errors::UserError;
use crate::pg::identity::Acting;
use crate::table::failures::clear_all;
use crate::table::jobs::{owned_job, JobChoice};
use crate::table::rights::check_may_write;
use crate::table::target::resolve;

/// Forgets the rejected papers of the job `default` (the settings' table and column), so they
/// are tried again; returns how many. Only a role that may write the table's embeddings may.
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn retry_failed() -> i64 {
    forget_settings_failures().unwrap_or_else(|e| e.raise())
}

/// `retry_failed()` for job `job`: by its table's owner (who decides what the job spends), or
/// for the job `default`, by the roles that may run `retry_failed()`.
#[pg_extern(schema = "doctrove_embed", name = "retry_failed", parallel_unsafe)]
fn retry_failed_of_job(job: Option<&str>) -> i64 {
    choose(Some(named(job)), "doctrove_embed.retry_failed()")
        .and_then(|choice| match choice {
            JobChoice::Settings => forget_settings_failures(),
            // Not the job's resolved target: its rows go even after a column of it was renamed.
            JobChoice::Named(name) => clear_all(owned_job(&name, "forget the rejected papers of a job")?.relid, &name),
        })
        .unwrap_or_else(|e| e.raise())
}

fn forget_settings_failures() -> Result<i64, UserError> {
    let target = resolve()?;
    check_may_write(&target, Acting::Caller)?;
    clear_all(target.relid, &target.job)
}
