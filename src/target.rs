//! Finds the configured papers table and its columns in the catalog and checks them, so a
//! misconfiguration fails before any row is touched or any request sent.

use embed_core::sql_text::{quote_ident, PapersTable};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

use crate::errors::UserError;
use crate::gucs;

/// The papers table, checked, with what writing vectors to it needs.
pub struct Target {
    pub names: PapersTable,
    pub relid: pg_sys::Oid,
    /// The embedding column's declared length; `None` for a plain `vector`.
    pub dims: Option<usize>,
    /// pgvector's `vector` type and its array type.
    pub vector_type: pg_sys::Oid,
    pub vector_array_type: pg_sys::Oid,
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
                "SELECT atttypid, atttypmod, format_type(atttypid, atttypmod), attnum FROM pg_attribute \
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

fn missing_column(table: &str, setting: &str, name: &str) -> UserError {
    UserError::new(ERRCODE_UNDEFINED_COLUMN, format!("column \"{name}\" of table {table} does not exist"))
        .hint(format!("Set doctrove_embed.{setting} to the name of an existing column."))
}

fn required_column(relid: pg_sys::Oid, table: &str, setting: &str, name: &str) -> Result<Column, UserError> {
    if name.is_empty() {
        return Err(UserError::new(ERRCODE_INVALID_PARAMETER_VALUE, format!("doctrove_embed.{setting} is empty"))
            .hint(format!("Set doctrove_embed.{setting} to a column of {table}.")));
    }
    column(relid, name).ok_or_else(|| missing_column(table, setting, name))
}

/// A column set by each write when the table has it. The default name is optional (older
/// schemas lack it); a name someone set on purpose must exist.
fn optional_column(
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
        None => Err(missing_column(table, setting, name)),
    }
}

fn has_single_column_unique_index(relid: pg_sys::Oid, attnum: i16) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = $1 AND indisunique AND indisvalid \
         AND indnkeyatts = 1 AND indkey[0] = $2 AND indpred IS NULL AND indexprs IS NULL)",
        &[relid.into(), attnum.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false)
}

fn vector_types() -> Result<(pg_sys::Oid, pg_sys::Oid), UserError> {
    let found = Spi::get_two::<pg_sys::Oid, pg_sys::Oid>(
        "SELECT t.oid, t.typarray FROM pg_type t JOIN pg_extension e ON e.extname = 'vector' \
         AND t.typnamespace = e.extnamespace WHERE t.typname = 'vector'",
    );
    match found {
        Ok((Some(vector), Some(array))) => Ok((vector, array)),
        _ => Err(UserError::new(ERRCODE_UNDEFINED_OBJECT, "the extension \"vector\" is not installed")
            .hint("CREATE EXTENSION vector; (or CREATE EXTENSION doctrove_embed CASCADE)")),
    }
}

/// Reads the settings and checks the table they name.
pub fn resolve() -> Result<Target, UserError> {
    let table_setting = gucs::text(&gucs::TABLE);
    let found = Spi::get_three_with_args::<pg_sys::Oid, String, String>(
        "SELECT c.oid, c.oid::regclass::text, c.relname::text FROM pg_class c WHERE c.oid = to_regclass($1)",
        &[table_setting.clone().into()],
    );
    let (relid, table, relname) = match found {
        Ok((Some(relid), Some(table), Some(relname))) => (relid, table, relname),
        _ => {
            return Err(UserError::new(ERRCODE_UNDEFINED_TABLE, format!("relation \"{table_setting}\" does not exist"))
                .detail("doctrove_embed.table names the table whose embeddings are filled.")
                .hint("Set doctrove_embed.table to an existing table, schema-qualified if it is not on the search_path."))
        }
    };

    let id_name = gucs::text(&gucs::ID_COLUMN);
    let id = required_column(relid, &table, "id_column", &id_name)?;
    if !has_single_column_unique_index(relid, id.attnum) {
        return Err(UserError::new(
            ERRCODE_INVALID_COLUMN_REFERENCE,
            format!("column \"{id_name}\" of table {table} has no unique index"),
        )
        .detail("Each write finds its paper by this column, so it must identify one row.")
        .hint(format!(
            "Create one: CREATE UNIQUE INDEX ON {table} ({}); or set doctrove_embed.id_column to the primary key.",
            quote_ident(&id_name)
        )));
    }
    let title_name = gucs::text(&gucs::TITLE_COLUMN);
    required_column(relid, &table, "title_column", &title_name)?;
    let abstract_name = gucs::text(&gucs::ABSTRACT_COLUMN);
    if !abstract_name.is_empty() {
        required_column(relid, &table, "abstract_column", &abstract_name)?;
    }

    let embedding_name = gucs::text(&gucs::EMBEDDING_COLUMN);
    let embedding = required_column(relid, &table, "embedding_column", &embedding_name)?;
    let (vector_type, vector_array_type) = vector_types()?;
    if embedding.type_oid != vector_type {
        return Err(UserError::new(
            ERRCODE_DATATYPE_MISMATCH,
            format!("column \"{embedding_name}\" of table {table} is of type {}, not vector", embedding.type_name),
        )
        .hint("doctrove_embed.embedding_column must name a pgvector column, such as vector(1536)."));
    }
    let dims = (embedding.typmod > 0).then_some(embedding.typmod as usize);
    let requested = gucs::DIMENSIONS.get();
    if let Some(dims) = dims {
        if requested > 0 && requested as usize != dims {
            return Err(UserError::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("doctrove_embed.dimensions is {requested}, but column \"{embedding_name}\" holds vector({dims})"),
            )
            .hint(format!("Set doctrove_embed.dimensions to {dims}, or to 0 to use the model's own length.")));
        }
    }

    let model_version = optional_column(
        relid,
        &table,
        "model_version_column",
        &gucs::text(&gucs::MODEL_VERSION_COLUMN),
        gucs::DEFAULT_MODEL_VERSION_COLUMN,
    )?;
    let updated_at = optional_column(
        relid,
        &table,
        "updated_at_column",
        &gucs::text(&gucs::UPDATED_AT_COLUMN),
        gucs::DEFAULT_UPDATED_AT_COLUMN,
    )?;

    Ok(Target {
        names: PapersTable {
            table,
            relname,
            id: id_name,
            id_type: id.type_name,
            title: title_name,
            abstract_text: (!abstract_name.is_empty()).then_some(abstract_name),
            embedding: embedding_name,
            model_version,
            updated_at,
        },
        relid,
        dims,
        vector_type,
        vector_array_type,
    })
}
