//! `collect_batches()`: polls the open batches and, for each the API has finished, reads its
//! output and error files a slice at a time, writes the vectors with the live path's
//! set-based UPDATE, records the papers whose text the API rejected, and releases every other
//! paper back to pending. A batch is marked collected in the same transaction as its writes,
//! so collecting twice writes nothing twice, and a collection cut short is redone whole by the
//! next one.

use std::collections::HashSet;

use embed_core::batch_client::{delete_file, read_file_lines, retrieve_batch, BatchInfo};
use embed_core::batch_file::{parse_result_line, sent_text_hash, LineResult, MAX_CUSTOM_ID_BYTES, MAX_RESULT_LINE_BYTES};
use embed_core::{ApiConfig, ApiError};
use pgrx::datum::DatumWithOid;
use pgrx::PgMemoryContexts;

use crate::batch_api::adopt::adopt_unrecorded;
use crate::batch_api::jobs_store::{self, Collected, OpenJob};
use crate::errors::{api_error, UserError};
use crate::http::off_thread::{call_api_raw, streamed};
use crate::http::retries::get_with_retries;
use crate::pg::at_commit;
use crate::pg::identity::Acting;
use crate::pg::job_figures::JobKey;
use crate::pg::shared_state::BatchFigures;
use crate::pg::subtransaction::try_in_subtransaction;
use crate::pg::transaction::refuse_snapshot_isolation;
use crate::table::jobs::{prepare, JobChoice, Prepared};
use crate::table::pending::read_papers;
use crate::table::rights::{check_may_write, owner_rights_for, refuse_row_security};
use crate::table::target::Target;
use crate::table::write::write_and_record;

/// Result lines handled at once: the vectors of one slice are written in one statement. The
/// reader works on the next slice meanwhile, and no more: about three slices of vectors are in
/// memory at a time.
const SLICE_LINES: usize = 500;

/// Claimed papers whose texts are read back at once to check them against their fingerprints:
/// each text can hold up to two 131,056-character columns.
const CLAIMED_TEXTS_AT_ONCE: usize = 32;

/// What a collection did.
#[derive(Debug, Default)]
pub struct CollectedAll {
    /// Unrecorded batches found on the API and adopted first.
    pub adopted: i32,
    pub batches: i32,
    pub still_open: i32,
    pub totals: Collected,
}

impl CollectedAll {
    /// Adds what another collection (another job's) did.
    pub fn add(&mut self, other: &CollectedAll) {
        self.adopted += other.adopted;
        self.batches += other.batches;
        self.still_open += other.still_open;
        self.totals.add(other.totals);
    }
}

/// Failed collections of one batch (an output file gone, the API no longer knowing it, its
/// files unreadable) after which it is closed and its papers released: they were paid for, but
/// nothing can be collected, and holding them would keep them from the live path for good.
/// Connection errors, timeouts and 5xx are retried within each collection and not counted.
const MAX_COLLECT_FAILURES: i32 = 5;

/// The batch as the API has it now; transient failures are retried.
fn retrieve(config: &ApiConfig, id: &str) -> Result<BatchInfo, UserError> {
    let id = id.to_string();
    let batch_id = id.clone();
    get_with_retries(config, move |c| retrieve_batch(c, &id)).map_err(|e| match e {
        ApiError::Rejected { status: 404, .. } => gone(format!("the API no longer knows batch {batch_id} (HTTP 404)")),
        other => api_error(&other),
    })
}

/// The error for a batch, or its results, that the API says it does not have (404) or that
/// cannot be read as results: the failures of a collection that are the batch's own (see
/// [`is_the_batch_s_fault`]).
fn gone(message: String) -> UserError {
    UserError::new(pgrx::PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, message)
        .hint("Its endpoint or key may have changed, or its files been deleted; after repeated failures its papers are released.")
}

