//! One batch, shared by `embed_pending()` and the background workers, and the pending count.
//!
//! A batch: lock up to `batch` pending rows (`FOR NO KEY UPDATE SKIP LOCKED`, so concurrent callers
//! and workers take disjoint papers), cut each text to the model's token limit, pack the texts
//! into requests (at most 2048 inputs and `max_tokens_per_request` tokens each), send them with
//! retries, isolate any input the API rejects (see `embed_core::bisect`), then write every
//! vector in one `UPDATE ... FROM unnest($ids, $vectors)` with the vectors as a binary
//! `vector[]`, and record the rejected papers in `doctrove_embed.failures`. Any other failure
//! returns an error with nothing written.
//!
//! Statements on the papers table run as [`Acting`] says: with the caller's rights in a
//! session, as the table's owner in a background worker (see `identity`).

use std::time::Instant;

use embed_core::bisect::{isolate_rejected, CANARY_TEXT};
use embed_core::packing::pack;
use embed_core::paper_input;
use embed_core::rate_limit;
use embed_core::tokens::{self, MAX_TOKENS_PER_INPUT};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR;

use crate::api_call::{current_config, embed_with_retries, retry_policy};
use crate::errors::{api_error, UserError};
use crate::failures;
use crate::identity::as_role;
use crate::gucs;
use crate::pending_index;
use crate::shared_state::Phase;
use crate::target::{resolve, Target};
use crate::vector_datum::vector_array_datum;

/// Whose rights the statements on the papers table use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acting {
    /// The current user: `embed_pending()` and the other SQL functions.
    Caller,
    /// The table's owner, in security-restricted mode: the background workers.
    TableOwner,
}

impl Acting {
    /// Runs `f`, a statement on `target`'s table, with these rights.
    pub fn run<R>(self, target: &Target, f: impl FnOnce() -> R) -> R {
        match self {
            Acting::Caller => f(),
            Acting::TableOwner => as_role(target.owner, f),
        }
    }
}

/// Bytes one `vector` value of `dims` dimensions takes (header, dim, unused, floats).
fn vector_bytes(dims: usize) -> usize {
    8 + 4 * dims
}

/// Most papers one batch may hold for vectors of `dims` dimensions (`None`: not yet known, so
/// the largest pgvector allows): the `vector[]` written in one statement must stay under
/// PostgreSQL's 1 GB allocation limit, with room for the array's own header and the ids.
pub fn max_batch(dims: Option<usize>) -> usize {
    const MAX_ALLOC: usize = 0x3fff_ffff;
    let per_paper = vector_bytes(dims.unwrap_or(embed_core::bounds::MAX_VECTOR_DIMS)) + 8;
    (MAX_ALLOC - 64 * 1024) / per_paper
}

