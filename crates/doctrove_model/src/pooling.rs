//! From token vectors to one sentence vector: the mean of the vectors of the real tokens (the
//! attention mask leaves padding out), then scaled to unit length, as the model's
//! `1_Pooling/config.json` (`pooling_mode_mean_tokens`) and its `Normalize` module say.

/// Mean of `tokens` (one row per token, `dims` wide) over the rows whose `mask` is 1.
pub fn mean_pool(tokens: &[f32], dims: usize, mask: &[u32]) -> Vec<f32> {
    let mut sum = vec![0f32; dims];
    let mut count = 0f32;
    for (row, &keep) in tokens.chunks_exact(dims).zip(mask) {
        if keep != 0 {
            for (s, v) in sum.iter_mut().zip(row) {
                *s += v;
            }
            count += 1.0;
        }
    }
    // sentence-transformers clamps the count at 1e-9 so an all-padding row stays finite.
    let count = count.max(1e-9);
    sum.iter_mut().for_each(|s| *s /= count);
    sum
}

/// Scales `vector` to unit Euclidean length (a zero vector stays zero, as torch's
/// `normalize` with its epsilon leaves it).
pub fn l2_normalise(vector: &mut [f32]) {
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    vector.iter_mut().for_each(|v| *v /= norm);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_rows_are_left_out_of_the_mean() {
        let tokens = [1.0, 2.0, 3.0, 4.0, 100.0, 100.0];
        assert_eq!(mean_pool(&tokens, 2, &[1, 1, 0]), vec![2.0, 3.0]);
    }

    #[test]
    fn a_row_with_no_real_token_stays_finite() {
        assert_eq!(mean_pool(&[5.0, 5.0], 2, &[0]), vec![0.0, 0.0]);
    }

    #[test]
    fn normalised_vectors_have_unit_length() {
        let mut v = vec![3.0, 4.0];
        l2_normalise(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut zero = vec![0.0, 0.0];
        l2_normalise(&mut zero);
        assert_eq!(zero, vec![0.0, 0.0]);
    }
}
