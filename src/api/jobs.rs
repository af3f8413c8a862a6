//! Defining embedding jobs: `create_job`, `alter_job`, `drop_job`, `pause_job`, `resume_job`,
//! `grant_job` and `revoke_job`, `use_job_for_search`, and `job_snapshot()` behind the
//! `doctrove_embed.jobs` view.
//! Each checks the caller against the table's owner (`table::jobs`) and the definition against
//! the table (`table::target`) before anything is recorded; a commit that creates, changes or
//! resumes a job wakes an idle worker, which reads the jobs again.

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

use crate::errors::UserError;
use crate::pg::at_commit;
use crate::table::job_store::{self as store, JobFields};
use crate::table::jobs::{self, JobDefinition};
use crate::table::target::SETTINGS_JOB;
use embed_core::endpoints::DEFAULT_ENDPOINT;

fn check_name(name: &str) -> Result<(), UserError> {
    if name == SETTINGS_JOB {
        return Err(UserError::new(ERRCODE_RESERVED_NAME, "the job name \"default\" is reserved")
            .detail("The job default is the doctrove_embed.* settings, which the server's configuration chooses.")
            .hint("Pick another name."));
    }
    if embed_core::endpoints::valid_name(name) {
        return Ok(());
    }
    Err(UserError::new(
        ERRCODE_INVALID_NAME,
        format!("\"{}\" is not a valid job name", name.escape_default()),
    )
    .hint("A job name is a lower-case letter followed by up to 62 lower-case letters, digits or underscores."))
}

/// Defines job `name`: fill `embedding_column` of `table_name` with vectors of `model`.
#[allow(clippy::too_many_arguments)]
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn create_job(
    name: &str,
    table_name: &str,
    embedding_column: &str,
    model: &str,
    id_column: default!(Option<&str>, "NULL"),
    title_column: default!(&str, "'doctrove_title'"),
    abstract_column: default!(&str, "'doctrove_abstract'"),
    dimensions: default!(i32, 0),
    model_version_column: default!(&str, "''"),
    updated_at_column: default!(&str, "''"),
    batch_size: default!(i32, 250),
    weight: default!(i32, 1),
    use_batch_api: default!(bool, false),
    enabled: default!(bool, true),
    endpoints: default!(Option<Vec<String>>, "NULL"),
    text_format: default!(Option<&str>, "NULL"),
    query_format: default!(Option<&str>, "NULL"),
) -> String {
    let created = check_name(name).and_then(|()| {
        let relid = store::table_of(table_name)?;
        jobs::check_may_define(relid, "define a job")?;
        let fields = JobFields {
            id_column: match id_column {
                Some(column) => column.to_string(),
                None => store::primary_key_column(relid)?,
            },
            title_column: title_column.to_string(),
            abstract_column: abstract_column.to_string(),
            embedding_column: embedding_column.to_string(),
            model: model.to_string(),
            dimensions,
            model_version_column: model_version_column.to_string(),
            updated_at_column: updated_at_column.to_string(),
            batch_size,
            weight,
            use_batch_api,
            enabled,
            endpoints: endpoints.unwrap_or_else(|| vec![DEFAULT_ENDPOINT.to_string()]),
            text_format: text_format.filter(|f| !f.is_empty()).map(str::to_string),
            query_format: query_format.filter(|f| !f.is_empty()).map(str::to_string),
        };
        store::insert(name, relid, &fields)
    });
    created.unwrap_or_else(|e| e.raise());
    at_commit::wake_a_worker();
    name.to_string()
}

