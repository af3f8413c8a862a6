//! A search over a job's column with the caller's rights: the papers nearest to a query vector,
//! at or above a similarity, passing a filter, with the columns asked for; up to 50,000 rows,
//! streamed from a cursor a slice at a time, so the backend holds one slice, not the result.
//!
//! How it runs is chosen from the plan, not guessed: without an HNSW index on the column, or
//! when the planner estimates that at most [`EXACT_ROWS`] (or 4 times k) papers pass the
//! filter, an exact scan (index scans off for the query: every candidate's distance computed,
//! recall 100%, and cheap for that few rows); otherwise the HNSW index, with pgvector's
//! iterative scan (`hnsw.iterative_scan = relaxed_order`; the rows are sorted again) so a filter or a
//! threshold still gets k rows when k exist, scanning up to 20 times k tuples. Where pgvector
//! has no iterative scan (before 0.8), `hnsw.ef_search` is raised to k (1,000 at most; a higher
//! session value is kept either way, so a DBA can trade latency for recall) and
//! larger k are exact. The settings are set for the query and put back when its rows are read.

use std::collections::VecDeque;

use embed_core::search_filter::{self, Condition};
use embed_core::search_sql::{SearchShape, MAX_COLUMNS};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::JsonB;
use pgrx::PgSqlErrorCode::*;

use crate::errors::{internal, UserError};
use crate::pg::vector_datum::vector_datum;
use crate::table::similarity::hnsw_index;
use crate::table::target::Target;

/// Most rows one search returns.
pub const MAX_SEARCH_K: i32 = 50_000;
/// Estimated candidates at or below which a filtered search is exact.
pub const EXACT_ROWS: f64 = 20_000.0;
/// Rows read from the cursor at a time.
const SLICE_ROWS: i64 = 1_000;

/// What a search asks for besides the vector.
pub struct SearchRequest {
    pub k: i32,
    pub min_similarity: Option<f64>,
    pub filter: Option<serde_json::Value>,
    pub columns: Vec<String>,
}

/// One row: paper id, title, cosine distance, similarity (1 - distance), the columns asked for.
pub type SearchRow = (String, Option<String>, f64, f64, Option<JsonB>);

fn invalid(message: String) -> UserError {
    UserError::new(ERRCODE_INVALID_PARAMETER_VALUE, message)
}

/// Checks the request's bounds and filter; the shape of its SQL.
fn shape_of(request: &SearchRequest) -> Result<SearchShape, UserError> {
    if !(1..=MAX_SEARCH_K).contains(&request.k) {
        return Err(invalid(format!("k must be between 1 and {MAX_SEARCH_K}, not {}", request.k)));
    }
    if let Some(s) = request.min_similarity {
        if !(-1.0..=1.0).contains(&s) {
            return Err(invalid(format!(
                "min_similarity must be between -1 and 1 (cosine similarity), not {s}"
            ))
            .hint("0.35 keeps the papers whose cosine similarity to the query is at least 0.35."));
        }
    }
    let conditions = match &request.filter {
        None => Vec::new(),
        Some(filter) => search_filter::parse(filter).map_err(|e| {
            invalid(format!("invalid filter: {}", e.0)).hint(r#"A filter is {"column": value} or {"column": {">=": value}}."#)
        })?,
    };
    if request.columns.len() > MAX_COLUMNS {
        return Err(invalid(format!("a search returns at most {MAX_COLUMNS} columns")));
    }
    Ok(SearchShape {
        conditions,
        threshold: request.min_similarity.is_some(),
        columns: request.columns.clone(),
    })
}

/// Refuses a column the table does not have (42703), before anything is sent to the API.
fn check_columns(target: &Target, shape: &SearchShape) -> Result<(), UserError> {
    let names: Vec<String> = shape
        .conditions
        .iter()
        .map(|c| c.column.clone())
        .chain(shape.columns.iter().cloned())
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let missing = Spi::get_one_with_args::<String>(
        "SELECT (SELECT n FROM pg_catalog.unnest($2::pg_catalog.text[]) AS n WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a \
         WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attname OPERATOR(pg_catalog.=) n AND a.attnum OPERATOR(pg_catalog.>) 0 \
         AND NOT a.attisdropped) LIMIT 1)",
        &[target.relid.into(), names.into()],
    )
    .map_err(internal("read the table's columns"))?;
    match missing {
        None => Ok(()),
        Some(name) => Err(UserError::new(
            ERRCODE_UNDEFINED_COLUMN,
            format!("column \"{name}\" of table {} does not exist", target.names.table),
        )
        .hint("A filter and the columns returned name columns of the searched table.")),
    }
}

/// Checks the request against the table before the query is embedded (nothing is paid for a
/// search that cannot run).
pub fn check(target: &Target, request: &SearchRequest) -> Result<SearchShape, UserError> {
    let shape = shape_of(request)?;
    check_columns(target, &shape)?;
    Ok(shape)
}

/// The parameters of the search: the vector, k, the largest distance, each condition's value.
fn arguments(target: &Target, vector: &[f32], request: &SearchRequest, shape: &SearchShape) -> Vec<DatumWithOid<'static>> {
    // SAFETY: the datum is a pgvector `vector` built for exactly this type.
    let mut args = vec![
        unsafe { DatumWithOid::new(vector_datum(vector), target.vector_type) },
        request.k.into(),
    ];
    if let Some(s) = request.min_similarity {
        args.push((1.0 - s).into());
    }
    args.extend(
        shape
            .conditions
            .iter()
            .filter_map(Condition::parameter)
            .map(|value| JsonB(value).into()),
    );
    args
}

