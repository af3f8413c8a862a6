//! Keeps the API key out of the catalogs every role can read: a utility hook refuses
//! `ALTER ROLE ... SET` and `ALTER DATABASE ... SET` (stored in `pg_db_role_setting`) and
//! `CREATE FUNCTION ... SET` / `ALTER FUNCTION ... SET` (stored in `pg_proc.proconfig`) of
//! `doctrove_embed.api_key` (RESET stays allowed, to clean up). The key file
//! (`doctrove_embed.api_key_file`), postgresql.conf and `ALTER SYSTEM` (files only the server
//! reads) remain the ways to set it.

use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE;

use crate::errors::UserError;

static mut PREVIOUS_HOOK: pg_sys::ProcessUtility_hook_type = None;

const GUARDED: &str = "doctrove_embed.api_key";

/// The setting a per-role or per-database SET statement assigns, if `stmt` is one.
unsafe fn per_role_or_database_setting(stmt: *mut pg_sys::Node) -> Option<*mut pg_sys::VariableSetStmt> {
    match (*stmt).type_ {
        pg_sys::NodeTag::T_AlterRoleSetStmt => Some((*(stmt as *mut pg_sys::AlterRoleSetStmt)).setstmt),
        pg_sys::NodeTag::T_AlterDatabaseSetStmt => Some((*(stmt as *mut pg_sys::AlterDatabaseSetStmt)).setstmt),
        _ => None,
    }
}

/// The `SET` clauses of a `CREATE FUNCTION`/`PROCEDURE` or `ALTER FUNCTION`/`PROCEDURE`/`ROUTINE`.
unsafe fn function_settings(stmt: *mut pg_sys::Node) -> Vec<*mut pg_sys::VariableSetStmt> {
    let options = match (*stmt).type_ {
        pg_sys::NodeTag::T_CreateFunctionStmt => (*(stmt as *mut pg_sys::CreateFunctionStmt)).options,
        pg_sys::NodeTag::T_AlterFunctionStmt => (*(stmt as *mut pg_sys::AlterFunctionStmt)).actions,
        _ => return Vec::new(),
    };
    if options.is_null() {
        return Vec::new();
    }
    (0..(*options).length as usize)
        .map(|i| (*(*options).elements.add(i)).ptr_value as *mut pg_sys::DefElem)
        .filter(|d| !d.is_null() && !(**d).defname.is_null() && CStr::from_ptr((**d).defname).to_bytes() == b"set")
        .map(|d| (*d).arg as *mut pg_sys::VariableSetStmt)
        .collect()
}

/// Whether `set` gives `doctrove_embed.api_key` a value (RESET does not).
unsafe fn assigns_the_key(set: *mut pg_sys::VariableSetStmt) -> bool {
    if set.is_null() || (*set).name.is_null() {
        return false;
    }
    let name = CStr::from_ptr((*set).name).to_string_lossy();
    let assigns = !matches!(
        (*set).kind,
        pg_sys::VariableSetKind::VAR_RESET | pg_sys::VariableSetKind::VAR_RESET_ALL
    );
    assigns && name.eq_ignore_ascii_case(GUARDED)
}

unsafe fn refuse_key_in_catalogs(stmt: *mut pg_sys::Node) {
    if stmt.is_null() {
        return;
    }
    if per_role_or_database_setting(stmt).is_some_and(|set| assigns_the_key(set)) {
        UserError::new(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            "doctrove_embed.api_key cannot be set per role or per database",
        )
        .detail("Per-role and per-database settings are stored in pg_db_role_setting, which every role can read.")
        .hint("Put the key in a file named by doctrove_embed.api_key_file (or set it in postgresql.conf or with ALTER SYSTEM).")
        .raise();
    }
    if function_settings(stmt).into_iter().any(|set| assigns_the_key(set)) {
        UserError::new(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            "doctrove_embed.api_key cannot be set for a function",
        )
        .detail("A function's settings are stored in pg_proc.proconfig, which every role can read.")
        .hint("Put the key in a file named by doctrove_embed.api_key_file (or set it in postgresql.conf or with ALTER SYSTEM).")
        .raise();
    }
}

#[cfg(not(feature = "pg13"))]
#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn guard(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    refuse_key_in_catalogs((*pstmt).utilityStmt);
    match PREVIOUS_HOOK {
        Some(previous) => previous(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc),
        None => pg_sys::standard_ProcessUtility(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc),
    }
}

/// The same hook for PostgreSQL 13, whose ProcessUtility has no `readOnlyTree` (added in 14).
#[cfg(feature = "pg13")]
#[pg_guard]
unsafe extern "C-unwind" fn guard(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    refuse_key_in_catalogs((*pstmt).utilityStmt);
    match PREVIOUS_HOOK {
        Some(previous) => previous(pstmt, query_string, context, params, query_env, dest, qc),
        None => pg_sys::standard_ProcessUtility(pstmt, query_string, context, params, query_env, dest, qc),
    }
}

/// Installs the hook; from `_PG_init`.
pub fn install() {
    // SAFETY: _PG_init runs once per process, before any statement.
    unsafe {
        PREVIOUS_HOOK = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(guard);
    }
}
