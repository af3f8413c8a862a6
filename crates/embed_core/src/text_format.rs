//! A job's text format: how a paper's title and abstract make the text sent to the API, such as
//! `passage: {title}. {abstract}` for a model trained with that prefix. `{title}` and
//! `{abstract}` stand for the job's two text columns; a part in square brackets is left out when
//! a column it names is NULL or blank (`Title: {title}[ Abstract: {abstract}]` is the default,
//! the DocTrove service's own text); `{{`, `}}`, `[[` and `]]` stand for the characters
//! themselves. The text is trimmed, and a paper without a title is never sent.
//!
//! Written by hand: the language is four tokens and one level of optional part, and the
//! template engines on crates.io bring expressions, filters and escaping for HTML that a format
//! must not have.

use std::fmt;

/// The longest format accepted, in characters.
pub const MAX_FORMAT_CHARS: usize = 1000;

/// The format every job has unless it names another.
pub const DEFAULT_FORMAT: &str = "Title: {title}[ Abstract: {abstract}]";

/// Longest text a format makes, in bytes: two columns of the most characters read of each
/// (`sql_text::MAX_TEXT_CHARS`), four bytes each. Nothing longer is ever sent (the text is cut
/// to the model's input limit, far below), so a format that repeats a field many times costs
/// no more memory than this.
pub const MAX_TEXT_BYTES: usize = 2 * 4 * crate::bounds::MAX_INPUT_BYTES;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Title,
    Abstract,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(Field),
    /// Left out when any field in it is NULL or blank.
    Optional(Vec<Piece>),
}

/// A parsed text format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFormat {
    pieces: Vec<Piece>,
}

/// Why a format was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Default for TextFormat {
    fn default() -> Self {
        TextFormat::parse(DEFAULT_FORMAT).expect("the default format parses")
    }
}

fn is_blank(value: Option<&str>) -> bool {
    value.is_none_or(|v| v.trim().is_empty())
}

impl TextFormat {
    /// Parses `format`; refuses an unknown `{name}`, an unclosed brace or bracket, a bracket
    /// inside a bracket, a bracketed part naming no column, and a format naming no column.
    pub fn parse(format: &str) -> Result<TextFormat, FormatError> {
        if format.chars().count() > MAX_FORMAT_CHARS {
            return Err(FormatError(format!(
                "a text format has at most {MAX_FORMAT_CHARS} characters"
            )));
        }
        let mut top: Vec<Piece> = Vec::new();
        let mut optional: Option<Vec<Piece>> = None;
        let mut chars = format.chars().peekable();
        let push_char = |pieces: &mut Vec<Piece>, c: char| match pieces.last_mut() {
            Some(Piece::Text(text)) => text.push(c),
            _ => pieces.push(Piece::Text(c.to_string())),
        };
        while let Some(c) = chars.next() {
            let pieces = optional.as_mut().unwrap_or(&mut top);
            match c {
                '{' | '}' | '[' | ']' if chars.peek() == Some(&c) => {
                    chars.next();
                    push_char(pieces, c);
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(FormatError("a '{' is not closed (write '{{' for the character)".into())),
                        }
                    }
                    pieces.push(Piece::Field(match name.as_str() {
                        "title" => Field::Title,
                        "abstract" => Field::Abstract,
                        other => {
                            return Err(FormatError(format!(
                                "unknown field {{{other}}}: a text format names {{title}} and {{abstract}}"
                            )))
                        }
                    }));
                }
                '}' => return Err(FormatError("a '}' closes nothing (write '}}' for the character)".into())),
                '[' => {
                    if optional.is_some() {
                        return Err(FormatError(
                            "a '[' inside a bracketed part (write '[[' for the character)".into(),
                        ));
                    }
                    optional = Some(Vec::new());
                }
                ']' => {
                    let Some(part) = optional.take() else {
                        return Err(FormatError("a ']' closes nothing (write ']]' for the character)".into()));
                    };
                    if !part.iter().any(|p| matches!(p, Piece::Field(_))) {
                        return Err(FormatError(
                            "a bracketed part names no field: it is left out when a field in it is empty".into(),
                        ));
                    }
                    top.push(Piece::Optional(part));
                }
                c => push_char(pieces, c),
            }
        }
        if optional.is_some() {
            return Err(FormatError("a '[' is not closed (write '[[' for the character)".into()));
        }
        // The title outside any bracketed part: a paper is sent for its title (a pending paper
        // has one), so no paper's text is the format's alone.
        if !top.iter().any(|p| matches!(p, Piece::Field(Field::Title))) {
            return Err(FormatError(
                "a text format names {title} outside square brackets: a paper is sent for its title".into(),
            ));
        }
        Ok(TextFormat { pieces: top })
    }

    /// The text sent for a paper, or `None` when it has no title (it is never sent).
    pub fn render(&self, title: Option<&str>, abstract_text: Option<&str>) -> Option<String> {
        let title = title.filter(|t| !t.is_empty())?;
        let values = [Some(title), abstract_text];
        let mut out = String::new();
        write(&mut out, &self.pieces, &values);
        Some(out.trim().to_string())
    }
}

