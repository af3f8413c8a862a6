//! `input_text()`: the text sent to the API for a paper, for SQL that needs the same text (the
//! reset trigger compares it before and after an edit).

use pgrx::prelude::*;

/// The text sent to the API for a paper with this title and abstract; NULL when the paper
/// is never sent (no title).
#[pg_extern(schema = "doctrove_embed", immutable, parallel_safe)]
fn input_text(title: Option<&str>, abstract_text: Option<&str>) -> Option<String> {
    embed_core::paper_input(title, abstract_text)
}
