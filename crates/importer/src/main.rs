//! `doctrove-import`: loads an arXiv metadata snapshot (JSON lines) into doctrove_papers.
//!
//! `doctrove-import --dsn "host=... dbname=..." --file arxiv-metadata-oai-snapshot.json [--table doctrove_papers] [--create-dims 384]`

use std::fs::File;
use std::io::BufReader;

fn usage(problem: &str) -> ! {
    eprintln!("doctrove-import: {problem}");
    eprintln!("usage: doctrove-import --dsn DSN --file FILE.jsonl [--table NAME] [--create-dims N]");
    std::process::exit(2)
}

fn main() {
    let (mut dsn, mut file, mut table, mut dims) = (None, None, "doctrove_papers".to_string(), None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--dsn" => dsn = Some(value()),
            "--file" => file = Some(value()),
            "--table" => table = value(),
            "--create-dims" => dims = Some(value().parse::<u32>().unwrap_or_else(|_| usage("--create-dims takes a number"))),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let (Some(dsn), Some(file)) = (dsn, file) else { usage("--dsn and --file are required") };
    if !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
        usage("--table takes a plain (optionally schema-qualified) name");
    }
    let mut client = postgres::Client::connect(&dsn, postgres::NoTls).unwrap_or_else(|e| usage(&format!("cannot connect: {e}")));
    if let Some(dims) = dims {
        doctrove_import::create_table(&mut client, &table, dims).unwrap_or_else(|e| usage(&format!("cannot create {table}: {e}")));
    }
    let input = File::open(&file).unwrap_or_else(|e| usage(&format!("cannot open {file}: {e}")));
    match doctrove_import::import(&mut client, &table, BufReader::new(input)) {
        Ok(c) => println!(
            "{} lines: {} papers written, {} unchanged, {} lines skipped",
            c.lines, c.written, c.unchanged, c.skipped
        ),
        Err(e) => {
            eprintln!("doctrove-import: {e}");
            std::process::exit(1)
        }
    }
}
