//! Token counting with the cl100k_base tokenizer (text-embedding-3-*), offline: the BPE table
//! is compiled into the binary. Texts are cut to the model's input limit, and requests packed
//! under a token budget. A text of at most N bytes has at most N tokens, so short texts and
//! small batches are never tokenized at all.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

use crate::bounds::{cut_bytes, MAX_BYTES_PER_TOKEN};
// Also reachable here: crates/doctrove_itest names `embed_core::tokens::MAX_TOKENS_PER_INPUT`.
pub use crate::bounds::MAX_TOKENS_PER_INPUT;

fn bpe() -> &'static CoreBPE {
    static BPE: OnceLock<CoreBPE> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::cl100k_base().expect("the cl100k_base table is built in"))
}

/// Tokens of `text`.
pub fn count(text: &str) -> usize {
    bpe().encode_ordinary(text).len()
}

/// `text` cut to at most `max_tokens` tokens (unchanged when it fits), and its token count
/// when it had to be tokenized (`None` for a text short enough not to need it).
pub fn truncate(text: &str, max_tokens: usize) -> (String, Option<usize>) {
    let text = cut_bytes(text, max_tokens.saturating_mul(MAX_BYTES_PER_TOKEN));
    if text.len() <= max_tokens {
        return (text.to_string(), None);
    }
    let tokens = bpe().encode_ordinary(text);
    if tokens.len() <= max_tokens {
        return (text.to_string(), Some(tokens.len()));
    }
    // Cutting between tokens can split a multi-byte character; back off until it decodes.
    let mut end = max_tokens;
    loop {
        if let Ok(cut) = bpe().decode(&tokens[..end]) {
            return (cut, Some(end));
        }
        end -= 1;
    }
}

/// `text` cut to what the model takes in one input, [`MAX_TOKENS_PER_INPUT`] tokens (so at most
/// [`crate::bounds::MAX_INPUT_BYTES`] bytes), as [`truncate`] returns it: the cut text, and its
/// token count when it had to be tokenized. Every text sent to the API goes through this.
pub fn cut_to_model_limit(text: &str) -> (String, Option<usize>) {
    truncate(text, MAX_TOKENS_PER_INPUT)
}

/// An upper bound of the tokens of `text` that costs nothing: its byte length.
pub fn upper_bound(text: &str) -> usize {
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_sentence_has_its_known_count() {
        // "hello world" is two cl100k tokens.
        assert_eq!(count("hello world"), 2);
    }

    #[test]
    fn a_short_text_is_left_alone() {
        assert_eq!(
            truncate("Title: short", MAX_TOKENS_PER_INPUT),
            ("Title: short".to_string(), None)
        );
    }

    #[test]
    fn a_long_text_is_cut_to_the_limit() {
        let long = "word ".repeat(20_000);
        let (cut, tokens) = truncate(&long, MAX_TOKENS_PER_INPUT);
        assert_eq!(tokens, Some(MAX_TOKENS_PER_INPUT));
        assert_eq!(count(&cut), MAX_TOKENS_PER_INPUT);
        assert!(long.starts_with(&cut));
    }

    #[test]
    fn a_huge_single_word_is_cut_in_bounded_time() {
        let huge = "a".repeat(20 << 20);
        let start = std::time::Instant::now();
        let (cut, tokens) = truncate(&huge, MAX_TOKENS_PER_INPUT);
        assert!(tokens.unwrap() <= MAX_TOKENS_PER_INPUT);
        assert!(cut.len() <= MAX_TOKENS_PER_INPUT * MAX_BYTES_PER_TOKEN);
        // Not a timing assert on speed: a bound two orders of magnitude above the real cost,
        // which only an uncut 20 MB text reaches.
        assert!(start.elapsed() < std::time::Duration::from_secs(30));
    }

    #[test]
    fn a_text_is_cut_to_the_models_limit() {
        let long = "word ".repeat(20_000);
        assert!(count(&long) > MAX_TOKENS_PER_INPUT);
        let (cut, tokens) = cut_to_model_limit(&long);
        assert_eq!(tokens, Some(MAX_TOKENS_PER_INPUT));
        assert_eq!(count(&cut), MAX_TOKENS_PER_INPUT);
        assert!(long.starts_with(&cut));
        assert_eq!(cut_to_model_limit("Title: short"), ("Title: short".to_string(), None));
    }

    #[test]
    fn cutting_never_splits_a_character() {
        let long = "日本語のテキスト".repeat(5_000);
        let (cut, _) = truncate(&long, 100);
        assert!(long.starts_with(&cut));
        assert!(count(&cut) <= 100);
    }
}
