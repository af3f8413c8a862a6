//! What a sentence-transformers model folder says about the model, read and checked before any
//! weight is loaded: the encoder's architecture (BERT or MPNet) and shape (`config.json`), the modules after it
//! (`modules.json`: pooling, then an optional `Normalize`), the pooling mode
//! (`1_Pooling/config.json`: mean or CLS), the longest input (`sentence_bert_config.json`) and the
//! tokenizer (`tokenizer.json`: WordPiece with BERT's normaliser and pre-tokeniser, lower-casing
//! or not as its normaliser says). A folder this server cannot serve exactly as
//! sentence-transformers would is refused, with a message naming what it lacks.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::encoder::Shape;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// How the token vectors of a text become one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The mean of the text's token vectors.
    Mean,
    /// The vector of the first token (`[CLS]`).
    Cls,
}

/// A model folder the server can serve.
#[derive(Clone, Debug)]
pub struct ModelFolder {
    pub dir: PathBuf,
    pub shape: Shape,
    pub pooling: Pooling,
    /// Whether a `Normalize` module scales each vector to unit length.
    pub normalize: bool,
    /// Longest input in tokens, special tokens included.
    pub max_tokens: usize,
}

/// sentence-transformers' default when `sentence_bert_config.json` names no limit.
const DEFAULT_MAX_TOKENS: usize = 512;

fn read_json(path: &Path) -> Result<Value, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?)
}

impl ModelFolder {
    /// Reads and checks the folder's description files (not its weights).
    pub fn read(dir: &Path) -> Result<ModelFolder, Error> {
        let config = read_json(&dir.join("config.json"))?;
        let shape = Shape::from_config(&config)?;
        let (pooling_dir, normalize) = modules(dir)?;
        let pooling = pooling_mode(&dir.join(&pooling_dir).join("config.json"), shape.hidden)?;
        let sentence_bert = match dir.join("sentence_bert_config.json") {
            path if path.exists() => read_json(&path)?,
            _ => Value::Null,
        };
        let max_tokens = match &sentence_bert["max_seq_length"] {
            Value::Null => DEFAULT_MAX_TOKENS,
            limit => match limit.as_u64() {
                // The two special tokens and at least one of the text's.
                Some(n) if n >= 3 => n as usize,
                _ => {
                    return Err(
                        format!("sentence_bert_config.json: max_seq_length {limit} is not a whole number of at least 3").into(),
                    )
                }
            },
        }
        .min(shape.max_sequence());
        let lower_cases = check_tokenizer(&read_json(&dir.join("tokenizer.json"))?)?;
        if sentence_bert["do_lower_case"].as_bool() == Some(true) && !lower_cases {
            return Err(
                "sentence_bert_config.json asks for do_lower_case, which tokenizer.json's normaliser does not do: not served here"
                    .into(),
            );
        }
        Ok(ModelFolder {
            dir: dir.to_path_buf(),
            shape,
            pooling,
            normalize,
            max_tokens,
        })
    }
}

/// The folder of the pooling module and whether a `Normalize` module follows it, from
/// `modules.json`: a Transformer, a Pooling, then an optional Normalize, and nothing else.
fn modules(dir: &Path) -> Result<(String, bool), Error> {
    let path = dir.join("modules.json");
    let listed = read_json(&path)?;
    let modules = listed
        .as_array()
        .ok_or_else(|| format!("{}: not a list of modules", path.display()))?;
    let kinds: Vec<&str> = modules
        .iter()
        .map(|m| {
            m["type"]
                .as_str()
                .unwrap_or("")
                .trim_start_matches("sentence_transformers.models.")
        })
        .collect();
    match kinds.as_slice() {
        ["Transformer", "Pooling"] | ["Transformer", "Pooling", "Normalize"] => {
            let encoder_dir = modules[0]["path"].as_str().unwrap_or("");
            if !encoder_dir.is_empty() {
                return Err(format!(
                    "{}: the Transformer module in '{encoder_dir}' is not served here (the encoder's files at the folder's top only)",
                    path.display()
                )
                .into());
            }
            let pooling_dir = modules[1]["path"].as_str().unwrap_or("1_Pooling").to_string();
            if pooling_dir.is_empty() || pooling_dir.contains("..") || Path::new(&pooling_dir).is_absolute() {
                return Err(format!(
                    "{}: the pooling module's path '{pooling_dir}' is not a folder of the model",
                    path.display()
                )
                .into());
            }
            Ok((pooling_dir, kinds.len() == 3))
        }
        _ => Err(format!(
            "{}: modules {kinds:?} are not served here (Transformer, Pooling and an optional Normalize only)",
            path.display()
        )
        .into()),
    }
}

