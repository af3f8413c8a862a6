//! Embedding jobs in `doctrove_embed.job_definitions`: reading one, and who may define or run
//! it. Only the table's owner (a member of the owning role) or a superuser defines a job on a
//! table; a job runs as the table's owner, by the roles that may define it and those it is
//! granted to (`doctrove_embed.job_grants`). The tables are read and written as the extension's
//! owner (PUBLIC has no right on them), with statements that touch nothing else.
//!
//! The settings (`doctrove_embed.table` and the rest) are the job `default` until a job of that
//! name is created: they keep working as in 0.3.0, with the caller's rights in a session and the
//! table owner's in the workers.

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

use crate::errors::{internal, UserError};
use crate::http::endpoints::Endpoint;
use crate::pg::identity::{as_extension, with_catalog_search_path, Acting};
use crate::settings::gucs;
use crate::table::rights::refuse_temporary_objects;
use crate::table::target::{resolve, resolve_spec, TableRef, Target, TargetSpec, SETTINGS_JOB};
use embed_core::endpoints::DEFAULT_ENDPOINT;

/// A job as recorded.
#[derive(Clone, Debug)]
pub struct JobDefinition {
    pub spec: TargetSpec,
    pub relid: pg_sys::Oid,
    pub model: String,
    pub batch_size: i32,
    pub weight: i32,
    pub use_batch_api: bool,
    pub enabled: bool,
    /// Whether the table's owner is still the one recorded with the job.
    pub owner_unchanged: bool,
    /// The endpoints its requests go to, by name.
    pub endpoints: Vec<String>,
}

/// Which job a call names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobChoice {
    /// The settings: the job `default` while none of that name is recorded.
    Settings,
    /// A recorded job.
    Named(String),
}

impl JobChoice {
    /// The job a call names (`None`: `default`, the settings; no recorded job has that name).
    pub fn of(name: Option<&str>) -> JobChoice {
        match name.unwrap_or(SETTINGS_JOB) {
            SETTINGS_JOB => JobChoice::Settings,
            name => JobChoice::Named(name.to_string()),
        }
    }

    /// The job's name as recorded with failures and figures.
    pub fn name(&self) -> &str {
        match self {
            JobChoice::Settings => SETTINGS_JOB,
            JobChoice::Named(name) => name,
        }
    }
}

/// The columns [`definition_from`] reads, of `doctrove_embed.job_definitions d`.
const DEFINITION_COLUMNS: &str = "d.name, d.relid::oid, d.id_column::text, d.title_column::text, d.abstract_column::text, \
     d.embedding_column::text, d.model, d.dimensions, d.model_version_column::text, d.updated_at_column::text, d.batch_size, \
     d.weight, d.use_batch_api, d.enabled, \
     coalesce((SELECT c.relowner OPERATOR(pg_catalog.=) d.owner::pg_catalog.oid FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) d.relid::pg_catalog.oid), false), \
     d.endpoints, d.text_format, d.query_format";

fn definition_from(row: pgrx::spi::SpiHeapTupleData) -> Result<JobDefinition, pgrx::spi::Error> {
    let text = |i: usize| row.get::<String>(i).map(Option::unwrap_or_default);
    let relid = row.get::<pg_sys::Oid>(2)?.unwrap_or(pg_sys::InvalidOid);
    Ok(JobDefinition {
        spec: TargetSpec {
            job: text(1)?,
            table: TableRef::Relid(relid),
            id_column: text(3)?,
            title_column: text(4)?,
            abstract_column: text(5)?,
            embedding_column: text(6)?,
            model_version_column: text(9)?,
            updated_at_column: text(10)?,
            dimensions: row.get::<i32>(8)?.unwrap_or(0),
            model: Some(text(7)?),
            text_format: row.get::<String>(17)?,
            query_format: row.get::<String>(18)?,
        },
        relid,
        model: text(7)?,
        batch_size: row.get::<i32>(11)?.unwrap_or(1),
        weight: row.get::<i32>(12)?.unwrap_or(1),
        use_batch_api: row.get::<bool>(13)?.unwrap_or(false),
        enabled: row.get::<bool>(14)?.unwrap_or(false),
        owner_unchanged: row.get::<bool>(15)?.unwrap_or(false),
        endpoints: row.get::<Vec<String>>(16)?.unwrap_or_default(),
    })
}

