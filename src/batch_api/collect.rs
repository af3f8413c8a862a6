//! `collect_batches()`: polls the open batches and, for each the API has finished, reads its
//! output and error files a slice at a time, writes the vectors with the live path's
//! set-based UPDATE, records the papers whose text the API rejected, and releases every other
//! paper back to pending. A batch is marked collected in the same transaction as its writes,
//! so collecting twice writes nothing twice, and a collection cut short is redone whole by the
//! next one.

use std::collections::HashSet;

use embed_core::batch_client::{read_file_lines, retrieve_batch, BatchInfo};
use embed_core::batch_file::{parse_result_line, text_hash, LineResult, MAX_CUSTOM_ID_BYTES, MAX_RESULT_LINE_BYTES};
use embed_core::ApiConfig;
use pgrx::datum::DatumWithOid;
use pgrx::PgMemoryContexts;

use crate::batch_api::adopt::adopt_unrecorded;
use crate::batch_api::jobs_store::{self, Collected};
use crate::errors::{api_error, UserError};
use crate::http::config::current_config;
use crate::http::off_thread::{call_api, streamed};
use crate::pg::at_commit;
use crate::pg::identity::Acting;
use crate::pg::shared_state::BatchFigures;
use crate::pg::transaction::refuse_snapshot_isolation;
use crate::table::pending::read_papers;
use crate::table::rights::check_may_write;
use crate::table::target::{resolve, Target};
use crate::table::write::write_and_record;

/// Result lines handled at once: the vectors of one slice are written in one statement. The
/// reader works on the next slice meanwhile, and no more: about three slices of vectors are in
/// memory at a time.
const SLICE_LINES: usize = 500;

/// What a collection did.
#[derive(Debug, Default)]
pub struct CollectedAll {
    /// Unrecorded batches found on the API and adopted first.
    pub adopted: i32,
    pub batches: i32,
    pub still_open: i32,
    pub totals: Collected,
}

fn retrieve(config: &ApiConfig, id: &str) -> Result<BatchInfo, UserError> {
    let id = id.to_string();
    call_api(config, move |c| retrieve_batch(c, &id))
}

/// Settles one slice of result lines of batch `batch_id`.
struct Slicer<'a> {
    target: &'a Target,
    config: &'a ApiConfig,
    batch_id: &'a str,
    acting: Acting,
    /// Whether the API answered any request of the batch: then a 4xx for a request holding a
    /// single text is proof that text is rejected (as the live path proves it).
    api_accepts: bool,
    collected: Collected,
    tokens: u64,
    seen: HashSet<String>,
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
        // Write only papers still pending whose text is the one sent (or not known, for an
        // adopted batch); the others are released.
        let wanted: Vec<String> = embedded.iter().map(|(id, _)| id.clone()).collect();
        let query = self.target.names.select_claimed();
        let args: Vec<DatumWithOid> = vec![wanted.into()];
        let current = read_papers(self.target, &query, &args, self.acting)?;
        let unchanged: HashSet<String> = current
            .into_iter()
            .filter(|p| match claims.get(&p.id) {
                Some(Some(hash)) => *hash == text_hash(&p.input),
                Some(None) => true,
                None => false,
            })
            .map(|p| p.id)
            .collect();
        let (ids, vectors): (Vec<String>, Vec<Vec<f32>>) = embedded.into_iter().filter(|(id, _)| unchanged.contains(id)).unzip();
        let settled = write_and_record(self.target, &ids, &vectors, rejected, &self.config.model, self.acting)?;
        self.collected.written += i64::from(settled.written_rows);
        self.collected.failed += settled.failed.len() as i64;
        let mut done = settled.written;
        done.extend(settled.failed);
        jobs_store::unclaim(self.batch_id, &done)
    }

    /// Reads file `file` in slices and settles each.
    fn read(&mut self, file: &str) -> Result<(), UserError> {
        let (thread_config, file_id) = (self.config.clone(), file.to_string());
        let dims = self.target.expected_dims(self.config);
        let mut problem = None;
        let mut failed = None;
        let outcome = streamed(
            &self.config.base_url,
            1,
            move |send: &mut dyn FnMut(Result<Vec<LineResult>, String>) -> bool| {
                let mut slice = Vec::with_capacity(SLICE_LINES);
                let mut bad = None;
                let read = read_file_lines(&thread_config, &file_id, MAX_RESULT_LINE_BYTES, &mut |line| {
                    match parse_result_line(line, dims) {
                        Ok(result) => slice.push(result),
                        Err(e) => bad = Some(e),
                    }
                    if slice.len() >= SLICE_LINES {
                        return send(Ok(std::mem::take(&mut slice)));
                    }
                    true
                });
                if !slice.is_empty() {
                    send(Ok(slice));
                }
                match (read, bad) {
                    (Err(e), _) => send(Err(e.to_string())),
                    (Ok(()), Some(e)) => send(Err(e)),
                    _ => true,
                };
            },
            &mut |item| match item {
                Ok(lines) => {
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
                Err(e) => {
                    problem = Some(e);
                    false
                }
            },
        );
        outcome.map_err(|e| api_error(&e))?;
        if let Some(error) = failed {
            return Err(error);
        }
        match problem {
            Some(e) => Err(UserError::new(
                pgrx::PgSqlErrorCode::ERRCODE_CONNECTION_FAILURE,
                format!("could not read the results of batch {}: {e}", self.batch_id),
            )
            .hint("The batch stays open; the next collection reads it again.")),
            None => Ok(()),
        }
    }
}

