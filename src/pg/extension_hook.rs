//! Notices `CREATE EXTENSION doctrove_embed` and `DROP DATABASE` in a session, so that when it
//! commits the launcher looks again at once (the database may now be one to serve, or be gone)
//! instead of at its next periodic look. The hook runs before the new extension's catalog row
//! can be read back, so it keeps the extension's oid, and its name is checked just before the
//! commit (other extensions, which any database owner may create, send no worker).

use std::cell::Cell;

use pgrx::prelude::*;

use crate::pg::at_commit;

thread_local! {
    static PREVIOUS: Cell<pg_sys::object_access_hook_type> = const { Cell::new(None) };
}

#[pg_guard]
unsafe extern "C-unwind" fn on_object_access(
    access: pg_sys::ObjectAccessType::Type,
    class_id: pg_sys::Oid,
    object_id: pg_sys::Oid,
    sub_id: std::ffi::c_int,
    arg: *mut std::ffi::c_void,
) {
    if let Some(previous) = PREVIOUS.with(Cell::get) {
        previous(access, class_id, object_id, sub_id, arg);
    }
    if access == pg_sys::ObjectAccessType::OAT_POST_CREATE && class_id == pg_sys::ExtensionRelationId {
        at_commit::extension_created(object_id);
    }
    if access == pg_sys::ObjectAccessType::OAT_DROP && class_id == pg_sys::DatabaseRelationId {
        at_commit::database_dropped();
    }
}

/// Installs the hook (once per process, from `_PG_init` while preloading).
pub fn install() {
    // SAFETY: chains the hook any earlier library installed, in this process only.
    unsafe {
        PREVIOUS.with(|p| p.set(pg_sys::object_access_hook));
        pg_sys::object_access_hook = Some(on_object_access);
    }
}
