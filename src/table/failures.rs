//! `doctrove_embed.failures`: recording papers the API rejected (per job and table), forgetting them once embedded,
//! and the ids held back from the pending selection. All of it runs as the extension's owner
//! (see `identity`), so a role that embeds needs no right on the table, and the statements
//! here touch nothing else.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use crate::errors::{internal, UserError};
use crate::pg::identity::as_extension;
use crate::settings::gucs;
use crate::table::target::Target;

fn run(query: &str, args: &[DatumWithOid]) -> Result<usize, UserError> {
    as_extension(|| Spi::connect_mut(|client| client.update(query, None, args).map(|t| t.len())))
        .map_err(internal("update doctrove_embed.failures"))
}

/// The ids (as text) of the table's papers the API rejected that are held back now: after
/// `max_attempts` attempts, or for `failed_retry_delay_ms` after each.
pub fn held_back(target: &Target) -> Result<Vec<String>, UserError> {
    as_extension(|| {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT paper_id FROM doctrove_embed.failures WHERE relid = $1::oid::regclass AND job = $4 \
                     AND (attempts >= $2 OR last_attempt_at > now() - $3 * interval '1 millisecond')",
                    None,
                    &[
                        target.relid.into(),
                        gucs::MAX_ATTEMPTS.get().into(),
                        i64::from(gucs::FAILED_RETRY_DELAY_MS.get()).into(),
                        target.job.clone().into(),
                    ],
                )?
                .map(|row| row.get::<String>(1))
                .filter_map(|id| id.transpose())
                .collect::<Result<Vec<String>, _>>()
        })
    })
    .map_err(internal("read doctrove_embed.failures"))
}

/// Adds one attempt for each rejected paper, with the API's message.
pub fn record(target: &Target, ids: Vec<String>, errors: Vec<String>) -> Result<(), UserError> {
    if ids.is_empty() {
        return Ok(());
    }
    let limit = embed_core::bounds::MAX_MESSAGE_CHARS;
    let errors: Vec<String> = errors.iter().map(|e| embed_core::bounds::cut_message(e, limit)).collect();
    run(
        "INSERT INTO doctrove_embed.failures AS f (job, relid, paper_id, attempts, last_error, first_attempt_at, last_attempt_at) \
         SELECT $4, $1::oid::regclass, r.id, 1, r.error, now(), now() FROM unnest($2::text[], $3::text[]) AS r(id, error) \
         ON CONFLICT (job, relid, paper_id) DO UPDATE SET attempts = f.attempts + 1, last_error = excluded.last_error, \
         last_attempt_at = now()",
        &[target.relid.into(), ids.into(), errors.into(), target.job.clone().into()],
    )?;
    Ok(())
}

/// Forgets the rows of papers that were just embedded (cheap when there are none).
pub fn forget(target: &Target, ids: &[String]) -> Result<(), UserError> {
    let any = as_extension(|| {
        Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT 1 FROM doctrove_embed.failures WHERE relid = $1::oid::regclass AND job = $2)",
            &[target.relid.into(), target.job.clone().into()],
        )
    })
    .map_err(internal("read doctrove_embed.failures"))?
    .unwrap_or(false);
    if any {
        run(
            "DELETE FROM doctrove_embed.failures WHERE relid = $1::oid::regclass AND job = $3 AND paper_id = ANY($2::text[])",
            &[target.relid.into(), ids.to_vec().into(), target.job.clone().into()],
        )?;
    }
    Ok(())
}

/// Forgets every rejected paper of job `job` on table `relid`; returns how many.
pub fn clear_all(relid: pg_sys::Oid, job: &str) -> Result<i64, UserError> {
    Ok(run(
        "DELETE FROM doctrove_embed.failures WHERE relid = $1::oid::regclass AND job = $2",
        &[relid.into(), job.into()],
    )? as i64)
}
