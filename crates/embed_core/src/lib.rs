//! doctrove_embed's logic that needs no database, kept out of the pgrx crate so it builds and
//! tests with plain `cargo test`: the text sent for a paper, the request, the HTTP call, the
//! decoding and checking of the answer, and the errors.

pub mod batch_client;
pub mod batch_file;
pub mod batch_seal;
pub mod bisect;
pub mod bounds;
pub mod client;
pub mod endpoints;
pub mod error;
pub mod hybrid_sql;
pub mod input_text;
pub mod packing;
pub mod progress;
pub mod query_cache;
pub mod rate_limit;
pub mod repeated_warnings;
pub mod request;
pub mod response;
pub mod retry;
pub mod search_filter;
pub mod search_sql;
pub mod sql_text;
pub mod stride;
pub mod text_format;
pub mod tokens;
pub mod worker_pool;

pub use client::{embed, ApiConfig};
pub use error::ApiError;
pub use input_text::paper_input;
pub use response::Embeddings;
