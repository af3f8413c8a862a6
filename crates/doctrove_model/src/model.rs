//! Loading a model from its sentence-transformers folder and embedding texts: tokenise
//! (truncating at the model's limit), run the BERT encoder in passes side by side, pool (mean or
//! CLS), normalise when the folder says so.

use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use tokenizers::{Encoding, Tokenizer, TruncationParams};

use crate::assist::Assist;
use crate::encoder::Encoder;
use crate::folder::{ModelFolder, Pooling};
use crate::kernel::{Choice, Kernel};
use crate::pooling::{l2_normalise, mean_pool};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Vectors by the index of their input.
type Vectors = Vec<(usize, Vec<f32>)>;

/// Most tokens per encoder pass at float32: enough rows for the matrix products to run near the
/// cores' peak, few enough that a pass's buffers stay small (at 4,096 tokens, 63 MB for
/// all-MiniLM-L6-v2, 126 MB for all-mpnet-base-v2; see `encoder.rs` for which are kept).
const PASS_TOKENS: usize = 4096;

/// Most tokens per pass at bf16 and int8, whose products are fast enough that the trips of a
/// pass's outputs through memory weigh more than the rows each weight is read for. Measured
/// here with 256 to 4,096 tokens: 512 ran all-mpnet-base-v2 1.1x (bf16, short texts), 1.2x
/// (bf16, abstracts; int8, short texts) as fast as 4,096, and all-MiniLM-L6-v2 1.05x; float32
/// ran 5% slower at 512, so it keeps 4,096.
const LOW_PRECISION_PASS_TOKENS: usize = 512;

/// The places for encoder passes: passes running now, over all requests (and all the models
/// that share them): at most `threads` of the model asking, so concurrent requests share the
/// cores instead of each starting a thread per core.
#[derive(Default)]
struct Cores {
    running: Mutex<usize>,
    pass_done: Condvar,
}

/// The model, ready to embed; shared by every connection's thread.
pub struct SentenceModel {
    encoder: Encoder,
    tokenizer: Tokenizer,
    dims: usize,
    max_tokens: usize,
    pooling: Pooling,
    normalize: bool,
    threads: usize,
    cores: Arc<Cores>,
    /// `f32`, `bf16` after [`SentenceModel::with_bf16`], `int8` after [`SentenceModel::with_int8`].
    precision: &'static str,
}

/// Vectors in input order, and the tokens the texts used (after truncation, with the two
/// special tokens each), for the response's `usage`.
#[derive(Debug)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: usize,
}

impl SentenceModel {
    /// Loads the sentence-transformers folder `dir` (see [`ModelFolder`]) and its
    /// `model.safetensors`. The sequence limit is `max_seq_length` of
    /// `sentence_bert_config.json` (256 for all-MiniLM-L6-v2; the tokenizer file's own limit of
    /// 128 is not what sentence-transformers uses).
    pub fn load(dir: &Path) -> Result<SentenceModel, Error> {
        SentenceModel::load_with(dir, Kernel::packed())
    }

    /// As [`SentenceModel::load`], with the products on `kernel`.
    pub fn load_with(dir: &Path, kernel: Kernel) -> Result<SentenceModel, Error> {
        let folder = ModelFolder::read(dir)?;
        let (shape, max_tokens) = (folder.shape, folder.max_tokens);
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| format!("cannot load {}: {e}", dir.join("tokenizer.json").display()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| format!("tokenizer truncation: {e}"))?;
        tokenizer.with_padding(None);
        let weights = dir.join("model.safetensors");
        if !weights.exists() {
            return Err(format!("{} is missing", weights.display()).into());
        }
        let encoder = Encoder::load(&weights, shape, kernel)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(SentenceModel {
            encoder,
            tokenizer,
            dims: shape.hidden,
            max_tokens,
            pooling: folder.pooling,
            normalize: folder.normalize,
            threads,
            cores: Arc::default(),
            precision: "f32",
        })
    }

    /// Runs this model's passes in the places of `other`'s, so that two models served side by
    /// side share the cores as two requests of one model do.
    pub fn sharing_cores_with(mut self, other: &SentenceModel) -> SentenceModel {
        self.cores = Arc::clone(&other.cores);
        self
    }

    /// How the token vectors become the text's vector, and whether it is scaled to unit length.
    pub fn pooling(&self) -> (Pooling, bool) {
        (self.pooling, self.normalize)
    }

