//! The pending papers of the table: those with a title and no embedding, not held back after a
//! rejection. Locking a window of them for a batch (`FOR NO KEY UPDATE SKIP LOCKED`, so
//! concurrent callers and workers take disjoint papers), counting them, and probing for any.
//! Every statement goes through the partial index when the table has one, with the rights
//! [`Acting`] says.

use std::time::Instant;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use crate::errors::{internal, UserError};
use crate::pg::identity::Acting;
use crate::pg::job_figures::{self, JobKey};
use crate::pg::shared_state;
use crate::settings::gucs;
use crate::table::target::Target;
use crate::table::{claims, failures, pending_index};

/// A locked pending paper and the text sent for it.
pub struct Pending {
    pub id: String,
    pub input: String,
}

/// Rows read from the cursor at a time: the budget is checked between them.
const FETCH_ROWS: i64 = 16;

/// Up to `limit` pending papers in no open job, locked; `descending` as in
/// `PapersTable::select_pending` (the live path takes the high end of the id order while jobs
/// are open, submissions the low end). Rows are read (and locked) a few at a time, and the fetch
/// stops once their texts reach `doctrove_embed.fetch_text_budget`.
pub fn fetch_pending(target: &Target, limit: i32, acting: Acting, descending: bool) -> Result<Vec<Pending>, UserError> {
    let query = target.names.select_pending(descending);
    let args: Vec<DatumWithOid> = vec![
        limit.into(),
        failures::held_back(target)?.into(),
        target.relid.into(),
        target.names.embedding.clone().into(),
    ];
    let budget = gucs::FETCH_TEXT_BUDGET_KB.get().max(1) as usize * 1024;
    let mut papers = pending_index::over_pending(target, || read_within_budget(target, &query, &args, acting, budget))?;
    // A submission that committed while this statement ran released its locks with its claims
    // visible, but not to this statement's snapshot: look again now that the rows are locked.
    if !papers.is_empty() && claims::has_open_claims(target)? {
        let ids: Vec<String> = papers.iter().map(|p| p.id.clone()).collect();
        let claimed = claims::claimed_among(target, &ids)?;
        papers.retain(|p| !claimed.contains(&p.id));
    }
    Ok(papers)
}

/// The papers `query` (a locking selection) gives as (id, title, abstract), read through a
/// cursor until their texts reach `budget` bytes.
fn read_within_budget(
    target: &Target,
    query: &str,
    args: &[DatumWithOid],
    acting: Acting,
    budget: usize,
) -> Result<Vec<Pending>, UserError> {
    acting
        .run(target.owner, || {
            Spi::connect_mut(|client| {
                let mut cursor = client.try_open_cursor_mut(query, args)?;
                let (mut papers, mut bytes) = (Vec::new(), 0usize);
                loop {
                    let rows = cursor.fetch(FETCH_ROWS)?;
                    if rows.is_empty() {
                        return Ok(papers);
                    }
                    for row in rows {
                        let (id, title, abstract_text) = (row.get::<String>(1)?, row.get::<String>(2)?, row.get::<String>(3)?);
                        let read = title.as_ref().map_or(0, String::len) + abstract_text.as_ref().map_or(0, String::len);
                        let input = target.format.render(title.as_deref(), abstract_text.as_deref());
                        // What is kept counts too: a format may repeat a column.
                        bytes += input.as_ref().map_or(read, |text| text.len().max(read));
                        if let (Some(id), Some(input)) = (id, input) {
                            papers.push(Pending { id, input });
                        }
                    }
                    if bytes >= budget {
                        return Ok(papers);
                    }
                }
            })
        })
        .map_err(internal("read pending papers"))
}

/// The papers `query` gives as (id, title, abstract), with the text sent for each.
pub fn read_papers(target: &Target, query: &str, args: &[DatumWithOid], acting: Acting) -> Result<Vec<Pending>, UserError> {
    let rows: Vec<(Option<String>, Option<String>, Option<String>)> = acting
        .run(target.owner, || {
            Spi::connect_mut(|client| {
                let table = client.update(query, None, args)?;
                table
                    .map(|row| Ok((row.get::<String>(1)?, row.get::<String>(2)?, row.get::<String>(3)?)))
                    .collect::<Result<Vec<_>, pgrx::spi::Error>>()
            })
        })
        .map_err(internal("read pending papers"))?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, title, abstract_text)| {
            let input = target.format.render(title.as_deref(), abstract_text.as_deref())?;
            Some(Pending { id: id?, input })
        })
        .collect())
}

/// Which papers a statement over the pending papers leaves out besides the held-back ones.
#[derive(Clone, Copy, PartialEq)]
enum Excluding {
    /// Only the held-back papers (`$1`, see `PapersTable::pending_condition`).
    HeldBack,
    /// Also the papers in open batches for the column (`$2` the table's oid, `$3` the column,
    /// see `unclaimed_condition`).
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
    what: &'static str,
) -> Result<Option<T>, UserError> {
    let mut args: Vec<DatumWithOid> = vec![failures::held_back(target)?.into()];
    if excluding == Excluding::HeldBackAndClaimed {
        args.push(target.relid.into());
        args.push(target.names.embedding.clone().into());
    }
    pending_index::over_pending(target, || {
        acting.run(target.owner, || Spi::get_one_with_args::<T>(query, &args))
    })
    .map_err(internal(what))
}

/// The exact number of pending papers in `target`.
pub fn count_pending(target: &Target, acting: Acting) -> Result<i64, UserError> {
    let query = target.names.count_pending();
    Ok(over_pending_papers::<i64>(target, acting, &query, Excluding::HeldBack, "count pending papers")?.unwrap_or(0))
}

/// Counts the pending papers of `target` and stores the figure for the status view, which shows
/// it until a newer count replaces it.
pub fn count_and_store(target: &Target, acting: Acting) -> Result<i64, UserError> {
    let start = Instant::now();
    let pending = count_pending(target, acting)?;
    let took_ms = start.elapsed().as_secs_f64() * 1000.0;
    shared_state::store_pending_count(target.relid.to_u32(), pending, took_ms);
    job_figures::store_pending(JobKey::here(&target.job), pending, took_ms);
    Ok(pending)
}

/// Whether `target` has any pending paper in no open job: one probe through the partial index.
pub fn any_pending(target: &Target, acting: Acting) -> Result<bool, UserError> {
    let query = target.names.any_pending();
    Ok(over_pending_papers::<bool>(
        target,
        acting,
        &query,
        Excluding::HeldBackAndClaimed,
        "look for pending papers",
    )?
    .unwrap_or(false))
}