/// Polls open batch `batch_id` and collects it when finished: `None` while it is still open.
fn poll_and_collect(
    target: &Target,
    config: &ApiConfig,
    job: &OpenJob,
    acting: Acting,
) -> Result<Option<(Collected, u64)>, UserError> {
    let info = retrieve(config, &job.batch_id)?;
    jobs_store::update_status(&info)?;
    if !info.is_finished() {
        return Ok(None);
    }
    collect_one(target, config, &info, job.model.as_deref().unwrap_or(&config.model), acting).map(Some)
}

/// Whether a failed collection says something about the batch itself: the API answered that it
/// does not have the batch or its results (404), or its results cannot be read as such. Everything else (connection errors, timeouts,
/// 5xx, rate limits, a refused key, the database's own errors, a caller's missing rights) says
/// nothing about the batch and never counts towards releasing it.
fn is_the_batch_s_fault(error: &UserError) -> bool {
    error.code() == pgrx::PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT
}

/// Notes that collecting batch `batch_id` failed with `error` (its work rolled back): a WARNING,
/// the error on the batch, and after [`MAX_COLLECT_FAILURES`] failures that are the batch's own,
/// the batch closed and its papers released. Returns the papers released.
fn note_failure(batch_id: &str, error: &UserError) -> Result<i64, UserError> {
    let text = embed_core::bounds::cut_message(&error.summary(), embed_core::bounds::MAX_MESSAGE_CHARS);
    UserError::new(
        pgrx::PgSqlErrorCode::ERRCODE_WARNING,
        format!("batch {batch_id} was not collected: {text}"),
    )
    .hint("It stays open and the next collection tries again; the other batches are collected meanwhile.")
    .warn();
    if !is_the_batch_s_fault(error) {
        return Ok(0);
    }
    let failures = jobs_store::note_collect_failure(batch_id, &text)?;
    if failures < MAX_COLLECT_FAILURES {
        return Ok(0);
    }
    let why = format!("released after {failures} failed collections: {text}");
    jobs_store::close(batch_id, Collected::default(), Some(why))
}

/// Settles one slice of result lines of batch `batch_id`.
struct Slicer<'a> {
    target: &'a Target,
    config: &'a ApiConfig,
    batch_id: &'a str,
    /// The model that made the batch's vectors, which its writes name.
    model: &'a str,
    acting: Acting,
    /// Whether the API answered any request of the batch: then a 4xx for a request holding a
    /// single text is proof that text is rejected (as the live path proves it).
    api_accepts: bool,
    collected: Collected,
    tokens: u64,
    seen: HashSet<String>,
    /// Lines of the result files that were not results, and what was wrong with the first.
    bad_lines: i64,
    first_bad_line: Option<String>,
}

