//! Loading all-MiniLM-L6-v2 from its folder and embedding texts: tokenise (truncating at the
//! model's 256 tokens), run the BERT encoder in batches of similar length, pool, normalise.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Encoding, Tokenizer, TruncationParams};

use crate::pooling::{l2_normalise, mean_pool};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Most inputs per encoder pass. Texts are sorted by length first, so a pass pads little;
/// larger passes gain nothing on a CPU and hold more memory.
const PASS_SIZE: usize = 32;

/// The model, ready to embed; shared by every connection's thread.
pub struct SentenceModel {
    bert: BertModel,
    tokenizer: Tokenizer,
    dims: usize,
    max_tokens: usize,
    device: Device,
    threads: usize,
}

/// Vectors in input order, and the tokens the texts used (after truncation, with the two
/// special tokens each), for the response's `usage`.
#[derive(Debug)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: usize,
}

fn read_json(path: &Path) -> Result<serde_json::Value, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?)
}

impl SentenceModel {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir`. The sequence
    /// limit is `max_seq_length` of `sentence_bert_config.json` when the folder has one (256 for
    /// this model; the tokenizer file's own limit of 128 is not what sentence-transformers uses).
    pub fn load(dir: &Path) -> Result<SentenceModel, Error> {
        let config: Config = serde_json::from_value(read_json(&dir.join("config.json"))?)?;
        let max_tokens = match read_json(&dir.join("sentence_bert_config.json")) {
            Ok(st) => st["max_seq_length"].as_u64().unwrap_or(256) as usize,
            Err(_) => 256,
        }
        .min(config.max_position_embeddings);
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| format!("cannot load {}: {e}", dir.join("tokenizer.json").display()))?;
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_tokens, ..Default::default() }))
            .map_err(|e| format!("tokenizer truncation: {e}"))?;
        tokenizer.with_padding(None);
        let device = Device::Cpu;
        let weights = dir.join("model.safetensors");
        if !weights.exists() {
            return Err(format!("{} is missing", weights.display()).into());
        }
        // SAFETY: the weights file is memory-mapped read-only and not changed while it is mapped.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &device)? };
        let dims = config.hidden_size;
        let bert = BertModel::load(vb, &config)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(SentenceModel { bert, tokenizer, dims, max_tokens, device, threads })
    }

    /// Length of the vectors (384).
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Longest input in tokens, special tokens included; longer inputs are cut to it.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The token ids of `text` as the model sees them (after truncation).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, Error> {
        Ok(self.tokenizer.encode(text, true)?.get_ids().to_vec())
    }

    /// Embeds `texts`, returning vectors in the same order. The passes of one request run on
    /// `threads` threads at once (see [`SentenceModel::with_threads`]).
    pub fn embed(&self, texts: &[String]) -> Result<Embedded, Error> {
        let encodings = self.tokenizer.encode_batch(texts.to_vec(), true)?;
        let tokens = encodings.iter().map(|e| e.get_ids().len()).sum();
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        // Enough passes to give every thread one, each of at most PASS_SIZE texts.
        let pass_size = encodings.len().div_ceil(self.threads).clamp(1, PASS_SIZE);
        let passes: Vec<&[usize]> = order.chunks(pass_size).collect();
        // Each thread takes the next pass not yet taken and returns (input index, vector) pairs.
        let next = AtomicUsize::new(0);
        let done: Vec<Result<Vec<(usize, Vec<f32>)>, Error>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..self.threads.min(passes.len()))
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        while let Some(pass) = passes.get(next.fetch_add(1, Ordering::Relaxed)) {
                            let batch: Vec<&Encoding> = pass.iter().map(|&i| &encodings[i]).collect();
                            done.extend(pass.iter().copied().zip(self.encode_pass(&batch)?));
                        }
                        Ok(done)
                    })
                })
                .collect();
            handles.into_iter().map(|t| t.join().expect("an encoder thread panicked")).collect()
        });
        let mut vectors = vec![Vec::new(); encodings.len()];
        for pairs in done {
            for (i, vector) in pairs? {
                vectors[i] = vector;
            }
        }
        Ok(Embedded { vectors, tokens })
    }

    /// Runs the passes of a request on `threads` threads (default: one per core). The server
    /// pairs this with one thread per matrix product (`RAYON_NUM_THREADS=1`): whole passes side
    /// by side keep every core busy, where splitting each of this small model's products across
    /// cores does not (measured by `make bench`).
    pub fn with_threads(mut self, threads: usize) -> SentenceModel {
        self.threads = threads.max(1);
        self
    }

    /// Threads a request's passes run on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// One encoder pass over texts padded to the longest of them.
    fn encode_pass(&self, batch: &[&Encoding]) -> Result<Vec<Vec<f32>>, Error> {
        let width = batch.iter().map(|e| e.get_ids().len()).max().unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(batch.len() * width);
        let mut mask = Vec::with_capacity(batch.len() * width);
        for encoding in batch {
            let own = encoding.get_ids();
            ids.extend_from_slice(own);
            ids.extend(std::iter::repeat_n(0u32, width - own.len()));
            mask.extend(std::iter::repeat_n(1u32, own.len()));
            mask.extend(std::iter::repeat_n(0u32, width - own.len()));
        }
        let shape = (batch.len(), width);
        let input_ids = Tensor::from_vec(ids, shape, &self.device)?;
        let attention = Tensor::from_vec(mask.clone(), shape, &self.device)?;
        let token_types = input_ids.zeros_like()?;
        let hidden = self.bert.forward(&input_ids, &token_types, Some(&attention))?;
        let hidden: Vec<f32> = hidden.flatten_all()?.to_vec1()?;
        let per_text = width * self.dims;
        Ok(hidden
            .chunks_exact(per_text)
            .zip(mask.chunks_exact(width))
            .map(|(tokens, mask)| {
                let mut vector = mean_pool(tokens, self.dims, mask);
                l2_normalise(&mut vector);
                vector
            })
            .collect())
    }
}
