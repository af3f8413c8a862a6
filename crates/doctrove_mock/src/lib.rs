//! An OpenAI-compatible embeddings server for tests and benchmarks: deterministic vectors
//! derived from each input's text, per-scope request counters, and switches for latency and
//! faults. The extension knows nothing of it; it is just another embeddings endpoint.

mod batch_api;
mod embeddings;
mod limits;
mod multipart;
mod options;
mod server;
mod stats;
mod stats_client;
mod vectors;

pub use batch_api::MAX_BATCH_INPUTS;
pub use limits::{default_limits, limits_for, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_QUEUE};
pub use options::{parse_path, Options};
pub use server::{MockConfig, MockServer};
pub use stats_client::fetch_stats;
pub use vectors::vector_for;