impl Slicer<'_> {
    fn settle(&mut self, lines: Vec<LineResult>) -> Result<(), UserError> {
        // Only the first line for a paper this batch claims counts; anything else in the file
        // (ids never sent, repeats) is ignored, so what is kept stays bounded by the batch.
        let ids: Vec<String> = lines
            .iter()
            .map(|l| l.custom_id())
            .filter(|id| id.len() <= MAX_CUSTOM_ID_BYTES)
            .map(str::to_string)
            .collect();
        let claims = jobs_store::claims_among(self.batch_id, &ids)?;
        let (mut embedded, mut rejected) = (Vec::new(), Vec::new());
        for line in lines {
            if !claims.contains_key(line.custom_id()) || !self.seen.insert(line.custom_id().to_string()) {
                continue;
            }
            match line {
                LineResult::Embedded {
                    custom_id,
                    vector,
                    tokens,
                } => {
                    self.tokens += tokens;
                    embedded.push((custom_id, vector));
                }
                LineResult::Rejected { custom_id, message } if self.api_accepts => {
                    rejected.push((custom_id, message));
                }
                _ => {}
            }
        }
        // Write only papers still pending whose text is the one sent; the others (a text edited
        // meanwhile, an adopted batch whose input carried other texts or could not be read) are
        // released.
        // The texts are read a few papers at a time (each can be long) and only their
        // fingerprints kept.
        let query = self.target.names.select_claimed();
        let mut unchanged: HashSet<String> = HashSet::new();
        for wanted in embedded.chunks(CLAIMED_TEXTS_AT_ONCE) {
            let ids: Vec<String> = wanted.iter().map(|(id, _)| id.clone()).collect();
            let args: Vec<DatumWithOid> = vec![ids.into()];
            for paper in read_papers(self.target, &query, &args, self.acting)? {
                if claims.get(&paper.id) == Some(&Some(sent_text_hash(&paper.input))) {
                    unchanged.insert(paper.id);
                }
            }
        }
        let (ids, vectors): (Vec<String>, Vec<Vec<f32>>) = embedded.into_iter().filter(|(id, _)| unchanged.contains(id)).unzip();
        let settled = write_and_record(self.target, &ids, &vectors, rejected, self.model, self.acting)?;
        self.collected.written += i64::from(settled.written_rows);
        self.collected.failed += settled.failed.len() as i64;
        let mut done = settled.written;
        done.extend(settled.failed);
        jobs_store::unclaim(self.batch_id, &done)
    }

    /// Reads file `file` in slices and settles each. Lines that are not results are counted and
    /// skipped (the papers they should have named are released when the batch closes); a file
    /// that cannot be read fails the collection of this batch alone.
    fn read(&mut self, file: &str) -> Result<(), UserError> {
        let (thread_config, file_id) = (self.config.clone(), file.to_string());
        let dims = self.target.expected_dims(self.config);
        let mut failed = None;
        let outcome = streamed(
            &self.config.base_url,
            1,
            move |send: &mut dyn FnMut(FileItem) -> bool| {
                let mut slice = Vec::with_capacity(SLICE_LINES);
                let mut bad = (0, None);
                let read = read_file_lines(&thread_config, &file_id, MAX_RESULT_LINE_BYTES, &mut |line| {
                    match parse_result_line(line, dims) {
                        Ok(result) => slice.push(result),
                        Err(e) => {
                            bad.0 += 1;
                            bad.1.get_or_insert(e);
                        }
                    }
                    if slice.len() >= SLICE_LINES {
                        return send(FileItem::Lines(std::mem::take(&mut slice)));
                    }
                    true
                });
                if !slice.is_empty() {
                    send(FileItem::Lines(slice));
                }
                if let (count, Some(first)) = bad {
                    send(FileItem::BadLines { count, first });
                }
                if let Err(e) = read {
                    send(FileItem::Unreadable(e));
                }
            },
            &mut |item| match item {
                FileItem::Lines(lines) => {
                    // Each slice's datums (a `vector[]` of up to 1,000 vectors, the ids, the
                    // rows read back) live in a memory context of their own, freed after the
                    // slice: a 50,000-paper batch costs one slice of memory, not the whole file.
                    let mut slice_memory = PgMemoryContexts::new("doctrove_embed batch slice");
                    // SAFETY: the context is a child of the current one and is deleted when
                    // `slice_memory` drops; nothing allocated in it is used after the slice.
                    match unsafe { slice_memory.switch_to(|_| self.settle(lines)) } {
                        Ok(()) => true,
                        Err(error) => {
                            failed = Some(error);
                            false
                        }
                    }
                }
                FileItem::BadLines { count, first } => {
                    self.bad_lines += count;
                    self.first_bad_line.get_or_insert(first);
                    true
                }
                FileItem::Unreadable(e) => {
                    failed = Some(unreadable(self.batch_id, &e));
                    false
                }
            },
        );
        outcome.map_err(|e| api_error(&e))?;
        failed.map_or(Ok(()), Err)
    }
}

/// What the thread reading a result file hands over.
enum FileItem {
    /// A slice of result lines.
    Lines(Vec<LineResult>),
    /// Lines that are not results: how many, and what was wrong with the first.
    BadLines { count: i64, first: String },
    /// The file could not be read (whatever was read before it is settled).
    Unreadable(ApiError),
}

