//! The encoder architectures served, from `config.json`'s `model_type`: BERT (absolute positions
//! from 0, a token type row added to every token) and MPNet (positions counted from the padding
//! id + 1, no token types, and a bias by relative position bucket added to every layer's
//! attention scores), with the names their weights have in `model.safetensors`.

use serde_json::Value;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    Bert,
    /// `buckets` relative position buckets, the last ones spanning up to `max_distance` tokens.
    Mpnet {
        buckets: usize,
        max_distance: usize,
    },
}

/// MPNet's distance beyond which relative positions share the last bucket (fixed in its code).
const MPNET_MAX_DISTANCE: usize = 128;

impl Architecture {
    /// The architecture `config.json` names, or why it is not served.
    pub fn from_config(config: &Value) -> Result<Architecture, Error> {
        match config["model_type"].as_str().unwrap_or("") {
            "bert" => {
                let positions = config["position_embedding_type"].as_str().unwrap_or("absolute");
                if positions != "absolute" {
                    return Err(
                        format!("config.json: position_embedding_type '{positions}' is not served here (absolute only)").into(),
                    );
                }
                Ok(Architecture::Bert)
            }
            "mpnet" => {
                // A quarter of the buckets are exact distances, below the distance the last
                // bucket starts at: at most 4 x 128 - 4 buckets.
                let buckets = config["relative_attention_num_buckets"].as_u64().unwrap_or(32);
                if !(2..=256).contains(&buckets) || !buckets.is_multiple_of(2) {
                    return Err(format!(
                        "config.json: relative_attention_num_buckets {buckets} is not an even number from 2 to 256"
                    )
                    .into());
                }
                let buckets = buckets as usize;
                Ok(Architecture::Mpnet {
                    buckets,
                    max_distance: MPNET_MAX_DISTANCE,
                })
            }
            other => Err(format!(
                "config.json: model_type '{other}' is not served here (BERT-family encoders: model_type 'bert' or 'mpnet')"
            )
            .into()),
        }
    }

    /// Rows of the position table before the first token's: MPNet numbers positions from its
    /// padding id + 1 (as RoBERTa does), BERT from 0.
    pub fn position_offset(&self, config: &Value) -> usize {
        match self {
            Architecture::Bert => 0,
            // A huge id saturates, and the shape's check refuses an offset past the table.
            Architecture::Mpnet { .. } => (config["pad_token_id"].as_u64().unwrap_or(1) as usize).saturating_add(1),
        }
    }

    /// The prefix a task model (`BertForMaskedLM`, `MPNetForMaskedLM`) puts before the encoder's
    /// weight names.
    pub fn prefix(&self) -> &'static str {
        match self {
            Architecture::Bert => "bert.",
            Architecture::Mpnet { .. } => "mpnet.",
        }
    }

    /// The names of layer `l`'s weights (without `.weight` or `.bias`).
    pub fn layer_names(&self, l: usize) -> LayerNames {
        let at = |part: &str| format!("encoder.layer.{l}.{part}");
        match self {
            Architecture::Bert => LayerNames {
                query: at("attention.self.query"),
                key: at("attention.self.key"),
                value: at("attention.self.value"),
                attention_out: at("attention.output.dense"),
                attention_norm: at("attention.output.LayerNorm"),
                intermediate: at("intermediate.dense"),
                output: at("output.dense"),
                output_norm: at("output.LayerNorm"),
            },
            Architecture::Mpnet { .. } => LayerNames {
                query: at("attention.attn.q"),
                key: at("attention.attn.k"),
                value: at("attention.attn.v"),
                attention_out: at("attention.attn.o"),
                attention_norm: at("attention.LayerNorm"),
                intermediate: at("intermediate.dense"),
                output: at("output.dense"),
                output_norm: at("output.LayerNorm"),
            },
        }
    }
}

/// Where one layer's weights are in the weights file.
pub struct LayerNames {
    pub query: String,
    pub key: String,
    pub value: String,
    pub attention_out: String,
    pub attention_norm: String,
    pub intermediate: String,
    pub output: String,
    pub output_norm: String,
}

