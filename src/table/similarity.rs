//! Similarity search over the embedded papers: the nearest neighbours of a paper, of a query
//! text (embedded through the configured API), and the HNSW index that makes both fast.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

use crate::http::api_call::{current_config, embed_with_retries, retry_policy};
use crate::errors::{api_error, UserError};
use crate::table::target::Target;
use crate::pg::vector_datum::vector_datum;

/// (paper id, title, cosine distance), nearest first.
pub type Neighbour = (String, Option<String>, f64);

fn rows(query: &str, args: &[DatumWithOid]) -> Vec<Neighbour> {
    Spi::connect(|client| {
        let table = client.select(query, None, args)?;
        table
            .map(|row| Ok((row.get::<String>(1)?.unwrap_or_default(), row.get::<String>(2)?, row.get::<f64>(3)?.unwrap_or(f64::NAN))))
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .unwrap_or_else(|e| UserError::new(ERRCODE_INTERNAL_ERROR, format!("could not search: {e}")).raise())
}

/// Most neighbours one call returns.
pub const MAX_K: i32 = 1000;

/// Refuses a `k` outside 1 to [`MAX_K`].
pub fn check_k(k: i32) -> Result<(), UserError> {
    if (1..=MAX_K).contains(&k) {
        return Ok(());
    }
    Err(UserError::new(ERRCODE_INVALID_PARAMETER_VALUE, format!("k must be between 1 and {MAX_K}, not {k}"))
        .hint("Ask for fewer neighbours; page through more with your own query on the table."))
}

/// The `k` papers nearest to paper `paper_id`.
pub fn similar_papers(target: &Target, paper_id: &str, k: i32) -> Vec<Neighbour> {
    check_k(k).unwrap_or_else(|e| e.raise());
    let has_vector = Spi::get_one_with_args::<bool>(&target.names.has_embedding(), &[paper_id.into()]).ok().flatten();
    match has_vector {
        None => UserError::new(ERRCODE_NO_DATA_FOUND, format!("no paper with id {paper_id} in {}", target.names.table)).raise(),
        Some(false) => UserError::new(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, format!("paper {paper_id} has no embedding yet"))
            .hint("Embed it first: SELECT embed_pending();")
            .raise(),
        Some(true) => rows(&target.names.similar_papers(), &[paper_id.into(), k.into()]),
    }
}

/// The `k` papers nearest to `query`, embedded through the configured API.
pub fn search(target: &Target, query: &str) -> Result<Vec<f32>, UserError> {
    let text = embed_core::bounds::cut_bytes(query.trim(), embed_core::bounds::MAX_INPUT_BYTES);
    let (text, _) = embed_core::tokens::truncate(text, embed_core::tokens::MAX_TOKENS_PER_INPUT);
    let text = text.as_str();
    if text.is_empty() {
        return Err(UserError::new(ERRCODE_INVALID_PARAMETER_VALUE, "the search text is empty"));
    }
    let config = current_config()?;
    let dims = target.dims.or((config.dimensions > 0).then_some(config.dimensions as usize));
    let answer = embed_with_retries(
        &config,
        &[text.to_string()],
        embed_core::rate_limit::estimate_tokens(text),
        dims,
        &retry_policy(),
        &mut |_| {},
    )
    .map_err(|e| api_error(&e))?;
    Ok(answer.vectors.into_iter().next().unwrap_or_default())
}

/// The `k` papers nearest to `vector`.
/// (`k` is checked by the caller, before the query is embedded.)
pub fn nearest(target: &Target, vector: &[f32], k: i32) -> Vec<Neighbour> {
    // SAFETY: the datum is a pgvector `vector` built for exactly this type.
    let param = unsafe { DatumWithOid::new(vector_datum(vector), target.vector_type) };
    rows(&target.names.nearest_papers(), &[param, k.into()])
}

/// The name of an HNSW index on the embedding column, if there is one.
pub fn hnsw_index(target: &Target) -> Option<String> {
    crate::pg::identity::with_catalog_search_path(|| hnsw_index_with_catalog_path(target))
}

fn hnsw_index_with_catalog_path(target: &Target) -> Option<String> {
    Spi::get_one_with_args::<String>(
        "SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_am am ON am.oid = c.relam JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
         WHERE i.indrelid = $1 AND am.amname = 'hnsw' AND a.attname = $2 AND i.indisvalid ORDER BY 1 LIMIT 1",
        &[target.relid.into(), target.names.embedding.clone().into()],
    )
    .ok()
    .flatten()
}
