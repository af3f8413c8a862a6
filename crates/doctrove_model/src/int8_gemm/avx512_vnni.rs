//! The int8 products with AVX-512 VNNI (`vpdpbusd` on 16 lanes): tiles of 6 rows by 32 outputs,
//! each group's exact 32-bit sums brought back to float32 with both scales and the zero point's
//! term.

use std::arch::x86_64::*;

use super::quantised::{PackedInt8, QuantisedRows, GROUP, QUADS_PER_GROUP, ROW_PADDING as MR};

/// 16-output blocks per tile.
const NV: usize = 2;

/// One group of 64 input values quantised with AVX-512, the bytes written four to a
/// lane into `quads`: unsigned, with a zero point, over a range that holds 0 (so
/// zeros, the padding included, stay exact); a multiply, then an add, then half and truncation
/// (the tests' plain version does the same arithmetic). Every input of every linear layer passes here.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn quantise_group(values: &[f32], quads: &mut [u32]) -> (f32, i32) {
    assert!(values.len() == GROUP && quads.len() == QUADS_PER_GROUP);
    let v = [0, 16, 32, 48].map(|at| _mm512_loadu_ps(values.as_ptr().add(at)));
    let low = _mm512_reduce_min_ps(_mm512_min_ps(_mm512_min_ps(v[0], v[1]), _mm512_min_ps(v[2], v[3]))).min(0.0);
    let high = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(v[0], v[1]), _mm512_max_ps(v[2], v[3]))).max(0.0);
    if high == low {
        quads.fill(0);
        return (1.0, 0);
    }
    let scale = (high - low) / 255.0;
    let inverse = 1.0 / scale;
    let zero = ((-low * inverse).clamp(0.0, 255.0) + 0.5) as u32 as f32;
    let (inverse_v, zero_v, half) = (_mm512_set1_ps(inverse), _mm512_set1_ps(zero), _mm512_set1_ps(0.5));
    let (floor, ceiling) = (_mm512_setzero_ps(), _mm512_set1_ps(255.0));
    for (i, value) in v.iter().enumerate() {
        let t = _mm512_add_ps(_mm512_mul_ps(*value, inverse_v), zero_v);
        let t = _mm512_add_ps(_mm512_min_ps(_mm512_max_ps(t, floor), ceiling), half);
        let bytes = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(t));
        _mm_storeu_si128(quads.as_mut_ptr().add(4 * i) as *mut __m128i, bytes);
    }
    (scale, zero as i32)
}

/// `y += x w'` for the first `rows` rows of `xq`.
///
/// # Safety
/// The CPU must have AVX-512 F and VNNI; `xq` holds `rows` rounded up to whole tiles of rows,
/// and `y` holds `rows` rows of `w.outputs`.
#[target_feature(enable = "avx512f,avx512vnni")]
pub(super) unsafe fn kernel(xq: &QuantisedRows, rows: usize, w: &PackedInt8, y: &mut [f32]) {
    let mut block = 0;
    while block < w.blocks {
        let nv = NV.min(w.blocks - block);
        let mut r0 = 0;
        while r0 < rows {
            match nv {
                2 => tile::<2>(xq, rows, r0, block, w, y),
                _ => tile::<1>(xq, rows, r0, block, w, y),
            }
            r0 += MR;
        }
        block += nv;
    }
}

/// The mask of the valid outputs of block `block`.
fn output_mask(w: &PackedInt8, block: usize) -> __mmask16 {
    crate::cpu::block_mask(w.outputs, block)
}

/// One tile: rows `r0..r0+MR` (those below `rows`) by `V` blocks of 16 outputs from `block`,
/// over every group, added into `y`.
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn tile<const V: usize>(xq: &QuantisedRows, rows: usize, r0: usize, block: usize, w: &PackedInt8, y: &mut [f32]) {
    let n = w.outputs;
    let live = (rows - r0).min(MR);
    let quads_per_row = w.groups * QUADS_PER_GROUP;
    let x_quads = xq.quads.as_ptr().add(r0 * quads_per_row);
    let mut acc = [[_mm512_setzero_ps(); V]; MR];
    for (r, row) in acc.iter_mut().enumerate().take(live) {
        for (v, a) in row.iter_mut().enumerate() {
            *a = _mm512_maskz_loadu_ps(output_mask(w, block + v), y.as_ptr().add((r0 + r) * n + (block + v) * 16));
        }
    }
    for g in 0..w.groups {
        let mut sums = [[_mm512_setzero_si512(); V]; MR];
        for step in 0..QUADS_PER_GROUP {
            let q = g * QUADS_PER_GROUP + step;
            let mut b = [_mm512_setzero_si512(); V];
            for (v, bv) in b.iter_mut().enumerate() {
                *bv = _mm512_loadu_si512(w.lanes.as_ptr().add(((block + v) * quads_per_row + q) * 16) as *const _);
            }
            for (r, row) in sums.iter_mut().enumerate() {
                let a = _mm512_set1_epi32(*x_quads.add(r * quads_per_row + q) as i32);
                for (v, s) in row.iter_mut().enumerate() {
                    *s = _mm512_dpbusd_epi32(*s, a, b[v]);
                }
            }
        }
        // sum(x q) = sum((xq - zero) wq) = sum(xq wq) - zero sum(wq), then both scales.
        for (r, row) in acc.iter_mut().enumerate() {
            let zero = _mm512_set1_epi32(xq.zeros[(r0 + r) * w.groups + g]);
            let x_scale = _mm512_set1_ps(xq.scales[(r0 + r) * w.groups + g]);
            for (v, a) in row.iter_mut().enumerate() {
                let at = ((block + v) * w.groups + g) * 16;
                let w_sums = _mm512_loadu_si512(w.sums.as_ptr().add(at) as *const _);
                let w_scale = _mm512_loadu_ps(w.scales.as_ptr().add(at));
                let exact = _mm512_sub_epi32(sums[r][v], _mm512_mullo_epi32(zero, w_sums));
                *a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact), _mm512_mul_ps(w_scale, x_scale), *a);
            }
        }
    }
    for (r, row) in acc.iter().enumerate().take(live) {
        for (v, a) in row.iter().enumerate() {
            _mm512_mask_storeu_ps(
                y.as_mut_ptr().add((r0 + r) * n + (block + v) * 16),
                output_mask(w, block + v),
                *a,
            );
        }
    }
}
