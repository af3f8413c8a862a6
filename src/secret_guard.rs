//! Keeps the API key out of `pg_db_role_setting`, which every role can read: a utility hook
//! refuses `ALTER ROLE ... SET` and `ALTER DATABASE ... SET` of `doctrove_embed.api_key`
//! (RESET stays allowed, to clean up). postgresql.conf, `ALTER SYSTEM` (a file only the server
//! reads) and `doctrove_embed.api_key_file` remain the ways to set it.

use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE;

use crate::errors::UserError;

static mut PREVIOUS_HOOK: pg_sys::ProcessUtility_hook_type = None;

const GUARDED: &str = "doctrove_embed.api_key";

/// The setting a per-role or per-database SET statement assigns, if `stmt` is one.
unsafe fn per_role_or_database_setting(stmt: *mut pg_sys::Node) -> Option<*mut pg_sys::VariableSetStmt> {
    if stmt.is_null() {
        return None;
    }
    match (*stmt).type_ {
        pg_sys::NodeTag::T_AlterRoleSetStmt => Some((*(stmt as *mut pg_sys::AlterRoleSetStmt)).setstmt),
        pg_sys::NodeTag::T_AlterDatabaseSetStmt => Some((*(stmt as *mut pg_sys::AlterDatabaseSetStmt)).setstmt),
        _ => None,
    }
}

unsafe fn refuse_key_per_role_or_database(stmt: *mut pg_sys::Node) {
    let Some(set) = per_role_or_database_setting(stmt).filter(|s| !s.is_null()) else { return };
    if (*set).name.is_null() {
        return;
    }
    let name = CStr::from_ptr((*set).name).to_string_lossy();
    let assigns = !matches!((*set).kind, pg_sys::VariableSetKind::VAR_RESET | pg_sys::VariableSetKind::VAR_RESET_ALL);
    if assigns && name.eq_ignore_ascii_case(GUARDED) {
        UserError::new(ERRCODE_INSUFFICIENT_PRIVILEGE, "doctrove_embed.api_key cannot be set per role or per database")
            .detail("Per-role and per-database settings are stored in pg_db_role_setting, which every role can read.")
            .hint("Set it in postgresql.conf or with ALTER SYSTEM, or put the key in a file named by doctrove_embed.api_key_file.")
            .raise();
    }
}

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
    refuse_key_per_role_or_database((*pstmt).utilityStmt);
    match PREVIOUS_HOOK {
        Some(previous) => previous(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc),
        None => pg_sys::standard_ProcessUtility(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc),
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