/// The recorded job `name`; 42704 when there is none.
pub fn load(name: &str) -> Result<JobDefinition, UserError> {
    let found = as_extension(|| {
        Spi::connect(|client| {
            let rows = client.select(
                &format!("SELECT {DEFINITION_COLUMNS} FROM doctrove_embed.job_definitions d WHERE d.name = $1"),
                None,
                &[name.into()],
            )?;
            rows.into_iter().next().map(definition_from).transpose()
        })
    })
    .map_err(internal("read doctrove_embed.job_definitions"))?;
    found.ok_or_else(|| {
        UserError::new(ERRCODE_UNDEFINED_OBJECT, format!("job \"{name}\" does not exist"))
            .hint("doctrove_embed.jobs lists the jobs you may run; doctrove_embed.create_job() defines one.")
    })
}

/// Every enabled job whose table is in this database and has the owner recorded with it, by
/// name.
pub fn enabled_jobs() -> Result<Vec<JobDefinition>, UserError> {
    let jobs = as_extension(|| {
        Spi::connect(|client| {
            client
                .select(
                    &format!("SELECT {DEFINITION_COLUMNS} FROM doctrove_embed.job_definitions d WHERE d.enabled ORDER BY d.name"),
                    None,
                    &[],
                )?
                .map(definition_from)
                .collect::<Result<Vec<_>, _>>()
        })
    })
    .map_err(internal("read doctrove_embed.job_definitions"))?;
    Ok(jobs.into_iter().filter(|job| job.owner_unchanged).collect())
}

/// The current user (not the session user: inside a SECURITY DEFINER function, its owner).
fn current_user() -> pg_sys::Oid {
    // SAFETY: reads this backend's current user.
    unsafe { pg_sys::GetUserId() }
}

/// Whether the current user is a superuser or has the rights of the role that owns `relid`
/// (PostgreSQL's own test for ownership: a member with INHERIT, or `USAGE`).
pub fn may_define(relid: pg_sys::Oid) -> Result<bool, UserError> {
    // SAFETY: a catalog lookup of the current user.
    if unsafe { pg_sys::superuser() } {
        return Ok(true);
    }
    with_catalog_search_path(|| {
        Spi::get_one_with_args::<bool>(
            "SELECT (SELECT pg_catalog.pg_has_role($1, c.relowner, 'USAGE') FROM pg_catalog.pg_class c WHERE c.oid = $2)",
            &[current_user().into(), relid.into()],
        )
    })
    .map(|may| may.unwrap_or(false))
    .map_err(internal("check the owner of the table"))
}

fn granted(name: &str) -> Result<bool, UserError> {
    let user = current_user();
    as_extension(|| {
        Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT FROM doctrove_embed.job_grants g JOIN pg_catalog.pg_roles r ON r.oid = g.grantee \
             WHERE g.job = $1 AND r.rolname = g.grantee_name AND pg_catalog.pg_has_role($2, g.grantee, 'USAGE'))",
            &[name.into(), user.into()],
        )
    })
    .map(|found| found.unwrap_or(false))
    .map_err(internal("read doctrove_embed.job_grants"))
}

fn table_name(relid: pg_sys::Oid) -> String {
    with_catalog_search_path(|| {
        Spi::get_one_with_args::<String>("SELECT $1::pg_catalog.regclass::pg_catalog.text", &[relid.into()])
    })
    .ok()
    .flatten()
    .unwrap_or_else(|| format!("OID {}", relid.to_u32()))
}

/// Refuses (42501) a role that may not define jobs on `relid`.
pub fn check_may_define(relid: pg_sys::Oid, what: &str) -> Result<(), UserError> {
    if may_define(relid)? {
        return Ok(());
    }
    let table = table_name(relid);
    Err(UserError::new(
        ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("permission denied to {what} on table {table}"),
    )
    .detail("A job's statements run as the table's owner: only that owner (or a member of the owning role) or a superuser defines, changes or grants one.")
    .hint(format!("Ask the owner of {table} to do it.")))
}

