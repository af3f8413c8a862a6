//! `doctrove_embed.batch_jobs` and `doctrove_embed.batch_papers`: the batches sent through the
//! Batch API and the papers each holds. All of it runs as the extension's owner (see
//! `identity`), so a role that submits or collects needs no right on these tables.

use std::collections::HashMap;

use embed_core::batch_client::BatchInfo;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR;

use crate::errors::UserError;
use crate::pg::identity::as_extension;
use crate::table::target::Target;

fn failed(e: pgrx::spi::Error) -> ! {
    UserError::new(ERRCODE_INTERNAL_ERROR, format!("could not use doctrove_embed.batch_jobs: {e}")).raise()
}

fn run(query: &str, args: &[DatumWithOid]) -> usize {
    as_extension(|| Spi::connect_mut(|client| client.update(query, None, args).map(|t| t.len()))).unwrap_or_else(|e| failed(e))
}

fn one<T: pgrx::datum::FromDatum + pgrx::datum::IntoDatum>(query: &str, args: &[DatumWithOid]) -> Option<T> {
    as_extension(|| Spi::get_one_with_args::<T>(query, args)).unwrap_or_else(|e| failed(e))
}

/// Whether any paper of the table is in an open batch.
pub fn has_open_claims(target: &Target) -> bool {
    one::<bool>(
        "SELECT EXISTS (SELECT FROM doctrove_embed.batch_papers WHERE relid = $1::oid::regclass)",
        &[target.relid.into()],
    )
    .unwrap_or(false)
}

/// Which of `ids` are claimed by an open batch, read with a snapshot taken now: a paper whose
/// claim was committed after the statement that locked it began is seen here.
pub fn claimed_among(target: &Target, ids: &[String]) -> std::collections::HashSet<String> {
    as_extension(|| {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT paper_id FROM doctrove_embed.batch_papers WHERE relid = $1::oid::regclass AND paper_id = ANY($2::text[])",
                    None,
                    &[target.relid.into(), ids.to_vec().into()],
                )?
                .map(|row| row.get::<String>(1))
                .filter_map(|id| id.transpose())
                .collect::<Result<std::collections::HashSet<String>, _>>()
        })
    })
    .unwrap_or_else(|e| failed(e))
}

/// Tokens in the table's batches the API still counts as enqueued.
pub fn enqueued_tokens(target: &Target) -> i64 {
    one::<i64>(
        "SELECT coalesce(sum(tokens), 0)::bigint FROM doctrove_embed.batch_jobs WHERE relid = $1::oid::regclass \
         AND collected_at IS NULL AND status IN ('validating', 'in_progress', 'finalizing')",
        &[target.relid.into()],
    )
    .unwrap_or(0)
}

/// Papers in the table's open batches.
pub fn papers_in_open_batches(target: &Target) -> i64 {
    one::<i64>(
        "SELECT coalesce(sum(papers), 0)::bigint FROM doctrove_embed.batch_jobs WHERE relid = $1::oid::regclass AND collected_at IS NULL",
        &[target.relid.into()],
    )
    .unwrap_or(0)
}

/// Whether the batch is recorded (open or collected).
pub fn is_known(batch_id: &str) -> bool {
    one::<bool>("SELECT EXISTS (SELECT FROM doctrove_embed.batch_jobs WHERE batch_id = $1)", &[batch_id.into()]).unwrap_or(false)
}

/// The table's open batches, each locked for this transaction; batches another session is
/// collecting are skipped.
pub fn lock_open_batches(target: &Target) -> Vec<String> {
    as_extension(|| {
        Spi::connect_mut(|client| {
            client
                .update(
                    "SELECT batch_id FROM doctrove_embed.batch_jobs WHERE relid = $1::oid::regclass AND collected_at IS NULL \
                     ORDER BY submitted_at FOR UPDATE SKIP LOCKED",
                    None,
                    &[target.relid.into()],
                )?
                .map(|row| row.get::<String>(1))
                .filter_map(|id| id.transpose())
                .collect::<Result<Vec<String>, _>>()
        })
    })
    .unwrap_or_else(|e| failed(e))
}

