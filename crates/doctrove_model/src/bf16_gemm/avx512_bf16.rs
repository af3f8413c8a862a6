//! The bfloat16 products with AVX-512 BF16 dot products (`vdpbf16ps`, two bfloat16 pairs per
//! 32-bit lane into float32 sums): a plain register-blocked product, 6 rows x 64 columns per
//! tile, the weights in 128-pair slices that stay in the first-level cache.

use std::arch::x86_64::*;

use super::packing::{PackedWeights, AVX512_ROWS as MR};

/// 16-column vectors per tile.
const NV: usize = 4;
/// Pairs of the inner dimension per slice.
const KC: usize = 128;

/// `y += x w'` for the first `rows` rows of `xp`.
///
/// # Safety
/// The CPU must have AVX-512 F and BF16; `xp` holds `rows` rounded up to whole tiles of rows of
/// `w.pairs` pairs, and `y` holds `rows` rows of `w.outputs`.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn kernel(xp: &[u32], rows: usize, w: &PackedWeights, y: &mut [f32]) {
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
fn column_mask(w: &PackedWeights, block: usize) -> __mmask16 {
    crate::cpu::block_mask(w.outputs, block)
}

/// One tile: rows `r0..r0+MR` (those below `rows`) by `V` blocks of 16 outputs from `block`,
/// over pairs `p0..p0+kc`, added into `y`.
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
