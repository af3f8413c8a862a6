//! `embed_pending(batch)` and `get_papers_needing_embeddings_count()`: one batch inside the
//! caller's transaction, and the exact pending count.
//!
//! A batch: lock up to `batch` pending rows (`FOR UPDATE SKIP LOCKED`, so concurrent callers
//! take disjoint papers), send their texts (at most 2048 per request), then write every vector
//! in one `UPDATE ... FROM unnest($ids, $vectors)` with the vectors as a binary `vector[]`.

use std::time::Instant;

use embed_core::paper_input;
use embed_core::request::MAX_INPUTS_PER_REQUEST;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use crate::api_call::{current_config, embed_interruptibly};
use crate::errors::{api_error, UserError};
use crate::pending_index;
use crate::target::{resolve, Target};
use crate::vector_datum::vector_array_datum;

/// A locked pending paper and the text sent for it.
struct Pending {
    id: String,
    input: String,
}

/// What one batch did.
pub struct BatchOutcome {
    pub successful: i32,
    pub failed: i32,
    pub fetch_ms: f64,
    pub api_ms: f64,
    pub db_ms: f64,
}

fn millis_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

fn fetch_pending(target: &Target, limit: i32) -> Vec<Pending> {
    let query = target.names.select_pending();
    let rows: Vec<(Option<String>, Option<String>, Option<String>)> = Spi::connect_mut(|client| {
        let table = client.update(query.as_str(), None, &[limit.into()])?;
        table.map(|row| Ok((row.get::<String>(1)?, row.get::<String>(2)?, row.get::<String>(3)?))).collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .unwrap_or_else(|e: pgrx::spi::Error| {
        UserError::new(pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("could not read pending papers: {e}")).raise()
    });
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
    Spi::connect_mut(|client| client.update(query.as_str(), None, &args).map(|t| t.len() as i32)).unwrap_or_else(
        |e| UserError::new(pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("could not write embeddings: {e}")).raise(),
    )
}

/// Embeds up to `batch` pending papers of the configured table in the current transaction.
pub fn run_batch(batch: i32) -> BatchOutcome {
    let target = resolve();
    let config = current_config();
    let has_index = pending_index::check(&target);

    let fetch_start = Instant::now();
    let papers = if has_index {
        pending_index::preferring_index(|| fetch_pending(&target, batch))
    } else {
        fetch_pending(&target, batch)
    };
    let fetch_ms = millis_since(fetch_start);
    if papers.is_empty() {
        return BatchOutcome { successful: 0, failed: 0, fetch_ms, api_ms: 0.0, db_ms: 0.0 };
    }

    let dims = target.dims.or((config.dimensions > 0).then_some(config.dimensions as usize));
    let api_start = Instant::now();
    let mut vectors: Vec<Vec<f32>> = Vec::with_capacity(papers.len());
    for chunk in papers.chunks(MAX_INPUTS_PER_REQUEST) {
        let inputs: Vec<String> = chunk.iter().map(|p| p.input.clone()).collect();
        // Without a declared length, every request of the batch must agree with the first.
        let expected = dims.or(vectors.first().map(Vec::len));
        match embed_interruptibly(&config, inputs, expected) {
            Ok(answer) => vectors.extend(answer.vectors),
            Err(error) => api_error(&error).raise(),
        }
    }
    let api_ms = millis_since(api_start);

    let db_start = Instant::now();
    let ids: Vec<String> = papers.into_iter().map(|p| p.id).collect();
    let successful = write_vectors(&target, ids, &vectors, &config.model);
    let db_ms = millis_since(db_start);
    let failed = vectors.len() as i32 - successful;
    BatchOutcome { successful, failed, fetch_ms, api_ms, db_ms }
}

/// The exact number of pending papers in the configured table.
pub fn count_pending() -> i64 {
    let target = resolve();
    let query = target.names.count_pending();
    let count = || Spi::get_one::<i64>(&query);
    let result = if pending_index::check(&target) { pending_index::preferring_index(count) } else { count() };
    result.ok().flatten().unwrap_or(0)
}