/// Refuses (42501) a caller who may not run `job` (checked before any request is sent), and
/// (55000) a paused job.
pub fn check_may_run(job: &JobDefinition) -> Result<(), UserError> {
    let name = &job.spec.job;
    if !(may_define(job.relid)? || granted(name)?) {
        return Err(UserError::new(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied for job \"{name}\""),
        )
        .detail("Nothing was sent to the API.")
        .hint(format!(
            "The table's owner can grant it: SELECT doctrove_embed.grant_job('{}', 'ROLE');",
            name.replace('\'', "''")
        )));
    }
    if !job.owner_unchanged {
        return Err(UserError::new(
            ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("the table of job \"{name}\" has changed owner since the job was defined"),
        )
        .detail("A job runs as its table's owner, so it waits for the new owner's consent. Nothing was sent to the API.")
        .hint(format!(
            "The new owner resumes it (its grants are dropped): SELECT doctrove_embed.resume_job('{}');",
            name.replace('\'', "''")
        )));
    }
    if !job.enabled {
        return Err(
            UserError::new(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, format!("job \"{name}\" is paused"))
                .detail("Nothing was sent to the API.")
                .hint(format!("SELECT doctrove_embed.resume_job('{}');", name.replace('\'', "''"))),
        );
    }
    Ok(())
}

/// What a job's batch needs: the checked definition, the model and dimensions to ask for, and
/// whose rights its statements use.
pub struct Prepared {
    /// The table, columns and (for a recorded job) model.
    pub spec: TargetSpec,
    pub acting: Acting,
    pub endpoint_names: Vec<String>,
}

impl Prepared {
    /// The settings' job, with the rights `acting` says.
    fn settings(acting: Acting) -> Prepared {
        Prepared {
            spec: TargetSpec::from_settings(),
            acting,
            endpoint_names: vec![DEFAULT_ENDPOINT.to_string()],
        }
    }

    /// Recorded job `job`, with the rights `acting` says.
    fn recorded(job: JobDefinition, acting: Acting) -> Prepared {
        Prepared {
            spec: job.spec,
            acting,
            endpoint_names: job.endpoints,
        }
    }

    /// Whether this is a recorded job (not the settings').
    pub fn is_recorded(&self) -> bool {
        self.spec.is_recorded_job()
    }

    /// The job's table and columns, checked. The settings' names must not come from `ALTER
    /// DATABASE` or `ALTER ROLE` (see `target::resolve`).
    pub fn target(&self) -> Result<Target, UserError> {
        if self.is_recorded() {
            resolve_spec(&self.spec)
        } else {
            resolve()
        }
    }

    /// Where the job's batches go on the Batch API: its first endpoint, set for its model and
    /// dimensions (a batch is made, polled and collected at one endpoint).
    pub fn batch_config(&self) -> Result<embed_core::ApiConfig, UserError> {
        self.endpoints()?.into_iter().next().map(|e| e.config).ok_or_else(|| {
            UserError::new(
                pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("job \"{}\" names no endpoint", self.spec.job),
            )
        })
    }

    /// The job's endpoints, set for its model and dimensions.
    pub fn endpoints(&self) -> Result<Vec<Endpoint>, UserError> {
        let model = self.spec.model.clone().unwrap_or_else(|| gucs::text(&gucs::MODEL));
        crate::http::endpoints::resolve(&self.endpoint_names, &model, self.spec.dimensions.max(0) as u32)
    }
}

/// The job `choice` names, checked for the caller: a recorded job runs as its table's owner
/// whoever calls it (once the caller is found allowed); the settings run with `acting`.
pub fn prepare(choice: &JobChoice, acting: Acting) -> Result<Prepared, UserError> {
    match choice {
        JobChoice::Settings => Ok(Prepared::settings(acting)),
        JobChoice::Named(name) => {
            let job = load(name)?;
            check_may_run(&job)?;
            if acting == Acting::Caller {
                refuse_temporary_objects()?;
            }
            Ok(Prepared::recorded(job, Acting::TableOwner))
        }
    }
}

