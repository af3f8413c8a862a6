//! Writing `doctrove_embed.job_definitions` and `doctrove_embed.job_grants`: a definition is
//! checked against its table (the same checks a batch makes) before it is recorded, and each
//! statement runs as the extension's owner. The callers (`api::jobs`) check first that the
//! current user may define jobs on the table.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

use crate::errors::{internal, UserError};
use crate::pg::identity::{as_extension, with_catalog_search_path, Acting};
use crate::pg::subtransaction::try_in_subtransaction;
use crate::table::jobs::JobDefinition;
use crate::table::rights::check_may_write;
use crate::table::target::{resolve_spec, TableRef, TargetSpec};
use crate::table::write::max_batch;

/// Every field of a job but its name and table.
pub struct JobFields {
    pub id_column: String,
    pub title_column: String,
    pub abstract_column: String,
    pub embedding_column: String,
    pub model: String,
    pub dimensions: i32,
    pub model_version_column: String,
    pub updated_at_column: String,
    pub batch_size: i32,
    pub weight: i32,
    pub use_batch_api: bool,
    pub enabled: bool,
    pub endpoints: Vec<String>,
    /// `None`: the default format.
    pub text_format: Option<String>,
    /// `None`: the `doctrove_embed.query_format` setting.
    pub query_format: Option<String>,
}

impl JobFields {
    /// The fields of a recorded job.
    pub fn of(job: &JobDefinition) -> JobFields {
        JobFields {
            id_column: job.spec.id_column.clone(),
            title_column: job.spec.title_column.clone(),
            abstract_column: job.spec.abstract_column.clone(),
            embedding_column: job.spec.embedding_column.clone(),
            model: job.model.clone(),
            dimensions: job.spec.dimensions,
            model_version_column: job.spec.model_version_column.clone(),
            updated_at_column: job.spec.updated_at_column.clone(),
            batch_size: job.batch_size,
            weight: job.weight,
            use_batch_api: job.use_batch_api,
            enabled: job.enabled,
            endpoints: job.endpoints.clone(),
            text_format: job.spec.text_format.clone(),
            query_format: job.spec.query_format.clone(),
        }
    }

    fn spec(&self, name: &str, relid: pg_sys::Oid) -> TargetSpec {
        TargetSpec {
            job: name.to_string(),
            table: TableRef::Relid(relid),
            id_column: self.id_column.clone(),
            title_column: self.title_column.clone(),
            abstract_column: self.abstract_column.clone(),
            embedding_column: self.embedding_column.clone(),
            model_version_column: self.model_version_column.clone(),
            updated_at_column: self.updated_at_column.clone(),
            dimensions: self.dimensions,
            model: Some(self.model.clone()),
            text_format: self.text_format.clone(),
            query_format: self.query_format.clone(),
        }
    }

    fn args(&self) -> Vec<DatumWithOid<'static>> {
        vec![
            self.id_column.clone().into(),
            self.title_column.clone().into(),
            self.abstract_column.clone().into(),
            self.embedding_column.clone().into(),
            self.model.clone().into(),
            self.dimensions.into(),
            self.model_version_column.clone().into(),
            self.updated_at_column.clone().into(),
            self.batch_size.into(),
            self.weight.into(),
            self.use_batch_api.into(),
            self.enabled.into(),
            self.endpoints.clone().into(),
            self.text_format.clone().into(),
            self.query_format.clone().into(),
        ]
    }
}

fn out_of_range(field: &str, value: impl std::fmt::Display, range: &str) -> UserError {
    UserError::new(ERRCODE_INVALID_PARAMETER_VALUE, format!("{field} {value} is out of range"))
        .hint(format!("Give {field} a value {range}."))
}

/// Checks `fields` against the table `relid`, as a batch of the job would.
fn check(name: &str, relid: pg_sys::Oid, fields: &JobFields) -> Result<(), UserError> {
    if fields.model.trim().is_empty() || fields.model.len() > 200 || fields.model.chars().any(char::is_control) {
        return Err(UserError::new(
            ERRCODE_INVALID_PARAMETER_VALUE,
            "a job's model must be a name of 1 to 200 printable characters",
        ));
    }
    if !(0..=16_000).contains(&fields.dimensions) {
        return Err(out_of_range(
            "dimensions",
            fields.dimensions,
            "from 0 (the model's own length) to 16000",
        ));
    }
    if !(1..=1000).contains(&fields.weight) {
        return Err(out_of_range("weight", fields.weight, "from 1 to 1000"));
    }
    crate::http::endpoints::check_names(&fields.endpoints)?;
    if let Some(format) = &fields.query_format {
        crate::table::target::query_text(format, "", "query format")?;
    }
    if is_temporary(relid)? {
        return Err(
            UserError::new(ERRCODE_WRONG_OBJECT_TYPE, "a temporary table cannot have a job")
                .detail("The workers cannot see another session's temporary tables, and the table ends with its session.")
                .hint("Define the job on a permanent table."),
        );
    }
    let target = resolve_spec(&fields.spec(name, relid))?;
    let dims = target.dims.or((fields.dimensions > 0).then_some(fields.dimensions as usize));
    let most = max_batch(dims).min(100_000);
    if fields.batch_size < 1 || fields.batch_size as usize > most {
        return Err(out_of_range("batch_size", fields.batch_size, &format!("from 1 to {most}")));
    }
    // The owner's rights are the job's: a column it may not update would fail every batch.
    check_may_write(&target, Acting::TableOwner)
}

