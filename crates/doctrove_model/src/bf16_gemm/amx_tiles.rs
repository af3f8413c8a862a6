//! The bfloat16 products on AMX tiles: 32 rows by 32 outputs at a time in four float32 tiles,
//! over the whole inner dimension, 32 inputs a step (two tiles of rows, two of weights, four
//! `tdpbf16ps`: all eight tile registers). The weights are the AVX-512 kernel's packing, whose
//! 16 pairs of one block are one tile; the rows are read in chunks that stay in the core's
//! second-level cache while every pair of output blocks passes over them.

use std::arch::x86_64::*;

use super::packing::PackedWeights;
use crate::amx::{tile_asm, TileConfig, ROW_BYTES, TILE_ROWS};

/// Bytes of packed rows per chunk: half of a core's second-level cache on the CPUs that have
/// AMX (2 MB), leaving room for the weights of the pair of blocks being read.
const CHUNK_BYTES: usize = 1024 * 1024;

/// Four 16 x 16 float32 tiles as the kernel stores them: rows `r0..r0+16` by blocks `b`, `b+1`,
/// then rows `r0+16..r0+32` by the same blocks.
#[repr(C, align(64))]
struct Sums([f32; 4 * TILE_ROWS * 16]);

/// `y += x w'` for the first `rows` rows of `xp` (bfloat16 pairs, `w.pairs` to a row, padded
/// with zero rows to a multiple of 32).
///
/// # Safety
/// `crate::amx::bf16_granted()` must be true; `xp` holds `rows` rounded up to 32 rows of
/// `w.pairs` pairs, `w.pairs` is a multiple of 16, `w.blocks` is even, and `y` holds `rows` rows
/// of `w.outputs`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn kernel(xp: &[u32], rows: usize, w: &PackedWeights, y: &mut [f32]) {
    // At least one step: the assembly loop counts its steps down to zero.
    assert!(w.pairs >= TILE_ROWS && w.pairs.is_multiple_of(TILE_ROWS) && w.blocks.is_multiple_of(2));
    debug_assert!(xp.len() >= rows.div_ceil(32) * 32 * w.pairs);
    // 1 MB measured best here (from 64 KB to 4 MB) on the encoders' shapes in passes of 512
    // tokens (6% faster over one all-mpnet-base-v2 layer's four products than 512 KB).
    let chunk_rows = (CHUNK_BYTES / (w.pairs * 4) / 32).max(1) * 32;
    let mut sums = Sums([0.0; 4 * TILE_ROWS * 16]);
    TileConfig::all_full().with_tiles(|| {
        for c0 in (0..rows).step_by(chunk_rows) {
            let end = (c0 + chunk_rows).min(rows);
            for block in (0..w.blocks).step_by(2) {
                for r0 in (c0..end).step_by(32) {
                    block_product(xp, r0, block, w, &mut sums);
                    add_sums(&sums, (rows, r0, block), w, y);
                }
            }
        }
    });
}

/// The four tiles of rows `r0..r0+32` by blocks `block`, `block + 1`, into `sums`: one
/// assembly block from the zeroed sums to their store.
#[inline(always)]
unsafe fn block_product(xp: &[u32], r0: usize, block: usize, w: &PackedWeights, sums: &mut Sums) {
    let a0 = xp.as_ptr().add(r0 * w.pairs);
    let b0 = w.lanes.as_ptr().add(block * w.pairs * 16);
    let out = sums.0.as_mut_ptr();
    tile_asm!(
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        "2:",
        // Each load placed just before the first product that reads it: the tiles are not
        // renamed, so a load waits for the last product reading its tile (measured here, 10%
        // faster than four loads then four products).
        "tileloadd tmm4, [{a0} + {stride}*1]",
        "tileloadd tmm6, [{b0} + {tile_row}*1]",
        "tdpbf16ps tmm0, tmm4, tmm6",
        "tileloadd tmm7, [{b1} + {tile_row}*1]",
        "tdpbf16ps tmm1, tmm4, tmm7",
        "tileloadd tmm5, [{a1} + {stride}*1]",
        "tdpbf16ps tmm2, tmm5, tmm6",
        "tdpbf16ps tmm3, tmm5, tmm7",
        // The next 16 pairs: 64 bytes along the rows, one 1 KiB tile along the weights.
        "add {a0}, 64",
        "add {a1}, 64",
        "add {b0}, 1024",
        "add {b1}, 1024",
        "dec {steps}",
        "jnz 2b",
        "tilestored [{out} + {tile_row}*1], tmm0",
        "tilestored [{out} + {tile_row}*1 + 1024], tmm1",
        "tilestored [{out} + {tile_row}*1 + 2048], tmm2",
        "tilestored [{out} + {tile_row}*1 + 3072], tmm3",
        a0 = inout(reg) a0 => _,
        a1 = inout(reg) a0.add(TILE_ROWS * w.pairs) => _,
        b0 = inout(reg) b0 => _,
        b1 = inout(reg) b0.add(w.pairs * 16) => _,
        steps = inout(reg) w.pairs / TILE_ROWS => _,
        stride = in(reg) w.pairs * 4,
        tile_row = in(reg) ROW_BYTES,
        out = in(reg) out
    );
}

/// `y += sums` on the rows below `rows` and the outputs below `w.outputs`.
#[inline(always)]
unsafe fn add_sums(sums: &Sums, (rows, r0, block): (usize, usize, usize), w: &PackedWeights, y: &mut [f32]) {
    let n = w.outputs;
    for (tile, values) in sums.0.chunks_exact(TILE_ROWS * 16).enumerate() {
        let (first_row, b) = (r0 + (tile / 2) * TILE_ROWS, block + tile % 2);
        if b * 16 >= n {
            continue;
        }
        let mask = crate::cpu::block_mask(n, b);
        for (i, row) in values.chunks_exact(16).enumerate().take(rows.saturating_sub(first_row)) {
            let at = y.as_mut_ptr().add((first_row + i) * n + b * 16);
            let sum = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, at), _mm512_loadu_ps(row.as_ptr()));
            _mm512_mask_storeu_ps(at, mask, sum);
        }
    }
}
