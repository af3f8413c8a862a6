//! One live batch, shared by `embed_pending()` and the background workers: lock up to `batch`
//! pending papers (`table::pending`), send their texts (`live::requests`: packing, retries,
//! isolation of rejected inputs), then write every vector in one UPDATE and record the rejected
//! and refused papers (`table::write`), all in the caller's transaction.
//!
//! Statements on the papers table run as the table's owner, whoever runs the job, once the
//! caller is found allowed to run it (see `pg::identity`, `table::jobs`, `table::rights`).

use std::time::Instant;

use crate::errors::{api_error, UserError};
use crate::http::retries::Wait;
use crate::live::requests::send_batch;
use crate::pg::identity::Acting;
use crate::pg::job_figures::{self, JobKey};
use crate::pg::shared_state::{BatchFigures, Phase};
use crate::pg::transaction::refuse_snapshot_isolation;
use crate::table::claims::has_open_claims;
use crate::table::jobs::{prepare, JobChoice, Prepared};
use crate::table::pending::fetch_pending;
use crate::table::rights::{check_may_write, owner_rights_for};
use crate::table::target::refuse_settings_from_catalogs;
use crate::table::target::Target;
use crate::table::write::{max_batch, try_write, write_and_record};

/// Refuses a batch of less than one paper.
fn check_batch_positive(batch: i32) -> Result<(), UserError> {
    if batch < 1 {
        return Err(UserError::new(
            pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("batch must be at least 1, not {batch}"),
        ));
    }
    Ok(())
}

/// Refuses a batch too large to write in one statement, before any API call.
fn check_batch_fits(batch: i32, dims: Option<usize>, setting: &str) -> Result<(), UserError> {
    let most = max_batch(dims);
    if batch as usize > most {
        return Err(UserError::new(
            pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("a batch of {batch} papers is too large to write in one statement"),
        )
        .detail(format!(
            "A batch's vectors are written in one statement, which PostgreSQL caps at 1 GB: at most {most} papers for {}.",
            match dims {
                Some(d) => format!("vector({d})"),
                None => "a vector column without a declared length".to_string(),
            }
        ))
        .hint(format!("Use {setting} between 1 and {most}.")));
    }
    Ok(())
}

/// What one batch did.
#[derive(Default, Clone)]
pub struct BatchOutcome {
    pub successful: i32,
    /// Papers recorded in `doctrove_embed.failures`: rejected by the API or refused by the
    /// database.
    pub failed: i32,
    pub fetch_ms: f64,
    pub api_ms: f64,
    pub db_ms: f64,
    pub tokens: u64,
    /// The table (oid) the batch worked on.
    pub relid: u32,
    /// The job it ran.
    pub job: String,
    /// The API error that stopped the batch after some of its requests were answered: what was
    /// answered is written, the other papers stay pending.
    pub stopped_by: Option<UserError>,
}

impl BatchOutcome {
    /// What this batch adds to the server-wide figures.
    pub fn figures(&self) -> BatchFigures {
        BatchFigures {
            embedded: self.successful.max(0) as u64,
            failed: self.failed.max(0) as u64,
            tokens: self.tokens,
            batch_tokens: 0,
            relid: self.relid,
            job: JobKey::here(&self.job),
        }
    }
}