/// Collects batch `info` (finished): writes, records, releases, and marks it collected.
fn collect_one(target: &Target, config: &ApiConfig, info: &BatchInfo, acting: Acting) -> Result<(Collected, u64), UserError> {
    let mut slicer = Slicer {
        target,
        config,
        batch_id: &info.id,
        acting,
        api_accepts: info.completed > 0,
        collected: Collected::default(),
        tokens: 0,
        seen: HashSet::new(),
    };
    for file in [&info.output_file_id, &info.error_file_id].into_iter().flatten() {
        slicer.read(file)?;
    }
    let mut collected = slicer.collected;
    // The API's own error is already stored (`update_status`); a failed batch without one still
    // says so.
    let error = (info.status == "failed" && info.error.is_none()).then(|| "the batch failed".to_string());
    collected.released = jobs_store::close(&info.id, collected, error)?;
    Ok((collected, slicer.tokens))
}

/// Adopts unrecorded batches, polls every open batch of the table and collects the finished
/// ones.
pub fn collect(acting: Acting) -> Result<CollectedAll, UserError> {
    refuse_snapshot_isolation("collect_batches()")?;
    let target = resolve()?;
    check_may_write(&target, acting)?;
    let config = current_config()?;
    let adopted = adopt_unrecorded(&target, &config)?;
    Ok(CollectedAll {
        adopted,
        ..collect_finished(&target, &config, acting)?
    })
}

/// Polls every open batch of the table and collects the finished ones.
pub fn collect_finished(target: &Target, config: &ApiConfig, acting: Acting) -> Result<CollectedAll, UserError> {
    let mut all = CollectedAll::default();
    for batch_id in jobs_store::lock_open_jobs(target)? {
        let info = retrieve(config, &batch_id)?;
        jobs_store::update_status(&info)?;
        if !info.is_finished() {
            all.still_open += 1;
            continue;
        }
        let (collected, tokens) = collect_one(target, config, &info, acting)?;
        all.batches += 1;
        all.totals.written += collected.written;
        all.totals.failed += collected.failed;
        all.totals.released += collected.released;
        at_commit::record_batch(BatchFigures {
            embedded: collected.written.max(0) as u64,
            failed: collected.failed.max(0) as u64,
            batch_tokens: tokens,
            relid: target.relid.to_u32(),
            ..Default::default()
        });
    }
    Ok(all)
}

/// Cancels the table's open batches and releases their papers (what a batch finished before
/// the cancel took effect is written when the API reports it cancelled at once).
pub fn cancel(acting: Acting) -> Result<i32, UserError> {
    refuse_snapshot_isolation("cancel_batches()")?;
    let target = resolve()?;
    check_may_write(&target, acting)?;
    let config = current_config()?;
    let mut cancelled = 0;
    for batch_id in jobs_store::lock_open_jobs(&target)? {
        let info = call_api(&config, move |c| embed_core::batch_client::cancel_batch(c, &batch_id))?;
        jobs_store::update_status(&info)?;
        if info.is_finished() {
            collect_one(&target, &config, &info, acting)?;
        } else {
            jobs_store::close(
                &info.id,
                Collected::default(),
                Some("cancelled; results after the cancel are not collected".into()),
            )?;
        }
        cancelled += 1;
    }
    Ok(cancelled)
}