/// Records a batch the API accepted and claims its papers (`ids`, with the hash of each text
/// sent, or `None` when not known).
pub fn record(target: &Target, info: &BatchInfo, submission: &str, tokens: i64, ids: Vec<String>, hashes: Vec<Option<i64>>, adopted: bool) {
    run(
        "INSERT INTO doctrove_embed.batch_jobs (batch_id, relid, submission_id, input_file_id, status, papers, tokens, \
         requests_total, adopted) VALUES ($1, $2::oid::regclass, $3, $4, $5, $6, $7, $8, $9)",
        &[
            info.id.clone().into(),
            target.relid.into(),
            submission.into(),
            info.input_file_id.clone().into(),
            info.status.clone().into(),
            (ids.len() as i32).into(),
            tokens.into(),
            (info.total as i32).into(),
            adopted.into(),
        ],
    );
    run(
        "INSERT INTO doctrove_embed.batch_papers (relid, paper_id, batch_id, text_hash) \
         SELECT $1::oid::regclass, c.id, $2, c.hash FROM unnest($3::text[], $4::bigint[]) AS c(id, hash) \
         ON CONFLICT (relid, paper_id) DO NOTHING",
        &[target.relid.into(), info.id.clone().into(), ids.into(), hashes.into()],
    );
}

/// Stores what the API says of the batch now.
pub fn update_status(info: &BatchInfo) {
    run(
        "UPDATE doctrove_embed.batch_jobs SET status = $2, output_file_id = $3, error_file_id = $4, requests_total = $5, \
         requests_completed = $6, requests_failed = $7, error = coalesce($8, error), \
         finished_at = CASE WHEN $9 THEN coalesce(finished_at, now()) END WHERE batch_id = $1",
        &[
            info.id.clone().into(),
            info.status.clone().into(),
            info.output_file_id.clone().into(),
            info.error_file_id.clone().into(),
            (info.total as i32).into(),
            (info.completed as i32).into(),
            (info.failed as i32).into(),
            info.error_text().into(),
            info.is_finished().into(),
        ],
    );
}

/// The claims of batch `batch_id` among `ids`: each id with the hash of the text sent.
pub fn claims_among(batch_id: &str, ids: &[String]) -> HashMap<String, Option<i64>> {
    as_extension(|| {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT paper_id, text_hash FROM doctrove_embed.batch_papers WHERE batch_id = $1 AND paper_id = ANY($2::text[])",
                    None,
                    &[batch_id.into(), ids.to_vec().into()],
                )?
                .map(|row| Ok((row.get::<String>(1)?, row.get::<i64>(2)?)))
                .filter_map(|r: Result<(Option<String>, Option<i64>), pgrx::spi::Error>| r.map(|(id, h)| id.map(|id| (id, h))).transpose())
                .collect::<Result<HashMap<_, _>, _>>()
        })
    })
    .unwrap_or_else(|e| failed(e))
}

/// Drops the claims on papers the collection has settled (written or recorded as failed).
pub fn unclaim(batch_id: &str, ids: &[String]) {
    if !ids.is_empty() {
        run("DELETE FROM doctrove_embed.batch_papers WHERE batch_id = $1 AND paper_id = ANY($2::text[])", &[batch_id.into(), ids.to_vec().into()]);
    }
}

/// What collecting a batch did.
#[derive(Default, Debug, Clone, Copy)]
pub struct Collected {
    pub written: i64,
    pub failed: i64,
    pub released: i64,
}

/// Releases the papers the batch still claims and marks it collected with what it did; returns
/// the papers released.
pub fn close(batch_id: &str, collected: Collected, error: Option<String>) -> i64 {
    let released = run("DELETE FROM doctrove_embed.batch_papers WHERE batch_id = $1", &[batch_id.into()]) as i64;
    run(
        "UPDATE doctrove_embed.batch_jobs SET collected_at = now(), papers_written = $2, papers_failed = $3, \
         papers_released = $4, error = coalesce($5, error) WHERE batch_id = $1",
        &[
            batch_id.into(),
            (collected.written as i32).into(),
            (collected.failed as i32).into(),
            (released as i32).into(),
            error.into(),
        ],
    );
    released
}
