//! Finds the configured papers table and its columns in the catalog and checks them, so a
//! misconfiguration fails before any row is touched or any request sent.
//!
//! The table is resolved once, to an OID, and named schema-qualified from then on. An
//! unqualified `doctrove_embed.table` means that table in schema `public`, whatever the
//! `search_path` of the session, the role or the database: so a table planted in a schema that
//! comes earlier on some path (one named after the connecting user, say) is never taken.

use embed_core::sql_text::{quote_ident, PapersTable};
use embed_core::text_format::TextFormat;
use embed_core::ApiConfig;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

use crate::errors::UserError;
use crate::settings::gucs;

/// Where a target's table and column names come from: the session's settings (the job
/// `default` before one is created), or a job in `doctrove_embed.job_definitions`.
#[derive(Clone, Debug)]
pub enum TableRef {
    /// `doctrove_embed.table`, resolved in schema `public` when unqualified.
    Setting(String),
    /// A job's table, by OID (recorded by `create_job` as a `regclass`).
    Relid(pg_sys::Oid),
}

/// What a job names: the table, its columns and the dimensions to ask for.
#[derive(Clone, Debug)]
pub struct TargetSpec {
    /// The job's name (`default` for the settings).
    pub job: String,
    pub table: TableRef,
    pub id_column: String,
    pub title_column: String,
    /// Empty: the table has no abstract.
    pub abstract_column: String,
    pub embedding_column: String,
    /// Empty: skipped.
    pub model_version_column: String,
    /// Empty: skipped.
    pub updated_at_column: String,
    /// 0: the model's own length.
    pub dimensions: i32,
    /// A recorded job's model (`None` for the settings'): with a model column, vectors another
    /// model made are pending again.
    pub model: Option<String>,
    /// A recorded job's text format (`None`: the default, `Title: {title}[ Abstract: {abstract}]`).
    pub text_format: Option<String>,
    /// A recorded job's query format (`None`: the `doctrove_embed.query_format` setting).
    pub query_format: Option<String>,
}

/// The job the settings describe.
pub const SETTINGS_JOB: &str = "default";

impl TargetSpec {
    /// The job the `doctrove_embed.*` settings describe.
    pub fn from_settings() -> TargetSpec {
        TargetSpec {
            job: SETTINGS_JOB.to_string(),
            table: TableRef::Setting(gucs::text(&gucs::TABLE)),
            id_column: gucs::text(&gucs::ID_COLUMN),
            title_column: gucs::text(&gucs::TITLE_COLUMN),
            abstract_column: gucs::text(&gucs::ABSTRACT_COLUMN),
            embedding_column: gucs::text(&gucs::EMBEDDING_COLUMN),
            model_version_column: gucs::text(&gucs::MODEL_VERSION_COLUMN),
            updated_at_column: gucs::text(&gucs::UPDATED_AT_COLUMN),
            dimensions: gucs::DIMENSIONS.get(),
            model: None,
            text_format: None,
            query_format: None,
        }
    }

    pub fn is_recorded_job(&self) -> bool {
        matches!(self.table, TableRef::Relid(_))
    }

    /// How a message names what sets `field`: the setting, or the job's field.
    fn field(&self, field: &str) -> String {
        if self.is_recorded_job() {
            format!("{field} of job \"{}\"", self.job)
        } else {
            format!("doctrove_embed.{field}")
        }
    }

    /// How a hint says to change `field`.
    fn change(&self, field: &str) -> String {
        if self.is_recorded_job() {
            format!("Set {field} of job \"{}\"", self.job)
        } else {
            format!("Set doctrove_embed.{field}")
        }
    }
}

/// A job's text format, parsed; 22023 with the reason when it is not one.
pub fn parse_text_format(format: &str) -> Result<TextFormat, UserError> {
    TextFormat::parse(format).map_err(|error| {
        UserError::new(ERRCODE_INVALID_PARAMETER_VALUE, format!("invalid text format: {error}"))
            .detail(format!("The format was: {format}"))
            .hint("Name the fields {title} and {abstract}; put a part that needs a field in square brackets, as in 'Title: {title}[ Abstract: {abstract}]'.")
    })
}

/// A search's text in the form of the stored texts: `format` (a job's query format, or the
/// `doctrove_embed.query_format` setting) with `{query}` standing for it; 22023 when the format
/// is not one, naming `whose` format it is.
pub fn query_text(format: &str, query: &str, whose: &str) -> Result<String, UserError> {
    embed_core::text_format::query_text(format, query).map_err(|error| {
        UserError::new(ERRCODE_INVALID_PARAMETER_VALUE, format!("invalid {whose}: {error}"))
            .detail(format!("The format was: {format}"))
            .hint("Name {query} in it, as in 'Title: {query}' or 'query: {query}'.")
    })
}

