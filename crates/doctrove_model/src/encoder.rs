//! A BERT-family encoder (BERT or MPNet, `architecture.rs`), written out over matrix products
//! (`kernel.rs`), on sequences
//! packed end to end instead of padded to the longest: every row of every product is a real
//! token, and attention runs per sequence, so no work is spent on padding and no mask is
//! needed. (A general tensor library pads a pass to its longest input and pays per-operation
//! overhead on this small model; written out, the forward pass is a dozen products per layer.)

use std::path::Path;
use std::sync::Mutex;

use safetensors::{Dtype, SafeTensors};

use crate::aligned::Aligned;
use crate::architecture::{relative_bias, Architecture};
use crate::assist::Assist;
use crate::bf16_gemm::{gemm_bf16, Lanes, PackedWeights};
use crate::cpu::InstructionSet;
use crate::fast_math::{gelu_all, softmax, squared_deviations, sum};
use crate::int8_gemm::{gemm_int8, PackedInt8};
use crate::kernel::{Choice, Kernel};
use crate::openblas::{Matrix, OpenBlas};
use crate::packed_gemm::{gemm_packed, gemm_packed_split, PackedMatrix, Rows};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The shape of the encoder, from the model's `config.json`.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub vocab: usize,
    /// Rows of the position table.
    pub positions: usize,
    pub eps: f32,
    pub architecture: Architecture,
    /// The position table's row of a sequence's first token.
    pub position_offset: usize,
}

impl Shape {
    pub fn from_config(config: &serde_json::Value) -> Result<Shape, Error> {
        let architecture = Architecture::from_config(config)?;
        let int = |key: &str| -> Result<usize, Error> {
            config[key]
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| format!("config.json has no {key}").into())
        };
        let shape = Shape {
            hidden: int("hidden_size")?,
            heads: int("num_attention_heads")?,
            intermediate: int("intermediate_size")?,
            layers: int("num_hidden_layers")?,
            vocab: int("vocab_size")?,
            positions: int("max_position_embeddings")?,
            eps: config["layer_norm_eps"].as_f64().unwrap_or(1e-12) as f32,
            architecture,
            position_offset: architecture.position_offset(config),
        };
        // Bounds well above the BERT family's largest (24 layers, hidden 1024, intermediate
        // 4096, 512 positions, vocabularies of a few hundred thousand), so that a malformed
        // file is refused here rather than by an allocation.
        for (key, value, most) in [
            ("hidden_size", shape.hidden, 16_384),
            ("num_attention_heads", shape.heads, 256),
            ("intermediate_size", shape.intermediate, 65_536),
            ("num_hidden_layers", shape.layers, 256),
            ("vocab_size", shape.vocab, 4_000_000),
            ("max_position_embeddings", shape.positions, 65_536),
        ] {
            if value == 0 || value > most {
                return Err(format!("config.json: {key} {value} is outside 1 to {most}").into());
            }
        }
        if shape.position_offset >= shape.positions {
            return Err("config.json: pad_token_id leaves no row of the position table".into());
        }
        if !shape.hidden.is_multiple_of(shape.heads) {
            return Err("config.json: hidden_size is not a multiple of num_attention_heads".into());
        }
        if config["hidden_act"].as_str().unwrap_or("gelu") != "gelu" {
            return Err("config.json: only the exact gelu activation is supported".into());
        }
        Ok(shape)
    }

    /// The longest sequence, in tokens: the position table's rows after the offset.
    pub fn max_sequence(&self) -> usize {
        self.positions - self.position_offset
    }

    /// Each token's row of the position table. BERT counts from 0. MPNet counts only the tokens
    /// other than the padding id, from the row after it, and gives the padding id's own tokens
    /// that row, as `create_position_ids_from_input_ids` in transformers does: a text may hold
    /// the padding token literally (`<pad>`, which the tokenizer matches as the token), and
    /// sentence-transformers' vector of it is computed so. Never past `max_sequence` rows on
    /// from the offset, so inside the table.
    fn position_rows<'a>(&self, sequence: &'a [u32]) -> impl Iterator<Item = usize> + 'a {
        let offset = self.position_offset;
        let padding = match self.architecture {
            Architecture::Bert => None,
            Architecture::Mpnet { .. } => offset.checked_sub(1),
        };
        let mut counted = 0;
        sequence.iter().map(move |&id| match padding {
            Some(pad) if id as usize == pad => pad,
            _ => {
                counted += 1;
                offset + counted - 1
            }
        })
    }
}