fn is_temporary(relid: pg_sys::Oid) -> Result<bool, UserError> {
    with_catalog_search_path(|| {
        Spi::get_one_with_args::<bool>(
            "SELECT (SELECT relpersistence = 't' FROM pg_catalog.pg_class WHERE oid = $1)",
            &[relid.into()],
        )
    })
    .map(|t| t.unwrap_or(false))
    .map_err(internal("read the table"))
}

/// Runs a statement on the job tables as the extension's owner; a unique violation becomes
/// `duplicate` (42710), anything else an internal error.
fn write(query: &str, args: Vec<DatumWithOid<'static>>, duplicate: impl FnOnce() -> UserError) -> Result<usize, UserError> {
    let result = try_in_subtransaction(|| {
        as_extension(|| Spi::connect_mut(|client| client.update(query, None, &args).map(|t| t.len())))
            .map_err(internal("write doctrove_embed.job_definitions"))
    });
    match result {
        Err(error) if error.sqlstate() == "23505" => Err(duplicate()),
        other => other,
    }
}

/// Runs a statement on the job tables that no unique key can refuse.
fn execute(query: &str, args: Vec<DatumWithOid<'static>>) -> Result<usize, UserError> {
    write(query, args, || UserError::new(ERRCODE_INTERNAL_ERROR, "unexpected duplicate"))
}