/// The papers table, checked, with what writing vectors to it needs.
pub struct Target {
    /// The job this is (`default` for the settings).
    pub job: String,
    pub names: PapersTable,
    pub relid: pg_sys::Oid,
    /// The table's owner, whose rights the background workers use for it.
    pub owner: pg_sys::Oid,
    /// The embedding column's declared length; `None` for a plain `vector`.
    pub dims: Option<usize>,
    /// pgvector's `vector` type and its array type.
    pub vector_type: pg_sys::Oid,
    pub vector_array_type: pg_sys::Oid,
    /// How a paper's title and abstract make the text sent.
    pub format: TextFormat,
    /// The job's query format (`None`: the `doctrove_embed.query_format` setting).
    pub query_format: Option<String>,
}

impl Target {
    /// The length every vector written must have, when known: the column's declared length,
    /// else the `dimensions` the API is asked for.
    pub fn expected_dims(&self, config: &ApiConfig) -> Option<usize> {
        self.dims.or((config.dimensions > 0).then_some(config.dimensions as usize))
    }
}

struct Column {
    type_oid: pg_sys::Oid,
    typmod: i32,
    type_name: String,
    attnum: i16,
}

fn column(relid: pg_sys::Oid, name: &str) -> Option<Column> {
    Spi::connect(|client| {
        let rows = client
            .select(
                "SELECT atttypid, atttypmod, pg_catalog.format_type(atttypid, atttypmod), attnum FROM pg_catalog.pg_attribute \
                 WHERE attrelid = $1 AND attname = $2 AND attnum > 0 AND NOT attisdropped",
                None,
                &[relid.into(), name.into()],
            )
            .ok()?;
        let row = rows.first();
        Some(Column {
            type_oid: row.get::<pg_sys::Oid>(1).ok()??,
            typmod: row.get::<i32>(2).ok()??,
            type_name: row.get::<String>(3).ok()??,
            attnum: row.get::<i16>(4).ok()??,
        })
    })
}

fn missing_column(spec: &TargetSpec, table: &str, setting: &str, name: &str) -> UserError {
    UserError::new(
        ERRCODE_UNDEFINED_COLUMN,
        format!("column \"{name}\" of table {table} does not exist"),
    )
    .hint(format!("{} to the name of an existing column.", spec.change(setting)))
}

fn required_column(spec: &TargetSpec, relid: pg_sys::Oid, table: &str, setting: &str, name: &str) -> Result<Column, UserError> {
    if name.is_empty() {
        return Err(
            UserError::new(ERRCODE_INVALID_PARAMETER_VALUE, format!("{} is empty", spec.field(setting)))
                .hint(format!("{} to a column of {table}.", spec.change(setting))),
        );
    }
    column(relid, name).ok_or_else(|| missing_column(spec, table, setting, name))
}

/// A column set by each write when the table has it. The default name is optional (older
/// schemas lack it); a name someone set on purpose must exist.
fn optional_column(
    spec: &TargetSpec,
    relid: pg_sys::Oid,
    table: &str,
    setting: &str,
    name: &str,
    default: &str,
) -> Result<Option<String>, UserError> {
    if name.is_empty() {
        return Ok(None);
    }
    match column(relid, name) {
        Some(_) => Ok(Some(name.to_string())),
        None if name == default => Ok(None),
        None => Err(missing_column(spec, table, setting, name)),
    }
}

fn has_single_column_unique_index(relid: pg_sys::Oid, attnum: i16) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index WHERE indrelid = $1 AND indisunique AND indisvalid \
         AND indnkeyatts = 1 AND indkey[0] = $2 AND indpred IS NULL AND indexprs IS NULL)",
        &[relid.into(), attnum.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false)
}

/// pgvector's `vector` type, its array type, and the schema of the `vector` extension (quoted).
fn vector_types() -> Result<(pg_sys::Oid, pg_sys::Oid, String), UserError> {
    let found = Spi::get_three::<pg_sys::Oid, pg_sys::Oid, String>(
        "SELECT t.oid, t.typarray, pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_type t \
         JOIN pg_catalog.pg_extension e ON e.extname = 'vector' AND t.typnamespace = e.extnamespace \
         JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE t.typname = 'vector'",
    );
    match found {
        Ok((Some(vector), Some(array), Some(schema))) => Ok((vector, array, schema)),
        _ => Err(
            UserError::new(ERRCODE_UNDEFINED_OBJECT, "the extension \"vector\" is not installed")
                .hint("CREATE EXTENSION vector; (or CREATE EXTENSION doctrove_embed CASCADE)"),
        ),
    }
}

