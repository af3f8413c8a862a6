//! Similarity search: the papers nearest to a paper, or to a query text embedded through the
//! configured API, in the column of the job chosen for the table (`use_job_for_search()`),
//! with the caller's rights.

use pgrx::prelude::*;

use crate::http::query::embed_query;
use crate::table::jobs::search_target;
use crate::table::similarity::{check_k, nearest, similar_papers as nearest_to_paper};

/// The `k` papers most similar to paper `paper_id` (cosine distance), itself left out.
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn similar_papers(
    paper_id: &str,
    k: default!(i32, 10),
) -> TableIterator<'static, (name!(paper_id, String), name!(title, Option<String>), name!(distance, f64))> {
    let target = search_target().and_then(|s| s.target()).unwrap_or_else(|e| e.raise());
    TableIterator::new(nearest_to_paper(&target, paper_id, k).unwrap_or_else(|e| e.raise()))
}

/// The `k` papers most similar to `query`, embedded through the configured API.
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn search(
    query: &str,
    k: default!(i32, 10),
) -> TableIterator<'static, (name!(paper_id, String), name!(title, Option<String>), name!(distance, f64))> {
    check_k(k).unwrap_or_else(|e| e.raise());
    let searched = search_target().unwrap_or_else(|e| e.raise());
    let target = searched.target().unwrap_or_else(|e| e.raise());
    let endpoints = searched.endpoints().unwrap_or_else(|e| e.raise());
    let dims = target.expected_dims(&endpoints[0].config);
    let vector = embed_query(&endpoints, query, dims).unwrap_or_else(|e| e.raise());
    TableIterator::new(nearest(&target, &vector, k).unwrap_or_else(|e| e.raise()))
}