    /// Runs the encoder's linear layers in bfloat16 (AMX tiles where Linux grants them, AVX-512
    /// BF16 otherwise): faster, with vectors within about 0.999 cosine of float32 ones (measured
    /// by `make test` and `make bench`).
    pub fn with_bf16(mut self) -> Result<SentenceModel, Error> {
        self.encoder.use_bf16()?;
        self.precision = "bf16";
        Ok(self)
    }

    /// Runs the encoder's linear layers in 8-bit integers (AVX-512 VNNI, AVX-VNNI, or AVX2 on
    /// words): weights quantised per output and per group of 64 inputs, each layer's input per
    /// row and per group; vectors within 0.999 cosine of float32's (checked by `make test`).
    pub fn with_int8(mut self) -> Result<SentenceModel, Error> {
        self.encoder.use_int8()?;
        self.precision = "int8";
        Ok(self)
    }

    /// `f32`, `bf16` or `int8`.
    pub fn precision(&self) -> &'static str {
        self.precision
    }

    /// The kernel the products run on: `packed` or `openblas <core>`.
    pub fn kernel(&self) -> String {
        self.encoder.kernel().name()
    }

    /// The instruction set the linear layers run on: `amx-bf16` or `avx512bf16` at bf16,
    /// `avx512vnni`, `avxvnni` or `avx2` at int8, otherwise the kernel's (`avx512f`, `avx2`,
    /// `baseline`, or OpenBLAS's core's).
    pub fn instruction_set(&self) -> &'static str {
        match self.precision {
            "bf16" => crate::bf16_gemm::Bf16Kernel::fastest().name(),
            "int8" => crate::int8_gemm::Int8Kernel::fastest().map_or("none", |k| k.name()),
            _ => self.encoder.kernel().instruction_set(),
        }
    }

    /// Length of the vectors (384 for all-MiniLM-L6-v2).
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Longest input in tokens, special tokens included; longer inputs are cut to it.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The token ids of `text` as the model sees them (after truncation).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, Error> {
        Ok(self.encode(text)?.get_ids().to_vec())
    }

    /// The tokens of `text` after truncation, tokenizing no more of it than needed: a prefix
    /// cut at a word boundary after 4 KiB, doubled until it holds `max_tokens` tokens or is the
    /// whole text. BERT's normaliser acts on each character and its pre-tokeniser splits words
    /// at whitespace and punctuation, so the tokens of such a prefix are the first tokens of the
    /// whole text; a 32 MiB input costs the tokenizer a few KiB, not gigabytes.
    fn encode(&self, text: &str) -> Result<Encoding, Error> {
        let mut bytes = 4096;
        loop {
            let Some(prefix) = prefix_at_word_boundary(text, bytes) else {
                return self.tokenizer.encode(text, true);
            };
            let encoding = self.tokenizer.encode(prefix, true)?;
            if encoding.get_ids().len() >= self.max_tokens {
                return Ok(encoding);
            }
            bytes *= 2;
        }
    }

    /// Embeds `texts`, returning vectors in the same order. The passes of one request run on
    /// up to `threads` threads at once, and all requests together run at most `threads` passes
    /// at once (see [`SentenceModel::with_threads`]).
    pub fn embed(&self, texts: &[String]) -> Result<Embedded, Error> {
        // On the request's own thread: tokenizing is a small part of the work, and stays inside
        // the server's limit on requests at once.
        let encodings = texts.iter().map(|text| self.encode(text)).collect::<Result<Vec<_>, _>>()?;
        let tokens: usize = encodings.iter().map(|e| e.get_ids().len()).sum();
        // Passes of at most `pass_tokens` tokens and of about equal size, as many for each thread
        // (unless long inputs force more cuts), so the threads end together (five passes of
        // 4,096 tokens on two threads had left one core idle for a sixth of a request).
        let lengths: Vec<usize> = encodings.iter().map(|e| e.get_ids().len()).collect();
        let most = self.pass_tokens();
        let count = self.threads * tokens.div_ceil(self.threads * most).max(1);
        let passes = split_into_passes(&lengths, count, most);
        // A request of one pass (a search query) runs on its own thread, and may take a second
        // core when one is free; more passes run on up to `threads` threads.
        let next = AtomicUsize::new(0);
        let may_split = passes.len() == 1 && self.splits(tokens);
        let take = || self.take_passes(&passes, &encodings, &next, may_split);
        let done: Vec<Result<Vectors, Error>> = match passes.len() {
            0 | 1 => vec![take()],
            _ => std::thread::scope(|scope| {
                let handles: Vec<_> = (0..self.threads.min(passes.len())).map(|_| scope.spawn(take)).collect();
                handles
                    .into_iter()
                    .map(|t| t.join().expect("an encoder thread panicked"))
                    .collect()
            }),
        };
        let mut vectors = vec![Vec::new(); encodings.len()];
        for pairs in done {
            for (i, vector) in pairs? {
                vectors[i] = vector;
            }
        }
        Ok(Embedded { vectors, tokens })
    }

    /// Runs the next pass not yet taken until none is left; returns (input index, vector) pairs.
    fn take_passes(
        &self,
        passes: &[Range<usize>],
        encodings: &[Encoding],
        next: &AtomicUsize,
        may_split: bool,
    ) -> Result<Vectors, Error> {
        let mut done = Vec::new();
        while let Some(pass) = passes.get(next.fetch_add(1, Ordering::Relaxed)) {
            let batch: Vec<&Encoding> = encodings[pass.clone()].iter().collect();
            match self.while_a_core_is_free(may_split, |assist| self.encode_pass(&batch, assist)) {
                Ok(vectors) => done.extend(pass.clone().zip(vectors)),
                Err(error) => {
                    // The request fails: the other threads take no further pass.
                    next.store(passes.len(), Ordering::Relaxed);
                    return Err(error);
                }
            }
        }
        Ok(done)
    }

    /// Runs `threads` passes at once (default: one per core), each on one thread: whole passes
    /// side by side keep every core busy, where splitting each of this small model's products
    /// across cores does not. Only a request of one pass, with a core free, splits its
    /// products (see [`SentenceModel::embed`]).
    pub fn with_threads(mut self, threads: usize) -> SentenceModel {
        self.threads = threads.max(1);
        self
    }

    /// Most tokens per pass at this model's precision.
    fn pass_tokens(&self) -> usize {
        match self.precision {
            "f32" => PASS_TOKENS,
            _ => LOW_PRECISION_PASS_TOKENS,
        }
    }

    /// Threads a request's passes run on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Whether the linear layers of a pass of `tokens` tokens can be split between two cores:
    /// with more than one core, at float32, on the packed kernel.
    fn splits(&self, tokens: usize) -> bool {
        self.threads > 1 && self.precision == "f32" && matches!(self.encoder.kernel().for_rows(tokens), Choice::Packed(_))
    }

    /// Runs `pass` once fewer than `threads` passes are running, over all requests; with
    /// `may_split`, and a second place free at that moment, on two cores (the helper holding
    /// the second place). Places are given back however `pass` ends (a panic included), so no
    /// place is ever lost.
    fn while_a_core_is_free<T>(&self, may_split: bool, pass: impl FnOnce(Option<&Assist>) -> T) -> T {
        let mut running = self.cores.running.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= self.threads {
            running = self.cores.pass_done.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
        let second = may_split && *running < self.threads;
        if second {
            *running += 1;
        }
        drop(running);
        let _place = Places(self, if second { 2 } else { 1 });
        match second {
            true => Assist::with_helper(|assist| pass(Some(assist))),
            false => pass(None),
        }
    }

    /// One encoder pass over texts packed end to end (no padding), then each text's vector:
    /// the mean of its token vectors or its first (`[CLS]`) token's, normalised when the folder
    /// has a `Normalize` module.
    fn encode_pass(&self, batch: &[&Encoding], assist: Option<&Assist>) -> Result<Vec<Vec<f32>>, Error> {
        let sequences: Vec<&[u32]> = batch.iter().map(|e| e.get_ids()).collect();
        let pool = |hidden: &[f32]| {
            let mut start = 0;
            sequences
                .iter()
                .map(|sequence| {
                    let rows = &hidden[start * self.dims..(start + sequence.len()) * self.dims];
                    start += sequence.len();
                    let mut vector = match self.pooling {
                        Pooling::Mean => mean_pool(rows, self.dims, &vec![1; sequence.len()]),
                        Pooling::Cls => rows[..self.dims].to_vec(),
                    };
                    if self.normalize {
                        l2_normalise(&mut vector);
                    }
                    vector
                })
                .collect()
        };
        self.encoder.forward(&sequences, assist, pool)
    }
}

