//! `doctrove-model`: serves all-MiniLM-L6-v2 as an OpenAI-compatible embeddings API until
//! SIGTERM or SIGINT, then lets the requests under way finish and exits 0.
//! `doctrove-model --help` lists the options.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{CommandFactory, Parser};
use doctrove_model::{handle, openblas, Kernel, SentenceModel, ServerState, DEFAULT_MODEL_DIR};
use http_endpoint::{Limits, Server};

/// Requests the server holds per core, running or waiting; one more is answered 503.
const QUEUE_PER_CORE: usize = 4;

/// Serves sentence-transformers/all-MiniLM-L6-v2 (CPU) as an OpenAI-compatible
/// embeddings API: POST /v1/embeddings, GET /v1/models, GET /health.
#[derive(Parser)]
#[command(name = "doctrove-model", version)]
struct Args {
    /// The model folder (config.json, tokenizer.json, model.safetensors).
    #[arg(long, env = "DOCTROVE_MODEL_DIR", default_value = DEFAULT_MODEL_DIR)]
    model: PathBuf,
    /// Address to listen on. Only loopback addresses, unless --api-key is given.
    #[arg(long, default_value = "127.0.0.1:18090")]
    listen: String,
    /// The model name the server answers to and reports.
    #[arg(long, default_value = "all-MiniLM-L6-v2")]
    name: String,
    /// Arithmetic of the linear layers: f32, or bf16 (AVX-512 BF16: faster, vectors within
    /// 0.999 cosine of f32's; see the README).
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
    precision: String,
    /// The matrix kernel: `fastest` (the packed kernel for products of up to 192 rows, such as a
    /// search query's, and the system's OpenBLAS above, when it is installed and runs kernels
    /// of the CPU's best instruction set; the packed kernel alone otherwise), `packed` (weights
    /// packed once for the CPU's best instruction set: AVX-512 F, AVX2 with FMA, or plain
    /// loops) or `openblas` (libopenblas.so.0 alone). OpenBLAS's core type is set from the
    /// CPU's features unless OPENBLAS_CORETYPE is set.
    #[arg(long, default_value = "fastest", value_parser = ["fastest", "packed", "openblas"])]
    kernel: String,
    /// Threads one request's encoder passes run on [default: one per core].
    #[arg(long)]
    threads: Option<usize>,
    /// Require this key on every request but `GET /health`, as `Authorization: Bearer KEY` or
    /// `api-key: KEY`. With a key the server may listen beyond loopback.
    #[arg(long, env = "DOCTROVE_MODEL_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Largest request body; larger ones are answered 413.
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Open connections at once; one more is answered 503 and closed.
    #[arg(long, default_value_t = 64)]
    max_connections: usize,
    /// Requests held at once, running (one per core) or waiting; one more is answered 503
    /// `server_busy` with Retry-After [default: 4 per core].
    #[arg(long)]
    max_queue: Option<usize>,
}

fn main() {
    let args = Args::parse();
    let api_key = args.api_key.filter(|key| !key.is_empty());
    if api_key.is_none() && !http_endpoint::is_loopback(&args.listen) {
        Args::command()
            .error(
                clap::error::ErrorKind::InvalidValue,
                "without --api-key the model server listens on loopback addresses only",
            )
            .exit();
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let limits = Limits {
        max_connections: args.max_connections,
        handler_threads: cores,
        max_queue: args.max_queue.unwrap_or(QUEUE_PER_CORE * cores),
        max_body_bytes: args.max_body_bytes,
        api_key,
        ..Limits::default()
    };
    let started = std::time::Instant::now();
    let kernel = match args.kernel.as_str() {
        "packed" => Kernel::packed(),
        wanted => {
            // Before any thread starts and before the library loads, which reads it once.
            openblas::choose_core_type();
            match (openblas::OpenBlas::load(), wanted) {
                (Ok(blas), "openblas") => Kernel::openblas(blas),
                (Err(e), "openblas") => {
                    eprintln!("doctrove-model: {e}");
                    std::process::exit(1)
                }
                (blas, _) => Kernel::fastest(blas.ok()),
            }
        }
    };
    let mut model = SentenceModel::load_with(&args.model, kernel).unwrap_or_else(|e| {
        eprintln!("doctrove-model: cannot load the model from {}: {e}", args.model.display());
        std::process::exit(1)
    });
    if args.precision == "bf16" {
        model = model.with_bf16().unwrap_or_else(|e| {
            eprintln!("doctrove-model: {e}");
            std::process::exit(1)
        });
    }
    if let Some(threads) = args.threads {
        model = model.with_threads(threads);
    }
    let state = Arc::new(ServerState { model, name: args.name });
    let server = {
        let state = Arc::clone(&state);
        Server::start_with(&args.listen, limits, move |request| handle(&state, request))
    }
    .unwrap_or_else(|e| {
        eprintln!("doctrove-model: cannot listen on {}: {e}", args.listen);
        std::process::exit(1)
    });
    if let Err(e) = server.stop_on_signals() {
        eprintln!("doctrove-model: cannot handle SIGTERM and SIGINT: {e}");
        std::process::exit(1)
    }
    println!(
        "doctrove-model serving {} ({} dimensions, {}, kernel {} on {}, up to {} tokens per input, {} passes at once) on {}/v1, loaded in {:.1}s",
        state.name,
        state.model.dims(),
        state.model.precision(),
        state.model.kernel(),
        state.model.instruction_set(),
        state.model.max_tokens(),
        state.model.threads(),
        server.url(),
        started.elapsed().as_secs_f64()
    );
    let _ = std::io::stdout().flush();
    server.wait();
    eprintln!("doctrove-model: stopped");
}
