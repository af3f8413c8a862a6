//! One batch, shared by `embed_pending()` and the background workers, and the pending count.
//!
//! A batch: lock up to `batch` pending rows (`FOR NO KEY UPDATE SKIP LOCKED`, so concurrent
//! callers and workers take disjoint papers), send their texts (`batch_requests`: packing,
//! retries, isolation of rejected inputs), write every vector in one UPDATE with the vectors as
//! a binary `vector[]` (`batch_write`, which isolates rows the database refuses), and record the
//! rejected and refused papers in `doctrove_embed.failures`.
//!
//! Statements on the papers table run as [`Acting`] says: with the caller's rights in a
//! session, as the table's owner in a background worker (see `identity`).

use std::time::Instant;

use embed_core::paper_input;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR;

use crate::http::api_call::{current_config, Wait};
use crate::live::requests::send_batch;
use crate::table::write::write_isolating;
use crate::errors::{api_error, UserError};
use crate::table::failures;
use crate::pg::identity::{as_role, with_catalog_search_path};
use crate::table::pending_index;
use crate::pg::shared_state::Phase;
use crate::table::target::{resolve, Target};

/// Whose rights the statements on the papers table use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acting {
    /// The current user: `embed_pending()` and the other SQL functions.
    Caller,
    /// The table's owner, in security-restricted mode: the background workers.
    TableOwner,
}

