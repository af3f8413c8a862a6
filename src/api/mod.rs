//! The SQL surface: every function a user calls, thin: read the arguments, call the layer
//! below, raise its error. `embedding` is in the extension's schema; the rest in
//! `doctrove_embed`.

pub mod batch_api;
pub mod embedding;
pub mod failures;
pub mod indexes;
pub mod input_text;
pub mod job_choice;
pub mod jobs;
pub mod search;
pub mod status;
pub mod watch;
