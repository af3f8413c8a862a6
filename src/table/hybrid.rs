//! Hybrid search with the caller's rights: the vector ranking and PostgreSQL's full text
//! ranking of the same papers, fused by reciprocal rank (see `embed_core::hybrid_sql`), and the
//! GIN index the text ranking reads.

use embed_core::search_filter::Condition;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::JsonB;
use pgrx::PgSqlErrorCode::*;

use crate::errors::{internal, UserError};
use crate::pg::vector_datum::vector_datum;
use crate::table::search::{check, SearchRequest};
use crate::table::target::Target;

/// Most rows one hybrid search returns, and most candidates of each list.
pub const MAX_HYBRID_K: i32 = 1000;
pub const MAX_CANDIDATES: i32 = 10_000;

/// What a hybrid search asks for besides the vector and the text.
pub struct HybridRequest {
    pub k: i32,
    pub filter: Option<serde_json::Value>,
    pub vector_weight: f64,
    pub text_weight: f64,
    pub rrf_k: i32,
    pub candidates: Option<i32>,
}

/// One row: paper id, title, fused score, rank in the vector list, rank in the text list,
/// similarity (when in the vector list).
pub type HybridRow = (String, Option<String>, f64, Option<i64>, Option<i64>, Option<f64>);

fn invalid(message: String) -> UserError {
    UserError::new(ERRCODE_INVALID_PARAMETER_VALUE, message)
}

impl HybridRequest {
    fn candidates(&self) -> i32 {
        self.candidates.unwrap_or((4 * self.k).max(100)).min(MAX_CANDIDATES)
    }
}

/// Checks the request (bounds, weights, filter, columns) before the query is embedded; the
/// filter's conditions.
pub fn check_hybrid(target: &Target, request: &HybridRequest) -> Result<Vec<Condition>, UserError> {
    if !(1..=MAX_HYBRID_K).contains(&request.k) {
        return Err(invalid(format!("k must be between 1 and {MAX_HYBRID_K}, not {}", request.k)));
    }
    if let Some(c) = request.candidates {
        if !(1..=MAX_CANDIDATES).contains(&c) {
            return Err(invalid(format!("candidates must be between 1 and {MAX_CANDIDATES}, not {c}")));
        }
    }
    let weights_ok = |w: f64| w.is_finite() && w >= 0.0;
    if !weights_ok(request.vector_weight)
        || !weights_ok(request.text_weight)
        || request.vector_weight + request.text_weight <= 0.0
    {
        return Err(invalid("the weights must be finite, not negative, and not both 0".into()));
    }
    if request.rrf_k < 0 {
        return Err(invalid(format!("rrf_k must not be negative, not {}", request.rrf_k)));
    }
    let shape = check(
        target,
        &SearchRequest {
            k: request.k,
            min_similarity: None,
            filter: request.filter.clone(),
            columns: Vec::new(),
        },
    )?;
    Ok(shape.conditions)
}

/// Runs the hybrid search of `query` (embedded as `vector`) over `target`.
pub fn hybrid_search(
    target: &Target,
    query: &str,
    vector: &[f32],
    request: &HybridRequest,
    conditions: &[Condition],
) -> Result<Vec<HybridRow>, UserError> {
    // SAFETY: the datum is a pgvector `vector` built for exactly this type.
    let mut args: Vec<DatumWithOid> = vec![
        unsafe { DatumWithOid::new(vector_datum(vector), target.vector_type) },
        request.k.into(),
        query.into(),
        request.candidates().into(),
        request.vector_weight.into(),
        request.text_weight.into(),
        request.rrf_k.into(),
    ];
    args.extend(conditions.iter().filter_map(Condition::parameter).map(|v| JsonB(v).into()));
    let sql = target.names.hybrid_search(conditions);
    Spi::connect(|client| {
        client
            .select(sql.as_str(), None, &args)?
            .map(|row| {
                Ok((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?,
                    row.get::<f64>(3)?.unwrap_or(0.0),
                    row.get::<i64>(4)?,
                    row.get::<i64>(5)?,
                    row.get::<f64>(6)?,
                ))
            })
            .collect::<Result<Vec<HybridRow>, pgrx::spi::Error>>()
    })
    .map_err(internal("run the hybrid search"))
}

/// The name of the GIN index on the table's document, if there is one.
fn text_index(target: &Target) -> Option<String> {
    crate::pg::identity::with_catalog_search_path(|| {
        Spi::get_one_with_args::<String>(
            "SELECT (SELECT c.oid::regclass::text FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid \
             WHERE i.indrelid = $1 AND c.relname = $2 AND i.indisvalid)",
            &[target.relid.into(), target.names.text_index_name().into()],
        )
    })
    .ok()
    .flatten()
}

/// Builds the GIN index on the table's document unless it exists (locking writes while it
/// builds; `text_index_command()` gives the concurrent form); returns its name.
pub fn create_text_index(target: &Target) -> Result<String, UserError> {
    if let Some(existing) = text_index(target) {
        return Ok(existing);
    }
    crate::pg::ddl::run_ddl(&target.names.create_text_index(false), "create the text index")?;
    Ok(text_index(target).unwrap_or_else(|| target.names.text_index_name()))
}