/// How the search runs.
#[derive(Debug, PartialEq)]
enum Plan {
    Exact,
    Index { iterative: bool },
}

/// The planner's estimate of the rows `sql` (an `EXPLAIN (FORMAT JSON)`) returns.
fn estimated_rows(sql: &str, args: &[DatumWithOid]) -> Result<f64, UserError> {
    let plan = Spi::get_one_with_args::<pgrx::Json>(sql, args).map_err(internal("estimate the search's candidates"))?;
    Ok(plan
        .and_then(|p| p.0.get(0)?.get("Plan")?.get("Plan Rows")?.as_f64())
        .unwrap_or(f64::INFINITY))
}

fn choose_plan(target: &Target, shape: &SearchShape, args: &[DatumWithOid], k: i32) -> Result<Plan, UserError> {
    if hnsw_index(target).is_none() {
        return Ok(Plan::Exact);
    }
    if !shape.conditions.is_empty()
        && estimated_rows(&shape.estimate_sql(&target.names), args)? <= EXACT_ROWS.max(4.0 * f64::from(k))
    {
        return Ok(Plan::Exact);
    }
    // Loads pgvector in this backend, so that its settings exist to be read and set.
    Spi::run(&format!(
        "SELECT {}.vector_dims('[1]'::{}.vector)",
        target.names.vector_schema, target.names.vector_schema
    ))
    .map_err(internal("load pgvector"))?;
    let iterative = Spi::get_one::<bool>("SELECT pg_catalog.current_setting('hnsw.iterative_scan', true) IS NOT NULL")
        .map_err(internal("read pgvector's settings"))?
        .unwrap_or(false);
    if !iterative && k > 1000 {
        return Ok(Plan::Exact);
    }
    Ok(Plan::Index { iterative })
}