/// The id types whose text form is the same in every session. Ids travel as text between the
/// statements of a batch and across transactions (claims, failures), so an id whose text depends
/// on `extra_float_digits`, `DateStyle`, `TimeZone`, `IntervalStyle`, `bytea_output`,
/// `lc_monetary` or the `search_path` (the `reg*` types) could miss its own row; such types (and
/// arrays, ranges and the like) are refused.
const STABLE_TEXT_ID_TYPES: [pg_sys::Oid; 10] = [
    pg_sys::INT2OID,
    pg_sys::INT4OID,
    pg_sys::INT8OID,
    pg_sys::NUMERICOID,
    pg_sys::TEXTOID,
    pg_sys::VARCHAROID,
    pg_sys::BPCHAROID,
    pg_sys::NAMEOID,
    pg_sys::UUIDOID,
    pg_sys::OIDOID,
];

/// Refuses an id column whose type (or the type under its domain) is not one whose text form is
/// the same in every session.
fn refuse_session_dependent_id(spec: &TargetSpec, id: &Column, table: &str, id_name: &str) -> Result<(), UserError> {
    // SAFETY: a catalog lookup of an existing type (the column's).
    let base = unsafe { pg_sys::getBaseType(id.type_oid) };
    if STABLE_TEXT_ID_TYPES.contains(&base) {
        return Ok(());
    }
    Err(UserError::new(
        ERRCODE_DATATYPE_MISMATCH,
        format!(
            "column \"{id_name}\" of table {table} is of type {}, whose text form depends on session settings",
            id.type_name
        ),
    )
    .detail("Papers are found again by the text form of their id, in other sessions and transactions.")
    .hint(format!(
        "{} to a key of type bigint, integer, numeric, text, varchar or uuid.",
        spec.change("id_column")
    )))
}

/// The schema and name `doctrove_embed.table` gives: `name` means `public.name`.
fn table_name_parts(setting: &str) -> Result<(String, String), UserError> {
    let invalid = || {
        UserError::new(
            ERRCODE_INVALID_NAME,
            format!("doctrove_embed.table \"{setting}\" is not a valid table name"),
        )
        .hint("Write it as table or schema.table, with double quotes around names that need them.")
    };
    if setting.trim().is_empty() {
        return Err(invalid());
    }
    // parse_ident raises an ERROR for a malformed name: in a subtransaction of its own.
    let parts = crate::pg::subtransaction::in_subtransaction(|| {
        Spi::get_one_with_args::<Vec<String>>("SELECT pg_catalog.parse_ident($1)", &[setting.into()])
    })
    .ok()
    .and_then(|parsed| parsed.ok().flatten())
    .ok_or_else(invalid)?;
    match parts.as_slice() {
        [name] => Ok(("public".to_string(), name.clone())),
        [schema, name] => Ok((schema.clone(), name.clone())),
        _ => Err(invalid()),
    }
}

/// The id type, schema-qualified, and its equality operator as `OPERATOR(schema.=)`.
fn id_type_and_equality(type_oid: pg_sys::Oid, table: &str, id_name: &str) -> Result<(String, String), UserError> {
    // SAFETY: a type cache lookup of an existing type (the column's).
    let eq = unsafe { (*pg_sys::lookup_type_cache(type_oid, pg_sys::TYPECACHE_EQ_OPR as i32)).eq_opr };
    let found = Spi::get_two_with_args::<String, String>(
        "SELECT pg_catalog.format('%I.%I', tn.nspname, t.typname), pg_catalog.format('OPERATOR(%I.%s)', opn.nspname, o.oprname) \
         FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace, \
         pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace opn ON opn.oid = o.oprnamespace \
         WHERE t.oid = $1 AND o.oid = $2",
        &[type_oid.into(), eq.into()],
    );
    match found {
        Ok((Some(ty), Some(op))) => Ok((ty, op)),
        _ => Err(UserError::new(
            ERRCODE_UNDEFINED_FUNCTION,
            format!("column \"{id_name}\" of table {table} has a type without an equality operator"),
        )
        .hint("Set doctrove_embed.id_column to a key column of a type such as bigint, uuid or text.")),
    }
}

