//! `doctrove-mock`: runs the mock embeddings server until SIGTERM or SIGINT, then lets the
//! requests under way finish and exits 0. `doctrove-mock --help` lists the options.

use std::io::Write;

use clap::{CommandFactory, Parser};
use doctrove_mock::{default_limits, limits_for, MockConfig, MockServer, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_QUEUE};

/// An OpenAI-compatible embeddings server with deterministic vectors and switchable faults, for
/// tests and benchmarks.
#[derive(Parser)]
#[command(name = "doctrove-mock", version)]
struct Args {
    /// Address to listen on. Only loopback addresses, unless --api-key is given. With port 0
    /// the system picks a free port; the "listening on" line names the address taken.
    #[arg(long, default_value = "127.0.0.1:18089")]
    listen: String,
    /// Vector length when neither the request (`dimensions`) nor the path (`dim=`) sets one.
    #[arg(long, default_value_t = 1536)]
    dims: usize,
    /// Require this key on every request but `GET /health`, as `Authorization: Bearer KEY` or
    /// `api-key: KEY`. With a key the mock may listen beyond loopback.
    #[arg(long, env = "DOCTROVE_MOCK_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Largest request body; larger ones are answered 413.
    #[arg(long, default_value_t = default_limits().max_body_bytes)]
    max_body_bytes: usize,
    /// Open connections at once; one more is answered 503 and closed.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Requests answered at once (each may sleep for `latency=`); one more is answered 503
    /// `server_busy` with Retry-After.
    #[arg(long, default_value_t = DEFAULT_MAX_QUEUE)]
    max_queue: usize,
}

fn main() {
    let args = Args::parse();
    let api_key = args.api_key.filter(|key| !key.is_empty());
    if api_key.is_none() && !http_endpoint::is_loopback(&args.listen) {
        Args::command()
            .error(
                clap::error::ErrorKind::InvalidValue,
                "without --api-key the mock listens on loopback addresses only",
            )
            .exit();
    }
    let limits = http_endpoint::Limits {
        max_body_bytes: args.max_body_bytes,
        api_key,
        ..limits_for(args.max_connections, args.max_queue)
    };
    let config = MockConfig { default_dims: args.dims };
    let server = MockServer::start_with(&args.listen, config, limits).unwrap_or_else(|e| {
        eprintln!("doctrove-mock: cannot listen on {}: {e}", args.listen);
        std::process::exit(1)
    });
    if let Err(e) = server.stop_on_signals() {
        eprintln!("doctrove-mock: cannot handle SIGTERM and SIGINT: {e}");
        std::process::exit(1)
    }
    println!("doctrove-mock listening on {}", server.url());
    let _ = std::io::stdout().flush();
    server.wait();
    eprintln!("doctrove-mock: stopped");
}
