//! `--precision bf16`: the linear layers' products with AVX-512 BF16 dot products
//! (`vdpbf16ps`), which take two bfloat16 pairs per 32-bit lane and accumulate in float32.
//! Weights are rounded to bfloat16 once, at load, and packed in the order the kernel reads
//! them; each layer's input is rounded when the layer runs. Sums stay float32.
//!
//! Written here because Debian's OpenBLAS (0.3.21) has no `sbgemm` in its library and oneDNN
//! would add a runtime with threads of its own beside the encoder's one-pass-per-core
//! scheduling; the kernel is a plain register-blocked product (6 rows x 64 columns per tile, the
//! weights in 128-pair slices that stay in the first-level cache). Where the CPU has AMX and
//! Linux grants its tiles, the same packed weights feed tile products instead
//! (`bf16_gemm/amx_tiles.rs`): the same bfloat16 products and float32 sums, about five times
//! faster.

#[cfg(target_arch = "x86_64")]
mod amx_tiles;

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Rows of the input per tile.
const MR: usize = 6;
/// 16-column vectors per tile.
const NV: usize = 4;
/// Pairs of the inner dimension per slice.
const KC: usize = 128;
/// Inputs are padded to whole steps of this many pairs (one AMX tile row: 32 bfloat16 values),
/// outputs to whole pairs of 16-output blocks, rows to whole multiples of [`ROW_STEP`], so
/// that both kernels read whole tiles.
const PAIR_STEP: usize = 16;
const ROW_STEP: usize = 32;

/// The kernel a product runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Kernel {
    /// AVX-512 BF16 dot products (`vdpbf16ps`).
    Avx512,
    /// AMX tile products (`tdpbf16ps`).
    Amx,
}

impl Bf16Kernel {
    /// AMX where the process may use it, AVX-512 BF16 otherwise.
    pub fn fastest() -> Bf16Kernel {
        if crate::amx::bf16_granted() {
            Bf16Kernel::Amx
        } else {
            Bf16Kernel::Avx512
        }
    }

    /// `amx-bf16` or `avx512bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Bf16Kernel::Avx512 => "avx512bf16",
            Bf16Kernel::Amx => "amx-bf16",
        }
    }
}