/// Changes the given fields of job `name` (NULL keeps a field).
#[allow(clippy::too_many_arguments)]
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn alter_job(
    name: &str,
    embedding_column: default!(Option<&str>, "NULL"),
    model: default!(Option<&str>, "NULL"),
    id_column: default!(Option<&str>, "NULL"),
    title_column: default!(Option<&str>, "NULL"),
    abstract_column: default!(Option<&str>, "NULL"),
    dimensions: default!(Option<i32>, "NULL"),
    model_version_column: default!(Option<&str>, "NULL"),
    updated_at_column: default!(Option<&str>, "NULL"),
    batch_size: default!(Option<i32>, "NULL"),
    weight: default!(Option<i32>, "NULL"),
    use_batch_api: default!(Option<bool>, "NULL"),
    enabled: default!(Option<bool>, "NULL"),
    endpoints: default!(Option<Vec<String>>, "NULL"),
    text_format: default!(Option<&str>, "NULL"),
    query_format: default!(Option<&str>, "NULL"),
) -> String {
    let altered = jobs::owned_job(name, "change a job").and_then(|job| {
        let mut fields = JobFields::of(&job);
        let text = |new: Option<&str>, old: &mut String| {
            if let Some(new) = new {
                *old = new.to_string();
            }
        };
        text(embedding_column, &mut fields.embedding_column);
        text(model, &mut fields.model);
        text(id_column, &mut fields.id_column);
        text(title_column, &mut fields.title_column);
        text(abstract_column, &mut fields.abstract_column);
        text(model_version_column, &mut fields.model_version_column);
        text(updated_at_column, &mut fields.updated_at_column);
        fields.dimensions = dimensions.unwrap_or(fields.dimensions);
        fields.batch_size = batch_size.unwrap_or(fields.batch_size);
        fields.weight = weight.unwrap_or(fields.weight);
        fields.use_batch_api = use_batch_api.unwrap_or(fields.use_batch_api);
        fields.enabled = enabled.unwrap_or(fields.enabled);
        fields.endpoints = endpoints.unwrap_or(fields.endpoints);
        if let Some(format) = text_format {
            // '' goes back to the default format.
            fields.text_format = (!format.is_empty()).then(|| format.to_string());
        }
        if let Some(format) = query_format {
            // '' goes back to doctrove_embed.query_format.
            fields.query_format = (!format.is_empty()).then(|| format.to_string());
        }
        check_model_change(&job, &fields)?;
        if changes_what_batches_make(&JobFields::of(&job), &fields) {
            refuse_with_open_batches(name, "changed in what its batches make or where they are")?;
        }
        let text_changed = fields.model != job.model || fields.text_format != job.spec.text_format;
        store::update(name, job.relid, &fields)?;
        if text_changed {
            // A text the old model refused may suit the new one, or be sent differently now.
            store::forget_failures(name)?;
        }
        Ok(())
    });
    altered.unwrap_or_else(|e| e.raise());
    at_commit::wake_a_worker();
    name.to_string()
}

/// The job, for a change by a role that may define jobs on its table.
fn definable(name: &str, what: &str) -> JobDefinition {
    jobs::owned_job(name, what).unwrap_or_else(|e| e.raise())
}

/// Drops job `name` with its failure records; the column and its vectors stay.
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn drop_job(name: &str) -> bool {
    let job = definable(name, "drop a job");
    refuse_dropping_the_search_job(&job).unwrap_or_else(|e| e.raise());
    refuse_with_open_batches(name, "dropped").unwrap_or_else(|e| e.raise());
    store::delete(name).unwrap_or_else(|e| e.raise());
    true
}

/// Stops the workers and `embed_pending()` from running job `name` until it is resumed.
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn pause_job(name: &str) -> bool {
    let job = definable(name, "pause a job");
    let mut fields = JobFields::of(&job);
    fields.enabled = false;
    store::update(name, job.relid, &fields).unwrap_or_else(|e| e.raise());
    true
}

/// Lets job `name` run again. Resumed by its table's owner after the table changed hands, it
/// becomes that owner's job (the grants the previous owner made are dropped).
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn resume_job(name: &str) -> bool {
    let job = definable(name, "resume a job");
    if !job.owner_unchanged {
        store::adopt_by_new_owner(name).unwrap_or_else(|e| e.raise());
    }
    let mut fields = JobFields::of(&job);
    fields.enabled = true;
    store::update(name, job.relid, &fields).unwrap_or_else(|e| e.raise());
    at_commit::wake_a_worker();
    true
}

/// Lets the members of `role` run job `name` (as the table's owner).
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn grant_job(name: &str, role: &str) -> bool {
    definable(name, "grant a job");
    store::grant(name, role).unwrap_or_else(|e| e.raise());
    true
}

