//! Batches the API has and `doctrove_embed.batch_jobs` lacks: a session or worker that died
//! between creating a batch and committing left one. Each batch carries metadata naming its
//! cluster, database, table, job and submission, sealed with this installation's secret; the
//! listing (newest first) finds those of this database, table and job whose seal holds (a
//! batch of another job on the same table fills another column, and is left to that job), and
//! each is recorded
//! with the papers its input file names, so they are not sent in a second batch. A batch anyone
//! else made with the key (copying the metadata) has no valid seal and is never adopted.
//! Submissions and collections adopt before anything else.

use std::collections::BTreeMap;

use embed_core::batch_client::{list_batches, read_file_lines, BatchInfo};
use embed_core::batch_file::{request_of_line, text_hash, MAX_BATCH_INPUTS, MAX_CUSTOM_ID_BYTES};
use embed_core::{ApiConfig, ApiError};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED;

use crate::batch_api::jobs_store::{self, NewJob};
use crate::errors::{api_error, internal, UserError};
use crate::http::off_thread::{call_api as call, call_api_raw};
use crate::pg::identity::as_extension;
use crate::table::target::Target;

/// Metadata keys a batch carries, so it can be found again on the API.
pub const META_DATABASE: &str = "doctrove_database";
pub const META_TABLE: &str = "doctrove_table";
pub const META_SUBMISSION: &str = "doctrove_submission";
/// The embedding job whose column the batch's vectors go to.
pub const META_JOB: &str = "doctrove_job";
/// The cluster (its system identifier) and the database (its oid): a copy restored elsewhere
/// (a staging server sharing the key) has other ones, so it never adopts this one's batches.
pub const META_CLUSTER: &str = "doctrove_cluster";

/// How many pages of the account's batch listing are read when looking for unrecorded batches
/// (newest first: a batch left unrecorded by a crash is among the newest).
const ADOPTION_PAGES: usize = 5;

/// Longest line read from an input file when adopting its batch: one paper's text (cut to the
/// model's input limit) and the request around it.
const MAX_INPUT_LINE_BYTES: usize = 6 * embed_core::bounds::MAX_INPUT_BYTES + 64 * 1024;

/// The metadata key of the seal (see `embed_core::batch_seal`).
pub const META_SEAL: &str = "doctrove_seal";

/// This installation's secret (`doctrove_embed.installation`).
fn installation_secret() -> Result<Vec<u8>, UserError> {
    let secret = as_extension(|| Spi::get_one::<String>("SELECT (SELECT secret FROM doctrove_embed.installation)"))
        .map_err(internal("read doctrove_embed.installation"))?;
    match secret {
        Some(secret) if !secret.is_empty() => Ok(secret.into_bytes()),
        _ => Err(UserError::new(
            pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "doctrove_embed.installation holds no secret",
        )
        .hint("Batches are sealed with it: ALTER EXTENSION doctrove_embed UPDATE, or drop and create the extension again.")),
    }
}

/// What a seal covers: the cluster, database, table, job and submission the metadata names.
fn sealed_fields(metadata: &BTreeMap<String, String>) -> [&str; 5] {
    let get = |key: &str| metadata.get(key).map_or("", String::as_str);
    [
        get(META_CLUSTER),
        get(META_DATABASE),
        get(META_TABLE),
        get(META_JOB),
        get(META_SUBMISSION),
    ]
}

/// Adds the seal of `metadata` (with its submission) under this installation's secret.
pub fn seal(metadata: &mut BTreeMap<String, String>) -> Result<(), UserError> {
    let seal = embed_core::batch_seal::seal(&installation_secret()?, &sealed_fields(metadata));
    metadata.insert(META_SEAL.to_string(), seal);
    Ok(())
}

/// The metadata that names this cluster, database, table and job.
pub fn our_metadata(target: &Target) -> Result<BTreeMap<String, String>, UserError> {
    let (database, cluster) = as_extension(|| {
        Spi::get_two::<String, String>(
            "SELECT d.datname::pg_catalog.text, c.system_identifier::pg_catalog.text OPERATOR(pg_catalog.||) '/' \
             OPERATOR(pg_catalog.||) d.oid::pg_catalog.text FROM pg_catalog.pg_control_system() c, pg_catalog.pg_database d \
             WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()",
        )
    })
    .map_err(internal("read the database's name and the cluster's identifier"))?;
    Ok(BTreeMap::from([
        (META_DATABASE.to_string(), database.unwrap_or_default()),
        (META_CLUSTER.to_string(), cluster.unwrap_or_default()),
        (META_TABLE.to_string(), target.names.table.clone()),
        (META_JOB.to_string(), target.job.clone()),
    ]))
}

