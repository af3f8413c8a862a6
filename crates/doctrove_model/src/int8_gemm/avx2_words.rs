//! The int8 products on CPUs with AVX2 but neither VNNI (AMD before Zen 4, Intel before Ice
//! Lake): the same quantised operands, each byte widened to a 16-bit word so that `vpmaddwd`
//! multiplies pairs of words and adds each pair into a 32-bit lane. Exact: a lane gets at most
//! 2 x 255 x 127. (`vpmaddubsw` multiplies the bytes as they are, but adds each pair into 16
//! bits with saturation, which 2 x 255 x 127 exceeds.) The group sums are therefore those of
//! `vpdpbusd`, and the AVX-VNNI kernel's tile code turns them into the same float32 bits.
//!
//! The rows are widened once per product; a block's weights once per block, into a buffer
//! every row tile of the block then reads (at most 16 x 3,072 words, 96 KiB, for the encoders'
//! shapes).

use std::arch::x86_64::*;

use super::avx_vnni::{add_group, load_tile, store_tile, GroupSums};
use super::quantised::{PackedInt8, QuantisedRows, GROUP, QUADS_PER_GROUP, ROW_PADDING};

/// Rows per tile: 6 rows by 2 halves of int32 group sums, two weight vectors and the
/// broadcast input (15 of the 16 registers; the float32 totals wait in memory between groups).
const MR: usize = 6;
const _: () = assert!(ROW_PADDING.is_multiple_of(MR), "the quantised rows end on a whole tile");
/// Input pairs per group.
const PAIRS_PER_GROUP: usize = GROUP / 2;

/// `y += x w'` for the first `rows` rows of `xq`.
///
/// # Safety
/// The CPU must have AVX2 and FMA, and `xq` holds `rows` rounded up to a multiple of 6 rows of
/// `w.groups` groups (`y` is indexed with bounds checks).
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn kernel(xq: &QuantisedRows, rows: usize, w: &PackedInt8, y: &mut [f32]) {
    let x_pairs = widen_rows(&xq.quads);
    let pairs_per_row = w.groups * PAIRS_PER_GROUP;
    let mut w_pairs = vec![0i32; pairs_per_row * 16];
    for block in 0..w.blocks {
        widen_block(w, block, &mut w_pairs);
        for r0 in (0..rows).step_by(MR) {
            tile((&x_pairs, xq), rows, r0, block, (&w_pairs, w), y);
        }
    }
}

/// Each quad of unsigned bytes as two lanes of two zero-extended words: bytes 0 and 1, then
/// bytes 2 and 3.
fn widen_rows(quads: &[u32]) -> Vec<i32> {
    quads
        .iter()
        .flat_map(|&q| [(q & 0xff) | (q & 0xff00) << 8, (q >> 16 & 0xff) | (q >> 24) << 16])
        .map(|pair| pair as i32)
        .collect()
}

/// Block `block`'s weights as pairs of sign-extended words: for each pair of inputs, 16 lanes.
fn widen_block(w: &PackedInt8, block: usize, pairs: &mut [i32]) {
    let quads_per_row = w.groups * QUADS_PER_GROUP;
    let lanes = &w.lanes[block * quads_per_row * 16..(block + 1) * quads_per_row * 16];
    for (q, quad) in lanes.chunks_exact(16).enumerate() {
        for (lane, &four) in quad.iter().enumerate() {
            let [b0, b1, b2, b3] = four.to_le_bytes().map(|b| i32::from(b as i8 as i16 as u16));
            pairs[(2 * q) * 16 + lane] = b0 | b1 << 16;
            pairs[(2 * q + 1) * 16 + lane] = b2 | b3 << 16;
        }
    }
}

/// One tile: rows `r0..r0+MR` (those below `rows`) by the 16 outputs of `block`, over every
/// group, added into `y`.
#[inline(always)]
unsafe fn tile(
    (x_pairs, xq): (&[i32], &QuantisedRows),
    rows: usize,
    r0: usize,
    block: usize,
    (w_pairs, w): (&[i32], &PackedInt8),
    y: &mut [f32],
) {
    let pairs_per_row = w.groups * PAIRS_PER_GROUP;
    assert!(x_pairs.len() >= (r0 + MR) * pairs_per_row && w_pairs.len() == pairs_per_row * 16);
    let x = x_pairs.as_ptr().add(r0 * pairs_per_row);
    let mut acc = load_tile(rows, r0, block, w, y);
    for g in 0..w.groups {
        let mut sums: GroupSums<MR> = [[_mm256_setzero_si256(); 2]; MR];
        for p in g * PAIRS_PER_GROUP..(g + 1) * PAIRS_PER_GROUP {
            let lanes = w_pairs.as_ptr().add(p * 16);
            let b = [
                _mm256_loadu_si256(lanes as *const __m256i),
                _mm256_loadu_si256(lanes.add(8) as *const __m256i),
            ];
            for (r, row) in sums.iter_mut().enumerate() {
                let a = _mm256_set1_epi32(*x.add(r * pairs_per_row + p));
                for (h, s) in row.iter_mut().enumerate() {
                    *s = _mm256_add_epi32(*s, _mm256_madd_epi16(a, b[h]));
                }
            }
        }
        add_group(&mut acc, &sums, xq, (r0, block, g), w);
    }
    store_tile(&acc, rows, r0, block, w, y);
}
