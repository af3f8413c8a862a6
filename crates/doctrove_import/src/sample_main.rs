//! `doctrove-sample`: writes a generated sample of paper-like records in the arXiv snapshot's
//! format to standard output, for `doctrove-import` (used by `make run` when no DATA is given).
//!
//! `doctrove-sample [--count 2000] [--seed 1] > sample.jsonl`

use std::io::{BufWriter, Write};

use clap::Parser;

/// Writes generated paper-like records, one JSON line each, in the arXiv snapshot's format.
#[derive(Parser)]
#[command(name = "doctrove-sample")]
struct Args {
    /// How many records.
    #[arg(long, default_value_t = 2000)]
    count: usize,
    /// The generator's seed: the same seed gives the same records.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() {
    let args = Args::parse();
    let mut out = BufWriter::new(std::io::stdout().lock());
    for line in doctrove_import::sample::sample_lines(args.count, args.seed) {
        if let Err(e) = writeln!(out, "{line}") {
            eprintln!("doctrove-sample: cannot write: {e}");
            std::process::exit(1);
        }
    }
    if let Err(e) = out.flush() {
        eprintln!("doctrove-sample: cannot write: {e}");
        std::process::exit(1);
    }
}
