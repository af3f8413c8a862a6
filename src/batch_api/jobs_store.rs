//! The jobs store: `doctrove_embed.batch_jobs` (one row per batch created on the Batch API, with
//! the embedding job it fills) and `doctrove_embed.batch_papers` (the papers each open batch
//! claims for its job). Every reading is of one job's batches on one table. All of it runs as the
//! extension's owner (see `pg::identity`), so a role that submits or collects needs no right on
//! these tables. The pending selection reads the claims through `table::claims`.

use std::collections::HashMap;

use embed_core::batch_client::BatchInfo;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use crate::errors::{internal, UserError};
use crate::pg::identity::as_extension;
use crate::table::target::Target;

const WHAT: &str = "use doctrove_embed.batch_jobs";

fn run(query: &str, args: &[DatumWithOid]) -> Result<usize, UserError> {
    as_extension(|| Spi::connect_mut(|client| client.update(query, None, args).map(|t| t.len()))).map_err(internal(WHAT))
}

fn one<T: pgrx::datum::FromDatum + pgrx::datum::IntoDatum>(query: &str, args: &[DatumWithOid]) -> Result<Option<T>, UserError> {
    as_extension(|| Spi::get_one_with_args::<T>(query, args)).map_err(internal(WHAT))
}

/// Tokens of `model` in this database's batches (every job's: the API's enqueued-token limit is
/// the account's, per model) the API still counts as enqueued.
pub fn enqueued_tokens(model: &str) -> Result<i64, UserError> {
    one::<i64>(
        "SELECT coalesce(sum(tokens), 0)::bigint FROM doctrove_embed.batch_jobs WHERE model = $1 \
         AND collected_at IS NULL AND status IN ('validating', 'in_progress', 'finalizing')",
        &[model.into()],
    )
    .map(|n| n.unwrap_or(0))
}

/// Whether the latest closed batch of `model` failed for the account's enqueued-token limit
/// while others of that model are still under way: with the limit unknown, a submission now
/// would be refused the same way (and its file uploaded for nothing), so it waits for them.
pub fn waiting_for_enqueued_room(model: &str) -> Result<bool, UserError> {
    one::<bool>(
        "SELECT EXISTS (SELECT FROM doctrove_embed.batch_jobs WHERE model = $1 AND collected_at IS NULL \
                        AND status IN ('validating', 'in_progress', 'finalizing')) \
         AND coalesce((SELECT error LIKE 'token\\_limit\\_exceeded%' FROM doctrove_embed.batch_jobs \
                       WHERE model = $1 AND collected_at IS NOT NULL ORDER BY collected_at DESC LIMIT 1), false)",
        &[model.into()],
    )
    .map(|b| b.unwrap_or(false))
}

/// Papers in the job's open batches on the table.
pub fn papers_in_open_jobs(target: &Target) -> Result<i64, UserError> {
    one::<i64>(
        "SELECT coalesce(sum(papers), 0)::bigint FROM doctrove_embed.batch_jobs WHERE job = $2 AND relid = $1::oid::regclass \
         AND collected_at IS NULL",
        &[target.relid.into(), target.job.clone().into()],
    )
    .map(|n| n.unwrap_or(0))
}

/// The jobs that have open batches in this database.
pub fn jobs_with_open_batches() -> Result<Vec<String>, UserError> {
    as_extension(|| {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT DISTINCT job FROM doctrove_embed.batch_jobs WHERE collected_at IS NULL",
                    None,
                    &[],
                )?
                .map(|row| row.get::<String>(1).map(Option::unwrap_or_default))
                .collect::<Result<Vec<String>, pgrx::spi::Error>>()
        })
    })
    .map_err(internal(WHAT))
}

/// Open batches of job `job`.
pub fn open_batches_of(job: &str) -> Result<i64, UserError> {
    one::<i64>(
        "SELECT count(*) FROM doctrove_embed.batch_jobs WHERE job = $1 AND collected_at IS NULL",
        &[job.into()],
    )
    .map(|n| n.unwrap_or(0))
}