fn current_user_name() -> String {
    with_catalog_search_path(|| Spi::get_one::<String>("SELECT current_user::text"))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Records a new job.
pub fn insert(name: &str, relid: pg_sys::Oid, fields: &JobFields) -> Result<(), UserError> {
    check(name, relid, fields)?;
    let mut args: Vec<DatumWithOid<'static>> = vec![name.to_string().into(), relid.into(), current_user_name().into()];
    args.extend(fields.args());
    write(
        "INSERT INTO doctrove_embed.job_definitions (name, relid, created_by, id_column, title_column, abstract_column, \
         embedding_column, model, dimensions, model_version_column, updated_at_column, batch_size, weight, use_batch_api, \
         enabled, endpoints, text_format, query_format, owner) SELECT $1, $2::oid::regclass, $3, $4, $5, $6, $7, $8, $9, $10, \
         $11, $12, $13, $14, $15, $16, $17, $18, c.relowner::regrole FROM pg_catalog.pg_class c WHERE c.oid = $2",
        args,
        || {
            UserError::new(
                ERRCODE_DUPLICATE_OBJECT,
                format!("a job named \"{name}\" or filling the same column already exists"),
            )
            .detail("Each column is filled by one job.")
            .hint("Pick another name, or change the existing job with doctrove_embed.alter_job().")
        },
    )?;
    Ok(())
}

/// Replaces the fields of job `name`.
pub fn update(name: &str, relid: pg_sys::Oid, fields: &JobFields) -> Result<(), UserError> {
    check(name, relid, fields)?;
    let mut args: Vec<DatumWithOid<'static>> = vec![name.to_string().into()];
    args.extend(fields.args());
    write(
        "UPDATE doctrove_embed.job_definitions SET id_column = $2, title_column = $3, abstract_column = $4, \
         embedding_column = $5, model = $6, dimensions = $7, model_version_column = $8, updated_at_column = $9, \
         batch_size = $10, weight = $11, use_batch_api = $12, enabled = $13, endpoints = $14, text_format = $15, \
         query_format = $16 WHERE name = $1",
        args,
        || {
            UserError::new(ERRCODE_DUPLICATE_OBJECT, "another job fills that column")
                .hint("Each column is filled by one job: drop or change the other first.")
        },
    )?;
    Ok(())
}

/// Records the table's current owner as job `name`'s and drops the grants its previous owner
/// made: the new owner's consent to the job (`resume_job`).
pub fn adopt_by_new_owner(name: &str) -> Result<(), UserError> {
    execute(
        "UPDATE doctrove_embed.job_definitions d SET owner = c.relowner::regrole FROM pg_catalog.pg_class c \
         WHERE d.name = $1 AND c.oid = d.relid",
        vec![name.to_string().into()],
    )?;
    execute(
        "DELETE FROM doctrove_embed.job_grants WHERE job = $1",
        vec![name.to_string().into()],
    )?;
    Ok(())
}

/// Forgets job `name`'s failure records.
pub fn forget_failures(name: &str) -> Result<(), UserError> {
    execute(
        "DELETE FROM doctrove_embed.failures WHERE job = $1",
        vec![name.to_string().into()],
    )?;
    Ok(())
}

/// Forgets job `name`, its grants and its failure records.
pub fn delete(name: &str) -> Result<(), UserError> {
    forget_failures(name)?;
    execute(
        "DELETE FROM doctrove_embed.job_definitions WHERE name = $1",
        vec![name.to_string().into()],
    )?;
    Ok(())
}

/// Makes searches of table `relid` read job `job`'s column (`None`: the job default's).
pub fn set_search_job(relid: pg_sys::Oid, job: Option<&str>) -> Result<(), UserError> {
    match job {
        None => execute(
            "DELETE FROM doctrove_embed.search_targets WHERE relid = $1::oid::regclass",
            vec![relid.into()],
        ),
        Some(job) => execute(
            "INSERT INTO doctrove_embed.search_targets (relid, job, switched_by) VALUES ($1::oid::regclass, $2, $3) \
             ON CONFLICT (relid) DO UPDATE SET job = excluded.job, switched_by = excluded.switched_by, switched_at = now()",
            vec![relid.into(), job.to_string().into(), current_user_name().into()],
        ),
    }?;
    Ok(())
}

/// The role `role` names, as the `regrole` input does; 42704 when there is none.
fn role_oid(role: &str) -> Result<pg_sys::Oid, UserError> {
    try_in_subtransaction(|| {
        Spi::get_one_with_args::<pg_sys::Oid>("SELECT $1::pg_catalog.regrole::pg_catalog.oid", &[role.into()])
            .map_err(internal("read the role"))
    })
    .ok()
    .flatten()
    .ok_or_else(|| UserError::new(ERRCODE_UNDEFINED_OBJECT, format!("role \"{role}\" does not exist")))
}

/// Lets the members of `role` run job `name`.
pub fn grant(name: &str, role: &str) -> Result<(), UserError> {
    let oid = role_oid(role)?;
    execute(
        "INSERT INTO doctrove_embed.job_grants (job, grantee, grantee_name, granted_by) \
         SELECT $1, r.oid::regrole, r.rolname, $3 FROM pg_catalog.pg_roles r WHERE r.oid = $2 \
         ON CONFLICT (job, grantee) DO UPDATE SET grantee_name = excluded.grantee_name, granted_by = excluded.granted_by",
        vec![name.to_string().into(), oid.into(), current_user_name().into()],
    )?;
    Ok(())
}

/// Takes job `name` back from `role`; whether it had it.
pub fn revoke(name: &str, role: &str) -> Result<bool, UserError> {
    let oid = role_oid(role)?;
    let removed = execute(
        "DELETE FROM doctrove_embed.job_grants WHERE job = $1 AND grantee = $2::oid::regrole",
        vec![name.to_string().into(), oid.into()],
    )?;
    Ok(removed > 0)
}

/// The table `name` means to the caller (its search_path, as the `regclass` input).
pub fn table_of(name: &str) -> Result<pg_sys::Oid, UserError> {
    try_in_subtransaction(|| {
        Spi::get_one_with_args::<pg_sys::Oid>("SELECT $1::pg_catalog.regclass::pg_catalog.oid", &[name.into()])
            .map_err(internal("read the table"))
    })
    .ok()
    .flatten()
    .ok_or_else(|| UserError::new(ERRCODE_UNDEFINED_TABLE, format!("relation \"{name}\" does not exist")))
}

/// The one column of the table's primary key.
pub fn primary_key_column(relid: pg_sys::Oid) -> Result<String, UserError> {
    let found = with_catalog_search_path(|| {
        Spi::get_one_with_args::<String>(
            "SELECT (SELECT a.attname::text FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a \
             ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
             WHERE i.indrelid = $1 AND i.indisprimary AND i.indnkeyatts = 1)",
            &[relid.into()],
        )
    })
    .map_err(internal("read the primary key"))?;
    found.ok_or_else(|| {
        UserError::new(ERRCODE_INVALID_COLUMN_REFERENCE, "the table has no single-column primary key")
            .hint("Name the key with id_column => 'column' (a column with a unique index).")
    })
}
