//! PostgreSQL plumbing that knows nothing of papers: whose rights a statement runs with,
//! transactions and subtransactions, the one latch wait, the clock, DDL, the server-wide figures
//! and the launcher's table of databases in shared memory, what happens at commit, and binary `vector` values.

pub mod at_commit;
pub mod clock;
pub mod database_entry;
pub mod database_pool;
pub mod databases;
pub mod ddl;
pub mod endpoint_state;
pub mod extension_hook;
pub mod identity;
pub mod job_figures;
pub mod latch;
pub mod query_cache;
pub mod shared_state;
pub mod subtransaction;
pub mod transaction;
pub mod vector_datum;