/// The `doctrove_embed.*` settings (those named in `only`, when given) whose value comes from
/// `ALTER DATABASE` or `ALTER ROLE ... SET`, as `name (source)`, if any. A failed look-up is an
/// error, never a pass.
fn settings_from_catalogs(only: Option<Vec<String>>) -> Result<Option<String>, UserError> {
    crate::pg::identity::with_catalog_search_path(|| {
        Spi::get_one_with_args::<String>(
            "SELECT string_agg(name || ' (' || source || ')', ', ' ORDER BY name) FROM pg_settings \
             WHERE name LIKE 'doctrove\\_embed.%' AND ($1::text[] IS NULL OR name = ANY($1)) \
             AND source IN ('database', 'user', 'database user')",
            &[only.into()],
        )
    })
    .map_err(crate::errors::internal("read where the settings come from"))
}

/// Refuses, in a background worker, `doctrove_embed.*` values that come from `ALTER DATABASE` or
/// `ALTER ROLE ... SET`: the workers act as the table's owner, so whoever owns the database
/// must not choose which table (or which columns, sent to the API) that is. Workers take their
/// settings from the server's configuration only.
pub fn refuse_settings_from_catalogs() -> Result<(), UserError> {
    match settings_from_catalogs(None)? {
        None => Ok(()),
        Some(names) => Err(UserError::new(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            "the background workers take no doctrove_embed setting from ALTER DATABASE or ALTER ROLE",
        )
        .detail(format!("Set per database or per role: {names}."))
        .hint("Set them in postgresql.conf or with ALTER SYSTEM, and RESET the per-database or per-role values.")),
    }
}

/// The settings that choose the table and the columns a write reads and sets.
const TABLE_SETTINGS: [&str; 7] = [
    "table",
    "id_column",
    "title_column",
    "abstract_column",
    "embedding_column",
    "model_version_column",
    "updated_at_column",
];

/// Refuses, in any session, a table or column setting that comes from `ALTER DATABASE` or
/// `ALTER ROLE ... SET`: whoever owns a database (or set a role's defaults) must not choose the
/// table another role's `embed_pending()` writes to, whose triggers would run with that role's
/// rights. A session's own `SET` and the server's configuration choose it.
fn refuse_table_settings_from_catalogs() -> Result<(), UserError> {
    let names = TABLE_SETTINGS.iter().map(|name| format!("doctrove_embed.{name}")).collect();
    let Some(chosen) = settings_from_catalogs(Some(names))? else {
        return Ok(());
    };
    Err(UserError::new(
        ERRCODE_INSUFFICIENT_PRIVILEGE,
        "doctrove_embed takes no table, column or model setting from ALTER DATABASE or ALTER ROLE",
    )
    .detail(format!("Set per database or per role: {chosen}."))
    .hint("SET them in the session (or in postgresql.conf), and RESET the per-database or per-role values."))
}

/// Reads the settings and checks the table they name. Catalog lookups run with the extension's
/// own search_path.
pub fn resolve() -> Result<Target, UserError> {
    refuse_table_settings_from_catalogs()?;
    resolve_spec(&TargetSpec::from_settings())
}

/// Checks the table and columns `spec` names. Catalog lookups run with the extension's own
/// search_path.
pub fn resolve_spec(spec: &TargetSpec) -> Result<Target, UserError> {
    crate::pg::identity::with_catalog_search_path(|| resolve_with_catalog_path(spec))
}

