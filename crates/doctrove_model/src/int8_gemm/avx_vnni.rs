//! The int8 products on CPUs with AVX-VNNI but not AVX-512 (256-bit `vpdpbusd`, VEX-encoded, as
//! on Intel's hybrid desktop cores): the same quantisation, packing and arithmetic as the
//! AVX-512 kernel, each 16-output block read as two halves of 8 lanes.

use std::arch::x86_64::*;

use super::quantised::{PackedInt8, QuantisedRows, GROUP, QUADS_PER_GROUP, ROW_PADDING};

/// Rows per tile: 3 rows by 2 halves of int32 group sums and of float32 totals, two weight
/// vectors and the broadcast input: 15 of the 16 registers. The rows are padded to the AVX-512
/// kernel's 6, a multiple of 3.
const MR: usize = 3;
const _: () = assert!(ROW_PADDING.is_multiple_of(MR), "the quantised rows end on a whole tile");

/// One group of 64 input values quantised, as `super::quantise_group` does it with AVX-512: the
/// same operations in the same order (so the same bytes), 8 lanes at a time.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn quantise_group(values: &[f32], quads: &mut [u32]) -> (f32, i32) {
    assert!(values.len() == GROUP && quads.len() == QUADS_PER_GROUP);
    let v: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(values.as_ptr().add(8 * i)));
    let (mut low_v, mut high_v) = (v[0], v[0]);
    for x in &v[1..] {
        low_v = _mm256_min_ps(low_v, *x);
        high_v = _mm256_max_ps(high_v, *x);
    }
    let (mut lows, mut highs) = ([0f32; 8], [0f32; 8]);
    _mm256_storeu_ps(lows.as_mut_ptr(), low_v);
    _mm256_storeu_ps(highs.as_mut_ptr(), high_v);
    let low = lows.iter().fold(0f32, |m, v| m.min(*v));
    let high = highs.iter().fold(0f32, |m, v| m.max(*v));
    if high == low {
        quads.fill(0);
        return (1.0, 0);
    }
    let scale = (high - low) / 255.0;
    let inverse = 1.0 / scale;
    let zero = ((-low * inverse).clamp(0.0, 255.0) + 0.5) as u32 as f32;
    let (inverse_v, zero_v, half) = (_mm256_set1_ps(inverse), _mm256_set1_ps(zero), _mm256_set1_ps(0.5));
    let (floor, ceiling) = (_mm256_setzero_ps(), _mm256_set1_ps(255.0));
    let t: [__m256i; 8] = std::array::from_fn(|i| {
        let t = _mm256_add_ps(_mm256_mul_ps(v[i], inverse_v), zero_v);
        _mm256_cvttps_epi32(_mm256_add_ps(_mm256_min_ps(_mm256_max_ps(t, floor), ceiling), half))
    });
    // 32 values to 32 bytes: the packs work within 128-bit halves, leaving the 4-byte groups in
    // the order 0, 2, 4, 6, 1, 3, 5, 7 of the values' quarters of eight; the permute restores it.
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (h, four) in t.chunks_exact(4).enumerate() {
        let words = (_mm256_packus_epi32(four[0], four[1]), _mm256_packus_epi32(four[2], four[3]));
        let bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(words.0, words.1), order);
        _mm256_storeu_si256(quads.as_mut_ptr().add(8 * h) as *mut __m256i, bytes);
    }
    (scale, zero as i32)
}

/// `y += x w'` for the first `rows` rows of `xq`.
///
/// # Safety
/// The CPU must have AVX2, FMA and AVX-VNNI, and `xq` holds `rows` rounded up to a multiple of 3
/// rows of `w.groups` groups (`y` is indexed with bounds checks).
#[target_feature(enable = "avx2,fma,avxvnni")]
pub(super) unsafe fn kernel(xq: &QuantisedRows, rows: usize, w: &PackedInt8, y: &mut [f32]) {
    for block in 0..w.blocks {
        for r0 in (0..rows).step_by(MR) {
            tile(xq, rows, r0, block, w, y);
        }
    }
}

