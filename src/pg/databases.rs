//! The server's databases a worker may connect to, read by the launcher, which is connected to
//! no database: a plain scan of the shared catalog `pg_database` (as autovacuum's launcher does),
//! since SQL needs a database's own catalogs.

use pgrx::prelude::*;

/// A database of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub oid: u32,
    pub name: String,
}

/// `pg_database.datconnlimit` of a database whose `DROP DATABASE` was interrupted.
const INVALID_DATABASE: i32 = -2;

/// Every database that accepts connections and is not a template, in its own transaction.
pub fn connectable_databases() -> Vec<Database> {
    let mut found = Vec::new();
    // SAFETY: the catalog scan of autovacuum's get_database_list: a transaction for the
    // snapshot, pg_database opened with AccessShareLock, each tuple's fixed part read in place
    // and copied out before the transaction ends.
    unsafe {
        pg_sys::StartTransactionCommand();
        pg_sys::GetTransactionSnapshot();
        let relation = pg_sys::table_open(pg_sys::DatabaseRelationId, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let scan = pg_sys::table_beginscan_catalog(relation, 0, std::ptr::null_mut());
        loop {
            let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tuple.is_null() {
                break;
            }
            let row = &*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tuple);
            if !row.datallowconn || row.datistemplate || row.datconnlimit == INVALID_DATABASE {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(row.datname.data.as_ptr())
                .to_string_lossy()
                .into_owned();
            found.push(Database {
                oid: row.oid.to_u32(),
                name,
            });
        }
        pg_sys::heap_endscan(scan);
        pg_sys::table_close(relation, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        pg_sys::CommitTransactionCommand();
    }
    found
}
