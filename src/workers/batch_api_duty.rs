//! The workers' own use of the Batch API (`doctrove_embed.batch_api = on` for the job `default`,
//! `use_batch_api` for a recorded job): each database's first worker (by slot), every
//! `batch_api_poll_ms`, collects the finished batches and then, while more than `batch_api_min_papers`
//! pending papers are in no batch, submits them (within `batch_api_max_enqueued_tokens`). Each step
//! runs in a transaction of its own, with the table owner's rights; every worker's live batches
//! go on between, with the papers in no batch, so new papers are still embedded within seconds.

use std::time::{Duration, Instant};

use crate::batch_api::collect::{collect, CollectedAll};
use crate::batch_api::jobs_store::{jobs_with_open_batches, papers_in_open_jobs};
use crate::batch_api::submit::{submit_pending, Submitted};
use crate::errors::UserError;
use crate::pg::database_pool;
use crate::pg::identity::Acting;
use crate::pg::job_figures::{self, JobKey};
use crate::pg::transaction::in_transaction;
use crate::settings::gucs;
use crate::table::jobs::{enabled_jobs, prepare, JobChoice};
use crate::table::pending::count_pending;
use crate::table::rights::check_may_write;
use crate::table::target::refuse_settings_from_catalogs;

/// Most batches the first worker submits for a job in one poll (each in its own transaction);
/// the rest wait for the next poll, so the live path and the collection get their turn.
const MAX_BATCHES_PER_POLL: usize = 20;

/// When the first worker last polled its batches.
#[derive(Default)]
pub struct BatchApiDuty {
    last: Option<Instant>,
}

fn poll_interval() -> Duration {
    Duration::from_millis(gucs::BATCH_API_POLL_MS.get().max(1) as u64)
}

/// What one poll did over every job that uses the Batch API, and the errors it met (one per
/// job at most: the other jobs went on).
#[derive(Default)]
pub struct Polled {
    pub collected: CollectedAll,
    pub submitted: Submitted,
    pub errors: Vec<(String, UserError)>,
}

impl BatchApiDuty {
    /// Whether worker `index` polls the batches: the database's first worker, when a job uses
    /// the Batch API (`uses_batches`).
    fn mine(index: usize, uses_batches: bool) -> bool {
        uses_batches && database_pool::leads_here(index)
    }

    /// Whether worker `index` should poll its batches now.
    pub fn due(&self, index: usize, uses_batches: bool) -> bool {
        Self::mine(index, uses_batches) && self.last.is_none_or(|t| t.elapsed() >= poll_interval())
    }

    /// How long worker `index` may sleep before its next poll, if it polls.
    pub fn next_in(&self, index: usize, uses_batches: bool) -> Option<Duration> {
        Self::mine(index, uses_batches).then(|| {
            self.last
                .map_or(Duration::ZERO, |t| poll_interval().saturating_sub(t.elapsed()))
        })
    }

    /// For every job that uses the Batch API (the job `default` with `doctrove_embed.batch_api`
    /// on, and each enabled job recorded with `use_batch_api`): collects, then submits when its
    /// backlog in no batch is large enough.
    pub fn run(&mut self) -> Polled {
        self.last = Some(Instant::now());
        let mut jobs: Vec<JobChoice> = Vec::new();
        if gucs::BATCH_API.get() {
            jobs.push(JobChoice::Settings);
        }
        // A job that stopped using the Batch API still has its open batches collected.
        let recorded = in_transaction(enabled_jobs).unwrap_or_default();
        let with_open_batches = in_transaction(jobs_with_open_batches).unwrap_or_default();
        jobs.extend(
            recorded
                .into_iter()
                .filter(|job| job.use_batch_api || with_open_batches.contains(&job.spec.job))
                .map(|job| JobChoice::Named(job.spec.job)),
        );
        let mut polled = Polled::default();
        for job in jobs {
            let result = run_job(&job);
            match result {
                Ok((collected, submitted)) => {
                    polled.collected.add(&collected);
                    polled.submitted.add_batches(&submitted);
                }
                Err(error) => polled.errors.push((job.name().to_string(), error)),
            }
        }
        polled
    }
}

/// One job's poll: its collection, then its submissions.
fn run_job(job: &JobChoice) -> Result<(CollectedAll, Submitted), UserError> {
    let collected = in_transaction(|| {
        if *job == JobChoice::Settings {
            refuse_settings_from_catalogs()?;
        }
        collect(job, Acting::TableOwner)
    });
    // Once the job's collection has adopted whatever a crash left unrecorded (or its endpoint
    // has no Batch API, so there is nothing to adopt), the other workers may send its papers
    // live, while this one submits (an upload can take minutes). A failed look (the API
    // unreachable) keeps that job waiting until a poll succeeds; the other jobs go on.
    let looked = match &collected {
        Ok(_) => true,
        Err(error) => error.code() == pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
    };
    if looked {
        job_figures::mark_batches_checked(JobKey::here(job.name()));
    }
    let collected = collected?;
    // The collection above has adopted and collected: the submission only submits, one batch
    // per transaction, so each batch's claims commit as soon as it exists and no paper stays
    // locked while the other batches' files go up.
    let mut submitted = Submitted::default();
    for _ in 0..MAX_BATCHES_PER_POLL {
        let one = in_transaction(|| {
            if *job == JobChoice::Settings {
                refuse_settings_from_catalogs()?;
            }
            let prepared = prepare(job, Acting::TableOwner)?;
            let target = prepared.target()?;
            let unclaimed = count_pending(&target, prepared.acting)? - papers_in_open_jobs(&target)?;
            if unclaimed <= i64::from(gucs::BATCH_API_MIN_PAPERS.get()) {
                return Ok(Submitted::default());
            }
            check_may_write(&target, prepared.acting)?;
            let one_batch = i64::from(gucs::BATCH_API_MAX_PAPERS.get().max(1));
            submit_pending(&target, &prepared.batch_config()?, Some(one_batch), prepared.acting)
        });
        let one = one?;
        if one.batches == 0 {
            break;
        }
        submitted.add_batches(&one);
    }
    Ok((collected, submitted))
}
