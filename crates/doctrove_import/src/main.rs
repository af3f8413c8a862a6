//! `doctrove-import`: loads an arXiv metadata snapshot (JSON lines) into doctrove_papers.
//!
//! `doctrove-import --dsn "host=... dbname=..." --file arxiv-metadata-oai-snapshot.json [--table doctrove_papers] [--create-dims 384]`

use std::fs::File;
use std::io::BufReader;

use clap::Parser;
use doctrove_import::progress::Progress;

/// Loads an arXiv metadata snapshot (JSON lines) into a papers table, idempotently.
#[derive(Parser)]
#[command(name = "doctrove-import")]
struct Args {
    /// libpq connection string of the database.
    #[arg(long)]
    dsn: String,
    /// The snapshot: one JSON record per line.
    #[arg(long)]
    file: String,
    /// The table to fill (optionally schema-qualified; letters, digits, _ and .).
    #[arg(long, default_value = "doctrove_papers")]
    table: String,
    /// Create the table (and the extension) first, with an embedding column of this length.
    #[arg(long)]
    create_dims: Option<u32>,
}

/// The database's own words for an error: message, SQLSTATE, detail and hint.
fn describe(error: &postgres::Error) -> String {
    let Some(db) = error.as_db_error() else {
        return error.to_string();
    };
    let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
    if let Some(detail) = db.detail() {
        text.push_str(&format!("\nDETAIL: {detail}"));
    }
    if let Some(hint) = db.hint() {
        text.push_str(&format!("\nHINT: {hint}"));
    }
    text
}

fn fail(what: &str, problem: &str) -> ! {
    eprintln!("doctrove-import: {what}: {problem}");
    std::process::exit(1)
}

fn main() {
    let args = Args::parse();
    if !args.table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
        fail("--table", "takes a plain (optionally schema-qualified) name");
    }
    let mut client =
        postgres::Client::connect(&args.dsn, postgres::NoTls).unwrap_or_else(|e| fail("cannot connect", &describe(&e)));
    if let Some(dims) = args.create_dims {
        doctrove_import::create_table(&mut client, &args.table, dims)
            .unwrap_or_else(|e| fail(&format!("cannot create {}", args.table), &describe(&e)));
    }
    let input = File::open(&args.file).unwrap_or_else(|e| fail(&format!("cannot open {}", args.file), &e.to_string()));
    let size = input.metadata().ok().map(|m| m.len()).filter(|len| *len > 0);
    let mut progress = Progress::new(size);
    let imported =
        doctrove_import::import_with_progress(&mut client, &args.table, BufReader::new(input), &mut |counts, bytes| {
            progress.update(counts, bytes)
        });
    progress.finish();
    match imported {
        Ok(c) => println!(
            "{} lines: {} papers written, {} unchanged, {} lines skipped",
            c.lines, c.written, c.unchanged, c.skipped
        ),
        Err(e) => {
            let text = e
                .downcast_ref::<postgres::Error>()
                .map(describe)
                .unwrap_or_else(|| e.to_string());
            fail("import failed", &text)
        }
    }
}