/// The pooling mode of the pooling module's `config.json`: exactly one of mean and CLS.
fn pooling_mode(path: &Path, hidden: usize) -> Result<Pooling, Error> {
    let config = read_json(path)?;
    if let Some(width) = config["word_embedding_dimension"].as_u64() {
        if width as usize != hidden {
            return Err(format!(
                "{}: word_embedding_dimension {width} differs from hidden_size {hidden}",
                path.display()
            )
            .into());
        }
    }
    let on = |key: &str| config[key].as_bool().unwrap_or(false);
    let modes: Vec<&str> = [
        "pooling_mode_cls_token",
        "pooling_mode_mean_tokens",
        "pooling_mode_max_tokens",
        "pooling_mode_mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens",
        "pooling_mode_lasttoken",
    ]
    .into_iter()
    .filter(|key| on(key))
    .collect();
    match modes.as_slice() {
        ["pooling_mode_mean_tokens"] => Ok(Pooling::Mean),
        ["pooling_mode_cls_token"] => Ok(Pooling::Cls),
        _ => Err(format!(
            "{}: pooling {modes:?} is not served here (exactly one of pooling_mode_mean_tokens and pooling_mode_cls_token)",
            path.display()
        )
        .into()),
    }
}

/// A WordPiece tokenizer with BERT's normaliser and pre-tokeniser: the server reads long texts a
/// prefix at a time, cut where BERT's pre-tokeniser splits words. Returns whether the normaliser
/// lower-cases.
fn check_tokenizer(tokenizer: &Value) -> Result<bool, Error> {
    let kind = |part: &str| tokenizer[part]["type"].as_str().unwrap_or("none").to_string();
    let found = (kind("model"), kind("normalizer"), kind("pre_tokenizer"));
    if (found.0.as_str(), found.1.as_str(), found.2.as_str()) != ("WordPiece", "BertNormalizer", "BertPreTokenizer") {
        return Err(format!(
            "tokenizer.json: model {}, normalizer {}, pre_tokenizer {} is not served here (WordPiece, BertNormalizer, BertPreTokenizer only)",
            found.0, found.1, found.2
        )
        .into());
    }
    Ok(tokenizer["normalizer"]["lowercase"].as_bool().unwrap_or(true))
}

#[cfg(test)]
mod tests {
    use super::{ModelFolder, Pooling};
    use serde_json::json;

    /// A model folder's description files (no weights) in a fresh temporary folder.
    struct Folder(std::path::PathBuf);

