//! The Batch API path. Inside it the unit is a *job*: a file of pending papers uploaded,
//! created as a batch on the API, polled, and collected within 24 hours (`submit`, `collect`);
//! the jobs and the papers each claims are kept in `jobs_store`; jobs a crash left unrecorded
//! are found on the API and adopted (`adopt`).

pub mod adopt;
pub mod collect;
pub mod jobs_store;
pub mod submit;
