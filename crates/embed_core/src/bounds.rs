//! Upper bounds on every size that comes from outside the extension (a text in a row, an API
//! answer, a message the API sends back), so memory is bounded before it is allocated.

/// Longest vector pgvector stores (`VECTOR_MAX_DIM`).
pub const MAX_VECTOR_DIMS: usize = 16_000;

/// Longest API message kept in an error, a log line or `doctrove_embed.failures`, in characters.
pub const MAX_MESSAGE_CHARS: usize = 500;

/// Most tokens the embedding models take in one input.
pub const MAX_TOKENS_PER_INPUT: usize = 8191;

/// Bytes per token that no real text reaches on average (English prose takes about 4.5): a
/// text is cut to `max_tokens` times this many bytes before it is tokenized, so tokenizing
/// time and memory are bounded however long the text is, and nothing that fits is lost.
pub const MAX_BYTES_PER_TOKEN: usize = 16;

/// Bytes of a text read for one paper: the most `tokens::cut_to_model_limit` keeps of an input.
pub const MAX_INPUT_BYTES: usize = MAX_TOKENS_PER_INPUT * MAX_BYTES_PER_TOKEN;

/// Bytes of JSON per float an answer may spend: a float written out in full
/// (`-1.2345678901234567e-10,`) takes 24; base64 takes under 6.
const MAX_BYTES_PER_FLOAT: usize = 24;

/// Most bytes read of an answer to a request of `inputs` texts of up to `dims` dimensions.
pub fn max_answer_bytes(inputs: usize, dims: Option<usize>) -> u64 {
    let dims = dims.unwrap_or(MAX_VECTOR_DIMS).min(MAX_VECTOR_DIMS);
    (inputs as u64) * (dims as u64 * MAX_BYTES_PER_FLOAT as u64 + 256) + 64 * 1024
}

/// `text` cut to at most `max` bytes, at a character boundary.
pub fn cut_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` cut to at most `max` characters, with `…` where it was cut.
pub fn cut_message(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutting_bytes_never_splits_a_character() {
        assert_eq!(cut_bytes("aé", 2), "a");
        assert_eq!(cut_bytes("abc", 10), "abc");
    }

    #[test]
    fn a_long_message_is_cut_and_marked() {
        let cut = cut_message(&"x".repeat(10_000), MAX_MESSAGE_CHARS);
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(cut_message("short", MAX_MESSAGE_CHARS), "short");
    }

    #[test]
    fn the_answer_limit_covers_a_full_request_of_floats() {
        // 2048 inputs of 3072 floats written out in full fit.
        assert!(max_answer_bytes(2048, Some(3072)) > 2048 * 3072 * 24);
        // An unknown length is bounded by pgvector's largest.
        assert_eq!(max_answer_bytes(1, None), max_answer_bytes(1, Some(MAX_VECTOR_DIMS)));
    }
}