/// The bucket of a key `relative` tokens after its query (negative: before), as MPNet's code
/// computes it: half the buckets for keys before, half for keys after; within each half, exact
/// distances below a quarter of the buckets, then buckets growing logarithmically up to
/// `max_distance`. The logarithm is taken in float32 and truncated, as there, so that a distance
/// on a bucket's edge falls where it does in the model's training.
pub fn relative_bucket(relative: i64, buckets: usize, max_distance: usize) -> usize {
    let half = buckets / 2;
    let n = -relative;
    let base = if n < 0 { half } else { 0 };
    let n = n.unsigned_abs() as usize;
    let exact = half / 2;
    if n < exact {
        return base + n;
    }
    let log_ratio = (n as f32 / exact as f32).ln() / ((max_distance as f64 / exact as f64).ln() as f32);
    // Capped before it is added: an infinite ratio (no exact bucket) converts to usize::MAX.
    let beyond = ((log_ratio * (half - exact) as f32) as usize).min(half - 1 - exact);
    base + exact + beyond
}

/// The bias each head adds to the score of a query and a key `j - i` apart in a sequence of `n`
/// tokens: `out[head * (2n - 1) + (j - i + n - 1)]`, from `table` (`buckets` rows of `heads`).
pub fn relative_bias(table: &[f32], heads: usize, n: usize, (buckets, max_distance): (usize, usize)) -> Vec<f32> {
    let width = 2 * n - 1;
    let mut out = vec![0.0; heads * width];
    for offset in 0..width {
        let bucket = relative_bucket(offset as i64 - (n as i64 - 1), buckets, max_distance);
        for head in 0..heads {
            out[head * width + offset] = table[bucket * heads + head];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn buckets_are_exact_near_and_logarithmic_far_on_each_side() {
        // Keys after the query (n = -relative < 0) take the upper half.
        let bucket = |r| relative_bucket(r, 32, 128);
        assert_eq!((0..8).map(|r| bucket(-r)).collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
        assert_eq!((1..8).map(bucket).collect::<Vec<_>>(), (17..24).collect::<Vec<_>>());
        assert_eq!(bucket(0), 0);
        // Beyond the exact range: 8 + trunc(ln(n / 8) / ln(16) * 8), the last bucket from 128 on.
        assert_eq!(bucket(-12), 9);
        assert_eq!(bucket(-100), 15);
        assert_eq!(bucket(-500), 15);
        assert_eq!(bucket(500), 31);
        // Monotone in the distance on each side.
        for r in 1..600 {
            assert!(bucket(-r) >= bucket(-(r - 1)) && bucket(r) >= bucket(r - 1), "{r}");
        }
    }

    #[test]
    fn the_bias_of_a_sequence_reads_each_heads_column_of_the_table() {
        // Two heads; bucket b's row is [b, 100 + b].
        let table: Vec<f32> = (0..32).flat_map(|b| [b as f32, 100.0 + b as f32]).collect();
        let bias = relative_bias(&table, 2, 3, (32, 128));
        // Offsets -2..=2: buckets 2, 1, 0, 17, 18.
        assert_eq!(bias, vec![2.0, 1.0, 0.0, 17.0, 18.0, 102.0, 101.0, 100.0, 117.0, 118.0]);
    }

    #[test]
    fn mpnet_counts_positions_after_its_padding_id() {
        let config = json!({"model_type": "mpnet", "pad_token_id": 1});
        let architecture = Architecture::from_config(&config).unwrap();
        assert_eq!(
            architecture,
            Architecture::Mpnet {
                buckets: 32,
                max_distance: 128
            }
        );
        assert_eq!(architecture.position_offset(&config), 2);
        assert_eq!(Architecture::Bert.position_offset(&config), 0);
    }

    #[test]
    fn other_architectures_and_position_kinds_are_refused_by_name() {
        let refusal = |config| Architecture::from_config(&config).unwrap_err().to_string();
        assert!(refusal(json!({"model_type": "roberta"})).contains("model_type 'roberta' is not served"));
        assert!(
            refusal(json!({"model_type": "bert", "position_embedding_type": "relative_key"}))
                .contains("position_embedding_type 'relative_key'")
        );
        assert!(refusal(json!({"model_type": "mpnet", "relative_attention_num_buckets": 3})).contains("not an even number"));
        assert!(refusal(json!({"model_type": "mpnet", "relative_attention_num_buckets": 512})).contains("not an even number"));
    }

    #[test]
    fn every_bucket_count_served_keeps_every_distance_in_its_table() {
        for buckets in (2..=256).step_by(2) {
            for relative in -2000..2000 {
                assert!(
                    relative_bucket(relative, buckets, 128) < buckets,
                    "{buckets} buckets, {relative}"
                );
            }
        }
        let huge = json!({"model_type": "mpnet", "pad_token_id": u64::MAX});
        assert_eq!(Architecture::from_config(&huge).unwrap().position_offset(&huge), usize::MAX);
    }
}