/// A search text in the form of the stored texts: `format` with `{query}` standing for the text
/// (`{{` and `}}` for the braces themselves), such as `Title: {query}` or a model's `query: {query}`.
/// A format must name `{query}`, and no other field.
pub fn query_text(format: &str, query: &str) -> Result<String, FormatError> {
    if format.chars().count() > MAX_FORMAT_CHARS {
        return Err(FormatError(format!(
            "a query format has at most {MAX_FORMAT_CHARS} characters"
        )));
    }
    let mut out = String::with_capacity(format.len() + query.len());
    let mut named = false;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' | '}' if chars.peek() == Some(&c) => {
                chars.next();
                out.push(c);
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(FormatError("a '{' is not closed (write '{{' for the character)".into())),
                    }
                }
                if name != "query" {
                    return Err(FormatError(format!(
                        "unknown field {{{name}}}: a query format names {{query}}"
                    )));
                }
                named = true;
                push_bounded(&mut out, query);
            }
            '}' => return Err(FormatError("a '}' closes nothing (write '}}' for the character)".into())),
            c => out.push(c),
        }
    }
    if !named {
        return Err(FormatError("a query format names {query}".into()));
    }
    Ok(out)
}

/// Appends `text` to `out` up to [`MAX_TEXT_BYTES`] in all (cut at a character boundary).
fn push_bounded(out: &mut String, text: &str) {
    let room = MAX_TEXT_BYTES.saturating_sub(out.len());
    let mut end = text.len().min(room);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.push_str(&text[..end]);
}

/// Writes `pieces` with the fields' `values` (title, abstract), at most [`MAX_TEXT_BYTES`].
fn write(out: &mut String, pieces: &[Piece], values: &[Option<&str>; 2]) {
    let value = |field: Field| values[field as usize];
    for piece in pieces {
        match piece {
            Piece::Text(text) => push_bounded(out, text),
            Piece::Field(field) => push_bounded(out, value(*field).unwrap_or("")),
            Piece::Optional(part) => {
                let all_there = part.iter().all(|p| match p {
                    Piece::Field(field) => !is_blank(value(*field)),
                    _ => true,
                });
                if all_there {
                    write(out, part, values);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input_text::paper_input;
    use proptest::prelude::*;

    #[test]
    fn a_model_prefix_and_a_part_left_out() {
        let f = TextFormat::parse("passage: {title}[. {abstract}]").unwrap();
        assert_eq!(f.render(Some("A"), Some("B")).unwrap(), "passage: A. B");
        assert_eq!(f.render(Some("A"), Some("  ")).unwrap(), "passage: A");
        assert_eq!(f.render(Some("A"), None).unwrap(), "passage: A");
        assert_eq!(f.render(None, Some("B")), None);
    }

    #[test]
    fn doubled_characters_stand_for_themselves() {
        let f = TextFormat::parse("{{x}} [[{title}]] ]]").unwrap();
        assert_eq!(f.render(Some("T"), None).unwrap(), "{x} [T] ]");
    }

    #[test]
    fn bad_formats_are_refused_with_the_reason() {
        for (format, says) in [
            ("{body}", "unknown field {body}"),
            ("{title", "not closed"),
            ("title}", "closes nothing"),
            ("{title}[ [{abstract}]]", "inside a bracketed part"),
            ("{title}[ no field]", "names no field"),
            ("{title}[ {abstract}", "'[' is not closed"),
            ("{title}]", "']' closes nothing"),
            ("just text", "names {title} outside square brackets"),
            ("passage: [{title}]", "names {title} outside square brackets"),
            ("{abstract}", "names {title} outside square brackets"),
        ] {
            let error = TextFormat::parse(format).unwrap_err();
            assert!(error.0.contains(says), "{format:?}: {error}");
        }
        assert!(TextFormat::parse(&"{title}".repeat(200)).is_err());
    }

    #[test]
    fn a_query_takes_the_stored_texts_form() {
        assert_eq!(
            query_text("Title: {query}", "graph networks").unwrap(),
            "Title: graph networks"
        );
        assert_eq!(query_text("{query}", "x").unwrap(), "x");
        assert_eq!(query_text("{{q}}: {query}", "x").unwrap(), "{q}: x");
        assert!(query_text("Title: {title}", "x")
            .unwrap_err()
            .0
            .contains("unknown field {title}"));
        assert!(query_text("no field", "x").unwrap_err().0.contains("names {query}"));
        assert!(query_text("{query", "x").is_err());
    }

    #[test]
    fn a_format_repeating_a_field_makes_a_bounded_text() {
        let f = TextFormat::parse(&"{title}".repeat(140)).unwrap();
        let title = "é".repeat(100_000);
        let text = f.render(Some(&title), None).unwrap();
        assert!(
            text.len() <= MAX_TEXT_BYTES && text.len() > MAX_TEXT_BYTES - 4,
            "{}",
            text.len()
        );
    }

    proptest! {
        #[test]
        fn the_default_format_is_the_services_text(title in proptest::option::of(".{0,20}"), abstract_text in proptest::option::of("[ \\t\\na-z]{0,20}")) {
            prop_assert_eq!(
                TextFormat::default().render(title.as_deref(), abstract_text.as_deref()),
                paper_input(title.as_deref(), abstract_text.as_deref())
            );
        }

        #[test]
        fn parsing_never_panics(format in ".{0,40}") {
            let _ = TextFormat::parse(&format);
        }
    }
}
