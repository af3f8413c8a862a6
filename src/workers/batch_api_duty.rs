//! The workers' own use of the Batch API (`doctrove_embed.batch_api = on`): each database's
//! first worker (by slot), every
//! `batch_api_poll_ms`, collects the finished batches and then, while more than `batch_api_min_papers`
//! pending papers are in no batch, submits them (within `batch_api_max_enqueued_tokens`). Each step
//! runs in a transaction of its own, with the table owner's rights; every worker's live batches
//! go on between, with the papers in no batch, so new papers are still embedded within seconds.

use std::time::{Duration, Instant};

use crate::batch_api::collect::{collect, CollectedAll};
use crate::batch_api::jobs_store::papers_in_open_jobs;
use crate::batch_api::submit::{submit_pending, Submitted};
use crate::errors::UserError;
use crate::http::config::current_config;
use crate::pg::database_pool;
use crate::pg::identity::Acting;
use crate::pg::transaction::in_transaction;
use crate::settings::gucs;
use crate::table::pending::count_pending;
use crate::table::rights::check_may_write;
use crate::table::target::{refuse_settings_from_catalogs, resolve};

/// Most batches the first worker submits in one poll (each in its own transaction); the rest wait for
/// the next poll, so the live path and the collection get their turn.
const MAX_BATCHES_PER_POLL: usize = 20;

/// When the first worker last polled its batches.
#[derive(Default)]
pub struct BatchApiDuty {
    last: Option<Instant>,
}

fn poll_interval() -> Duration {
    Duration::from_millis(gucs::BATCH_API_POLL_MS.get().max(1) as u64)
}

impl BatchApiDuty {
    fn mine(index: usize) -> bool {
        gucs::BATCH_API.get() && database_pool::leads_here(index)
    }

    /// Whether worker `index` should poll its batches now.
    pub fn due(&self, index: usize) -> bool {
        Self::mine(index) && self.last.is_none_or(|t| t.elapsed() >= poll_interval())
    }

    /// How long worker `index` may sleep before its next poll, if it polls.
    pub fn next_in(&self, index: usize) -> Option<Duration> {
        Self::mine(index).then(|| {
            self.last
                .map_or(Duration::ZERO, |t| poll_interval().saturating_sub(t.elapsed()))
        })
    }

    /// Collects, then submits when the backlog in no batch is large enough.
    pub fn run(&mut self) -> Result<(CollectedAll, Submitted), UserError> {
        self.last = Some(Instant::now());
        let collected = in_transaction(|| {
            refuse_settings_from_catalogs()?;
            collect(Acting::TableOwner)
        });
        // Once the collection has adopted whatever a crash left unrecorded (or the endpoint has
        // no Batch API, so there is nothing to adopt), the other workers may embed live, while
        // this one submits (an upload can take minutes). A failed look (the API unreachable)
        // keeps them waiting until the next poll succeeds.
        let looked = match &collected {
            Ok(_) => true,
            Err(error) => error.code() == pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        };
        if looked {
            database_pool::mark_batches_checked_here();
        }
        let collected = collected?;
        // The collection above has adopted and collected: the submission only submits, one batch
        // per transaction, so each batch's claims commit as soon as it exists and no paper stays
        // locked while the other batches' files go up.
        let mut submitted = Submitted::default();
        for _ in 0..MAX_BATCHES_PER_POLL {
            let one = in_transaction(|| {
                refuse_settings_from_catalogs()?;
                let target = resolve()?;
                let unclaimed = count_pending(&target, Acting::TableOwner)? - papers_in_open_jobs(&target)?;
                if unclaimed <= i64::from(gucs::BATCH_API_MIN_PAPERS.get()) {
                    return Ok(Submitted::default());
                }
                check_may_write(&target, Acting::TableOwner)?;
                let one_batch = i64::from(gucs::BATCH_API_MAX_PAPERS.get().max(1));
                submit_pending(&target, &current_config()?, Some(one_batch), Acting::TableOwner)
            })?;
            if one.batches == 0 {
                break;
            }
            submitted.batches += one.batches;
            submitted.papers += one.papers;
            submitted.tokens += one.tokens;
        }
        Ok((collected, submitted))
    }
}
