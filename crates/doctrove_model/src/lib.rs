//! A local OpenAI-compatible embeddings server for sentence-transformers models of the BERT
//! family (all-MiniLM-L6-v2 by default, all-mpnet-base-v2, several at once if asked): the encoder written out
//! over matrix products packed for the CPU's instruction set, mean or CLS pooling and L2
//! normalisation as the model folder says, exactly as sentence-transformers runs that model. The
//! model folders come from a package registry; nothing is fetched at run time.

mod aligned;
mod amx;
mod api;
mod architecture;
mod assist;
mod bf16_gemm;
mod cpu;
mod encoder;
mod fast_math;
mod folder;
mod int8_gemm;
mod kernel;
mod model;
pub mod openblas;
mod packed_gemm;
pub mod peak;
mod pooling;

pub use api::{handle, Served, ServerState};
pub use cpu::InstructionSet;
pub use folder::{ModelFolder, Pooling};
pub use kernel::Kernel;
pub use model::{Embedded, SentenceModel};
pub use pooling::{l2_normalise, mean_pool};

/// Where `make deps` unpacks the model (overridden by `DOCTROVE_MODEL_DIR` or `--model`).
pub const DEFAULT_MODEL_DIR: &str = "/opt/doctrove_embed/all-MiniLM-L6-v2";

/// The model folder: `DOCTROVE_MODEL_DIR` when set, otherwise [`DEFAULT_MODEL_DIR`].
pub fn model_dir_from_env() -> std::path::PathBuf {
    std::env::var_os("DOCTROVE_MODEL_DIR").map_or_else(|| DEFAULT_MODEL_DIR.into(), Into::into)
}
