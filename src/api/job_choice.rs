//! Which job a call of a form with a job name runs, and whether the caller may name the job
//! `default` there.

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::{ERRCODE_INSUFFICIENT_PRIVILEGE, ERRCODE_NULL_VALUE_NOT_ALLOWED};

use crate::errors::{internal, UserError};
use crate::pg::identity::with_catalog_search_path;
use crate::table::jobs::{owned_target, JobChoice};
use crate::table::target::{resolve, Target};

/// The job name a form that takes one was given; NULL is refused (22004).
pub fn named(job: Option<&str>) -> &str {
    job.unwrap_or_else(|| {
        UserError::new(ERRCODE_NULL_VALUE_NOT_ALLOWED, "job must not be NULL")
            .hint("Name a job of doctrove_embed.jobs, or use the form without a job name for the job default.")
            .raise()
    })
}

/// The job a call names. The job `default` named through a form that takes a job name needs
/// the right to run the form without one (`signature`, in the extension's schema unless
/// qualified), which PUBLIC does not have.
pub fn choose(job: Option<&str>, signature: &str) -> Result<JobChoice, UserError> {
    let choice = JobChoice::of(job);
    if job.is_none() || choice != JobChoice::Settings {
        return Ok(choice);
    }
    let may = with_catalog_search_path(|| {
        Spi::get_one_with_args::<bool>(
            "SELECT pg_catalog.has_function_privilege(CASE WHEN pg_catalog.strpos($1, '.') > 0 THEN $1 \
             ELSE pg_catalog.format('%I.%s', n.nspname, $1) END, 'EXECUTE') \
             FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
             WHERE e.extname = 'doctrove_embed'",
            &[signature.into()],
        )
    })
    .map_err(internal("check the right to run the job default"))?
    .unwrap_or(false);
    if may {
        return Ok(choice);
    }
    Err(UserError::new(ERRCODE_INSUFFICIENT_PRIVILEGE, format!("permission denied for function {signature}"))
        .detail("The job default (the doctrove_embed.* settings) runs for the roles allowed to run the form without a job name. Nothing was sent to the API.")
        .hint(format!("GRANT EXECUTE ON FUNCTION {signature} TO ROLE; or create a job and grant it.")))
}

/// The table and columns of the job a form with a job name names, for what only the table's
/// owner does to the job's column (`what`); the job `default` is the settings' table, for the
/// roles that may run the form without a name (`signature`).
pub fn owned_job_target(job: &str, signature: &str, what: &str) -> Result<Target, UserError> {
    match choose(Some(job), signature)? {
        JobChoice::Settings => resolve(),
        JobChoice::Named(name) => owned_target(&name, what),
    }
}