/// Whether the batch is recorded (open or collected).
pub fn is_known(batch_id: &str) -> Result<bool, UserError> {
    one::<bool>(
        "SELECT EXISTS (SELECT FROM doctrove_embed.batch_jobs WHERE batch_id = $1)",
        &[batch_id.into()],
    )
    .map(|b| b.unwrap_or(false))
}

/// Whether another batch already carries submission `submission`: a copy of a batch's sealed
/// metadata (a replay) is not adopted.
pub fn is_submission_known(submission: &str) -> Result<bool, UserError> {
    one::<bool>(
        "SELECT EXISTS (SELECT FROM doctrove_embed.batch_jobs WHERE submission_id = $1)",
        &[submission.into()],
    )
    .map(|b| b.unwrap_or(false))
}

/// An open job: its batch id and the model its requests asked for (unknown for some adopted
/// ones).
pub struct OpenJob {
    pub batch_id: String,
    pub model: Option<String>,
}

/// The job's open batches on the table, each locked for this transaction; batches another
/// session is collecting are skipped.
pub fn lock_open_jobs(target: &Target) -> Result<Vec<OpenJob>, UserError> {
    as_extension(|| {
        Spi::connect_mut(|client| {
            client
                .update(
                    "SELECT batch_id, model FROM doctrove_embed.batch_jobs WHERE job = $2 AND relid = $1::oid::regclass \
                     AND collected_at IS NULL ORDER BY submitted_at FOR UPDATE SKIP LOCKED",
                    None,
                    &[target.relid.into(), target.job.clone().into()],
                )?
                .map(|row| {
                    Ok(OpenJob {
                        batch_id: row.get::<String>(1)?.unwrap_or_default(),
                        model: row.get::<String>(2)?,
                    })
                })
                .collect::<Result<Vec<OpenJob>, pgrx::spi::Error>>()
        })
    })
    .map_err(internal(WHAT))
}

/// What is recorded of a job besides what the API says of its batch.
pub struct NewJob<'a> {
    pub submission: &'a str,
    /// The model its requests ask for, when known.
    pub model: Option<&'a str>,
    pub tokens: i64,
    /// The papers it claims, with the fingerprint of each text sent (`None`: not known).
    pub ids: Vec<String>,
    pub hashes: Vec<Option<i64>>,
    /// Found on the API after a crash rather than recorded when it was created.
    pub adopted: bool,
}

/// Records a batch the API accepted and claims its papers.
pub fn record(target: &Target, info: &BatchInfo, job: NewJob) -> Result<(), UserError> {
    let NewJob {
        submission,
        model,
        tokens,
        ids,
        hashes,
        adopted,
    } = job;
    run(
        "INSERT INTO doctrove_embed.batch_jobs (batch_id, relid, submission_id, input_file_id, status, papers, tokens, \
         requests_total, adopted, model, job) VALUES ($1, $2::oid::regclass, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
            model.into(),
            target.job.clone().into(),
        ],
    )?;
    run(
        "INSERT INTO doctrove_embed.batch_papers (relid, paper_id, batch_id, text_hash, embedding_column) \
         SELECT $1::oid::regclass, c.id, $2, c.hash, $5 FROM unnest($3::text[], $4::bigint[]) AS c(id, hash) \
         ON CONFLICT (relid, embedding_column, paper_id) DO NOTHING",
        &[
            target.relid.into(),
            info.id.clone().into(),
            ids.into(),
            hashes.into(),
            target.names.embedding.clone().into(),
        ],
    )?;
    Ok(())
}

/// Stores what the API says of the batch now.
pub fn update_status(info: &BatchInfo) -> Result<(), UserError> {
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
    )?;
    Ok(())
}