    impl Folder {
        fn new(name: &str) -> Folder {
            let dir = std::env::temp_dir().join(format!("doctrove_model_folder_{name}_{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
            let folder = Folder(dir);
            folder.write(
                "config.json",
                json!({"model_type": "bert", "hidden_size": 8, "num_attention_heads": 2, "intermediate_size": 16,
                       "num_hidden_layers": 1, "vocab_size": 10, "max_position_embeddings": 64, "hidden_act": "gelu"}),
            );
            folder.write(
                "modules.json",
                json!([{"type": "sentence_transformers.models.Transformer", "path": ""},
                       {"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"},
                       {"type": "sentence_transformers.models.Normalize", "path": "2_Normalize"}]),
            );
            folder.write(
                "1_Pooling/config.json",
                json!({"word_embedding_dimension": 8, "pooling_mode_mean_tokens": true, "pooling_mode_cls_token": false}),
            );
            folder.write("sentence_bert_config.json", json!({"max_seq_length": 32}));
            folder.write(
                "tokenizer.json",
                json!({"model": {"type": "WordPiece"}, "normalizer": {"type": "BertNormalizer"},
                       "pre_tokenizer": {"type": "BertPreTokenizer"}}),
            );
            folder
        }

        fn write(&self, file: &str, value: serde_json::Value) {
            std::fs::write(self.0.join(file), value.to_string()).unwrap();
        }

        fn refusal(&self) -> String {
            ModelFolder::read(&self.0).map(|_| ()).unwrap_err().to_string()
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_bert_folder_gives_its_shape_pooling_normalisation_and_limit() {
        let folder = Folder::new("bert");
        let read = ModelFolder::read(&folder.0).unwrap();
        assert_eq!((read.shape.hidden, read.shape.layers, read.shape.heads), (8, 1, 2));
        assert_eq!((read.pooling, read.normalize, read.max_tokens), (Pooling::Mean, true, 32));

        folder.write(
            "1_Pooling/config.json",
            json!({"pooling_mode_mean_tokens": false, "pooling_mode_cls_token": true}),
        );
        folder.write(
            "modules.json",
            json!([{"type": "sentence_transformers.models.Transformer"},
                   {"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"}]),
        );
        std::fs::remove_file(folder.0.join("sentence_bert_config.json")).unwrap();
        let read = ModelFolder::read(&folder.0).unwrap();
        // No sentence_bert_config.json: sentence-transformers' 512, cut to the positions (64).
        assert_eq!((read.pooling, read.normalize, read.max_tokens), (Pooling::Cls, false, 64));
    }

    #[test]
    fn another_architecture_is_refused_by_name() {
        let folder = Folder::new("roberta");
        folder.write(
            "config.json",
            json!({"model_type": "roberta", "hidden_size": 8, "num_attention_heads": 2,
                                            "intermediate_size": 16, "num_hidden_layers": 1, "vocab_size": 10,
                                            "max_position_embeddings": 64}),
        );
        assert!(
            folder.refusal().contains("model_type 'roberta' is not served"),
            "{}",
            folder.refusal()
        );
    }

    #[test]
    fn pooling_other_than_mean_or_cls_is_refused_by_name() {
        let folder = Folder::new("max");
        folder.write(
            "1_Pooling/config.json",
            json!({"pooling_mode_mean_tokens": false, "pooling_mode_max_tokens": true}),
        );
        assert!(
            folder.refusal().contains("[\"pooling_mode_max_tokens\"] is not served"),
            "{}",
            folder.refusal()
        );
        folder.write(
            "1_Pooling/config.json",
            json!({"pooling_mode_mean_tokens": true, "pooling_mode_cls_token": true}),
        );
        assert!(
            folder
                .refusal()
                .contains("\"pooling_mode_cls_token\", \"pooling_mode_mean_tokens\"]"),
            "{}",
            folder.refusal()
        );
    }

    #[test]
    fn a_module_beyond_pooling_and_normalize_is_refused_by_name() {
        let folder = Folder::new("dense");
        folder.write(
            "modules.json",
            json!([{"type": "sentence_transformers.models.Transformer"},
                   {"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"},
                   {"type": "sentence_transformers.models.Dense", "path": "2_Dense"}]),
        );
        assert!(
            folder
                .refusal()
                .contains("[\"Transformer\", \"Pooling\", \"Dense\"] are not served"),
            "{}",
            folder.refusal()
        );
        folder.write(
            "modules.json",
            json!([{"type": "sentence_transformers.models.Transformer"},
                   {"type": "sentence_transformers.models.Pooling", "path": "../elsewhere"}]),
        );
        assert!(
            folder.refusal().contains("is not a folder of the model"),
            "{}",
            folder.refusal()
        );
        std::fs::remove_file(folder.0.join("modules.json")).unwrap();
        assert!(
            folder.refusal().contains("cannot read") && folder.refusal().contains("modules.json"),
            "{}",
            folder.refusal()
        );
    }

    #[test]
    fn a_tokenizer_other_than_berts_wordpiece_is_refused_by_name() {
        let folder = Folder::new("bpe");
        folder.write(
            "tokenizer.json",
            json!({"model": {"type": "BPE"}, "normalizer": null, "pre_tokenizer": {"type": "ByteLevel"}}),
        );
        assert!(
            folder
                .refusal()
                .contains("model BPE, normalizer none, pre_tokenizer ByteLevel is not served"),
            "{}",
            folder.refusal()
        );
    }

    #[test]
    fn a_malformed_limit_shape_lower_casing_or_encoder_place_is_refused_by_name() {
        let folder = Folder::new("malformed");
        folder.write("sentence_bert_config.json", json!({"max_seq_length": 1}));
        assert!(
            folder
                .refusal()
                .contains("max_seq_length 1 is not a whole number of at least 3"),
            "{}",
            folder.refusal()
        );
        folder.write(
            "sentence_bert_config.json",
            json!({"max_seq_length": 32, "do_lower_case": true}),
        );
        folder.write(
            "tokenizer.json",
            json!({"model": {"type": "WordPiece"}, "normalizer": {"type": "BertNormalizer", "lowercase": false},
                   "pre_tokenizer": {"type": "BertPreTokenizer"}}),
        );
        assert!(folder.refusal().contains("do_lower_case"), "{}", folder.refusal());
        folder.write("sentence_bert_config.json", json!({"max_seq_length": 32}));
        assert!(
            ModelFolder::read(&folder.0).is_ok(),
            "a cased tokenizer without do_lower_case is served"
        );
        folder.write(
            "config.json",
            json!({"model_type": "bert", "hidden_size": 8, "num_attention_heads": 2, "intermediate_size": 16,
                   "num_hidden_layers": 1_000_000_000u64, "vocab_size": 10, "max_position_embeddings": 64}),
        );
        assert!(
            folder.refusal().contains("num_hidden_layers 1000000000 is outside 1 to 256"),
            "{}",
            folder.refusal()
        );
        folder.write(
            "config.json",
            json!({"model_type": "bert", "hidden_size": 0, "num_attention_heads": 2, "intermediate_size": 16,
                   "num_hidden_layers": 1, "vocab_size": 10, "max_position_embeddings": 64}),
        );
        assert!(folder.refusal().contains("hidden_size 0 is outside"), "{}", folder.refusal());
        let other = Folder::new("encoder_place");
        other.write(
            "modules.json",
            json!([{"type": "sentence_transformers.models.Transformer", "path": "0_Transformer"},
                   {"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"}]),
        );
        assert!(
            other.refusal().contains("Transformer module in '0_Transformer'"),
            "{}",
            other.refusal()
        );
    }

    #[test]
    fn a_pooling_width_other_than_the_encoders_is_refused() {
        let folder = Folder::new("width");
        folder.write(
            "1_Pooling/config.json",
            json!({"word_embedding_dimension": 16, "pooling_mode_mean_tokens": true}),
        );
        assert!(
            folder
                .refusal()
                .contains("word_embedding_dimension 16 differs from hidden_size 8"),
            "{}",
            folder.refusal()
        );
    }
}
