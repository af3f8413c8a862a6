//! The deterministic vector the mock returns for a text: the same text always gets the same vector.
//!
//! Each component is `k / 2^23 - 1` for a 24-bit `k`, so it is exact in f32 and survives any
//! float32 round trip (base64, pgvector storage) bit for bit.

/// FNV-1a over the text's UTF-8 bytes: the seed of the text's vector.
fn text_seed(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// splitmix64: a small, well-mixed sequence from one seed.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The vector of `dims` components the mock answers for `text`.
pub fn vector_for(text: &str, dims: usize) -> Vec<f32> {
    let mut state = text_seed(text);
    (0..dims)
        .map(|_| {
            let k = (splitmix64(&mut state) >> 40) as i64; // 24 bits
            (k - (1 << 23)) as f32 / (1u32 << 23) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_gives_the_same_vector() {
        assert_eq!(vector_for("Title: A", 16), vector_for("Title: A", 16));
    }

    #[test]
    fn different_texts_give_different_vectors() {
        assert_ne!(vector_for("Title: A", 16), vector_for("Title: B", 16));
    }

    #[test]
    fn a_longer_vector_extends_the_shorter_one() {
        assert_eq!(vector_for("x", 1536)[..3], vector_for("x", 3)[..]);
    }

    #[test]
    fn components_lie_in_minus_one_to_one_and_are_exact_in_f32() {
        for c in vector_for("range", 4096) {
            assert!((-1.0..1.0).contains(&c));
            let k = (c as f64 + 1.0) * (1u32 << 23) as f64;
            assert_eq!(k, k.trunc(), "component {c} is not a multiple of 2^-23");
        }
    }
}