/// Takes job `name` back from `role`; returns whether it had been granted.
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn revoke_job(name: &str, role: &str) -> bool {
    definable(name, "revoke a job");
    store::revoke(name, role).unwrap_or_else(|e| e.raise())
}

/// The figures behind the `doctrove_embed.jobs` view: the jobs the caller may run, with their
/// figures since the server started (from shared memory: the table is never counted here).
#[allow(clippy::type_complexity)]
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn job_snapshot() -> TableIterator<
    'static,
    (
        name!(name, String),
        name!(table_name, String),
        name!(embedding_column, String),
        name!(model, String),
        name!(dimensions, i32),
        name!(enabled, bool),
        name!(weight, i32),
        name!(batch_size, i32),
        name!(pending, Option<i64>),
        name!(pending_counted_at, Option<f64>),
        name!(embedded, i64),
        name!(failed, i64),
        name!(papers_per_min, f64),
        name!(eta_seconds, Option<f64>),
        name!(tokens_used, i64),
        name!(batch_tokens_used, i64),
        name!(cost_usd, f64),
        name!(last_error, Option<String>),
        name!(last_error_at, Option<f64>),
        name!(endpoints, Option<String>),
    ),
> {
    // The job default first, for the roles that may run it (its table as the settings name it).
    let settings = crate::api::job_choice::choose(Some(SETTINGS_JOB), "embed_pending(integer)")
        .ok()
        .and_then(|_| jobs::settings_job().ok().flatten());
    let rows: Vec<_> = settings
        .into_iter()
        .chain(jobs::visible_jobs().unwrap_or_else(|e| e.raise()))
        .collect();
    let price = crate::settings::gucs::PRICE_PER_MILLION_TOKENS.get() / 1_000_000.0;
    TableIterator::new(rows.into_iter().map(move |(job, table, failed)| {
        let figures = crate::pg::job_figures::of(crate::pg::job_figures::JobKey::here(&job.spec.job));
        let seconds = |ms: i64| (ms > 0).then_some(ms as f64 / 1000.0);
        let rate = figures.map_or(0.0, |f| f.per_minute());
        let pending = figures.and_then(|f| f.pending);
        (
            job.spec.job.clone(),
            table,
            job.spec.embedding_column.clone(),
            job.model.clone(),
            job.spec.dimensions,
            job.enabled,
            job.weight,
            job.batch_size,
            pending,
            figures.and_then(|f| seconds(f.pending_counted_ms)),
            figures.map_or(0, |f| f.embedded as i64),
            failed,
            rate,
            pending.filter(|_| rate > 0.0).map(|p| p as f64 / rate * 60.0),
            figures.map_or(0, |f| f.tokens as i64),
            figures.map_or(0, |f| f.batch_tokens as i64),
            figures.map_or(0.0, |f| f.tokens as f64 * price + f.batch_tokens as f64 * price / 2.0),
            figures.and_then(|f| f.last_error()),
            figures.and_then(|f| seconds(f.last_error_ms)),
            figures
                .and_then(|f| f.endpoint_shares())
                .or_else(|| Some(job.endpoints.join(", "))),
        )
    }))
}

/// Makes `search()` and `similar_papers()` read job `name`'s column (and embed queries with its
/// model) for its table, in one step; `default` goes back to the settings' column. A recorded
/// job must be complete (nothing pending) and its column indexed for search (HNSW) first, so
/// no search ever returns fewer papers or mixes two models' vectors.
#[pg_extern(schema = "doctrove_embed", parallel_unsafe)]
fn use_job_for_search(name: &str) -> String {
    switch_search(name).unwrap_or_else(|e| e.raise());
    name.to_string()
}