/// A linear layer's weights, in the form its kernel reads.
enum Weights {
    /// In float32: packed once for the packed kernel, and row-major `outputs` x `inputs` as
    /// stored in the weights file for OpenBLAS, each when the encoder's kernel reads it.
    F32 {
        packed: Option<PackedMatrix>,
        rows: Option<Vec<f32>>,
    },
    /// Rounded to bfloat16 and packed, for `--precision bf16`.
    Bf16(PackedWeights),
    /// Quantised to 8 bits per group and packed, for `--precision int8`.
    Int8(PackedInt8),
}

/// `y = x w' + b`: `w` is outputs x inputs.
struct Linear {
    weights: Weights,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl Linear {
    /// Applies the layer to `tokens` rows of `x`, into `y` (resized); the packed float32 kernel
    /// splits the outputs with `assist`'s helper when there is one; bfloat16 rounds `x` into
    /// `rounded`.
    fn apply(
        &self,
        (kernel, assist): (&Kernel, Option<&Assist>),
        x: &[f32],
        tokens: usize,
        (y, rounded): (&mut Aligned<f32>, &mut Lanes),
    ) {
        y.set_len(tokens * self.outputs);
        for row in y.chunks_exact_mut(self.outputs) {
            row.copy_from_slice(&self.bias);
        }
        let (packed, rows) = match &self.weights {
            Weights::Bf16(packed) => return gemm_bf16(x, tokens, packed, y, rounded),
            Weights::Int8(packed) => return gemm_int8(x, tokens, packed, y),
            Weights::F32 { packed, rows } => (packed, rows),
        };
        const LOADED: &str = "the weights are kept in every form the encoder's kernel reads";
        match kernel.for_rows(tokens) {
            Choice::Packed(isa) => {
                let (packed, x) = (
                    packed.as_ref().expect(LOADED),
                    Rows {
                        data: x,
                        rows: tokens,
                        stride: self.inputs,
                    },
                );
                match assist {
                    Some(assist) => gemm_packed_split(isa, x, packed, (y, self.outputs), true, assist),
                    None => gemm_packed(isa, x, packed, y, self.outputs, true),
                }
            }
            Choice::OpenBlas(blas) => blas.gemm(
                1.0,
                Matrix {
                    data: x,
                    rows: tokens,
                    cols: self.inputs,
                    stride: self.inputs,
                },
                Matrix {
                    data: rows.as_ref().expect(LOADED),
                    rows: self.outputs,
                    cols: self.inputs,
                    stride: self.inputs,
                },
                true,
                1.0,
                (y, self.outputs),
            ),
        }
    }

    /// The weights as stored: row-major `outputs` x `inputs`.
    fn rows(&self) -> Vec<f32> {
        match &self.weights {
            Weights::F32 { rows: Some(rows), .. } => rows.clone(),
            Weights::F32 {
                packed: Some(packed), ..
            } => packed.to_rows(),
            _ => unreachable!("bfloat16 and int8 weights are packed from float32 ones, once"),
        }
    }
}

/// Layer normalisation over each row.
struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Norm {
    fn apply(&self, x: &mut [f32], eps: f32) {
        let width = self.weight.len();
        for row in x.chunks_exact_mut(width) {
            let mean = sum(row) / width as f32;
            let variance = squared_deviations(row, mean) / width as f32;
            let scale = 1.0 / (variance + eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
                *v = (*v - mean) * scale * w + b;
            }
        }
    }
}

struct Layer {
    /// Query, key and value in one product: outputs are [q | k | v], each `hidden` wide.
    qkv: Linear,
    attention_out: Linear,
    attention_norm: Norm,
    intermediate: Linear,
    output: Linear,
    output_norm: Norm,
}

/// The encoder's weights.
pub struct Encoder {
    shape: Shape,
    kernel: Kernel,
    word: Vec<f32>,
    position: Vec<f32>,
    /// Token type 0's row: every input is a single segment (zeros where the model has none).
    token_type: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    /// MPNet's bias by relative position bucket: `buckets` rows of `heads`, shared by every layer.
    relative: Option<Vec<f32>>,
    /// The buffers of passes that have ended, for the next ones: at most one set per pass
    /// running at once (so per core), each of at most [`KEPT_SCRATCH_BYTES`], kept rather than
    /// freed, as fresh buffers cost a page fault per 4 KiB written (a tenth of a bfloat16 pass's
    /// time on short texts, measured).
    spare: Mutex<Vec<Scratch>>,
}

/// The largest set of a pass's buffers kept for the next pass: every pass at bf16 and int8
/// (512 tokens: 16 MB for all-mpnet-base-v2, about 25 MB for a 24-layer BERT-large) and
/// all-MiniLM-L6-v2's at float32 (4,096 tokens: 63 MB). A larger set (all-mpnet-base-v2's
/// 4,096-token float32 passes, 126 MB) is freed when its pass ends, so the memory kept stays
/// within this much per core.
const KEPT_SCRATCH_BYTES: usize = 64 << 20;

/// The buffers of one pass, reused from layer to layer and from pass to pass.
#[derive(Default)]
struct Scratch {
    /// The pass's hidden state, `hidden` wide per token; then the layers' outputs, each
    /// starting on a cache line (`aligned.rs`).
    x: Aligned<f32>,
    qkv: Aligned<f32>,
    context: Aligned<f32>,
    projected: Aligned<f32>,
    intermediate: Aligned<f32>,
    scores: Vec<f32>,
    /// One head's keys (scaled), then its values transposed, packed for the kernel.
    keys: PackedMatrix,
    values: PackedMatrix,
    /// A bfloat16 product's input, rounded.
    rounded: Lanes,
}

impl Scratch {
    /// Bytes held by the buffers that grow with a pass's tokens.
    fn allocated_bytes(&self) -> usize {
        [&self.x, &self.qkv, &self.context, &self.projected, &self.intermediate]
            .iter()
            .map(|b| b.allocated_bytes())
            .sum::<usize>()
            + self.rounded.allocated_bytes()
            + self.scores.capacity() * std::mem::size_of::<f32>()
    }

