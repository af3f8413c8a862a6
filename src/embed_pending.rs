//! One batch, shared by `embed_pending()` and the background workers, and the pending count.
//!
//! A batch: lock up to `batch` pending rows (`FOR UPDATE SKIP LOCKED`, so concurrent callers
//! and workers take disjoint papers), send their texts (at most 2048 per request), then write
//! every vector in one `UPDATE ... FROM unnest($ids, $vectors)` with the vectors as a binary
//! `vector[]`. Nothing is written unless every request of the batch succeeded.

use std::time::Instant;

use embed_core::paper_input;
use embed_core::request::MAX_INPUTS_PER_REQUEST;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR;

use crate::api_call::{current_config, embed_interruptibly};
use crate::errors::{api_error, UserError};
use crate::pending_index;
use crate::shared_state::Phase;
use crate::target::{resolve, Target};
use crate::vector_datum::vector_array_datum;

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
}

fn millis_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

fn fetch_pending(target: &Target, limit: i32) -> Vec<Pending> {
    let query = target.names.select_pending();
    let rows: Vec<(Option<String>, Option<String>, Option<String>)> = Spi::connect_mut(|client| {
        let table = client.update(query.as_str(), None, &[limit.into()])?;
        table
            .map(|row| Ok((row.get::<String>(1)?, row.get::<String>(2)?, row.get::<String>(3)?)))
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .unwrap_or_else(|e| UserError::new(ERRCODE_INTERNAL_ERROR, format!("could not read pending papers: {e}")).raise());
    rows.into_iter()
        .filter_map(|(id, title, abstract_text)| {
            let input = paper_input(title.as_deref(), abstract_text.as_deref())?;
            Some(Pending { id: id?, input })
        })
        .collect()
}

fn write_vectors(target: &Target, ids: Vec<String>, vectors: &[Vec<f32>], model: &str) -> i32 {
    let query = target.names.update_embeddings();
    let vector_array = vector_array_datum(target.vector_type, vectors);
    // SAFETY: the datum is a `vector[]` built for exactly this oid.
    let vector_param = unsafe { DatumWithOid::new(vector_array, target.vector_array_type) };
    let mut args: Vec<DatumWithOid> = vec![ids.into(), vector_param];
    if target.names.model_version.is_some() {
        args.push(model.to_string().into());
    }
    Spi::connect_mut(|client| client.update(query.as_str(), None, &args).map(|t| t.len() as i32))
        .unwrap_or_else(|e| UserError::new(ERRCODE_INTERNAL_ERROR, format!("could not write embeddings: {e}")).raise())
}

/// Embeds up to `batch` pending papers of the configured table in the current transaction,
/// telling `phase` what it is doing. Configuration and API failures come back as `Err` with
/// nothing written; the caller decides whether to raise them or roll back and carry on.
pub fn run_batch(batch: i32, phase: &mut dyn FnMut(Phase)) -> Result<BatchOutcome, UserError> {
    phase(Phase::Fetching);
    let target = resolve()?;
    let config = current_config()?;
    let has_index = pending_index::check(&target);

    let fetch_start = Instant::now();
    let papers = if has_index {
        pending_index::preferring_index(|| fetch_pending(&target, batch))
    } else {
        fetch_pending(&target, batch)
    };
    let mut outcome = BatchOutcome { fetch_ms: millis_since(fetch_start), ..Default::default() };
    if papers.is_empty() {
        return Ok(outcome);
    }

    phase(Phase::CallingApi);
    let dims = target.dims.or((config.dimensions > 0).then_some(config.dimensions as usize));
    let api_start = Instant::now();
    let mut vectors: Vec<Vec<f32>> = Vec::with_capacity(papers.len());
    for chunk in papers.chunks(MAX_INPUTS_PER_REQUEST) {
        let inputs: Vec<String> = chunk.iter().map(|p| p.input.clone()).collect();
        // Without a declared length, every request of the batch must agree with the first.
        let expected = dims.or(vectors.first().map(Vec::len));
        let answer = embed_interruptibly(&config, inputs, expected).map_err(|e| api_error(&e))?;
        outcome.tokens += answer.total_tokens;
        vectors.extend(answer.vectors);
    }
    outcome.api_ms = millis_since(api_start);

    phase(Phase::Writing);
    let db_start = Instant::now();
    let ids: Vec<String> = papers.into_iter().map(|p| p.id).collect();
    outcome.successful = write_vectors(&target, ids, &vectors, &config.model);
    outcome.failed = vectors.len() as i32 - outcome.successful;
    outcome.db_ms = millis_since(db_start);
    Ok(outcome)
}

/// The exact number of pending papers in the configured table.
pub fn count_pending() -> Result<i64, UserError> {
    let target = resolve()?;
    let query = target.names.count_pending();
    let count = || Spi::get_one::<i64>(&query);
    let result = if pending_index::check(&target) { pending_index::preferring_index(count) } else { count() };
    Ok(result.ok().flatten().unwrap_or(0))
}
