//! Whether a role may write what each write sets, checked before any request is paid for: a
//! write the database would refuse for lack of a privilege is the statement's fault, not a
//! paper's, and must cost nothing.

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::{ERRCODE_INSUFFICIENT_PRIVILEGE, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE};

use crate::errors::{internal, UserError};
use crate::pg::identity::{with_catalog_search_path, Acting};
use crate::table::target::Target;

/// Refuses (42501) when the role `acting` stands for may not UPDATE every column a write of
/// `target` sets: the embedding, and the model and updated-at columns when the table has them.
pub fn check_may_write(target: &Target, acting: Acting) -> Result<(), UserError> {
    let columns: Vec<String> = target.names.written_columns().into_iter().map(str::to_string).collect();
    let role = acting.role(target.owner);
    let missing = with_catalog_search_path(|| {
        Spi::get_one_with_args::<String>(
            "SELECT pg_catalog.string_agg(pg_catalog.quote_ident(c), ', ' ORDER BY o) \
             FROM pg_catalog.unnest($3::pg_catalog.text[]) WITH ORDINALITY AS w(c, o) \
             WHERE NOT pg_catalog.has_column_privilege($1::pg_catalog.oid, $2::pg_catalog.oid, c, 'UPDATE')",
            &[role.into(), target.relid.into(), columns.into()],
        )
    })
    .map_err(internal("check the rights on the table"))?;
    let Some(missing) = missing else { return Ok(()) };
    let role_name = with_catalog_search_path(|| {
        Spi::get_one_with_args::<String>(
            "SELECT pg_catalog.quote_ident(rolname) FROM pg_catalog.pg_roles WHERE oid = $1",
            &[role.into()],
        )
    })
    .ok()
    .flatten()
    .unwrap_or_default();
    Err(UserError::new(
        ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("permission denied to write column {missing} of table {}", target.names.table),
    )
    .detail(format!(
        "Each write sets {}; role {role_name} may not update {missing}. Nothing was sent to the API.",
        target.names.written_columns().join(", ")
    ))
    .hint(format!(
        "GRANT UPDATE ({missing}) ON {} TO {role_name}; or set doctrove_embed.model_version_column or doctrove_embed.updated_at_column to '' to skip a column.",
        target.names.table
    )))
}

/// Refuses (42501) a caller on whom row-level security acts on `target`: collecting or
/// cancelling a batch settles all its papers, and a caller who sees only some of them would
/// release the others unwritten, paid for.
pub fn refuse_row_security(target: &Target, acting: Acting) -> Result<(), UserError> {
    if acting == Acting::TableOwner {
        return Ok(());
    }
    let limited = with_catalog_search_path(|| {
        Spi::get_one_with_args::<bool>(
            "SELECT pg_catalog.row_security_active($1::pg_catalog.oid)",
            &[target.relid.into()],
        )
    })
    .map_err(internal("check the row security of the table"))?
    .unwrap_or(true);
    if !limited {
        return Ok(());
    }
    Err(UserError::new(ERRCODE_INSUFFICIENT_PRIVILEGE, format!("row-level security limits what this role sees of {}", target.names.table))
        .detail("Collecting or cancelling a batch settles every paper in it; papers this role cannot see would be released unwritten.")
        .hint("Collect as the table's owner or a role that bypasses row-level security (or let worker 0 collect with doctrove_embed.batch_api = on)."))
}

/// Refuses (55000) a session whose temporary schema holds relations or types, before its
/// statements run as a table's owner: with `search_path = pg_catalog, pg_temp`, a name the
/// owner's trigger or default leaves unqualified would find them, and a rule or trigger on one
/// would run the caller's code with the owner's rights. (Functions and operators are never
/// looked up in `pg_temp`.) The workers have none.
pub fn refuse_temporary_objects() -> Result<(), UserError> {
    let found = with_catalog_search_path(|| {
        Spi::get_one::<String>(
            "SELECT (SELECT pg_catalog.string_agg(name, ', ') FROM ( \
                 SELECT pg_catalog.quote_ident(relname) AS name FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema() \
                 UNION ALL SELECT pg_catalog.quote_ident(typname) FROM pg_catalog.pg_type \
                 WHERE typnamespace = pg_catalog.pg_my_temp_schema() AND typrelid = 0 AND typcategory <> 'A' LIMIT 5) t)",
        )
    })
    .map_err(internal("look for temporary objects"))?;
    let Some(names) = found else { return Ok(()) };
    Err(UserError::new(
        ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        "a job does not run in a session that has temporary tables or types",
    )
    .detail(format!(
        "A job's statements run as the table's owner, and the owner's unqualified names would find this session's temporary objects ({names}). Nothing was sent to the API."
    ))
    .hint("Run it from a session without temporary objects (DISCARD TEMP), or let the workers run it."))
}

/// Refuses (42501) a caller who may not read every column a batch reads.
fn check_may_read(target: &Target) -> Result<(), UserError> {
    let n = &target.names;
    let mut columns = vec![n.id.clone(), n.title.clone(), n.embedding.clone()];
    columns.extend(n.abstract_text.clone());
    let missing = with_catalog_search_path(|| {
        Spi::get_one_with_args::<String>(
            "SELECT pg_catalog.string_agg(pg_catalog.quote_ident(c), ', ' ORDER BY o) \
             FROM pg_catalog.unnest($2::pg_catalog.text[]) WITH ORDINALITY AS w(c, o) \
             WHERE NOT pg_catalog.has_column_privilege($1::pg_catalog.oid, c, 'SELECT')",
            &[target.relid.into(), columns.into()],
        )
    })
    .map_err(internal("check the rights on the table"))?;
    let Some(missing) = missing else { return Ok(()) };
    Err(UserError::new(
        ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("permission denied to read column {missing} of table {}", target.names.table),
    )
    .detail("A batch reads the id, title, abstract and embedding columns. Nothing was sent to the API.")
    .hint(format!("GRANT SELECT ({missing}) ON {} TO ROLE;", target.names.table)))
}

/// Whose rights a batch of `target` takes for a caller acting as `acting`. A session's batch of
/// the settings' job runs as the table's owner too, once the caller is found allowed to read
/// and write what it reads and writes, and not limited by row-level security on the table (the
/// owner sees every row): so a trigger, index expression or default the owner attached never
/// runs with the caller's rights, a superuser's (a pg_cron job's) included, as for VACUUM.
pub fn owner_rights_for(target: &Target, acting: Acting) -> Result<Acting, UserError> {
    if acting == Acting::TableOwner {
        return Ok(acting);
    }
    refuse_temporary_objects()?;
    check_may_read(target)?;
    check_may_write(target, Acting::Caller)?;
    refuse_row_security(target, Acting::Caller)?;
    Ok(Acting::TableOwner)
}