/// Places a pass holds, given back when it ends.
struct Places<'a>(&'a SentenceModel, usize);

impl Drop for Places<'_> {
    fn drop(&mut self) {
        *self.0.cores.running.lock().unwrap_or_else(|e| e.into_inner()) -= self.1;
        self.0.cores.pass_done.notify_all();
    }
}

/// The longest prefix of `text` within `bytes` that ends at a word boundary (after whitespace or
/// ASCII punctuation, where BERT's pre-tokeniser splits); `None` when the whole text fits.
fn prefix_at_word_boundary(text: &str, bytes: usize) -> Option<&str> {
    if text.len() <= bytes {
        return None;
    }
    let mut end = bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text[..end]
        .rfind(|c: char| c.is_whitespace() || c.is_ascii_punctuation())
        .map_or(0, |at| at + 1);
    Some(&text[..cut])
}

/// Consecutive ranges of inputs in about `count` passes of about equal size (each cut at the
/// input boundary nearest its share of the tokens), none over `most` tokens unless one input
/// is (it is a pass of its own). Inputs are packed without padding, so their order does not
/// matter.
fn split_into_passes(lengths: &[usize], count: usize, most: usize) -> Vec<Range<usize>> {
    let total: usize = lengths.iter().sum();
    let mut passes = Vec::new();
    let (mut first, mut before, mut filled) = (0, 0, 0);
    for (at, &len) in lengths.iter().enumerate() {
        // Where this pass should end: its share of the tokens, counted from the first input.
        let goal = (passes.len() + 1) * total / count.max(1);
        if filled > 0 && (filled + len > most || before + filled + len / 2 >= goal) {
            passes.push(first..at);
            (first, before, filled) = (at, before + filled, 0);
        }
        filled += len;
    }
    if first < lengths.len() {
        passes.push(first..lengths.len());
    }
    passes
}