/// Settings set for one query, put back when it is done.
struct LocalSettings {
    previous: Vec<(&'static str, Option<String>)>,
}

impl LocalSettings {
    fn set(settings: &[(&'static str, String)]) -> Result<LocalSettings, UserError> {
        let mut previous = Vec::new();
        for (name, value) in settings {
            let old = Spi::get_one_with_args::<String>("SELECT pg_catalog.current_setting($1, true)", &[(*name).into()])
                .map_err(internal("read a setting"))?;
            Spi::run_with_args(
                "SELECT pg_catalog.set_config($1, $2, true)",
                &[(*name).into(), value.clone().into()],
            )
            .map_err(internal("set a setting for the search"))?;
            previous.push((*name, old));
        }
        Ok(LocalSettings { previous })
    }

    fn restore(&mut self) {
        for (name, old) in self.previous.drain(..) {
            let value = old.unwrap_or_default();
            let _ = Spi::run_with_args("SELECT pg_catalog.set_config($1, $2, true)", &[name.into(), value.into()]);
        }
    }
}

/// The rows of a search, read from its cursor a slice at a time.
pub struct SearchRows {
    cursor: Option<String>,
    slice: VecDeque<SearchRow>,
    settings: LocalSettings,
}

impl SearchRows {
    fn read_slice(&mut self) -> Result<(), UserError> {
        let Some(name) = self.cursor.clone() else { return Ok(()) };
        let rows = Spi::connect(|client| {
            let mut cursor = client.find_cursor(&name)?;
            let table = cursor.fetch(SLICE_ROWS)?;
            let rows = table
                .map(|row| {
                    let distance = row.get::<f64>(3)?.unwrap_or(f64::NAN);
                    Ok((
                        row.get::<String>(1)?.unwrap_or_default(),
                        row.get::<String>(2)?,
                        distance,
                        1.0 - distance,
                        row.get::<JsonB>(4)?,
                    ))
                })
                .collect::<Result<Vec<SearchRow>, pgrx::spi::Error>>()?;
            if rows.is_empty() {
                drop(cursor); // closes it
            } else {
                cursor.detach_into_name();
            }
            Ok::<_, pgrx::spi::Error>(rows)
        })
        .map_err(internal("read the search's rows"))?;
        if rows.is_empty() {
            self.cursor = None;
            self.settings.restore();
        }
        self.slice.extend(rows);
        Ok(())
    }
}

impl Iterator for SearchRows {
    type Item = SearchRow;

    fn next(&mut self) -> Option<SearchRow> {
        if self.slice.is_empty() {
            self.read_slice().unwrap_or_else(|e| e.raise());
        }
        self.slice.pop_front()
    }
}

/// The candidate list of an index search for `k` rows: the session's `hnsw.ef_search` (a DBA
/// raises it for recall), at least k, at most pgvector's 1,000.
fn ef_search_for(k: i32) -> Result<i32, UserError> {
    let current = Spi::get_one::<String>("SELECT pg_catalog.current_setting('hnsw.ef_search', true)")
        .map_err(internal("read hnsw.ef_search"))?
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(40);
    Ok(current.max(k).clamp(1, 1000))
}

/// Opens the search of `vector` over `target` (checked with [`check`] into `shape`).
pub fn search(target: &Target, vector: &[f32], request: &SearchRequest, shape: SearchShape) -> Result<SearchRows, UserError> {
    let args = arguments(target, vector, request, &shape);
    let plan = choose_plan(target, &shape, &args, request.k)?;
    let ef_search = || -> Result<String, UserError> { Ok(ef_search_for(request.k)?.to_string()) };
    let settings: Vec<(&'static str, String)> = match plan {
        Plan::Exact => vec![("enable_indexscan", "off".into())],
        Plan::Index { iterative: true } => {
            vec![
                ("hnsw.iterative_scan", "relaxed_order".into()),
                ("hnsw.max_scan_tuples", (20 * i64::from(request.k)).max(20_000).to_string()),
                ("hnsw.ef_search", ef_search()?),
            ]
        }
        Plan::Index { iterative: false } => vec![("hnsw.ef_search", ef_search()?)],
    };
    let settings = LocalSettings::set(&settings)?;
    let sql = shape.search_sql(&target.names);
    let cursor = Spi::connect(|client| client.try_open_cursor(sql.as_str(), &args).map(|c| c.detach_into_name()))
        .map_err(internal("open the search"))?;
    Ok(SearchRows {
        cursor: Some(cursor),
        slice: VecDeque::new(),
        settings,
    })
}
