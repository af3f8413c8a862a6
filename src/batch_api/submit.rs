//! `submit_batches()`: pending papers in no open batch go to the Batch API, up to 50,000 a
//! batch, within the enqueued-token limit, and are claimed so that nothing else sends them
//! while their batch is open.
//!
//! Before it claims anything, a submission adopts the batches of this database and table that
//! the API has but `batch_jobs` lacks (see `batch_adopt`), so no paper goes into two batches,
//! and collects the batches the API has finished (see `batch_collect`), which frees their
//! enqueued tokens: one scheduled `submit_batches()` does a whole backfill.

use std::sync::atomic::Ordering;

use embed_core::batch_client::{create_batch, delete_file, upload_batch_file};
use embed_core::batch_file::{request_line, text_hash, MAX_BATCH_FILE_BYTES, MAX_CUSTOM_ID_BYTES};
use embed_core::tokens;
use embed_core::{ApiConfig, ApiError};
use pgrx::prelude::*;

use crate::batch_api::adopt::{adopt_unrecorded, our_metadata, seal, META_SUBMISSION};
use crate::batch_api::collect::collect_finished;
use crate::batch_api::jobs_store::{self, NewJob};
use crate::errors::UserError;
use crate::http::off_thread::call_api_abandonable;
use crate::pg::identity::Acting;
use crate::pg::transaction::refuse_snapshot_isolation;
use crate::settings::gucs;
use crate::table::jobs::{prepare, JobChoice};
use crate::table::pending::{fetch_pending, Pending};
use crate::table::rights::{check_may_write, owner_rights_for};
use crate::table::target::Target;
use crate::table::write::try_write;

/// What a submission did.
#[derive(Debug, Default)]
pub struct Submitted {
    pub batches: i32,
    pub papers: i64,
    pub tokens: i64,
    pub adopted: i32,
    /// Finished batches collected first.
    pub collected: i32,
}

impl Submitted {
    /// Adds the batches, papers and tokens of another submission.
    pub fn add_batches(&mut self, other: &Submitted) {
        self.batches += other.batches;
        self.papers += other.papers;
        self.tokens += other.tokens;
    }
}

/// The input file of one batch: lines for as many of `papers` as fit in the file, in the batch
/// and under the enqueued-token limit. Returns the file, the ids and text hashes taken, the
/// tokens, and whether a paper was left out for lack of room.
struct BatchFile {
    content: Vec<u8>,
    ids: Vec<String>,
    hashes: Vec<Option<i64>>,
    tokens: i64,
    full: bool,
}

fn build_file(papers: &[Pending], config: &ApiConfig, token_room: Option<i64>) -> BatchFile {
    let mut file = BatchFile {
        content: Vec::new(),
        ids: Vec::new(),
        hashes: Vec::new(),
        tokens: 0,
        full: false,
    };
    for paper in papers {
        pg_sys::check_for_interrupts!();
        if paper.id.len() > MAX_CUSTOM_ID_BYTES {
            continue;
        }
        let (text, counted) = tokens::cut_to_model_limit(&paper.input);
        let count = counted.unwrap_or_else(|| tokens::count(&text)) as i64;
        let line = request_line(&paper.id, &config.model, &text, config.dimensions);
        let over_tokens = token_room.is_some_and(|room| file.tokens + count > room);
        if file.content.len() + line.len() > MAX_BATCH_FILE_BYTES || over_tokens {
            file.full = true;
            break;
        }
        file.content.extend_from_slice(line.as_bytes());
        file.ids.push(paper.id.clone());
        file.hashes.push(Some(text_hash(&text)));
        file.tokens += count;
    }
    file
}