#[cfg(test)]
mod tests {
    use super::{prefix_at_word_boundary, split_into_passes};

    #[test]
    fn prefixes_end_after_whitespace_or_punctuation_and_never_split_a_character() {
        assert_eq!(prefix_at_word_boundary("short", 10), None);
        assert_eq!(prefix_at_word_boundary("hello world again", 13), Some("hello world "));
        assert_eq!(prefix_at_word_boundary("a!bcdef", 5), Some("a!"));
        assert_eq!(prefix_at_word_boundary("abcdefgh", 4), Some(""));
        assert_eq!(prefix_at_word_boundary("é é é", 4), Some("é "));
    }

    #[test]
    fn passes_cover_every_input_once_within_the_token_budget() {
        assert_eq!(split_into_passes(&[3, 3, 3, 3], 2, 6), vec![0..2, 2..4]);
        assert_eq!(split_into_passes(&[10, 2, 2], 2, 6), vec![0..1, 1..3]);
        assert_eq!(split_into_passes(&[1], 2, 6), vec![0..1]);
        assert!(split_into_passes(&[], 2, 6).is_empty());
        // The budget cuts before the count does.
        assert_eq!(split_into_passes(&[3, 3, 3, 3], 1, 6), vec![0..2, 2..4]);
    }

    #[test]
    fn passes_share_the_tokens_about_equally() {
        // Ten inputs of 100 tokens in four passes: two threads get 500 tokens each.
        let passes = split_into_passes(&[100; 10], 4, 1000);
        assert_eq!(passes, vec![0..2, 2..5, 5..7, 7..10]);
        // 18,500 tokens of abstract-length inputs in six passes of at most 4,096 (greedy
        // filling made five, one thread running the last alone).
        let lengths: Vec<usize> = (0..64).map(|i| 250 + (i * 37) % 80).collect();
        let passes = split_into_passes(&lengths, 6, 4096);
        let sizes: Vec<usize> = passes.iter().map(|p| lengths[p.clone()].iter().sum()).collect();
        assert_eq!(passes.len(), 6, "{sizes:?}");
        let (least, most) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(most - least <= 330 && *most <= 4096, "{sizes:?}");
        assert_eq!(passes.first().unwrap().start, 0);
        assert!(passes.windows(2).all(|w| w[0].end == w[1].start) && passes.last().unwrap().end == 64);
    }
}
