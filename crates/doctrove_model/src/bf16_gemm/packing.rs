//! The bfloat16 operands of both kernels: rounding to bfloat16, the weights packed once at load
//! in the order the kernels read them, and each layer's input rows rounded when it runs, padded
//! so that both kernels read whole tiles.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use crate::aligned::Aligned;

/// Rows of the input per tile of the AVX-512 kernel.
pub(super) const AVX512_ROWS: usize = 6;
/// Inputs are padded to whole steps of this many pairs (one AMX tile row: 32 bfloat16 values),
/// outputs to whole pairs of 16-output blocks, rows to whole multiples of [`ROW_STEP`] (and of
/// [`AVX512_ROWS`]), so that both kernels read whole tiles.
const PAIR_STEP: usize = 16;
const ROW_STEP: usize = 32;

/// Lanes of bfloat16 pairs, starting on a cache line: each tile row is one line.
pub type Lanes = Aligned<u32>;

/// float32 to bfloat16, rounding to nearest even (NaN kept a NaN).
pub fn to_bf16(value: f32) -> u16 {
    let bits = value.to_bits();
    if value.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// Two values as one lane of bfloat16 pairs: `low` in the low half.
pub(super) fn pair(low: f32, high: f32) -> u32 {
    u32::from(to_bf16(low)) | (u32::from(to_bf16(high)) << 16)
}

/// A weight matrix (`outputs` x `inputs`, as stored) rounded to bfloat16 and packed: for each
/// block of 16 outputs, for each pair of inputs, 16 lanes of (w[o][2p], w[o][2p+1]): the 16 pairs
/// of one AMX step are one 16 x 64-byte tile. Outputs and inputs are padded with zeros to whole
/// pairs of blocks and whole steps of pairs.
pub struct PackedWeights {
    pub(super) lanes: Lanes,
    pub(super) outputs: usize,
    pub(super) inputs: usize,
    pub(super) blocks: usize,
    pub(super) pairs: usize,
}

impl PackedWeights {
    pub fn pack(weight: &[f32], outputs: usize, inputs: usize) -> PackedWeights {
        assert_eq!(weight.len(), outputs * inputs, "the weights do not fit their shape");
        let (blocks, pairs) = (outputs.div_ceil(32) * 2, inputs.div_ceil(2 * PAIR_STEP) * PAIR_STEP);
        let at = |o: usize, i: usize| {
            if o < outputs && i < inputs {
                weight[o * inputs + i]
            } else {
                0.0
            }
        };
        // Written in place, in the order the kernels read: block, pair, lane.
        let mut lanes = Lanes::default();
        lanes.set_len(blocks * pairs * 16);
        for (i, value) in lanes.iter_mut().enumerate() {
            let (block, p, lane) = (i / (pairs * 16), i / 16 % pairs, i % 16);
            let o = block * 16 + lane;
            *value = pair(at(o, 2 * p), at(o, 2 * p + 1));
        }
        PackedWeights {
            lanes,
            outputs,
            inputs,
            blocks,
            pairs,
        }
    }
}

/// `rows` rows of `x` (`inputs` wide) as bfloat16 pairs into `out`, padded with zero rows to
/// whole tiles of either kernel. `out` is kept from product to product and pass to pass: a fresh
/// buffer each time cost a page fault per 4 KiB of it.
pub(super) fn pack_rows(x: &[f32], rows: usize, inputs: usize, pairs: usize, out: &mut Lanes) {
    let padded = (rows.div_ceil(AVX512_ROWS) * AVX512_ROWS).max(rows.div_ceil(ROW_STEP) * ROW_STEP);
    out.set_len(padded * pairs);
    // The inputs rounded 32 at a time; the rest, fewer than 32, two at a time. The buffer
    // holds an earlier product's rows: the padding lanes are zeroed (a stale NaN times a zero
    // weight would be a NaN in the sums), and the padding rows too, though no kernel stores
    // their sums.
    let whole = inputs / 32 * 32;
    let used = inputs.div_ceil(2);
    for (row, packed) in x.chunks_exact(inputs).take(rows).zip(out.chunks_exact_mut(pairs)) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the product checked AVX-512 BF16 before packing; both slices hold `whole / 2` pairs.
        unsafe {
            round_32s(&row[..whole], &mut packed[..whole / 2]);
        }
        #[cfg(not(target_arch = "x86_64"))]
        let whole = 0;
        for (two, lane) in row[whole..].chunks(2).zip(packed[whole / 2..].iter_mut()) {
            *lane = pair(two[0], two.get(1).copied().unwrap_or(0.0));
        }
        packed[used..].fill(0);
    }
    out[rows * pairs..padded * pairs].fill(0);
}

/// `values` (a multiple of 32) rounded to bfloat16 in order, two to a lane, 32 at a time: the
/// same rounding as [`to_bf16`] (to nearest even), with subnormal inputs read as zero.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn round_32s(values: &[f32], lanes: &mut [u32]) {
    for (v, l) in values.chunks_exact(32).zip(lanes.chunks_exact_mut(16)) {
        let (low, high) = (_mm512_loadu_ps(v.as_ptr()), _mm512_loadu_ps(v.as_ptr().add(16)));
        // The second operand's values go to the low half.
        let rounded = _mm512_cvtne2ps_pbh(high, low);
        _mm512_storeu_si512(l.as_mut_ptr() as *mut _, std::mem::transmute::<__m512bh, __m512i>(rounded));
    }
}
