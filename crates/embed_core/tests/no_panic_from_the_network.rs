//! Property tests: nothing an HTTP answer holds (body, `retry-after`, `x-ratelimit-*`) makes
//! the decoder or a header parser panic, and what they return stays within its bounds.

use std::time::Duration;

use embed_core::bounds::{MAX_MESSAGE_CHARS, MAX_VECTOR_DIMS};
use embed_core::client::{parse_retry_after, MAX_RETRY_AFTER};
use embed_core::rate_limit::{RateLimitHeaders, MAX_HEADER_COUNT};
use embed_core::response::{api_error_message, decode_embeddings};
use proptest::prelude::*;

/// Header values as an API might send them, from plausible to hostile.
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>().prop_map(|f| f.to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        Just("1e400".to_string()),
        Just("-1e400".to_string()),
        Just("NaN".to_string()),
        Just("inf".to_string()),
        "[0-9eE.+-]{0,40}",
        "[A-Za-z]{3}, [0-9]{2} [A-Za-z]{3} [0-9]{4,6} [0-9:]{8} GMT",
        ".{0,60}",
    ]
}

/// JSON bodies shaped like an embeddings answer, with hostile values in every field.
fn answer_body() -> impl Strategy<Value = Vec<u8>> {
    let number = prop_oneof![
        any::<f64>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from)
    ];
    let embedding = prop_oneof![
        "[A-Za-z0-9+/=]{0,64}".prop_map(serde_json::Value::from),
        proptest::collection::vec(number.clone(), 0..8).prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
    ];
    let item = (
        prop_oneof![
            any::<u64>().prop_map(serde_json::Value::from),
            number.clone(),
            Just(serde_json::Value::Null)
        ],
        embedding,
    )
        .prop_map(|(index, embedding)| serde_json::json!({"index": index, "embedding": embedding}));
    (proptest::collection::vec(item, 0..6), number).prop_map(|(data, tokens)| {
        serde_json::json!({"data": data, "usage": {"total_tokens": tokens}})
            .to_string()
            .into_bytes()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn retry_after_never_panics_and_never_exceeds_the_cap(ms in proptest::option::of(header_value()), s in proptest::option::of(header_value()), now in any::<u64>()) {
        if let Some(wait) = parse_retry_after(ms.as_deref(), s.as_deref(), now) {
            prop_assert!(wait <= MAX_RETRY_AFTER);
            prop_assert!(wait >= Duration::ZERO);
        }
    }

    #[test]
    fn rate_limit_headers_are_finite_and_bounded(values in proptest::collection::vec(header_value(), 4)) {
        let h = RateLimitHeaders::read(|name| match name {
            "x-ratelimit-limit-tokens" => Some(values[0].clone()),
            "x-ratelimit-remaining-tokens" => Some(values[1].clone()),
            "x-ratelimit-limit-requests" => Some(values[2].clone()),
            _ => Some(values[3].clone()),
        });
        for n in [h.limit_tokens, h.remaining_tokens, h.limit_requests, h.remaining_requests].into_iter().flatten() {
            prop_assert!(n.is_finite() && (0.0..=MAX_HEADER_COUNT).contains(&n));
        }
    }

    #[test]
    fn the_decoder_never_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..512), count in 0usize..8, dims in proptest::option::of(0usize..20_000)) {
        let _ = decode_embeddings(&body, count, dims);
        let (message, _) = api_error_message(&body);
        prop_assert!(message.chars().count() <= MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn decoded_answers_are_complete_finite_and_bounded(body in answer_body(), count in 0usize..6, dims in proptest::option::of(1usize..20_000)) {
        if let Ok(answer) = decode_embeddings(&body, count, dims) {
            prop_assert_eq!(answer.vectors.len(), count);
            for v in &answer.vectors {
                prop_assert!(!v.is_empty() && v.len() <= MAX_VECTOR_DIMS);
                prop_assert!(v.iter().all(|f| f.is_finite()));
                if let Some(d) = dims { prop_assert_eq!(v.len(), d); }
            }
            prop_assert!(answer.total_tokens <= (count * embed_core::tokens::MAX_TOKENS_PER_INPUT) as u64);
        }
    }
}
