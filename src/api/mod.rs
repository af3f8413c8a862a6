//! The SQL surface of the Batch API and the status views (the other SQL functions are still in
//! lib.rs).

pub mod batch_api;
pub mod status;