/// The error for a result file that could not be read.
fn unreadable(batch_id: &str, error: &ApiError) -> UserError {
    match error {
        ApiError::Rejected { status: 404, .. } => {
            return gone(format!("the API no longer has the results of batch {batch_id} (HTTP 404)"));
        }
        // The file came, but cannot be read as results (a line over the cap): it will not read
        // better next time.
        ApiError::Malformed(problem) => return gone(format!("the results of batch {batch_id} cannot be read: {problem}")),
        _ => {}
    }
    let api = api_error(error);
    UserError::new(api.code(), format!("could not read the results of batch {batch_id}: {error}"))
        .hint("The batch stays open and the next collection reads it again; after repeated failures its papers are released.")
}

/// Collects batch `info` (finished): writes, records, releases, and marks it collected.
fn collect_one(
    target: &Target,
    config: &ApiConfig,
    info: &BatchInfo,
    model: &str,
    acting: Acting,
) -> Result<(Collected, u64), UserError> {
    let mut slicer = Slicer {
        target,
        config,
        batch_id: &info.id,
        model,
        acting,
        api_accepts: info.completed > 0,
        collected: Collected::default(),
        tokens: 0,
        seen: HashSet::new(),
        bad_lines: 0,
        first_bad_line: None,
    };
    for file in [&info.output_file_id, &info.error_file_id].into_iter().flatten() {
        slicer.read(file)?;
    }
    let mut collected = slicer.collected;
    // The API's own error is already stored (`update_status`); a failed batch without one still
    // says so, and so do lines of its files that were not results.
    let mut error = (info.status == "failed" && info.error.is_none()).then(|| "the batch failed".to_string());
    if let Some(first) = &slicer.first_bad_line {
        let bad = format!(
            "lines of its result files that were not results: {} (the first: {first}); their papers were released",
            slicer.bad_lines
        );
        error = Some(match error {
            Some(e) => format!("{e}; {bad}"),
            None => bad,
        });
    }
    collected.released = jobs_store::close(&info.id, collected, error)?;
    Ok((collected, slicer.tokens))
}

/// Cancels open batch `job` on the API and collects it when the API reports it cancelled at once;
/// closes it when the API no longer knows it.
fn cancel_one(target: &Target, config: &ApiConfig, job: &OpenJob, acting: Acting) -> Result<(), UserError> {
    let id = job.batch_id.clone();
    match call_api_raw(config, move |c| embed_core::batch_client::cancel_batch(c, &id)) {
        Ok(info) => {
            jobs_store::update_status(&info)?;
            if info.is_finished() {
                let model = job.model.as_deref().unwrap_or(&config.model);
                let (collected, tokens) = collect_one(target, config, &info, model, acting)?;
                at_commit::record_batch(collected_figures(target, collected, tokens));
            }
        }
        Err(ApiError::Rejected { status: 404, .. }) => {
            let why = "the API no longer knows this batch; its papers were released".to_string();
            jobs_store::close(&job.batch_id, Collected::default(), Some(why))?;
        }
        Err(error) => return Err(api_error(&error)),
    }
    Ok(())
}

/// What a collected batch adds to the server-wide figures.
fn collected_figures(target: &Target, collected: Collected, tokens: u64) -> BatchFigures {
    BatchFigures {
        embedded: collected.written.max(0) as u64,
        failed: collected.failed.max(0) as u64,
        batch_tokens: tokens,
        relid: target.relid.to_u32(),
        job: JobKey::here(&target.job),
        ..Default::default()
    }
}

/// Job `choice`, its table checked for a collection or a cancel by the caller: the target, the
/// rights its statements run with, and where its batches are.
fn batch_job(choice: &JobChoice, acting: Acting) -> Result<(Target, Acting, ApiConfig), UserError> {
    let prepared: Prepared = prepare(choice, acting)?;
    let target = prepared.target()?;
    check_may_write(&target, prepared.acting)?;
    refuse_row_security(&target, prepared.acting)?;
    let acting = owner_rights_for(&target, prepared.acting)?;
    Ok((target, acting, prepared.batch_config()?))
}