/// The claims of batch `batch_id` among `ids`: each id with the hash of the text sent.
pub fn claims_among(batch_id: &str, ids: &[String]) -> Result<HashMap<String, Option<i64>>, UserError> {
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
    .map_err(internal(WHAT))
}

/// Drops the claims on papers the collection has settled (written or recorded as failed).
pub fn unclaim(batch_id: &str, ids: &[String]) -> Result<(), UserError> {
    if !ids.is_empty() {
        run(
            "DELETE FROM doctrove_embed.batch_papers WHERE batch_id = $1 AND paper_id = ANY($2::text[])",
            &[batch_id.into(), ids.to_vec().into()],
        )?;
    }
    Ok(())
}

/// What collecting a batch did.
#[derive(Default, Debug, Clone, Copy)]
pub struct Collected {
    pub written: i64,
    pub failed: i64,
    pub released: i64,
}

impl Collected {
    /// Adds what another collection did.
    pub fn add(&mut self, other: Collected) {
        self.written += other.written;
        self.failed += other.failed;
        self.released += other.released;
    }
}

/// Releases the papers the batch still claims and marks it collected with what it did; returns
/// the papers released.
pub fn close(batch_id: &str, collected: Collected, error: Option<String>) -> Result<i64, UserError> {
    let released = run(
        "DELETE FROM doctrove_embed.batch_papers WHERE batch_id = $1",
        &[batch_id.into()],
    )? as i64;
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
    )?;
    Ok(released)
}

/// Notes a failed collection of batch `batch_id` with its error; returns how many of its
/// collections have failed so far.
pub fn note_collect_failure(batch_id: &str, error: &str) -> Result<i32, UserError> {
    one::<i32>(
        "UPDATE doctrove_embed.batch_jobs SET collect_failures = collect_failures + 1, error = $2 \
         WHERE batch_id = $1 RETURNING collect_failures",
        &[batch_id.into(), error.into()],
    )
    .map(|n| n.unwrap_or(0))
}

/// Up to 20 of the job's collected batches whose files are still on the API, each with its file
/// ids, locked; only jobs collected by an earlier transaction (one that committed), so no file a
/// rolled-back collection still needs is deleted.
pub fn collected_with_files(target: &Target) -> Result<Vec<(String, Vec<String>)>, UserError> {
    as_extension(|| {
        Spi::connect_mut(|client| {
            client
                .update(
                    "SELECT batch_id, array_remove(ARRAY[input_file_id, output_file_id, error_file_id], NULL) \
                     FROM doctrove_embed.batch_jobs WHERE job = $2 AND relid = $1::oid::regclass AND collected_at < now() \
                     AND NOT files_deleted ORDER BY collected_at LIMIT 20 FOR UPDATE SKIP LOCKED",
                    None,
                    &[target.relid.into(), target.job.clone().into()],
                )?
                .map(|row| {
                    Ok((
                        row.get::<String>(1)?.unwrap_or_default(),
                        row.get::<Vec<String>>(2)?.unwrap_or_default(),
                    ))
                })
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })
    })
    .map_err(internal(WHAT))
}

/// Notes that the files of job `batch_id` are gone from the API.
pub fn files_deleted(batch_id: &str) -> Result<(), UserError> {
    run(
        "UPDATE doctrove_embed.batch_jobs SET files_deleted = true WHERE batch_id = $1",
        &[batch_id.into()],
    )
    .map(|_| ())
}

/// Notes a failed deletion of job `batch_id`'s files (in a count of its own: the collection's
/// failures are another matter); after five the files are left on the API (the job counts as
/// done with them), so no job's files block the others' for good.
pub fn note_delete_failure(batch_id: &str) -> Result<(), UserError> {
    run(
        "UPDATE doctrove_embed.batch_jobs SET delete_failures = delete_failures + 1, \
         files_deleted = delete_failures + 1 >= 5 WHERE batch_id = $1",
        &[batch_id.into()],
    )
    .map(|_| ())
}
