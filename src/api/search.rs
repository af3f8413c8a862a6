//! Similarity search: the papers nearest to a paper, or to a query text embedded through the
//! configured API, in the column of the job chosen for the table (`use_job_for_search()`) or
//! named, with the caller's rights.

use pgrx::prelude::*;
use pgrx::JsonB;

use crate::errors::UserError;
use crate::http::query::embed_query;
use crate::table::hybrid::{check_hybrid, hybrid_search as hybrid_rows, HybridRequest, HybridRow};
use crate::table::jobs::{prepare, search_target, JobChoice, Prepared};
use crate::table::search::{check, search as search_rows, SearchRequest, SearchRow};
use crate::table::similarity::{check_k, similar_papers as nearest_to_paper};
use crate::table::target::{query_text, Target};

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
    let rows = run_search(Some(query), k, None, None, None, None).unwrap_or_else(|e| e.raise());
    TableIterator::new(rows.map(|(id, title, distance, _, _)| (id, title, distance)))
}

/// The papers most similar to `query` (at most `k`, up to 50,000, streamed), at or above
/// `min_similarity` (cosine similarity; NULL: no threshold), passing `filter` (a JSON object of
/// columns, see `embed_core::search_filter`), with `columns` of each as a JSON object (`data`),
/// in the column of job `job` (NULL: the one chosen for the table).
#[allow(clippy::type_complexity)]
#[pg_extern(schema = "doctrove_embed", name = "search", parallel_unsafe)]
fn search_filtered(
    query: Option<&str>,
    k: Option<i32>,
    min_similarity: Option<f64>,
    filter: default!(Option<JsonB>, "NULL"),
    columns: default!(Option<Vec<String>>, "NULL"),
    job: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(paper_id, String),
        name!(title, Option<String>),
        name!(distance, f64),
        name!(similarity, f64),
        name!(data, Option<JsonB>),
    ),
> {
    let rows = run_search(query, k.unwrap_or(10), min_similarity, filter, columns, job).unwrap_or_else(|e| e.raise());
    TableIterator::new(rows)
}

/// A search's text in the form it is embedded: the job's query format, or else
/// `doctrove_embed.query_format`.
fn formatted(query: &str, target: &Target) -> Result<String, UserError> {
    match &target.query_format {
        Some(format) => query_text(format, query, &format!("query format of job \"{}\"", target.job)),
        None => {
            let format = crate::settings::gucs::text(&crate::settings::gucs::QUERY_FORMAT);
            query_text(&format, query, "doctrove_embed.query_format")
        }
    }
}

/// A search's text, its job (named, or the one chosen for the table) and that job's table.
fn searched(query: Option<&str>, job: Option<&str>) -> Result<(String, Prepared, Target), UserError> {
    let query = query.ok_or_else(|| {
        UserError::new(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "the search text must not be NULL",
        )
    })?;
    let prepared = match job {
        None => search_target()?,
        Some(name) => prepare(&JobChoice::of(Some(name)), crate::pg::identity::Acting::Caller)?,
    };
    let target = prepared.target()?;
    Ok((query.to_string(), prepared, target))
}

/// The vector of `query` from the job's endpoints (or the cache). The caller has checked the
/// search first: a search that cannot run pays for nothing.
fn query_vector(prepared: &Prepared, target: &Target, query: &str) -> Result<Vec<f32>, UserError> {
    let endpoints = prepared.endpoints()?;
    let dims = target.expected_dims(&endpoints[0].config);
    embed_query(&endpoints, query, dims)
}

fn run_search(
    query: Option<&str>,
    k: i32,
    min_similarity: Option<f64>,
    filter: Option<JsonB>,
    columns: Option<Vec<String>>,
    job: Option<&str>,
) -> Result<impl Iterator<Item = SearchRow>, UserError> {
    let (query, prepared, target) = searched(query, job)?;
    let request = SearchRequest {
        k,
        min_similarity,
        filter: filter.map(|f| f.0),
        columns: columns.unwrap_or_default(),
    };
    let shape = check(&target, &request)?;
    let vector = query_vector(&prepared, &target, &formatted(&query, &target)?)?;
    search_rows(&target, &vector, &request, shape)
}

/// The `k` papers (up to 1,000) that rank best in both the vector ranking of `query` and the full
/// text ranking of its words over the papers' titles and abstracts, fused by reciprocal rank
/// (`vector_weight / (rrf_k + vector rank) + text_weight / (rrf_k + text rank)`), each ranking
/// cut to `candidates` (default 4k, at least 100), both filtered by `filter`, in job `job`'s
/// column (NULL: the one chosen for the table).
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn hybrid_search(
    query: Option<&str>,
    k: default!(i32, 10),
    filter: default!(Option<JsonB>, "NULL"),
    vector_weight: default!(f64, 1.0),
    text_weight: default!(f64, 1.0),
    rrf_k: default!(i32, 60),
    candidates: default!(Option<i32>, "NULL"),
    job: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(paper_id, String),
        name!(title, Option<String>),
        name!(score, f64),
        name!(vector_rank, Option<i64>),
        name!(text_rank, Option<i64>),
        name!(similarity, Option<f64>),
    ),
> {
    let request = HybridRequest {
        k,
        filter: filter.map(|f| f.0),
        vector_weight,
        text_weight,
        rrf_k,
        candidates,
    };
    TableIterator::new(run_hybrid(query, &request, job).unwrap_or_else(|e| e.raise()))
}

fn run_hybrid(query: Option<&str>, request: &HybridRequest, job: Option<&str>) -> Result<Vec<HybridRow>, UserError> {
    let (query, prepared, target) = searched(query, job)?;
    let conditions = check_hybrid(&target, request)?;
    // The vector of the formatted text; the words of the text as given.
    let vector = query_vector(&prepared, &target, &formatted(&query, &target)?)?;
    hybrid_rows(&target, &query, &vector, request, &conditions)
}
