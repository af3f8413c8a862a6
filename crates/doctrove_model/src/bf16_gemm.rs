//! `--precision bf16`: the linear layers' products with AVX-512 BF16 dot products
//! (`vdpbf16ps`), which take two bfloat16 pairs per 32-bit lane and accumulate in float32.
//! Weights are rounded to bfloat16 once, at load, and packed in the order the kernel reads
//! them; each layer's input is rounded when the layer runs. Sums stay float32.
//!
//! Written here because Debian's OpenBLAS (0.3.21) has no `sbgemm` in its library and oneDNN
//! would add a runtime with threads of its own beside the encoder's one-pass-per-core
//! scheduling; the kernel is a plain register-blocked product (6 rows x 64 columns per tile, the
//! weights in 128-pair slices that stay in the first-level cache).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Rows of the input per tile.
const MR: usize = 6;
/// 16-column vectors per tile.
const NV: usize = 4;
/// Pairs of the inner dimension per slice.
const KC: usize = 128;

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
/// block of 16 outputs, for each pair of inputs, 16 lanes of (w[o][2p], w[o][2p+1]). Outputs and
/// inputs are padded with zeros to whole blocks and pairs.
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
        let (blocks, pairs) = (outputs.div_ceil(16), inputs.div_ceil(2));
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

/// `rows` rows of `x` (`inputs` wide) as bfloat16 pairs, padded with zero rows to whole tiles.
fn pack_rows(x: &[f32], rows: usize, inputs: usize, pairs: usize) -> Vec<u32> {
    let padded = rows.div_ceil(MR) * MR;
    let mut out = vec![0u32; padded * pairs];
    for (r, row) in x.chunks_exact(inputs).take(rows).enumerate() {
        for p in 0..pairs {
            let high = if 2 * p + 1 < inputs { row[2 * p + 1] } else { 0.0 };
            out[r * pairs + p] = pair(row[2 * p], high);
        }
    }
    out
}

/// `y += x w'` for `rows` rows of `x` (`w.inputs` wide) into `y` (`w.outputs` wide).
pub fn gemm_bf16(x: &[f32], rows: usize, w: &PackedWeights, y: &mut [f32]) {
    assert!(available(), "this CPU has no AVX-512 BF16");
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
    // `rows` (checked above), with a mask on the last block's columns.
    unsafe {
        kernel(&xp, rows, w, y)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn kernel(xp: &[u32], rows: usize, w: &PackedWeights, y: &mut [f32]) {
    let mut block = 0;
    while block < w.blocks {
        let nv = NV.min(w.blocks - block);
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

    #[test]
    fn rounding_to_bf16_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        assert_eq!(to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80, "a tie rounds to even");
        assert_eq!(to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82, "a tie rounds to even");
        assert_eq!(to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert!(f32::from_bits(u32::from(to_bf16(f32::NAN)) << 16).is_nan());
    }

    #[test]
    fn the_kernel_matches_a_plain_product_of_rounded_values_on_ragged_shapes() {
        if !available() {
            eprintln!("no AVX-512 BF16 here: nothing to check");
            return;
        }
        for &(rows, outputs, inputs) in &[(1, 16, 2), (7, 33, 5), (13, 70, 300), (6, 64, 256), (20, 384, 384)] {
            let x: Vec<f32> = (0..rows * inputs).map(|i| ((i * 7919 % 113) as f32 - 56.0) / 37.0).collect();
            let w: Vec<f32> = (0..outputs * inputs)
                .map(|i| ((i * 104_729 % 97) as f32 - 48.0) / 51.0)
                .collect();
            let bias: Vec<f32> = (0..rows * outputs).map(|i| (i % 5) as f32).collect();
            let mut want = bias.clone();
            reference(&x, rows, &w, outputs, inputs, &mut want);
            let mut got = bias.clone();
            gemm_bf16(&x, rows, &PackedWeights::pack(&w, outputs, inputs), &mut got);
            for (g, e) in got.iter().zip(&want) {
                assert!(
                    (g - e).abs() <= 1e-3 * e.abs().max(1.0),
                    "{rows}x{outputs}x{inputs}: {g} against {e}"
                );
            }
        }
    }
}