/// Whether this CPU runs the kernel.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// float32 to bfloat16, rounding to nearest even (NaN kept a NaN).
pub fn to_bf16(value: f32) -> u16 {
    let bits = value.to_bits();
    if value.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// Two values as one lane of bfloat16 pairs: `low` in the low half.
fn pair(low: f32, high: f32) -> u32 {
    u32::from(to_bf16(low)) | (u32::from(to_bf16(high)) << 16)
}

/// A weight matrix (`outputs` x `inputs`, as stored) rounded to bfloat16 and packed: for each
/// block of 16 outputs, for each pair of inputs, 16 lanes of (w[o][2p], w[o][2p+1]): the 16 pairs
/// of one AMX step are one 16 x 64-byte tile. Outputs and inputs are padded with zeros to whole
/// pairs of blocks and whole steps of pairs.
pub struct PackedWeights {
    lanes: Vec<u32>,
    outputs: usize,
    inputs: usize,
    blocks: usize,
    pairs: usize,
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
        let mut lanes = Vec::with_capacity(blocks * pairs * 16);
        for block in 0..blocks {
            for p in 0..pairs {
                for lane in 0..16 {
                    let o = block * 16 + lane;
                    lanes.push(pair(at(o, 2 * p), at(o, 2 * p + 1)));
                }
            }
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

/// `rows` rows of `x` (`inputs` wide) as bfloat16 pairs, padded with zero rows to whole tiles
/// of either kernel.
fn pack_rows(x: &[f32], rows: usize, inputs: usize, pairs: usize) -> Vec<u32> {
    let padded = (rows.div_ceil(MR) * MR).max(rows.div_ceil(ROW_STEP) * ROW_STEP);
    let mut out = vec![0u32; padded * pairs];
    for (row, packed) in x.chunks_exact(inputs).take(rows).zip(out.chunks_exact_mut(pairs)) {
        let whole = inputs / 32 * 32;
        #[cfg(target_arch = "x86_64")]
        // SAFETY: gemm_bf16_on checked AVX-512 BF16; both slices hold `whole / 2` pairs.
        unsafe {
            round_32s(&row[..whole], &mut packed[..whole / 2]);
        }
        #[cfg(not(target_arch = "x86_64"))]
        let whole = 0;
        for (two, lane) in row[whole..].chunks(2).zip(packed[whole / 2..].iter_mut()) {
            *lane = pair(two[0], two.get(1).copied().unwrap_or(0.0));
        }
    }
    out
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

/// `y = x w' + bias`, `y` resized to `rows` rows. `y` is filled with the bias first and the
/// kernel adds into it: measured here on all-mpnet-base-v2 with AMX, writing `x w' + bias` in one
/// pass without the fill ran 15% slower (its scattered stores wait for each line of `y`; the
/// fill streams them in order).
pub fn gemm_bf16_plus_bias(x: &[f32], rows: usize, w: &PackedWeights, bias: &[f32], y: &mut Vec<f32>) {
    assert_eq!(bias.len(), w.outputs, "one bias per output");
    y.clear();
    for _ in 0..rows {
        y.extend_from_slice(bias);
    }
    product(Bf16Kernel::fastest(), x, rows, w, y)
}

/// `y += x w'` on `on`.
#[cfg(test)]
pub fn gemm_bf16_on(on: Bf16Kernel, x: &[f32], rows: usize, w: &PackedWeights, y: &mut [f32]) {
    product(on, x, rows, w, y)
}

/// `y += x w'` on `on`.
fn product(on: Bf16Kernel, x: &[f32], rows: usize, w: &PackedWeights, y: &mut [f32]) {
    assert!(available(), "this CPU has no AVX-512 BF16");
    assert!(
        on == Bf16Kernel::Avx512 || crate::amx::bf16_granted(),
        "AMX is not granted here"
    );
    assert!(
        x.len() >= rows * w.inputs && y.len() >= rows * w.outputs,
        "the product does not fit its operands"
    );
    if rows == 0 {
        return;
    }
    let xp = pack_rows(x, rows, w.inputs, w.pairs);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has the features (checked above); every index the kernel uses is inside
    // `xp` (whole tiles of rows), `w.lanes` (whole blocks and pairs) and the rows of `y` below
    // `rows` (checked above), with a mask on the last block's columns; AMX only where granted.
    unsafe {
        match on {
            Bf16Kernel::Avx512 => kernel(&xp, rows, w, y),
            Bf16Kernel::Amx => amx_tiles::kernel(&xp, rows, w, y),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn kernel(xp: &[u32], rows: usize, w: &PackedWeights, y: &mut [f32]) {
    // The blocks that hold outputs (the padding block, when there is one, holds none).
    let blocks = w.outputs.div_ceil(16);
    let mut block = 0;
    while block < blocks {
        let nv = NV.min(blocks - block);
        let mut p0 = 0;
        while p0 < w.pairs {
            let kc = KC.min(w.pairs - p0);
            let mut r0 = 0;
            while r0 < rows {
                match nv {
                    4 => tile::<4>(xp, rows, r0, block, p0, kc, w, y),
                    3 => tile::<3>(xp, rows, r0, block, p0, kc, w, y),
                    2 => tile::<2>(xp, rows, r0, block, p0, kc, w, y),
                    _ => tile::<1>(xp, rows, r0, block, p0, kc, w, y),
                }
                r0 += MR;
            }
            p0 += kc;
        }
        block += nv;
    }
}

/// The mask of the valid columns of output block `block`.
#[cfg(target_arch = "x86_64")]
fn column_mask(w: &PackedWeights, block: usize) -> __mmask16 {
    crate::cpu::block_mask(w.outputs, block)
}

/// One tile: rows `r0..r0+MR` (those below `rows`) by `V` blocks of 16 outputs from `block`,
/// over pairs `p0..p0+kc`, added into `y`.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn tile<const V: usize>(
    xp: &[u32],
    rows: usize,
    r0: usize,
    block: usize,
    p0: usize,
    kc: usize,
    w: &PackedWeights,
    y: &mut [f32],
) {
    let n = w.outputs;
    let live = (rows - r0).min(MR);
    let mut acc = [[_mm512_setzero_ps(); V]; MR];
    for (r, row) in acc.iter_mut().enumerate().take(live) {
        for (v, a) in row.iter_mut().enumerate() {
            let mask = column_mask(w, block + v);
            *a = _mm512_maskz_loadu_ps(mask, y.as_ptr().add((r0 + r) * n + (block + v) * 16));
        }
    }
    let xrow = |r: usize| xp.as_ptr().add((r0 + r) * w.pairs + p0);
    let wcol = |v: usize| w.lanes.as_ptr().add(((block + v) * w.pairs + p0) * 16);
    for p in 0..kc {
        let mut b = [_mm512_setzero_si512(); V];
        for (v, bv) in b.iter_mut().enumerate() {
            *bv = _mm512_loadu_si512(wcol(v).add(p * 16) as *const _);
        }
        for (r, row) in acc.iter_mut().enumerate() {
            let a = _mm512_set1_epi32(*xrow(r).add(p) as i32);
            for (v, av) in row.iter_mut().enumerate() {
                *av = _mm512_dpbf16_ps(
                    *av,
                    std::mem::transmute::<__m512i, __m512bh>(a),
                    std::mem::transmute::<__m512i, __m512bh>(b[v]),
                );
            }
        }
    }
    for (r, row) in acc.iter().enumerate().take(live) {
        for (v, a) in row.iter().enumerate() {
            let mask = column_mask(w, block + v);
            _mm512_mask_storeu_ps(y.as_mut_ptr().add((r0 + r) * n + (block + v) * 16), mask, *a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], rows: usize, w: &[f32], outputs: usize, inputs: usize, y: &mut [f32]) {
        for r in 0..rows {
            for o in 0..outputs {
                let round = |v: f32| f32::from_bits(u32::from(to_bf16(v)) << 16);
                y[r * outputs + o] += (0..inputs)
                    .map(|i| round(x[r * inputs + i]) * round(w[o * inputs + i]))
                    .sum::<f32>();
            }
        }
    }

    /// Times the product on each kernel at one layer's shape (run by hand with `--ignored
    /// --nocapture`); `make bench` gives the encoder's figures.
    #[test]
    #[ignore]
    fn kernels_timed() {
        for (rows, outputs, inputs) in [
            (1600, 2304, 768),
            (1600, 3072, 768),
            (1600, 768, 3072),
            (32, 32, 512),
            (800, 1152, 384),
        ] {
            let x: Vec<f32> = (0..rows * inputs).map(|i| (i % 13) as f32 / 13.0).collect();
            let w = PackedWeights::pack(&vec![0.01; outputs * inputs], outputs, inputs);
            for on in [Bf16Kernel::Avx512, Bf16Kernel::Amx] {
                if on == Bf16Kernel::Amx && !crate::amx::bf16_granted() {
                    continue;
                }
                let mut y = vec![0.0; rows * outputs];
                let times = (20_000_000_000 / (rows * outputs * inputs)).max(1);
                let started = std::time::Instant::now();
                for _ in 0..times {
                    gemm_bf16_on(on, &x, rows, &w, &mut y);
                }
                let seconds = started.elapsed().as_secs_f64() / times as f64;
                eprintln!(
                    "{rows}x{outputs}x{inputs} {on:?}: {:.0} G operations/s",
                    2.0 * (rows * outputs * inputs) as f64 / seconds / 1e9
                );
            }
        }
    }

    #[test]
    fn the_product_plus_bias_replaces_what_the_buffer_held() {
        if !available() {
            eprintln!("no AVX-512 BF16 here: nothing to check");
            return;
        }
        for &(rows, outputs, inputs) in &[(1, 16, 2), (7, 33, 5), (40, 70, 300), (33, 384, 384)] {
            let x: Vec<f32> = (0..rows * inputs).map(|i| ((i * 7919 % 113) as f32 - 56.0) / 37.0).collect();
            let w: Vec<f32> = (0..outputs * inputs)
                .map(|i| ((i * 104_729 % 97) as f32 - 48.0) / 51.0)
                .collect();
            let bias: Vec<f32> = (0..outputs).map(|o| (o % 7) as f32 - 3.0).collect();
            let mut want: Vec<f32> = (0..rows).flat_map(|_| bias.iter().copied()).collect();
            reference(&x, rows, &w, outputs, inputs, &mut want);
            // Stale values from an earlier, larger product must not leak into this one.
            let mut got = vec![1e9; rows * outputs + 100];
            gemm_bf16_plus_bias(&x, rows, &PackedWeights::pack(&w, outputs, inputs), &bias, &mut got);
            assert_eq!(got.len(), rows * outputs);
            for (g, e) in got.iter().zip(&want) {
                assert!(
                    (g - e).abs() <= 1e-3 * e.abs().max(1.0),
                    "{:?} {rows}x{outputs}x{inputs}: {g} against {e}",
                    Bf16Kernel::fastest()
                );
            }
        }
    }

    #[test]
    fn rounding_to_bf16_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        assert_eq!(to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80, "a tie rounds to even");
        assert_eq!(to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82, "a tie rounds to even");
        assert_eq!(to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert!(f32::from_bits(u32::from(to_bf16(f32::NAN)) << 16).is_nan());
    }

    #[test]
    fn both_kernels_match_a_plain_product_of_rounded_values_on_ragged_shapes() {
        if !available() {
            eprintln!("no AVX-512 BF16 here: nothing to check");
            return;
        }
        let mut kernels = vec![Bf16Kernel::Avx512];
        if crate::amx::bf16_granted() {
            kernels.push(Bf16Kernel::Amx);
        } else {
            eprintln!("no AMX BF16 granted here: the tile kernel is not checked");
        }
        for (on, &(rows, outputs, inputs)) in kernels.iter().flat_map(|k| {
            [
                (1, 16, 2),
                (7, 33, 5),
                (13, 70, 300),
                (6, 64, 256),
                (20, 384, 384),
                (33, 48, 40),
                (70, 100, 1000),
            ]
            .iter()
            .map(move |shape| (*k, shape))
        }) {
            let x: Vec<f32> = (0..rows * inputs).map(|i| ((i * 7919 % 113) as f32 - 56.0) / 37.0).collect();
            let w: Vec<f32> = (0..outputs * inputs)
                .map(|i| ((i * 104_729 % 97) as f32 - 48.0) / 51.0)
                .collect();
            let bias: Vec<f32> = (0..rows * outputs).map(|i| (i % 5) as f32).collect();
            let mut want = bias.clone();
            reference(&x, rows, &w, outputs, inputs, &mut want);
            let mut got = bias.clone();
            gemm_bf16_on(on, &x, rows, &PackedWeights::pack(&w, outputs, inputs), &mut got);
            for (g, e) in got.iter().zip(&want) {
                assert!(
                    (g - e).abs() <= 1e-3 * e.abs().max(1.0),
                    "{on:?} {rows}x{outputs}x{inputs}: {g} against {e}"
                );
            }
        }
    }
}
