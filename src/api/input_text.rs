//! `input_text()`: the text sent to the API for a paper, for SQL that needs the same text (the
//! reset trigger compares it before and after an edit).

use pgrx::prelude::*;

/// The text sent to the API for a paper with this title and abstract; NULL when the paper
/// is never sent (no title).
#[pg_extern(schema = "doctrove_embed", immutable, parallel_safe)]
fn input_text(title: Option<&str>, abstract_text: Option<&str>) -> Option<String> {
    embed_core::paper_input(title, abstract_text)
}

/// The text a job with text format `format` sends for a paper with this title and abstract
/// (NULL format: the default); NULL when the paper is never sent (no title). 22023 for a format
/// that is not one, with the reason.
#[pg_extern(schema = "doctrove_embed", name = "input_text", immutable, parallel_safe)]
fn input_text_in_format(title: Option<&str>, abstract_text: Option<&str>, format: Option<&str>) -> Option<String> {
    let format = match format {
        None => embed_core::text_format::TextFormat::default(),
        Some(format) => crate::table::target::parse_text_format(format).unwrap_or_else(|e| e.raise()),
    };
    format.render(title, abstract_text)
}
