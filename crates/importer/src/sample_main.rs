//! `doctrove-sample`: writes a generated sample of paper-like records in the arXiv snapshot's
//! format to standard output, for `doctrove-import` (used by `make run` when no DATA is given).
//!
//! `doctrove-sample [--count 2000] [--seed 1] > sample.jsonl`

use std::io::{BufWriter, Write};

fn usage(problem: &str) -> ! {
    eprintln!("doctrove-sample: {problem}");
    eprintln!("usage: doctrove-sample [--count N] [--seed N] > FILE.jsonl");
    std::process::exit(2)
}

fn main() {
    let (mut count, mut seed) = (2000usize, 1u64);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = || {
            args.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or_else(|| usage(&format!("{arg} takes a number")))
        };
        match arg.as_str() {
            "--count" => count = number() as usize,
            "--seed" => seed = number(),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    for line in doctrove_import::sample::sample_lines(count, seed) {
        writeln!(out, "{line}").unwrap_or_else(|e| usage(&format!("cannot write: {e}")));
    }
    out.flush().unwrap_or_else(|e| usage(&format!("cannot write: {e}")));
}
