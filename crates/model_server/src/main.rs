//! `doctrove-model`: serves all-MiniLM-L6-v2 as an OpenAI-compatible embeddings API until
//! killed.
//!
//! `doctrove-model [--model DIR] [--listen 127.0.0.1:18090] [--name all-MiniLM-L6-v2] [--threads N]`
//! (the folder defaults to `DOCTROVE_MODEL_DIR`, then to where `make deps` unpacks it)

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use doctrove_model::{handle, SentenceModel, ServerState};
use http_endpoint::Server;

fn main() {
    // Parallel passes, one thread each (see SentenceModel::with_threads), unless the
    // environment asks for threads inside each product.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // Before any other thread exists, so nothing reads the environment concurrently.
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    let mut listen = "127.0.0.1:18090".to_string();
    let mut dir = doctrove_model::model_dir_from_env();
    let mut name = "all-MiniLM-L6-v2".to_string();
    let mut threads = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--listen" => listen = value(),
            "--model" => dir = PathBuf::from(value()),
            "--name" => name = value(),
            "--threads" => threads = Some(value().parse().unwrap_or_else(|_| usage("--threads takes a number"))),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if !http_endpoint::is_loopback(&listen) {
        usage("the model server listens on loopback addresses only");
    }
    let started = std::time::Instant::now();
    let mut model = SentenceModel::load(&dir).unwrap_or_else(|e| {
        eprintln!("doctrove-model: cannot load the model from {}: {e}", dir.display());
        std::process::exit(1)
    });
    if let Some(threads) = threads {
        model = model.with_threads(threads);
    }
    let state = Arc::new(ServerState { model, name });
    let server = {
        let state = Arc::clone(&state);
        Server::start(&listen, move |request| handle(&state, request))
    }
    .unwrap_or_else(|e| {
        eprintln!("doctrove-model: cannot listen on {listen}: {e}");
        std::process::exit(1)
    });
    println!(
        "doctrove-model serving {} ({} dimensions, up to {} tokens per input, {} passes at once x {} threads each) on {}/v1, loaded in {:.1}s",
        state.name,
        state.model.dims(),
        state.model.max_tokens(),
        state.model.threads(),
        candle_core::utils::get_num_threads(),
        server.url(),
        started.elapsed().as_secs_f64()
    );
    let _ = std::io::stdout().flush();
    server.wait();
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("doctrove-model: {problem}");
    }
    eprintln!("usage: doctrove-model [--model DIR] [--listen 127.0.0.1:PORT] [--name NAME] [--threads N]");
    std::process::exit(2)
}
