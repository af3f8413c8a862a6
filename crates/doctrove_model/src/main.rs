//! `doctrove-model`: serves sentence-transformers models (all-MiniLM-L6-v2 by default) as an
//! OpenAI-compatible embeddings API until SIGTERM or SIGINT, then lets the requests under way
//! finish and exits 0. `doctrove-model --help` lists the options.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{CommandFactory, Parser};
use doctrove_model::{handle, openblas, Kernel, SentenceModel, Served, ServerState, DEFAULT_MODEL_DIR};
use http_endpoint::{Limits, Server};

/// Requests the server holds per core, running or waiting; one more is answered 503.
const QUEUE_PER_CORE: usize = 4;

/// Serves sentence-transformers models of the BERT family (CPU) as an OpenAI-compatible
/// embeddings API: POST /v1/embeddings, GET /v1/models, GET /health.
#[derive(Parser)]
#[command(name = "doctrove-model", version)]
struct Args {
    /// A sentence-transformers model folder (config.json, modules.json, the pooling module's
    /// config.json, tokenizer.json, model.safetensors), served under the folder's name, or
    /// NAME=FOLDER under NAME. Repeat it to serve several models; a request's `model` picks one.
    #[arg(long = "model", env = "DOCTROVE_MODEL_DIR", default_value = DEFAULT_MODEL_DIR)]
    models: Vec<String>,
    /// Address to listen on. Only loopback addresses, unless --api-key is given.
    #[arg(long, default_value = "127.0.0.1:18090")]
    listen: String,
    /// The name a single model given as a folder answers to and reports [default: the folder's name].
    #[arg(long)]
    name: Option<String>,
    /// Arithmetic of the linear layers: f32, bf16 (AMX tiles where Linux grants them, AVX-512
    /// BF16 otherwise: faster, vectors within 0.999 cosine of f32's; see the README) or int8
    /// (AVX-512 VNNI, AVX-VNNI, or AVX2 on 16-bit words: 8-bit products in groups of 64 inputs,
    /// vectors within 0.999 cosine of f32's).
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16", "int8"])]
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
    /// Measure the cores' multiply-add peak instead of serving: a tight FMA loop on every core
    /// for two seconds; prints it as JSON and exits.
    #[arg(long)]
    measure_peak: bool,
}

fn main() {
    let args = Args::parse();
    if args.measure_peak {
        use doctrove_model::peak::{measure, Arithmetic};
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let fields: Vec<String> = [
            ("f32", Arithmetic::F32),
            ("bf16", Arithmetic::Bf16),
            ("int8", Arithmetic::Int8),
        ]
        .into_iter()
        .filter_map(|(name, arithmetic)| {
            let peak = measure(arithmetic, cores, std::time::Duration::from_secs(2))?;
            Some(format!(
                "\"{name}\": {{\"instruction_set\": \"{}\", \"threads\": {}, \"gops\": {:.1}}}",
                peak.instruction_set,
                peak.threads,
                peak.ops / 1e9
            ))
        })
        .collect();
        println!("{{{}}}", fields.join(", "));
        return;
    }
    let api_key = args.api_key.clone().filter(|key| !key.is_empty());
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
    if args.kernel != "packed" {
        // Before any thread starts and before the library loads, which reads it once.
        openblas::choose_core_type();
    }
    let named = named_folders(&args.models, args.name.as_deref()).unwrap_or_else(|e| {
        Args::command().error(clap::error::ErrorKind::InvalidValue, e).exit();
    });
    let mut models: Vec<Served> = Vec::new();
    for (name, folder) in named {
        let model = load(&folder, &args).unwrap_or_else(|e| {
            eprintln!("doctrove-model: cannot load the model from {}: {e}", folder.display());
            std::process::exit(1)
        });
        // Every model's passes share the cores, as every request's do.
        let model = match models.first() {
            Some(first) => model.sharing_cores_with(&first.model),
            None => model,
        };
        models.push(Served { name, model });
    }
    let state = Arc::new(ServerState { models });
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
    let served: Vec<String> = state
        .models
        .iter()
        .map(|Served { name, model }| {
            format!(
                "{name} ({} dimensions, {}, kernel {} on {}, up to {} tokens per input, {} passes at once)",
                model.dims(),
                model.precision(),
                model.kernel(),
                model.instruction_set(),
                model.max_tokens(),
                model.threads()
            )
        })
        .collect();
    println!(
        "doctrove-model serving {} on {}/v1, loaded in {:.1}s",
        served.join(", "),
        server.url(),
        started.elapsed().as_secs_f64()
    );
    let _ = std::io::stdout().flush();
    server.wait();
    eprintln!("doctrove-model: stopped");
}

/// The kernel `--kernel` names (OpenBLAS loaded once per model: the library is shared).
fn kernel(wanted: &str) -> Result<Kernel, String> {
    if wanted == "packed" {
        return Ok(Kernel::packed());
    }
    match (wanted, openblas::OpenBlas::load()) {
        ("openblas", Ok(blas)) => Ok(Kernel::openblas(blas)),
        ("openblas", Err(e)) => Err(e.to_string()),
        (_, blas) => Ok(Kernel::fastest(blas.ok())),
    }
}

/// One model folder loaded with the precision, kernel and threads the arguments give.
fn load(folder: &std::path::Path, args: &Args) -> Result<SentenceModel, String> {
    let mut model = SentenceModel::load_with(folder, kernel(&args.kernel)?).map_err(|e| e.to_string())?;
    model = match args.precision.as_str() {
        "bf16" => model.with_bf16(),
        "int8" => model.with_int8(),
        _ => Ok(model),
    }
    .map_err(|e| e.to_string())?;
    if let Some(threads) = args.threads {
        model = model.with_threads(threads);
    }
    Ok(model)
}

/// Each `--model` as (name, folder): `NAME=FOLDER`, or a folder named by `--name` (one model
/// only) or by its own last component. Names must differ.
fn named_folders(models: &[String], name: Option<&str>) -> Result<Vec<(String, PathBuf)>, String> {
    if name.is_some() && (models.len() > 1 || models.iter().any(|m| m.contains('='))) {
        return Err("--name names a single model given as a folder; otherwise give each as --model NAME=FOLDER".into());
    }
    let mut named: Vec<(String, PathBuf)> = Vec::new();
    for given in models {
        let (model_name, folder) = match given.split_once('=') {
            Some((model_name, folder)) => (model_name.to_string(), PathBuf::from(folder)),
            None => {
                let folder = PathBuf::from(given);
                let own = folder
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (name.map_or(own, str::to_string), folder)
            }
        };
        if model_name.is_empty() || model_name.chars().any(|c| c.is_control() || c.is_whitespace() || c == '/') {
            return Err(format!(
                "--model {given}: the model needs a name without spaces or '/' (NAME=FOLDER; requests may put an owner/ in front)"
            ));
        }
        if folder.as_os_str().is_empty() {
            return Err(format!("--model {given}: no folder after '='"));
        }
        if named.iter().any(|(n, _)| *n == model_name) {
            return Err(format!(
                "two models are named '{model_name}'; give each a name of its own with NAME=FOLDER"
            ));
        }
        named.push((model_name, folder));
    }
    Ok(named)
}