fn resolve_with_catalog_path(spec: &TargetSpec) -> Result<Target, UserError> {
    let (schema, name, relid_arg) = match &spec.table {
        TableRef::Setting(setting) => {
            let (schema, name) = table_name_parts(setting)?;
            (schema, name, None)
        }
        TableRef::Relid(relid) => (String::new(), relid.to_u32().to_string(), Some(*relid)),
    };
    let found = Spi::connect(|client| {
        let rows = client.select(
            "SELECT c.oid, pg_catalog.format('%I.%I', n.nspname, c.relname), c.relname::text, c.relkind::text, c.relowner \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE CASE WHEN $3::pg_catalog.oid IS NULL THEN n.nspname = $1 AND c.relname = $2 ELSE c.oid = $3 END",
            None,
            &[schema.clone().into(), name.clone().into(), relid_arg.into()],
        )?;
        let Some(row) = rows.into_iter().next() else { return Ok(None) };
        Ok::<_, pgrx::spi::Error>(Some((
            row.get::<pg_sys::Oid>(1)?,
            row.get::<String>(2)?,
            row.get::<String>(3)?,
            row.get::<String>(4)?,
            row.get::<pg_sys::Oid>(5)?,
        )))
    })
    .ok()
    .flatten();
    let (relid, table, relname, relkind, owner) = match found {
        Some((Some(relid), Some(table), Some(relname), Some(relkind), Some(owner))) => (relid, table, relname, relkind, owner),
        _ if spec.is_recorded_job() => {
            return Err(UserError::new(
                ERRCODE_UNDEFINED_TABLE,
                format!("the table of job \"{}\" (OID {name}) no longer exists", spec.job),
            )
            .hint(format!(
                "Drop the job: SELECT doctrove_embed.drop_job('{}');",
                spec.job.replace('\'', "''")
            )))
        }
        _ => {
            return Err(UserError::new(
                ERRCODE_UNDEFINED_TABLE,
                format!("relation \"{schema}.{name}\" does not exist"),
            )
            .detail(
                "doctrove_embed.table names the table whose embeddings are filled; a name without a schema means schema public.",
            )
            .hint("Set doctrove_embed.table to an existing table, as schema.table if it is not in schema public."))
        }
    };
    if relkind != "r" && relkind != "p" {
        return Err(UserError::new(ERRCODE_WRONG_OBJECT_TYPE, format!("{table} is not a table"))
            .hint("doctrove_embed.table must name a table (or a partitioned table), not a view or another kind of relation."));
    }

    let id_name = spec.id_column.clone();
    let id = required_column(spec, relid, &table, "id_column", &id_name)?;
    refuse_session_dependent_id(spec, &id, &table, &id_name)?;
    if !has_single_column_unique_index(relid, id.attnum) {
        return Err(UserError::new(
            ERRCODE_INVALID_COLUMN_REFERENCE,
            format!("column \"{id_name}\" of table {table} has no unique index"),
        )
        .detail("Each write finds its paper by this column, so it must identify one row.")
        .hint(format!(
            "Create one: CREATE UNIQUE INDEX ON {table} ({}); or {} to the primary key.",
            quote_ident(&id_name),
            if spec.is_recorded_job() {
                format!("change {}", spec.field("id_column"))
            } else {
                "set doctrove_embed.id_column".to_string()
            }
        )));
    }
    let title_name = spec.title_column.clone();
    required_column(spec, relid, &table, "title_column", &title_name)?;
    let abstract_name = spec.abstract_column.clone();
    if !abstract_name.is_empty() {
        required_column(spec, relid, &table, "abstract_column", &abstract_name)?;
    }

    let embedding_name = spec.embedding_column.clone();
    let embedding = required_column(spec, relid, &table, "embedding_column", &embedding_name)?;
    let (vector_type, vector_array_type, vector_schema) = vector_types()?;
    if embedding.type_oid != vector_type {
        return Err(UserError::new(
            ERRCODE_DATATYPE_MISMATCH,
            format!(
                "column \"{embedding_name}\" of table {table} is of type {}, not vector",
                embedding.type_name
            ),
        )
        .hint(format!(
            "{} must name a pgvector column, such as vector(1536).",
            spec.field("embedding_column")
        )));
    }
    let dims = (embedding.typmod > 0).then_some(embedding.typmod as usize);
    let requested = spec.dimensions;
    if let Some(dims) = dims {
        if requested > 0 && requested as usize != dims {
            return Err(UserError::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!(
                    "{} is {requested}, but column \"{embedding_name}\" holds vector({dims})",
                    spec.field("dimensions")
                ),
            )
            .hint(format!(
                "{} to {dims}, or to 0 to use the model's own length.",
                spec.change("dimensions")
            )));
        }
    }

    let model_version = optional_column(
        spec,
        relid,
        &table,
        "model_version_column",
        &spec.model_version_column,
        gucs::DEFAULT_MODEL_VERSION_COLUMN,
    )?;
    let updated_at = optional_column(
        spec,
        relid,
        &table,
        "updated_at_column",
        &spec.updated_at_column,
        gucs::DEFAULT_UPDATED_AT_COLUMN,
    )?;

    let (id_type, id_eq) = id_type_and_equality(id.type_oid, &table, &id_name)?;
    let format = match &spec.text_format {
        None => TextFormat::default(),
        Some(format) => parse_text_format(format)?,
    };
    Ok(Target {
        job: spec.job.clone(),
        format,
        query_format: spec.query_format.clone(),
        names: PapersTable {
            table,
            relname,
            id: id_name,
            id_type,
            id_eq,
            vector_schema,
            title: title_name,
            abstract_text: (!abstract_name.is_empty()).then_some(abstract_name),
            embedding: embedding_name,
            model_version,
            updated_at,
            index_per_column: spec.is_recorded_job(),
            current_model: spec.model.clone(),
        },
        relid,
        owner,
        dims,
        vector_type,
        vector_array_type,
    })
}
