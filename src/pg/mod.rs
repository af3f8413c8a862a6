//! PostgreSQL plumbing: whose rights a statement runs with, transactions and subtransactions, the
//! server-wide figures in shared memory, what happens at commit, and binary `vector` values.

pub mod identity;
pub mod transaction;
pub mod subtransaction;
pub mod vector_datum;
pub mod shared_state;
pub mod at_commit;