/// One tile: rows `r0..r0+MR` (those below `rows`) by the 16 outputs of `block`, over every
/// group, added into `y`.
#[inline(always)]
unsafe fn tile(xq: &QuantisedRows, rows: usize, r0: usize, block: usize, w: &PackedInt8, y: &mut [f32]) {
    let quads_per_row = w.groups * QUADS_PER_GROUP;
    let x_quads = xq.quads.as_ptr().add(r0 * quads_per_row);
    let mut acc = load_tile(rows, r0, block, w, y);
    for g in 0..w.groups {
        let mut sums: GroupSums<MR> = [[_mm256_setzero_si256(); 2]; MR];
        for step in 0..QUADS_PER_GROUP {
            let q = g * QUADS_PER_GROUP + step;
            let lanes = w.lanes.as_ptr().add((block * quads_per_row + q) * 16);
            let b = [
                _mm256_loadu_si256(lanes as *const __m256i),
                _mm256_loadu_si256(lanes.add(8) as *const __m256i),
            ];
            for (r, row) in sums.iter_mut().enumerate() {
                let a = _mm256_set1_epi32(*x_quads.add(r * quads_per_row + q) as i32);
                for (h, s) in row.iter_mut().enumerate() {
                    *s = _mm256_dpbusd_avx_epi32(*s, a, b[h]);
                }
            }
        }
        add_group(&mut acc, &sums, xq, (r0, block, g), w);
    }
    store_tile(&acc, rows, r0, block, w, y);
}

/// A tile's float32 totals: `R` rows by two halves of 8 outputs.
pub(super) type Totals<const R: usize> = [[__m256; 2]; R];
/// A tile's integer sums over one group: `R` rows by two halves of 8 outputs.
pub(super) type GroupSums<const R: usize> = [[__m256i; 2]; R];

/// The tile's outputs as they are in `y` (zeros in the padding rows). The block's outputs in
/// each row of `y` are 16, read in place, or fewer in the last block, which goes through a copy
/// (masked AVX loads and stores of lanes past the end may fault on some CPUs). Copying every
/// block's rows cost a `memcpy` call per row and tile, 8% of the int8 encoder's time on AVX2.
#[inline(always)]
pub(super) unsafe fn load_tile<const R: usize>(rows: usize, r0: usize, block: usize, w: &PackedInt8, y: &[f32]) -> Totals<R> {
    let n = w.outputs;
    let valid = (n - block * 16).min(16);
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for (r, row) in acc.iter_mut().enumerate().take((rows - r0).min(R)) {
        let at = (r0 + r) * n + block * 16;
        let mut copy = [0f32; 16];
        let from = if valid == 16 {
            y[at..at + 16].as_ptr()
        } else {
            copy[..valid].copy_from_slice(&y[at..at + valid]);
            copy.as_ptr()
        };
        *row = [_mm256_loadu_ps(from), _mm256_loadu_ps(from.add(8))];
    }
    acc
}

/// Adds one group's integer sums to the totals: corrected for the rows' zero points, scaled
/// back to float32 (the same operations in the same order as the AVX-512 kernel, so the same
/// bits).
#[inline(always)]
pub(super) unsafe fn add_group<const R: usize>(
    acc: &mut Totals<R>,
    sums: &GroupSums<R>,
    xq: &QuantisedRows,
    (r0, block, g): (usize, usize, usize),
    w: &PackedInt8,
) {
    // sum(x q) = sum((xq - zero) wq) = sum(xq wq) - zero sum(wq), then both scales.
    for (r, row) in acc.iter_mut().enumerate() {
        let zero = _mm256_set1_epi32(xq.zeros[(r0 + r) * w.groups + g]);
        let x_scale = _mm256_set1_ps(xq.scales[(r0 + r) * w.groups + g]);
        for (h, a) in row.iter_mut().enumerate() {
            let at = (block * w.groups + g) * 16 + 8 * h;
            let w_sums = _mm256_loadu_si256(w.sums.as_ptr().add(at) as *const __m256i);
            let w_scale = _mm256_loadu_ps(w.scales.as_ptr().add(at));
            let exact = _mm256_sub_epi32(sums[r][h], _mm256_mullo_epi32(zero, w_sums));
            *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(exact), _mm256_mul_ps(w_scale, x_scale), *a);
        }
    }
}

/// Writes the tile's rows below `rows` back into `y`.
#[inline(always)]
pub(super) unsafe fn store_tile<const R: usize>(
    acc: &Totals<R>,
    rows: usize,
    r0: usize,
    block: usize,
    w: &PackedInt8,
    y: &mut [f32],
) {
    let n = w.outputs;
    let valid = (n - block * 16).min(16);
    for (r, row) in acc.iter().enumerate().take((rows - r0).min(R)) {
        let at = (r0 + r) * n + block * 16;
        if valid == 16 {
            let to = y[at..at + 16].as_mut_ptr();
            _mm256_storeu_ps(to, row[0]);
            _mm256_storeu_ps(to.add(8), row[1]);
            continue;
        }
        let mut copy = [0f32; 16];
        _mm256_storeu_ps(copy.as_mut_ptr(), row[0]);
        _mm256_storeu_ps(copy.as_mut_ptr().add(8), row[1]);
        y[at..at + valid].copy_from_slice(&copy[..valid]);
    }
}