/// The error for a failed listing of the account's batches: a 404 there means the endpoint has
/// no Batch API at all (the local model server, a self-hosted model), not a wrong model.
fn listing_error(error: &ApiError, base_url: &str) -> UserError {
    match error {
        ApiError::Rejected { status: 404, .. } => UserError::new(
            ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("the embeddings API at {base_url} has no Batch API"),
        )
        .detail("It answered HTTP 404 to the listing of batches (GET /batches).")
        .hint("Embed through the live path (embed_pending(), or the workers with doctrove_embed.batch_api = off), or point doctrove_embed.api_base_url at an API with a Batch API."),
        other => api_error(other),
    }
}

/// Records the batches of this database, table and job the API has and `batch_jobs` lacks, with
/// the papers their input files name; returns how many.
pub fn adopt_unrecorded(target: &Target, config: &ApiConfig) -> Result<i32, UserError> {
    let ours = our_metadata(target)?;
    let secret = installation_secret()?;
    let (mut after, mut adopted) = (None::<String>, 0);
    for _ in 0..ADOPTION_PAGES {
        let cursor = after.clone();
        let (page, more) =
            call_api_raw(config, move |c| list_batches(c, cursor.as_deref())).map_err(|e| listing_error(&e, &config.base_url))?;
        after = page.last().map(|b| b.id.clone());
        for info in page {
            // This database's, table's and job's metadata, sealed by this installation: not a copy.
            let named = ours.iter().all(|(k, v)| info.metadata.get(k) == Some(v));
            let seal = info.metadata.get(META_SEAL).map_or("", String::as_str);
            let mine = named && embed_core::batch_seal::verify(&secret, &sealed_fields(&info.metadata), seal);
            if !mine || jobs_store::is_known(&info.id)? {
                continue;
            }
            let submission = info.metadata.get(META_SUBMISSION).map_or("", String::as_str);
            if jobs_store::is_submission_known(submission)? {
                pgrx::warning!(
                    "doctrove_embed: batch {} carries the sealed metadata of a recorded submission; it is not adopted",
                    info.id
                );
                continue;
            }
            adopt(target, config, &info)?;
            adopted += 1;
        }
        if !more {
            break;
        }
    }
    Ok(adopted)
}

/// Claims the papers of an unrecorded batch, read from its input file (each `custom_id` is a
/// paper's id).
fn adopt(target: &Target, config: &ApiConfig, info: &BatchInfo) -> Result<(), UserError> {
    // Each input line names a paper and carries the text sent for it: the fingerprint of that
    // text is what a collection compares with the paper's own, so a batch whose lines carry other
    // texts than the papers' (made by anyone else holding the key) writes nothing.
    // A line that asked for another model than the one configured now gets no fingerprint: its
    // vector is never written, and the batch's writes name the configured model.
    let mut claims: Vec<(String, Option<i64>)> = Vec::new();
    if let Some(file) = info.input_file_id.clone() {
        claims = call(config, move |c| {
            let mut claims = Vec::new();
            read_file_lines(c, &file, MAX_INPUT_LINE_BYTES, &mut |line| {
                if let Some(request) = request_of_line(line).filter(|r| r.custom_id.len() <= MAX_CUSTOM_ID_BYTES) {
                    let same_model = request.model.as_deref() == Some(c.model.as_str());
                    claims.push((request.custom_id, same_model.then(|| text_hash(&request.input))));
                }
                claims.len() < MAX_BATCH_INPUTS
            })?;
            Ok(claims)
        })?;
    }
    let model = Some(config.model.as_str());
    let submission = info.metadata.get(META_SUBMISSION).cloned().unwrap_or_default();
    let (ids, hashes): (Vec<String>, Vec<Option<i64>>) = claims.into_iter().unzip();
    let job = NewJob {
        submission: &submission,
        model,
        tokens: 0,
        ids,
        hashes,
        adopted: true,
    };
    jobs_store::record(target, info, job)?;
    jobs_store::update_status(info)?;
    pgrx::log!("doctrove_embed: adopted batch {} found on the API but not recorded", info.id);
    Ok(())
}
