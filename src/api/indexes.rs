//! The indexes a papers table wants: the partial index on pending papers and the HNSW index for
//! similarity search.

use pgrx::prelude::*;

use crate::api::job_choice::owned_job_target;
use crate::table::target::{resolve, Target, SETTINGS_JOB};
use crate::table::{pending_index, similarity};

/// Job `job`'s table, for indexing its column: by the table's owner, or for the job `default`
/// by the roles that may run `signature` (the form without a job name).
fn to_index(job: &str, signature: &str) -> Target {
    owned_job_target(job, signature, "index a job's column").unwrap_or_else(|e| e.raise())
}

/// Creates the partial index on pending papers (without CONCURRENTLY: it blocks writes to the
/// table while it builds) and returns its name.
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn create_pending_index() -> String {
    let target = resolve().unwrap_or_else(|e| e.raise());
    pending_index::create(&target).unwrap_or_else(|e| e.raise())
}

/// The `CREATE INDEX CONCURRENTLY` command for the partial index on pending papers, to run
/// outside a transaction block (in psql: `SELECT doctrove_embed.pending_index_command() \gexec`).
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn pending_index_command() -> String {
    resolve().unwrap_or_else(|e| e.raise()).names.create_pending_index(true)
}

/// The same for job `job`'s column.
#[pg_extern(schema = "doctrove_embed", name = "create_pending_index", parallel_unsafe)]
fn create_pending_index_of_job(job: &str) -> String {
    let target = to_index(job, "doctrove_embed.create_pending_index()");
    pending_index::create(&target).unwrap_or_else(|e| e.raise())
}

/// The same for job `job`'s column.
#[pg_extern(schema = "doctrove_embed", name = "pending_index_command", parallel_unsafe)]
fn pending_index_command_of_job(job: &str) -> String {
    to_index(job, "doctrove_embed.pending_index_command()")
        .names
        .create_pending_index(true)
}

/// The same for job `job`'s column (`use_job_for_search()` wants one).
#[pg_extern(schema = "doctrove_embed", name = "create_hnsw_index", parallel_unsafe)]
fn create_hnsw_index_of_job(job: &str) -> String {
    let target = to_index(job, "doctrove_embed.create_hnsw_index()");
    similarity::create_hnsw_index(&target).unwrap_or_else(|e| e.raise())
}

/// Builds an HNSW index for cosine distance on the embedding column (pgvector's default
/// m = 16, ef_construction = 64) and returns its name. Build it after the backfill: one
/// build over all vectors is much faster than maintaining the graph on every write.
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn create_hnsw_index() -> String {
    let target = resolve().unwrap_or_else(|e| e.raise());
    similarity::create_hnsw_index(&target).unwrap_or_else(|e| e.raise())
}

/// Builds the GIN index on the title and abstract that `hybrid_search()` ranks words through
/// (locking writes while it builds), for job `job`'s table (NULL: the settings'); returns its
/// name.
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn create_text_index(job: default!(Option<&str>, "NULL")) -> String {
    // One form: whoever may run it may index the settings' table (NULL or 'default').
    let target = to_index(job.unwrap_or(SETTINGS_JOB), "doctrove_embed.create_text_index(text)");
    crate::table::hybrid::create_text_index(&target).unwrap_or_else(|e| e.raise())
}

/// The `CREATE INDEX CONCURRENTLY` command for the same index, to run outside a transaction
/// block (in psql: `SELECT doctrove_embed.text_index_command() \gexec`).
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn text_index_command(job: default!(Option<&str>, "NULL")) -> String {
    to_index(job.unwrap_or(SETTINGS_JOB), "doctrove_embed.text_index_command(text)")
        .names
        .create_text_index(true)
}
