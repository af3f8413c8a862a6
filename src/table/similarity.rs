//! Similarity search over the embedded papers: the nearest neighbours of a paper or of a vector
//! (a query's, embedded by `http::query`), and the HNSW index that makes both fast.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

use crate::errors::{internal, UserError};
use crate::pg::identity::with_catalog_search_path;
use crate::table::target::Target;

/// (paper id, title, cosine distance), nearest first.
pub type Neighbour = (String, Option<String>, f64);

fn rows(query: &str, args: &[DatumWithOid]) -> Result<Vec<Neighbour>, UserError> {
    Spi::connect(|client| {
        let table = client.select(query, None, args)?;
        table
            .map(|row| {
                Ok((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?,
                    row.get::<f64>(3)?.unwrap_or(f64::NAN),
                ))
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .map_err(internal("search"))
}

/// Most neighbours one call returns.
pub const MAX_K: i32 = 1000;

/// Refuses a `k` outside 1 to [`MAX_K`].
pub fn check_k(k: i32) -> Result<(), UserError> {
    if (1..=MAX_K).contains(&k) {
        return Ok(());
    }
    Err(UserError::new(
        ERRCODE_INVALID_PARAMETER_VALUE,
        format!("k must be between 1 and {MAX_K}, not {k}"),
    )
    .hint("Ask for fewer neighbours; page through more with your own query on the table."))
}

/// The `k` papers nearest to paper `paper_id`.
pub fn similar_papers(target: &Target, paper_id: &str, k: i32) -> Result<Vec<Neighbour>, UserError> {
    check_k(k)?;
    let has_vector = Spi::get_one_with_args::<bool>(&target.names.has_embedding(), &[paper_id.into()])
        .ok()
        .flatten();
    match has_vector {
        None => Err(UserError::new(
            ERRCODE_NO_DATA_FOUND,
            format!("no paper with id {paper_id} in {}", target.names.table),
        )),
        Some(false) => Err(UserError::new(
            ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("paper {paper_id} has no embedding yet"),
        )
        .hint("Embed it first: SELECT embed_pending();")),
        Some(true) => rows(&target.names.similar_papers(), &[paper_id.into(), k.into()]),
    }
}

/// The name of an HNSW index on the embedding column, if there is one.
pub fn hnsw_index(target: &Target) -> Option<String> {
    with_catalog_search_path(|| hnsw_index_with_catalog_path(target))
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

/// Builds an HNSW index for cosine distance on the embedding column (pgvector's default m = 16,
/// ef_construction = 64) unless one exists; returns its name.
pub fn create_hnsw_index(target: &Target) -> Result<String, UserError> {
    if let Some(existing) = hnsw_index(target) {
        return Ok(existing);
    }
    crate::pg::ddl::run_ddl(&target.names.create_hnsw_index(), "create the index")?;
    Ok(hnsw_index(target).unwrap_or_else(|| target.names.hnsw_index_name()))
}