impl Acting {
    /// Runs `f`, a statement on `target`'s table, with these rights. As the table's owner it
    /// also runs with `search_path = pg_catalog, pg_temp` (as VACUUM does since PostgreSQL 17):
    /// the worker's path is the database's, which its owner sets, and the table owner's
    /// triggers must not resolve names through schemas someone else planted.
    pub fn run<R>(self, target: &Target, f: impl FnOnce() -> R) -> R {
        match self {
            Acting::Caller => f(),
            Acting::TableOwner => as_role(target.owner, || with_catalog_search_path(f)),
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

/// Refuses a batch of less than one paper.
fn check_batch_positive(batch: i32) -> Result<(), UserError> {
    if batch < 1 {
        return Err(UserError::new(
            pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("batch must be at least 1, not {batch}"),
        ));
    }
    Ok(())
}

/// Refuses a batch too large to write in one statement, before any API call.
fn check_batch_fits(batch: i32, dims: Option<usize>, setting: &str) -> Result<(), UserError> {
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
pub struct Pending {
    pub id: String,
    pub input: String,
}

/// What one batch did.
#[derive(Default, Clone)]
pub struct BatchOutcome {
    pub successful: i32,
    /// Papers recorded in `doctrove_embed.failures`: rejected by the API or refused by the
    /// database.
    pub failed: i32,
    pub fetch_ms: f64,
    pub api_ms: f64,
    pub db_ms: f64,
    pub tokens: u64,
    /// Tokens of vectors collected from the Batch API (paid at its price).
    pub batch_tokens: u64,
    /// The table (oid) the batch worked on.
    pub relid: u32,
    /// The API error that stopped the batch after some of its requests were answered: what was
    /// answered is written, the other papers stay pending.
    pub stopped_by: Option<UserError>,
}

fn millis_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// Up to `limit` pending papers in no open batch, locked; `descending` as in
/// `PapersTable::select_pending`.
pub fn fetch_pending(target: &Target, limit: i32, acting: Acting, descending: bool) -> Vec<Pending> {
    let query = target.names.select_pending(descending);
    let args: Vec<DatumWithOid> = vec![limit.into(), failures::held_back(target).into(), target.relid.into()];
    let mut papers = read_papers(target, &query, &args, acting);
    // A submission that committed while this statement ran released its locks with its claims
    // visible, but not to this statement's snapshot: look again now that the rows are locked.
    if !papers.is_empty() && crate::batch_api::jobs_store::has_open_claims(target) {
        let ids: Vec<String> = papers.iter().map(|p| p.id.clone()).collect();
        let claimed = crate::batch_api::jobs_store::claimed_among(target, &ids);
        papers.retain(|p| !claimed.contains(&p.id));
    }
    papers
}

/// The papers `query` gives as (id, title, abstract), with the text sent for each.
pub fn read_papers(target: &Target, query: &str, args: &[DatumWithOid], acting: Acting) -> Vec<Pending> {
    let rows: Vec<(Option<String>, Option<String>, Option<String>)> = acting.run(target, || {
        Spi::connect_mut(|client| {
            let table = client.update(query, None, args)?;
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


/// Embeds up to `batch` pending papers of the configured table in the current transaction,
/// telling `phase` what it is doing. An error before anything was answered (configuration, the
/// API) comes back as `Err` with nothing written; the caller decides whether to raise it or roll
/// back and carry on. An API error after some requests were answered comes back in
/// [`BatchOutcome::stopped_by`], with the answered vectors written.
pub fn run_batch(batch: i32, acting: Acting, phase: &mut dyn FnMut(Phase, &str)) -> Result<BatchOutcome, UserError> {
    check_batch_positive(batch)?;
    phase(Phase::Fetching, "");
    if acting == Acting::TableOwner {
        crate::table::target::refuse_settings_from_catalogs()?;
    }
    let target = resolve()?;
    let config = current_config()?;
    let dims = target.dims.or((config.dimensions > 0).then_some(config.dimensions as usize));
    let setting = if acting == Acting::Caller { "a batch" } else { "doctrove_embed.batch_size" };
    check_batch_fits(batch, dims, setting)?;
    let fetch_start = Instant::now();
    let descending = crate::batch_api::jobs_store::has_open_claims(&target);
    let papers = pending_index::over_pending(&target, || fetch_pending(&target, batch, acting, descending));
    let mut outcome =
        BatchOutcome { fetch_ms: millis_since(fetch_start), relid: target.relid.to_u32(), ..Default::default() };
    if papers.is_empty() {
        return Ok(outcome);
    }

    phase(Phase::CallingApi, "");
    let api_start = Instant::now();
    let texts: Vec<String> = papers.iter().map(|p| p.input.clone()).collect();
    let answered = send_batch(&config, &texts, dims, &mut |wait| match wait {
        Wait::RateLimit => phase(Phase::RateLimited, ""),
        Wait::Retry { error, text } => phase(Phase::Retrying, &format!("{text} ({error})")),
    });
    outcome.api_ms = millis_since(api_start);
    outcome.tokens = answered.tokens;
    let nothing_answered = answered.vectors.iter().all(Option::is_none) && answered.rejected.is_empty();
    if let (Some(error), true) = (&answered.error, nothing_answered) {
        return Err(api_error(error));
    }

    phase(Phase::Writing, "");
    let db_start = Instant::now();
    let (ids, vectors): (Vec<String>, Vec<Vec<f32>>) =
        papers.iter().zip(answered.vectors).filter_map(|(p, v)| v.map(|v| (p.id.clone(), v))).unzip();
    let written = write_isolating(&target, &ids, &vectors, &config.model, acting);
    outcome.successful = written.rows;
    failures::forget(&target, &written.ids);
    let mut rejected: Vec<(String, String)> =
        answered.rejected.into_iter().map(|(i, message)| (papers[i].id.clone(), message)).collect();
    rejected.extend(written.refused);
    outcome.failed = rejected.len() as i32;
    let (rejected_ids, messages): (Vec<String>, Vec<String>) = rejected.into_iter().unzip();
    failures::record(&target, rejected_ids, messages);
    outcome.db_ms = millis_since(db_start);
    outcome.stopped_by = answered.error.map(|e| api_error(&e));
    Ok(outcome)
}

/// The configured table's oid and the exact number of its pending papers, counted with the
/// caller's rights.
pub fn count_pending() -> Result<(u32, i64), UserError> {
    let target = resolve()?;
    Ok((target.relid.to_u32(), count_pending_of(&target, Acting::Caller)?))
}

/// Which papers a statement over the pending papers leaves out besides the held-back ones.
#[derive(Clone, Copy, PartialEq)]
enum Excluding {
    /// Only the held-back papers (`$1`, see `PapersTable::pending_condition`).
    HeldBack,
    /// Also the papers in open batches (`$2` the table's oid, see `unclaimed_condition`).
    HeldBackAndClaimed,
}

/// The one value of `query`, a statement over `target`'s pending papers taking the parameters
/// `excluding` says, run through the partial index with `acting`'s rights; `what` names it in
/// an error.
fn over_pending_papers<T: pgrx::datum::FromDatum + pgrx::datum::IntoDatum>(
    target: &Target,
    acting: Acting,
    query: &str,
    excluding: Excluding,
    what: &str,
) -> Result<Option<T>, UserError> {
    let mut args: Vec<DatumWithOid> = vec![failures::held_back(target).into()];
    if excluding == Excluding::HeldBackAndClaimed {
        args.push(target.relid.into());
    }
    pending_index::over_pending(target, || acting.run(target, || Spi::get_one_with_args::<T>(query, &args)))
        .map_err(|e| UserError::new(ERRCODE_INTERNAL_ERROR, format!("could not {what}: {e}")))
}

/// The exact number of pending papers in `target`.
pub fn count_pending_of(target: &Target, acting: Acting) -> Result<i64, UserError> {
    Ok(over_pending_papers::<i64>(target, acting, &target.names.count_pending(), Excluding::HeldBack, "count pending papers")?.unwrap_or(0))
}

/// Whether `target` has any pending paper in no open batch: one probe through the partial index.
pub fn any_pending_of(target: &Target, acting: Acting) -> Result<bool, UserError> {
    let query = target.names.any_pending();
    Ok(over_pending_papers::<bool>(target, acting, &query, Excluding::HeldBackAndClaimed, "look for pending papers")?.unwrap_or(false))
}
