//! The Batch API path: a job is a file of pending papers uploaded, created as a batch, polled, and collected within 24 hours; jobs left unrecorded by a crash are adopted.

pub mod adopt;
pub mod collect;
pub mod jobs_store;
pub mod submit;