    /// Whether the set is small enough to keep for the next pass.
    fn is_kept(&self) -> bool {
        self.allocated_bytes() <= KEPT_SCRATCH_BYTES
    }
}

fn tensor(file: &SafeTensors, name: &str, shape: &[usize]) -> Result<Vec<f32>, Error> {
    let view = file.tensor(name).map_err(|e| format!("model.safetensors: {name}: {e}"))?;
    if view.dtype() != Dtype::F32 || view.shape() != shape {
        return Err(format!(
            "model.safetensors: {name} is {:?} {:?}, expected F32 {shape:?}",
            view.dtype(),
            view.shape()
        )
        .into());
    }
    Ok(view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

impl Encoder {
    /// Reads the weights from `model.safetensors` (tensor names as BertModel or MPNetModel save
    /// them, with or without a `bert.` or `mpnet.` prefix), in the form `kernel` reads them.
    pub fn load(weights: &Path, shape: Shape, kernel: Kernel) -> Result<Encoder, Error> {
        let bytes = std::fs::read(weights).map_err(|e| format!("cannot read {}: {e}", weights.display()))?;
        let file = SafeTensors::deserialize(&bytes).map_err(|e| format!("{}: {e}", weights.display()))?;
        let architecture = shape.architecture;
        let prefix = if file.names().iter().any(|n| n.starts_with(architecture.prefix())) {
            architecture.prefix()
        } else {
            ""
        };
        let get = |name: &str, dims: &[usize]| tensor(&file, &format!("{prefix}{name}"), dims);
        let (h, i) = (shape.hidden, shape.intermediate);
        let (needs_packed, needs_rows) = kernel.reads_packed_and_rows();
        let for_kernel = |weight: Vec<f32>, outputs: usize, inputs: usize| Weights::F32 {
            packed: needs_packed.then(|| PackedMatrix::from_rows(&weight, outputs, inputs)),
            rows: needs_rows.then_some(weight),
        };
        let linear = |name: &str, outputs: usize, inputs: usize| -> Result<(Vec<f32>, Vec<f32>), Error> {
            Ok((
                get(&format!("{name}.weight"), &[outputs, inputs])?,
                get(&format!("{name}.bias"), &[outputs])?,
            ))
        };
        let layer = |name: &str, outputs: usize, inputs: usize| -> Result<Linear, Error> {
            let (weight, bias) = linear(name, outputs, inputs)?;
            Ok(Linear {
                weights: for_kernel(weight, outputs, inputs),
                bias,
                inputs,
                outputs,
            })
        };
        let norm = |name: &str| -> Result<Norm, Error> {
            Ok(Norm {
                weight: get(&format!("{name}.weight"), &[h])?,
                bias: get(&format!("{name}.bias"), &[h])?,
            })
        };
        let mut layers = Vec::with_capacity(shape.layers);
        for l in 0..shape.layers {
            let names = architecture.layer_names(l);
            let (q, k, v) = (
                linear(&names.query, h, h)?,
                linear(&names.key, h, h)?,
                linear(&names.value, h, h)?,
            );
            let qkv = Linear {
                weights: for_kernel([q.0, k.0, v.0].concat(), 3 * h, h),
                bias: [q.1, k.1, v.1].concat(),
                inputs: h,
                outputs: 3 * h,
            };
            layers.push(Layer {
                qkv,
                attention_out: layer(&names.attention_out, h, h)?,
                attention_norm: norm(&names.attention_norm)?,
                intermediate: layer(&names.intermediate, i, h)?,
                output: layer(&names.output, h, i)?,
                output_norm: norm(&names.output_norm)?,
            });
        }
        let (token_type, relative) = match architecture {
            Architecture::Bert => {
                // Any number of token types (BERT has 2, some models 1); the encoder uses type
                // 0's row, so a table without rows is refused here rather than by a panic.
                let name = format!("{prefix}embeddings.token_type_embeddings.weight");
                let token_types = file
                    .tensor(&name)
                    .map_err(|e| format!("model.safetensors: {name}: {e}"))?
                    .shape()
                    .first()
                    .copied()
                    .unwrap_or(0);
                if token_types == 0 {
                    return Err(format!("model.safetensors: {name} has no row for token type 0").into());
                }
                (
                    get("embeddings.token_type_embeddings.weight", &[token_types, h])?[..h].to_vec(),
                    None,
                )
            }
            Architecture::Mpnet { buckets, .. } => (
                vec![0.0; h],
                Some(get("encoder.relative_attention_bias.weight", &[buckets, shape.heads])?),
            ),
        };
        Ok(Encoder {
            shape,
            kernel,
            word: get("embeddings.word_embeddings.weight", &[shape.vocab, h])?,
            position: get("embeddings.position_embeddings.weight", &[shape.positions, h])?,
            token_type,
            embedding_norm: norm("embeddings.LayerNorm")?,
            layers,
            relative,
            spare: Mutex::default(),
        })
    }

    /// Runs the linear layers (nine tenths of the work) in bfloat16 from now on: their weights
    /// are rounded and packed once here. Attention and normalisation stay float32.
    pub fn use_bf16(&mut self) -> Result<(), Error> {
        if !crate::bf16_gemm::available() {
            return Err("this CPU has no AVX-512 BF16 instructions: --precision bf16 needs them".into());
        }
        self.repack_linear_layers(|l| Weights::Bf16(PackedWeights::pack(&l.rows(), l.outputs, l.inputs)));
        Ok(())
    }

    /// Runs the linear layers in 8-bit integers (AVX-512 VNNI, AVX-VNNI or AVX2) from now on:
    /// their weights are quantised and packed once here (see `int8_gemm`). Attention and
    /// normalisation stay float32.
    pub fn use_int8(&mut self) -> Result<(), Error> {
        if !crate::int8_gemm::available() {
            return Err("this CPU has neither VNNI nor AVX2 with FMA: --precision int8 needs one of them".into());
        }
        self.repack_linear_layers(|l| Weights::Int8(PackedInt8::pack(&l.rows(), l.outputs, l.inputs)));
        Ok(())
    }

    /// Every linear layer's weights in the form `pack` gives them.
    fn repack_linear_layers(&mut self, pack: impl Fn(&Linear) -> Weights) {
        for layer in &mut self.layers {
            for linear in [
                &mut layer.qkv,
                &mut layer.attention_out,
                &mut layer.intermediate,
                &mut layer.output,
            ] {
                linear.weights = pack(linear);
            }
        }
    }

    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// `then` of the last hidden state of each sequence's tokens, packed: row `r` is the `r`-th
    /// token of the concatenated sequences, `hidden` wide (in the pass's buffer, which the next
    /// pass reuses). Sequences must be non-empty, within `positions` tokens, with ids below
    /// `vocab`. With `assist`, the linear layers are split with its helper.
    pub fn forward<T>(&self, sequences: &[&[u32]], assist: Option<&Assist>, then: impl FnOnce(&[f32]) -> T) -> Result<T, Error> {
        let h = self.shape.hidden;
        for sequence in sequences {
            if sequence.is_empty() || sequence.len() > self.shape.max_sequence() {
                return Err(format!(
                    "a sequence of {} tokens (1 to {} allowed)",
                    sequence.len(),
                    self.shape.max_sequence()
                )
                .into());
            }
            if let Some(&id) = sequence.iter().find(|&&id| id as usize >= self.shape.vocab) {
                return Err(format!("token id {id} is outside the vocabulary").into());
            }
        }
        let mut scratch = self.spare.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default();
        let x = &mut scratch.x;
        x.set_len(sequences.iter().map(|s| s.len()).sum::<usize>() * h);
        let token_ids = sequences.iter().flat_map(|s| self.shape.position_rows(s).zip(s.iter()));
        for (row, (position, &id)) in x.chunks_exact_mut(h).zip(token_ids) {
            let id = id as usize;
            let (word, pos) = (
                &self.word[id * h..(id + 1) * h],
                &self.position[position * h..(position + 1) * h],
            );
            for (((v, w), p), t) in row.iter_mut().zip(word).zip(pos).zip(&self.token_type) {
                *v = w + p + t;
            }
        }
        self.embedding_norm.apply(x, self.shape.eps);
        for layer in &self.layers {
            self.layer(layer, (sequences, assist), &mut scratch);
        }
        let result = then(&scratch.x);
        if scratch.is_kept() {
            self.spare.lock().unwrap_or_else(|e| e.into_inner()).push(scratch);
        }
        Ok(result)
    }

    fn layer(&self, layer: &Layer, (sequences, assist): (&[&[u32]], Option<&Assist>), s: &mut Scratch) {
        let tokens = s.x.len() / self.shape.hidden;
        let on = (&self.kernel, assist);
        layer.qkv.apply(on, &s.x, tokens, (&mut s.qkv, &mut s.rounded));
        self.attention(sequences, s);
        layer
            .attention_out
            .apply(on, &s.context, tokens, (&mut s.projected, &mut s.rounded));
        add_into(&mut s.projected, &s.x);
        layer.attention_norm.apply(&mut s.projected, self.shape.eps);
        std::mem::swap(&mut s.x, &mut s.projected);
        layer
            .intermediate
            .apply(on, &s.x, tokens, (&mut s.intermediate, &mut s.rounded));
        gelu_all(&mut s.intermediate);
        layer
            .output
            .apply(on, &s.intermediate, tokens, (&mut s.projected, &mut s.rounded));
        add_into(&mut s.projected, &s.x);
        layer.output_norm.apply(&mut s.projected, self.shape.eps);
        std::mem::swap(&mut s.x, &mut s.projected);
    }

    /// Scaled dot-product attention of each sequence with itself, head by head, from the packed
    /// [q | k | v] rows into `context`; on the kernel of the pass's linear layers (its products
    /// per head are small, and the packed kernel's copies of keys, values and scores cost more
    /// than OpenBLAS's in a long pass).
    fn attention(&self, sequences: &[&[u32]], s: &mut Scratch) {
        let (h, heads) = (self.shape.hidden, self.shape.heads);
        let d = h / heads;
        let stride = 3 * h;
        let scale = 1.0 / (d as f32).sqrt();
        let tokens = s.qkv.len() / stride;
        s.context.set_len(tokens * h);
        let mut start = 0;
        for sequence in sequences {
            let n = sequence.len();
            s.scores.resize(n * n, 0.0);
            let bias = match (&self.relative, self.shape.architecture) {
                (Some(table), Architecture::Mpnet { buckets, max_distance }) => {
                    Some(relative_bias(table, heads, n, (buckets, max_distance)))
                }
                _ => None,
            };
            for head in 0..heads {
                let at = |offset: usize| &s.qkv[start * stride + offset + head * d..];
                let (q, k, v) = (at(0), at(h), at(2 * h));
                let context = &mut s.context[start * h + head * d..];
                let one = PerHead {
                    q,
                    k,
                    v,
                    n,
                    d,
                    stride,
                    scale,
                    bias: bias.as_ref().map(|b| &b[head * (2 * n - 1)..(head + 1) * (2 * n - 1)]),
                };
                match self.kernel.for_rows(tokens) {
                    Choice::Packed(isa) => packed_attention(isa, one, &mut s.scores, (&mut s.keys, &mut s.values), context, h),
                    Choice::OpenBlas(blas) => blas_attention(blas, one, &mut s.scores, context, h),
                }
            }
            start += n;
        }
    }
}

/// One head of one sequence: its `n` queries, keys and values (`d` wide) inside the packed
/// [q | k | v] rows, `stride` apart; `scale` multiplies the scores, and `bias` (MPNet's, by the
/// key's place relative to the query: `2n - 1` values from `-(n - 1)`) is added to them.
struct PerHead<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    n: usize,
    d: usize,
    stride: usize,
    scale: f32,
    bias: Option<&'a [f32]>,
}

/// The scores of one head made attention weights: the relative bias added, then a softmax per
/// query.
fn attention_weights(scores: &mut [f32], n: usize, bias: Option<&[f32]>) {
    for (i, row) in scores.chunks_exact_mut(n).enumerate() {
        if let Some(bias) = bias {
            // Key j of query i reads offset j - i + n - 1.
            row.iter_mut().zip(&bias[n - 1 - i..]).for_each(|(s, b)| *s += b);
        }
        softmax(row);
    }
}

/// `context = softmax(scale q k') v` with the packed kernel: the keys (scaled) and the values
/// (transposed) are packed per head, a few KiB each.
fn packed_attention(
    isa: InstructionSet,
    head: PerHead,
    scores: &mut [f32],
    (keys, values): (&mut PackedMatrix, &mut PackedMatrix),
    context: &mut [f32],
    context_stride: usize,
) {
    let PerHead {
        q,
        k,
        v,
        n,
        d,
        stride,
        scale,
        bias,
    } = head;
    keys.repack(n, d, |o, i| k[o * stride + i] * scale);
    gemm_packed(
        isa,
        Rows {
            data: q,
            rows: n,
            stride,
        },
        keys,
        scores,
        n,
        false,
    );
    attention_weights(scores, n, bias);
    values.repack(d, n, |o, i| v[i * stride + o]);
    gemm_packed(
        isa,
        Rows {
            data: scores,
            rows: n,
            stride: n,
        },
        values,
        context,
        context_stride,
        false,
    );
}

/// The same with OpenBLAS, which reads the keys and values where they are.
fn blas_attention(blas: &OpenBlas, head: PerHead, scores: &mut [f32], context: &mut [f32], context_stride: usize) {
    let PerHead {
        q,
        k,
        v,
        n,
        d,
        stride,
        scale,
        bias,
    } = head;
    let rows = |data, rows, cols, stride| Matrix {
        data,
        rows,
        cols,
        stride,
    };
    blas.gemm(scale, rows(q, n, d, stride), rows(k, n, d, stride), true, 0.0, (scores, n));
    attention_weights(scores, n, bias);
    blas.gemm(
        1.0,
        rows(scores, n, n, n),
        rows(v, n, d, stride),
        false,
        0.0,
        (context, context_stride),
    );
}

fn add_into(sum: &mut [f32], x: &[f32]) {
    sum.iter_mut().zip(x).for_each(|(s, v)| *s += v);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of `tiny_bert`.
    fn tiny_bert_shape() -> Shape {
        Shape {
            hidden: 4,
            heads: 1,
            intermediate: 8,
            layers: 1,
            vocab: 5,
            positions: 8,
            eps: 1e-12,
            architecture: Architecture::Bert,
            position_offset: 0,
        }
    }

    /// A one-layer BERT (hidden 4, one head, intermediate 8, 5 words, 8 positions) with
    /// `token_types` rows of token type embeddings, written as `model.safetensors` in a new
    /// folder.
    fn tiny_bert(token_types: usize) -> (std::path::PathBuf, Shape) {
        let shape = tiny_bert_shape();
        let (h, i) = (shape.hidden, shape.intermediate);
        let names = Architecture::Bert.layer_names(0);
        let mut tensors: Vec<(String, Vec<usize>)> = vec![
            ("embeddings.word_embeddings.weight".into(), vec![shape.vocab, h]),
            ("embeddings.position_embeddings.weight".into(), vec![shape.positions, h]),
            ("embeddings.token_type_embeddings.weight".into(), vec![token_types, h]),
        ];
        for (name, outputs, inputs) in [
            (&names.query, h, h),
            (&names.key, h, h),
            (&names.value, h, h),
            (&names.attention_out, h, h),
            (&names.intermediate, i, h),
            (&names.output, h, i),
        ] {
            tensors.push((format!("{name}.weight"), vec![outputs, inputs]));
            tensors.push((format!("{name}.bias"), vec![outputs]));
        }
        for name in ["embeddings.LayerNorm", &names.attention_norm, &names.output_norm] {
            tensors.push((format!("{name}.weight"), vec![h]));
            tensors.push((format!("{name}.bias"), vec![h]));
        }
        let bytes: Vec<Vec<u8>> = tensors
            .iter()
            .map(|(_, dims)| {
                (0..dims.iter().product::<usize>())
                    .flat_map(|v| (v as f32 / 10.0).to_le_bytes())
                    .collect()
            })
            .collect();
        let views = tensors.iter().zip(&bytes).map(|((name, dims), b)| {
            (
                name.clone(),
                safetensors::tensor::TensorView::new(Dtype::F32, dims.clone(), b).unwrap(),
            )
        });
        let dir = std::env::temp_dir().join(format!("doctrove-tiny-bert-{}-{token_types}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model.safetensors"), safetensors::serialize(views, None).unwrap()).unwrap();
        (dir, shape)
    }

    #[test]
    fn mpnet_positions_skip_the_padding_id_as_transformers_counts_them() {
        let bert = tiny_bert_shape();
        let mpnet = Shape {
            architecture: Architecture::Mpnet {
                buckets: 32,
                max_distance: 128,
            },
            position_offset: 2,
            ..bert
        };
        // <s> graph <pad> networks </s>, and a text opening with two literal <pad>s.
        assert_eq!(mpnet.position_rows(&[0, 7, 1, 9, 2]).collect::<Vec<_>>(), [2, 3, 1, 4, 5]);
        assert_eq!(mpnet.position_rows(&[0, 1, 1, 9, 2]).collect::<Vec<_>>(), [2, 1, 1, 3, 4]);
        // BERT counts every token, its padding id (0) included.
        assert_eq!(bert.position_rows(&[101, 0, 7, 102]).collect::<Vec<_>>(), [0, 1, 2, 3]);
    }

    #[test]
    fn a_bert_without_token_type_rows_is_refused_by_name_and_one_type_is_enough() {
        let (dir, shape) = tiny_bert(0);
        let error = Encoder::load(&dir.join("model.safetensors"), shape, Kernel::packed())
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "model.safetensors: embeddings.token_type_embeddings.weight has no row for token type 0"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let (dir, shape) = tiny_bert(1);
        let encoder = Encoder::load(&dir.join("model.safetensors"), shape, Kernel::packed()).unwrap();
        assert_eq!(encoder.token_type, [0.0, 0.1, 0.2, 0.3]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn gelu_matches_known_values() {
        use crate::fast_math::gelu;
        assert_eq!(gelu(0.0), 0.0);
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((gelu(-1.0) + 0.158_655_3).abs() < 1e-6);
    }

    #[test]
    fn a_pass_keeps_its_buffers_for_the_next_only_within_the_bound() {
        // all-mpnet-base-v2's largest buffers at 512 tokens (bf16), then at 4,096 (float32).
        let sized = |tokens: usize| {
            let mut scratch = Scratch::default();
            scratch.qkv.set_len(tokens * 3 * 768);
            scratch.intermediate.set_len(tokens * 3072);
            scratch.rounded.set_len(tokens * 1536);
            scratch
        };
        let small = sized(512);
        assert_eq!(small.allocated_bytes(), 512 * (3 * 768 + 3072 + 1536) * 4);
        assert!(small.is_kept());
        assert!(!sized(4096).is_kept());
        assert!(Scratch::default().is_kept());
    }

    #[test]
    fn layer_norm_centres_and_scales_each_row() {
        let norm = Norm {
            weight: vec![1.0, 1.0],
            bias: vec![0.5, 0.5],
        };
        let mut x = [1.0, 3.0, -2.0, 2.0];
        norm.apply(&mut x, 0.0);
        assert_eq!(x, [-0.5, 1.5, -0.5, 1.5]);
    }
}