/// Refuses a batch too large to write in one statement, before any API call.
pub fn check_batch_size(batch: i32, dims: Option<usize>, setting: &str) -> Result<(), UserError> {
    if batch < 1 {
        return Err(UserError::new(
            pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("batch must be at least 1, not {batch}"),
        ));
    }
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

/// A locked pending paper and the text sent for it.
struct Pending {
    id: String,
    input: String,
}

/// What one batch did.
#[derive(Debug, Default, Clone, Copy)]
pub struct BatchOutcome {
    pub successful: i32,
    pub failed: i32,
    pub fetch_ms: f64,
    pub api_ms: f64,
    pub db_ms: f64,
    pub tokens: u64,
    /// The table (oid) the batch worked on.
    pub relid: u32,
}

fn millis_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

fn fetch_pending(target: &Target, limit: i32, acting: Acting) -> Vec<Pending> {
    let query = target.names.select_pending();
    let args: Vec<DatumWithOid> = vec![limit.into(), failures::held_back(target).into()];
    let rows: Vec<(Option<String>, Option<String>, Option<String>)> = acting.run(target, || {
        Spi::connect_mut(|client| {
            let table = client.update(query.as_str(), None, &args)?;
            table
                .map(|row| Ok((row.get::<String>(1)?, row.get::<String>(2)?, row.get::<String>(3)?)))
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })
    })
    .unwrap_or_else(|e| UserError::new(ERRCODE_INTERNAL_ERROR, format!("could not read pending papers: {e}")).raise());
    rows.into_iter()
        .filter_map(|(id, title, abstract_text)| {
            let input = paper_input(title.as_deref(), abstract_text.as_deref())?;
            Some(Pending { id: id?, input })
        })
        .collect()
}

fn write_vectors(target: &Target, ids: Vec<String>, vectors: &[Vec<f32>], model: &str, acting: Acting) -> i32 {
    let query = target.names.update_embeddings();
    let vector_array = vector_array_datum(target.vector_type, vectors);
    // SAFETY: the datum is a `vector[]` built for exactly this oid.
    let vector_param = unsafe { DatumWithOid::new(vector_array, target.vector_array_type) };
    let mut args: Vec<DatumWithOid> = vec![ids.into(), vector_param];
    if target.names.model_version.is_some() {
        args.push(model.to_string().into());
    }
    acting
        .run(target, || Spi::connect_mut(|client| client.update(query.as_str(), None, &args).map(|t| t.len() as i32)))
        .unwrap_or_else(|e| UserError::new(ERRCODE_INTERNAL_ERROR, format!("could not write embeddings: {e}")).raise())
}

/// Embeds up to `batch` pending papers of the configured table in the current transaction,
/// telling `phase` what it is doing. Configuration and API failures come back as `Err` with
/// nothing written; the caller decides whether to raise them or roll back and carry on.
pub fn run_batch(batch: i32, acting: Acting, phase: &mut dyn FnMut(Phase)) -> Result<BatchOutcome, UserError> {
    check_batch_size(batch, Some(1), "a batch")?;
    phase(Phase::Fetching);
    let target = resolve()?;
    let config = current_config()?;
    let declared = target.dims.or((config.dimensions > 0).then_some(config.dimensions as usize));
    let setting = if acting == Acting::Caller { "a batch" } else { "doctrove_embed.batch_size" };
    check_batch_size(batch, declared, setting)?;
    let fetch_start = Instant::now();
    let papers = pending_index::over_pending(&target, || fetch_pending(&target, batch, acting));
    let mut outcome =
        BatchOutcome { fetch_ms: millis_since(fetch_start), relid: target.relid.to_u32(), ..Default::default() };
    if papers.is_empty() {
        return Ok(outcome);
    }

    phase(Phase::CallingApi);
    let api_start = Instant::now();
    let dims = target.dims.or((config.dimensions > 0).then_some(config.dimensions as usize));
    // Each text is at most MAX_INPUT_BYTES, so each cut takes milliseconds; a cancel is seen
    // between texts.
    let inputs: Vec<(String, Option<usize>)> = papers
        .iter()
        .map(|p| {
            pg_sys::check_for_interrupts!();
            tokens::truncate(&p.input, MAX_TOKENS_PER_INPUT)
        })
        .collect();
    let budget = gucs::MAX_TOKENS_PER_REQUEST.get().max(1) as usize;
    // Byte lengths bound token counts from above; count exactly only when they do not fit.
    let upper: Vec<usize> = inputs.iter().map(|(text, n)| n.unwrap_or_else(|| tokens::upper_bound(text))).collect();
    let counts = if upper.iter().sum::<usize>() <= budget {
        upper
    } else {
        inputs
            .iter()
            .map(|(text, n)| {
                pg_sys::check_for_interrupts!();
                n.unwrap_or_else(|| tokens::count(text))
            })
            .collect()
    };
    let policy = retry_policy();
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; papers.len()];
    let mut rejected: Vec<(usize, String)> = Vec::new();
    let mut expected = dims;
    // Token estimates for the rate limit: exact where counted, else about four bytes a token.
    let estimates: Vec<usize> =
        inputs.iter().map(|(text, n)| n.unwrap_or_else(|| rate_limit::estimate_tokens(text))).collect();
    let mut on_wait = || phase(Phase::RateLimited);
    for request in pack(&counts, budget) {
        let indices: Vec<usize> = request.collect();
        let mut send = |items: &[usize]| {
            let texts: Vec<String> = items.iter().map(|&i| inputs[i].0.clone()).collect();
            let tokens = items.iter().map(|&i| estimates[i]).sum();
            // Without a declared length, every request of the batch must agree with the first.
            let answer = embed_with_retries(&config, &texts, tokens, expected, &policy, &mut on_wait)?;
            expected = expected.or(answer.vectors.first().map(Vec::len));
            outcome.tokens += answer.total_tokens;
            Ok(answer.vectors)
        };
        let mut canary = || embed_with_retries(&config, &[CANARY_TEXT.to_string()], 4, None, &policy, &mut || {}).map(|_| ());
        let isolated = isolate_rejected(&indices, &mut send, &mut canary).map_err(|e| api_error(&e))?;
        for (i, vector) in isolated.vectors {
            vectors[i] = Some(vector);
        }
        rejected.extend(isolated.rejected);
    }
    outcome.api_ms = millis_since(api_start);

    phase(Phase::Writing);
    let db_start = Instant::now();
    let (ids, embedded): (Vec<String>, Vec<Vec<f32>>) =
        papers.iter().zip(vectors).filter_map(|(p, v)| v.map(|v| (p.id.clone(), v))).unzip();
    if !ids.is_empty() {
        outcome.successful = write_vectors(&target, ids.clone(), &embedded, &config.model, acting);
        failures::forget(&target, &ids);
    }
    outcome.failed = rejected.len() as i32;
    let (rejected_ids, messages): (Vec<String>, Vec<String>) =
        rejected.into_iter().map(|(i, message)| (papers[i].id.clone(), message)).unzip();
    failures::record(&target, rejected_ids, messages);
    outcome.db_ms = millis_since(db_start);
    Ok(outcome)
}

/// The configured table's oid and the exact number of its pending papers, counted with the
/// caller's rights.
pub fn count_pending() -> Result<(u32, i64), UserError> {
    let target = resolve()?;
    Ok((target.relid.to_u32(), count_pending_of(&target, Acting::Caller)?))
}

/// The exact number of pending papers in `target`.
pub fn count_pending_of(target: &Target, acting: Acting) -> Result<i64, UserError> {
    let query = target.names.count_pending();
    let args: Vec<DatumWithOid> = vec![failures::held_back(target).into()];
    let result = pending_index::over_pending(target, || acting.run(target, || Spi::get_one_with_args::<i64>(&query, &args)));
    result.map(|n| n.unwrap_or(0)).map_err(|e| UserError::new(ERRCODE_INTERNAL_ERROR, format!("could not count pending papers: {e}")))
}