/// Adopts unrecorded batches of job `choice`, collects the finished ones, then submits up to
/// `max_papers` (all when `None`) of its pending papers in no open batch.
pub fn submit(max_papers: Option<i64>, choice: &JobChoice, acting: Acting) -> Result<Submitted, UserError> {
    refuse_snapshot_isolation("submit_batches()")?;
    let prepared = prepare(choice, acting)?;
    let target = prepared.target()?;
    let acting = owner_rights_for(&target, prepared.acting)?;
    check_may_write(&target, acting)?;
    let config = prepared.batch_config()?;
    let adopted = adopt_unrecorded(&target, &config)?;
    let collected = collect_finished(&target, &config, acting)?.batches;
    Ok(Submitted {
        adopted,
        collected,
        ..submit_pending(&target, &config, max_papers, acting)?
    })
}

/// Submits up to `max_papers` pending papers of `target` in no open batch, in one batch; with
/// `None`, all of them, in as many batches as they take (all created in the caller's
/// transaction: `submit_backfill()` and the workers pass a number, and commit each batch). The
/// caller has adopted unrecorded batches first.
pub fn submit_pending(
    target: &Target,
    config: &ApiConfig,
    max_papers: Option<i64>,
    acting: Acting,
) -> Result<Submitted, UserError> {
    let mut done = Submitted::default();
    let limit = gucs::BATCH_API_MAX_ENQUEUED_TOKENS.get();
    if limit <= 0.0 && jobs_store::waiting_for_enqueued_room(&config.model)? {
        return Ok(done);
    }
    let mut enqueued = jobs_store::enqueued_tokens(&config.model)?;
    let per_batch = i64::from(gucs::BATCH_API_MAX_PAPERS.get().max(1));
    let mut left = max_papers.unwrap_or(i64::MAX).max(0);
    let mut metadata = our_metadata(target)?;
    while left > 0 {
        let want = left.min(per_batch) as i32;
        let token_room = (limit > 0.0).then(|| limit as i64 - enqueued);
        if token_room.is_some_and(|room| room <= 0) {
            break;
        }
        let papers = fetch_pending(target, want, acting, false)?;
        if papers.is_empty() {
            break;
        }
        let file = build_file(&papers, config, token_room);
        if file.ids.is_empty() {
            break;
        }
        // Nothing is paid for a batch whose collection the database would refuse as a whole.
        try_write(target, &file.ids, target.expected_dims(config), &config.model, acting)?;
        let submission = Spi::get_one::<String>("SELECT pg_catalog.gen_random_uuid()::pg_catalog.text")
            .ok()
            .flatten()
            .unwrap_or_default();
        metadata.insert(META_SUBMISSION.to_string(), submission.clone());
        seal(&mut metadata)?;
        let (content, meta) = (file.content, metadata.clone());
        let info = call_api_abandonable(config, move |c, abandoned| {
            let file_id = upload_batch_file(c, "doctrove_embed_batch.jsonl", &content)?;
            // The statement was cancelled (or failed) while the file went up: it has rolled back,
            // so a batch created now would hold papers nothing records, and they would be sent
            // again. The file goes too.
            if abandoned.load(Ordering::SeqCst) {
                let _ = delete_file(c, &file_id);
                return Err(ApiError::Malformed(
                    "the submission ended before its batch was created".into(),
                ));
            }
            create_batch(c, &file_id, &meta)
        })?;
        let papers_taken = file.ids.len() as i64;
        let job = NewJob {
            submission: &submission,
            model: Some(&config.model),
            tokens: file.tokens,
            ids: file.ids,
            hashes: file.hashes,
            adopted: false,
        };
        jobs_store::record(target, &info, job)?;
        done.batches += 1;
        done.papers += papers_taken;
        done.tokens += file.tokens;
        enqueued += file.tokens;
        left -= papers_taken;
        // Papers left out stay locked by this transaction, so the next fetch would return them
        // again: the submission ends here. A fetch that returned fewer papers than asked for
        // does not end it: papers the live path embedded or locked meanwhile are skipped, and
        // others may still be pending (the loop ends when a fetch finds none).
        if max_papers.is_some() || file.full || papers_taken < papers.len() as i64 {
            break;
        }
    }
    Ok(done)
}