/// Recorded job `name`, for what only its table's owner does to it (`what`: change it, index,
/// watch or retry its column), checked for a role that may define jobs on that table.
pub fn owned_job(name: &str, what: &str) -> Result<JobDefinition, UserError> {
    let job = load(name)?;
    check_may_define(job.relid, what)?;
    Ok(job)
}

/// Recorded job `name`'s table and columns, for what only the table's owner does to the job's
/// column (`what`: build its indexes and triggers).
pub fn owned_target(name: &str, what: &str) -> Result<Target, UserError> {
    resolve_spec(&owned_job(name, what)?.spec)
}

/// The recorded job whose column searches of table `relid` read, if one was chosen.
pub fn search_job(relid: pg_sys::Oid) -> Result<Option<String>, UserError> {
    as_extension(|| {
        Spi::get_one_with_args::<String>(
            "SELECT (SELECT job FROM doctrove_embed.search_targets WHERE relid = $1::oid::regclass)",
            &[relid.into()],
        )
    })
    .map_err(internal("read doctrove_embed.search_targets"))
}

/// What searches read: the settings' table, through the column of the job chosen for it with
/// `use_job_for_search()` when there is one, with the model and dimensions that made that
/// column's vectors (for the query's embedding).
pub fn search_target() -> Result<Prepared, UserError> {
    let settings = resolve()?;
    Ok(match search_job(settings.relid)? {
        None => Prepared::settings(Acting::Caller),
        Some(name) => Prepared::recorded(load(&name)?, Acting::Caller),
    })
}

/// The job `default` as the settings describe it now, with its table's name and its papers
/// recorded in `doctrove_embed.failures`; `None` when the settings name no usable table, or a
/// recorded job took the name (see `JobChoice`).
pub fn settings_job() -> Result<Option<(JobDefinition, String, i64)>, UserError> {
    let Ok(target) = resolve() else { return Ok(None) };
    let failed = as_extension(|| Spi::get_one::<i64>("SELECT count(*) FROM doctrove_embed.failures WHERE job = 'default'"))
        .map_err(internal("read doctrove_embed.failures"))?
        .unwrap_or(0);
    let job = JobDefinition {
        spec: TargetSpec::from_settings(),
        relid: target.relid,
        model: gucs::text(&gucs::MODEL),
        batch_size: gucs::BATCH_SIZE.get(),
        weight: 1,
        use_batch_api: gucs::BATCH_API.get(),
        enabled: gucs::ENABLED.get(),
        owner_unchanged: true,
        endpoints: vec![DEFAULT_ENDPOINT.to_string()],
    };
    Ok(Some((job, target.names.table.clone(), failed)))
}

/// The jobs the current user may run, each with its table's name and its papers recorded in
/// `doctrove_embed.failures`.
pub fn visible_jobs() -> Result<Vec<(JobDefinition, String, i64)>, UserError> {
    let all = as_extension(|| {
        Spi::connect(|client| {
            client
                .select(
                    &format!(
                        "SELECT {DEFINITION_COLUMNS}, d.relid::text, (SELECT count(*) FROM doctrove_embed.failures f WHERE f.job = d.name) \
                         FROM doctrove_embed.job_definitions d ORDER BY d.name"
                    ),
                    None,
                    &[],
                )?
                .map(|row| {
                    let table = row.get::<String>(19)?.unwrap_or_default();
                    let failed = row.get::<i64>(20)?.unwrap_or(0);
                    Ok((definition_from(row)?, table, failed))
                })
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })
    })
    .map_err(internal("read doctrove_embed.job_definitions"))?;
    let mut visible = Vec::new();
    for (job, table, failed) in all {
        if may_define(job.relid)? || granted(&job.spec.job)? {
            visible.push((job, table, failed));
        }
    }
    Ok(visible)
}
