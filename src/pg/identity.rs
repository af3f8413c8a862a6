//! Whose rights the extension's statements run with, and the search_path of its own.
//!
//! - Statements on the papers table run as the table's owner under
//!   `SECURITY_RESTRICTED_OPERATION`, as VACUUM and ANALYZE do, whoever runs the job: a
//!   background worker (which connects as the bootstrap superuser) or a session, once the
//!   caller is found allowed (`table::rights`, `table::jobs`). Triggers, index expressions,
//!   constraints, rules and defaults the owner attached run with the owner's rights, never more,
//!   never a superuser's. Search and similar papers run with the caller's rights.
//! - The extension's own bookkeeping (`doctrove_embed.failures`) runs as the extension's owner,
//!   with fixed statements that touch only that table, so a role allowed to embed needs no
//!   right on it.
//! - Catalog lookups and the DDL the extension builds run with `search_path = pg_catalog,
//!   pg_temp`, so no object planted in a schema on the caller's path can change what they mean.
//!
//! Each switch is undone on return; after an ERROR the (sub)transaction's abort restores the
//! previous user, security context and settings, as it does for VACUUM and SECURITY DEFINER.

use pgrx::pg_sys;
use pgrx::prelude::*;

/// The search_path of the extension's own statements.
const CATALOG_SEARCH_PATH: &std::ffi::CStr = c"pg_catalog, pg_temp";

/// Runs `f` with setting `name` at `value` (as a function's SET clause would); the previous
/// value is back afterwards.
pub fn with_setting<R>(name: &std::ffi::CStr, value: &std::ffi::CStr, f: impl FnOnce() -> R) -> R {
    // SAFETY: the same sequence PostgreSQL runs for a function's SET clause: a new GUC nest
    // level, a saved setting, and the level popped (restoring the setting) afterwards.
    let nest = unsafe {
        let nest = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        nest
    };
    let result = f();
    // SAFETY: pops the level opened above.
    unsafe { pg_sys::AtEOXact_GUC(true, nest) };
    result
}

/// Runs `f` with `search_path = pg_catalog, pg_temp`; the caller's path is back afterwards.
pub fn with_catalog_search_path<R>(f: impl FnOnce() -> R) -> R {
    with_setting(c"search_path", CATALOG_SEARCH_PATH, f)
}

/// Runs `f` as `role` in security-restricted mode (no SET ROLE, no temporary objects, no
/// cursors left open, ...), then switches back.
pub fn as_role<R>(role: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    let (mut user, mut context) = (pg_sys::InvalidOid, 0);
    // SAFETY: reads and sets this backend's current user id and security context, as
    // vacuum.c does around the work it does for a table's owner.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(role, context | pg_sys::SECURITY_RESTRICTED_OPERATION as i32);
    }
    let result = f();
    // SAFETY: puts back what was read above.
    unsafe { pg_sys::SetUserIdAndSecContext(user, context) };
    result
}

/// The role that owns the extension (a superuser: the extension is not trusted).
fn extension_owner() -> pg_sys::Oid {
    with_catalog_search_path(|| {
        Spi::get_one::<pg_sys::Oid>("SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'doctrove_embed'")
    })
    .ok()
    .flatten()
    .unwrap_or(pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID))
}

/// Runs the extension's own bookkeeping `f` as the extension's owner, with its own search_path.
pub fn as_extension<R>(f: impl FnOnce() -> R) -> R {
    let owner = extension_owner();
    as_role(owner, || with_catalog_search_path(f))
}

/// Whose rights the statements on a user's table use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acting {
    /// The current user: rights checks, search, and the statements a caller's own rights allow
    /// before a job's rights are settled.
    Caller,
    /// The table's owner, in security-restricted mode: every job's batch, count and collection.
    TableOwner,
}

impl Acting {
    /// The role whose rights these are, for a table owned by `owner`.
    pub fn role(self, owner: pg_sys::Oid) -> pg_sys::Oid {
        match self {
            // SAFETY: reads this backend's current user.
            Acting::Caller => unsafe { pg_sys::GetUserId() },
            Acting::TableOwner => owner,
        }
    }

    /// Runs `f`, a statement on a table owned by `owner`, with these rights. As the table's
    /// owner it also runs with `search_path = pg_catalog, pg_temp` (as VACUUM does since
    /// PostgreSQL 17): the worker's path is the database's, which its owner sets, and the table
    /// owner's triggers must not resolve names through schemas someone else planted.
    pub fn run<R>(self, owner: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
        match self {
            Acting::Caller => f(),
            Acting::TableOwner => as_role(owner, || with_catalog_search_path(f)),
        }
    }
}