fn switch_search(name: &str) -> Result<(), UserError> {
    let choice = jobs::JobChoice::of(Some(name));
    let jobs::JobChoice::Named(name) = choice else {
        let target = crate::table::target::resolve()?;
        jobs::check_may_define(target.relid, "choose the job searches read")?;
        return store::set_search_job(target.relid, None);
    };
    let job = jobs::owned_job(&name, "choose the job searches read")?;
    let target = crate::table::target::resolve_spec(&job.spec)?;
    let pending = crate::table::pending::count_pending(&target, crate::pg::identity::Acting::TableOwner)?;
    if pending > 0 {
        return Err(UserError::new(
            ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("job \"{name}\" still has {pending} papers pending"),
        )
        .detail("Searches would miss the papers it has not embedded yet.")
        .hint("Let it finish (doctrove_embed.jobs shows how far it is), then switch."));
    }
    if crate::table::similarity::hnsw_index(&target).is_none() {
        return Err(UserError::new(
            ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("column \"{}\" of job \"{name}\" has no HNSW index", job.spec.embedding_column),
        )
        .detail("Searches of an unindexed column read the whole table.")
        .hint(format!("SELECT doctrove_embed.create_hnsw_index('{name}');")));
    }
    store::set_search_job(job.relid, Some(&name))
}

/// Refuses (2BP01) to drop the job searches of its table read.
fn refuse_dropping_the_search_job(job: &JobDefinition) -> Result<(), UserError> {
    if jobs::search_job(job.relid)?.as_deref() != Some(job.spec.job.as_str()) {
        return Ok(());
    }
    Err(UserError::new(
        ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
        format!("job \"{}\" is the one searches of its table read", job.spec.job),
    )
    .hint("Switch searches to another job first: SELECT doctrove_embed.use_job_for_search('default');"))
}

/// Refuses a model change that would mix two models' vectors in a column: in the job searches
/// read (55006), or without a model column saying which model made each vector (55000).
/// Whether `new` changes what a batch of the job makes (the table's columns, the text, the
/// model, the dimensions), where its batches are (its first endpoint), or whether it uses
/// the Batch API at all.
fn changes_what_batches_make(old: &JobFields, new: &JobFields) -> bool {
    old.id_column != new.id_column
        || old.title_column != new.title_column
        || old.abstract_column != new.abstract_column
        || old.embedding_column != new.embedding_column
        || old.model != new.model
        || old.dimensions != new.dimensions
        || old.model_version_column != new.model_version_column
        || old.text_format != new.text_format
        || old.endpoints.first() != new.endpoints.first()
        || old.use_batch_api != new.use_batch_api
}

/// Refuses to change job `name` `how` while it has open batches (55006): they were paid for,
/// and would be collected against other texts or columns, at another endpoint, or not at all.
fn refuse_with_open_batches(name: &str, how: &str) -> Result<(), UserError> {
    let open = crate::batch_api::jobs_store::open_batches_of(name)?;
    if open == 0 {
        return Ok(());
    }
    Err(UserError::new(
        PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
        format!("job \"{name}\" has {open} open batches on the Batch API and cannot be {how}"),
    )
    .detail("Their vectors are paid for: they are written when the batches are collected, into the job as it is now.")
    .hint(format!(
        "Wait until SELECT * FROM doctrove_embed.collect_batches('{name}') reports none open, or cancel them with SELECT doctrove_embed.cancel_batches('{name}') (what they finished is written)."
    )))
}

fn check_model_change(job: &JobDefinition, fields: &JobFields) -> Result<(), UserError> {
    if fields.model == job.model {
        return Ok(());
    }
    let name = &job.spec.job;
    if jobs::search_job(job.relid)?.as_deref() == Some(name.as_str()) {
        return Err(UserError::new(
            ERRCODE_OBJECT_IN_USE,
            format!("job \"{name}\" is the one searches of its table read; its model cannot change in place"),
        )
        .detail("Its column would hold two models' vectors while it is embedded again.")
        .hint("Create a job for a new column with the new model, let it finish, build its HNSW index, then SELECT doctrove_embed.use_job_for_search('NEW_JOB');"));
    }
    if fields.model_version_column.is_empty() {
        return Err(UserError::new(
            ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("job \"{name}\" records no model per vector, so the vectors of its old model cannot be told apart"),
        )
        .hint("Give it a model column in the same call: alter_job(..., model => ..., model_version_column => 'COLUMN'); every vector not marked with the new model is embedded again."));
    }
    Ok(())
}
