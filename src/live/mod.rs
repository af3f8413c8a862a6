//! The live path: one batch of pending papers locked, sent to the embeddings endpoint and
//! written, in the caller's transaction. A batch passes through `batch` (fetch, then write)
//! and `requests` (the API side).

pub mod batch;
pub mod requests;
