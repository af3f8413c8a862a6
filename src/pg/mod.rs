//! PostgreSQL plumbing that knows nothing of papers: whose rights a statement runs with,
//! transactions and subtransactions, the one latch wait, the clock, DDL, the server-wide figures
//! in shared memory, what happens at commit, and binary `vector` values.

pub mod at_commit;
pub mod clock;
pub mod ddl;
pub mod endpoint_state;
pub mod identity;
pub mod job_figures;
pub mod latch;
pub mod shared_state;
pub mod subtransaction;
pub mod transaction;
pub mod vector_datum;
