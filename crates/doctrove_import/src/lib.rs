//! The arXiv importer: streams the metadata snapshot into the papers table in batches of one
//! statement each, in constant memory, idempotently (`ON CONFLICT` on the arXiv id: loading the
//! same file twice changes nothing; a paper whose text changed is updated, and a watched table
//! then embeds it again).

pub mod progress;
pub mod record;
pub mod sample;

use std::io::BufRead;

use postgres::Client;
use record::{parse_line, Paper};

/// Rows per INSERT statement.
pub const BATCH: usize = 1000;

/// What a load did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts {
    pub lines: u64,
    pub written: u64,
    pub unchanged: u64,
    pub skipped: u64,
}

/// Creates the papers table (DocTrove's columns) when it does not exist, with a `vector(dims)`
/// embedding column and the unique key the importer relies on.
pub fn create_table(client: &mut Client, table: &str, dims: u32) -> Result<(), postgres::Error> {
    client.batch_execute(&format!(
        "CREATE EXTENSION IF NOT EXISTS doctrove_embed CASCADE;
         CREATE TABLE IF NOT EXISTS {table} (
             doctrove_paper_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
             doctrove_source text NOT NULL DEFAULT 'arxiv',
             doctrove_source_id text NOT NULL,
             doctrove_title text,
             doctrove_abstract text,
             doctrove_authors text,
             doctrove_categories text[],
             doctrove_primary_date date,
             doctrove_embedding vector({dims}),
             embedding_model_version text,
             updated_at timestamptz DEFAULT now(),
             UNIQUE (doctrove_source, doctrove_source_id));"
    ))
}

fn write_batch(client: &mut Client, table: &str, batch: &mut Vec<Paper>, counts: &mut Counts) -> Result<(), postgres::Error> {
    if batch.is_empty() {
        return Ok(());
    }
    // The same id twice in one statement is not allowed by ON CONFLICT: the later line wins.
    let mut unique: Vec<Paper> = Vec::with_capacity(batch.len());
    for paper in batch.drain(..).rev() {
        if !unique.iter().any(|p| p.source_id == paper.source_id) {
            unique.push(paper);
        }
    }
    let ids: Vec<&str> = unique.iter().map(|p| p.source_id.as_str()).collect();
    let titles: Vec<Option<&str>> = unique.iter().map(|p| p.title.as_deref()).collect();
    let abstracts: Vec<Option<&str>> = unique.iter().map(|p| p.abstract_text.as_deref()).collect();
    let authors: Vec<Option<&str>> = unique.iter().map(|p| p.authors.as_deref()).collect();
    let categories: Vec<String> = unique.iter().map(|p| p.categories.join(" ")).collect();
    let dates: Vec<Option<&str>> = unique.iter().map(|p| p.date.as_deref()).collect();
    let written = client.execute(
        &format!(
            "INSERT INTO {table} AS t (doctrove_source, doctrove_source_id, doctrove_title, doctrove_abstract,
                 doctrove_authors, doctrove_categories, doctrove_primary_date)
             SELECT 'arxiv', id, title, abstract, authors, string_to_array(nullif(categories, ''), ' '), date::date
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                  AS r(id, title, abstract, authors, categories, date)
             ON CONFLICT (doctrove_source, doctrove_source_id) DO UPDATE SET
                 doctrove_title = excluded.doctrove_title, doctrove_abstract = excluded.doctrove_abstract,
                 doctrove_authors = excluded.doctrove_authors, doctrove_categories = excluded.doctrove_categories,
                 doctrove_primary_date = excluded.doctrove_primary_date
             WHERE (t.doctrove_title, t.doctrove_abstract, t.doctrove_authors, t.doctrove_categories, t.doctrove_primary_date)
                   IS DISTINCT FROM (excluded.doctrove_title, excluded.doctrove_abstract, excluded.doctrove_authors,
                                     excluded.doctrove_categories, excluded.doctrove_primary_date)"
        ),
        &[&ids, &titles, &abstracts, &authors, &categories, &dates],
    )?;
    counts.written += written;
    counts.unchanged += unique.len() as u64 - written;
    Ok(())
}

/// Loads every line of `input` into `table`, `BATCH` rows a statement.
pub fn import(client: &mut Client, table: &str, input: impl BufRead) -> Result<Counts, Box<dyn std::error::Error>> {
    import_with_progress(client, table, input, &mut |_, _| {})
}

/// [`import`], calling `progress` with the counts and the bytes read after each statement.
pub fn import_with_progress(
    client: &mut Client,
    table: &str,
    input: impl BufRead,
    progress: &mut dyn FnMut(&Counts, u64),
) -> Result<Counts, Box<dyn std::error::Error>> {
    let mut counts = Counts::default();
    let mut batch = Vec::with_capacity(BATCH);
    let mut bytes = 0u64;
    for line in input.lines() {
        let line = line?;
        bytes += line.len() as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        counts.lines += 1;
        match parse_line(&line) {
            Ok(paper) => batch.push(paper),
            Err(_) => counts.skipped += 1,
        }
        if batch.len() == BATCH {
            write_batch(client, table, &mut batch, &mut counts)?;
            progress(&counts, bytes);
        }
    }
    write_batch(client, table, &mut batch, &mut counts)?;
    progress(&counts, bytes);
    Ok(counts)
}