/// Adopts unrecorded batches of job `choice`, polls every open batch of it and collects the
/// finished ones.
pub fn collect(choice: &JobChoice, acting: Acting) -> Result<CollectedAll, UserError> {
    refuse_snapshot_isolation("collect_batches()")?;
    let (target, acting, config) = batch_job(choice, acting)?;
    let adopted = adopt_unrecorded(&target, &config)?;
    Ok(CollectedAll {
        adopted,
        ..collect_finished(&target, &config, acting)?
    })
}

/// Deletes from the API the files of batches collected by earlier transactions: the input the
/// API keeps, and the results, once written, are of no more use there. A file the API no longer
/// has counts as deleted; another failure leaves it for the next collection, five times at most.
fn delete_collected_files(target: &Target, config: &ApiConfig) -> Result<(), UserError> {
    for (batch_id, files) in jobs_store::collected_with_files(target)? {
        let deleted = call_api_raw(config, move |c| {
            for file in &files {
                match delete_file(c, file) {
                    Ok(()) | Err(ApiError::Rejected { status: 404, .. }) => {}
                    Err(error) => return Err(error),
                }
            }
            Ok(())
        });
        match deleted {
            Ok(()) => jobs_store::files_deleted(&batch_id)?,
            Err(error) => {
                pgrx::debug1!("doctrove_embed: the files of batch {batch_id} stay on the API for now: {error}");
                jobs_store::note_delete_failure(&batch_id)?;
            }
        }
    }
    Ok(())
}

/// Polls every open batch of the table and collects the finished ones.
pub fn collect_finished(target: &Target, config: &ApiConfig, acting: Acting) -> Result<CollectedAll, UserError> {
    delete_collected_files(target, config)?;
    let mut all = CollectedAll::default();
    for job in jobs_store::lock_open_jobs(target)? {
        let batch_id = job.batch_id.clone();
        // Each batch in a subtransaction of its own: one that cannot be collected now is rolled
        // back alone and never holds the others up.
        let (collected, tokens) = match try_in_subtransaction(|| poll_and_collect(target, config, &job, acting)) {
            Ok(Some(done)) => done,
            Ok(None) => {
                all.still_open += 1;
                continue;
            }
            Err(error) if error.is_cancel() => return Err(error),
            Err(error) => {
                let released = note_failure(&batch_id, &error)?;
                all.totals.released += released;
                all.still_open += i32::from(released == 0);
                continue;
            }
        };
        all.batches += 1;
        all.totals.add(collected);
        at_commit::record_batch(collected_figures(target, collected, tokens));
    }
    Ok(all)
}

/// Asks the API to cancel job `choice`'s open batches. A batch the API reports cancelled at once is
/// collected now (what it finished is written); one still `cancelling` stays open, and the next
/// collection collects what it finished once it is cancelled. A batch the API no longer knows
/// (404) is closed and its papers released. Returns how many batches were cancelled.
pub fn cancel(choice: &JobChoice, acting: Acting) -> Result<i32, UserError> {
    refuse_snapshot_isolation("cancel_batches()")?;
    let (target, acting, config) = batch_job(choice, acting)?;
    let mut cancelled = 0;
    for job in jobs_store::lock_open_jobs(&target)? {
        // Each batch in a subtransaction of its own: one that cannot be cancelled or collected
        // now is left as it was, and the others are cancelled.
        match try_in_subtransaction(|| cancel_one(&target, &config, &job, acting)) {
            Ok(()) => cancelled += 1,
            Err(error) if error.is_cancel() => return Err(error),
            Err(error) => {
                note_failure(&job.batch_id, &error)?;
            }
        }
    }
    Ok(cancelled)
}
