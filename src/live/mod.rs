//! The live path: one batch of pending papers locked, sent to the embeddings endpoint and written,
//! in the caller's transaction.

pub mod batch;
pub mod requests;