fn millis_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// Embeds up to `batch` pending papers of job `job` in the current transaction,
/// telling `phase` what it is doing. An error before anything was answered (configuration, the
/// API) comes back as `Err` with nothing written; the caller decides whether to raise it or roll
/// back and carry on. An API error after some requests were answered comes back in
/// [`BatchOutcome::stopped_by`], with the answered vectors written.
///
/// A recorded job runs as its table's owner once the caller is found allowed to run it; the
/// settings' job with the rights `acting` says.
pub fn run_batch(
    batch: i32,
    job: &JobChoice,
    acting: Acting,
    phase: &mut dyn FnMut(Phase, &str),
) -> Result<BatchOutcome, UserError> {
    check_batch_positive(batch)?;
    refuse_snapshot_isolation("embed_pending()")?;
    phase(Phase::Fetching, "");
    let prepared = prepare(job, acting)?;
    if *job == JobChoice::Settings && acting == Acting::TableOwner {
        refuse_settings_from_catalogs()?;
    }
    let target = prepared.target()?;
    let acting = owner_rights_for(&target, prepared.acting)?;
    // From here on the caller may run the job: what fails is the job's, shown in its figures.
    let key = JobKey::here(&target.job);
    embed_allowed(batch, &target, &prepared, acting, phase).inspect_err(|e| job_figures::record_error(key, &e.summary()))
}

/// The batch of [`run_batch`] once the caller is found allowed to run the job.
fn embed_allowed(
    batch: i32,
    target: &Target,
    prepared: &Prepared,
    acting: Acting,
    phase: &mut dyn FnMut(Phase, &str),
) -> Result<BatchOutcome, UserError> {
    check_may_write(target, acting)?;
    let endpoints = prepared.endpoints()?;
    let config = &endpoints[0].config;
    let dims = target.expected_dims(config);
    let setting = if prepared.is_recorded() {
        "the job's batch_size"
    } else if acting == Acting::Caller {
        "a batch"
    } else {
        "doctrove_embed.batch_size"
    };
    check_batch_fits(batch, dims, setting)?;
    let fetch_start = Instant::now();
    let descending = has_open_claims(target)?;
    let papers = fetch_pending(target, batch, acting, descending)?;
    let mut outcome = BatchOutcome {
        fetch_ms: millis_since(fetch_start),
        relid: target.relid.to_u32(),
        job: target.job.clone(),
        ..Default::default()
    };
    if papers.is_empty() {
        return Ok(outcome);
    }

    // Nothing is paid for a write the database would refuse as a whole.
    let ids: Vec<String> = papers.iter().map(|p| p.id.clone()).collect();
    try_write(target, &ids, dims, &config.model, acting)?;

    phase(Phase::CallingApi, "");
    let api_start = Instant::now();
    let texts: Vec<String> = papers.iter().map(|p| p.input.clone()).collect();
    let answered = send_batch(&endpoints, &texts, dims, &mut |wait| match wait {
        Wait::RateLimit => phase(Phase::RateLimited, ""),
        Wait::Retry { error, text } => phase(Phase::Retrying, &format!("{text} ({error})")),
    });
    outcome.api_ms = millis_since(api_start);
    outcome.tokens = answered.tokens;
    let tallies: Vec<(&str, u64, u64)> = endpoints
        .iter()
        .zip(&answered.by_endpoint)
        .map(|(e, t)| (e.name.as_str(), t.inputs, t.errors))
        .collect();
    job_figures::record_endpoints(JobKey::here(&target.job), &tallies);
    let nothing_answered = answered.vectors.iter().all(Option::is_none) && answered.rejected.is_empty();
    if let (Some(error), true) = (&answered.error, nothing_answered) {
        return Err(api_error(error));
    }

    phase(Phase::Writing, "");
    let db_start = Instant::now();
    let (ids, vectors): (Vec<String>, Vec<Vec<f32>>) = papers
        .iter()
        .zip(answered.vectors)
        .filter_map(|(p, v)| v.map(|v| (p.id.clone(), v)))
        .unzip();
    let rejected: Vec<(String, String)> = answered
        .rejected
        .into_iter()
        .map(|(i, message)| (papers[i].id.clone(), message))
        .collect();
    let settled = write_and_record(target, &ids, &vectors, rejected, &config.model, acting)?;
    outcome.successful = settled.written_rows;
    outcome.failed = settled.failed.len() as i32;
    outcome.db_ms = millis_since(db_start);
    outcome.stopped_by = answered.error.map(|e| api_error(&e));
    Ok(outcome)
}
