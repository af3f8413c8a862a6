//! The float32 matrix product of the encoder: `y (+)= x w'` with `w` packed once, at load, in
//! the order the kernel reads it, and a kernel for each instruction set (AVX-512 F, AVX2 with
//! FMA, and plain loops), picked from the CPU's features (`cpu.rs`).
//!
//! Written here because no library does both things this model needs. A general product
//! (OpenBLAS's `sgemm`, the `gemm` and `matrixmultiply` crates) copies the weight matrix into
//! its own layout at every call; for the few rows of a search query that copy is more than half
//! of the work, and the weights (42 MB for all-MiniLM-L6-v2) are read twice. And OpenBLAS picks
//! its kernels from a table of CPU models, so a CPU newer than the library runs its SSE3
//! fallback (Debian 12's 0.3.21 does on Xeons of family 6 model 207). `make bench` prints this
//! kernel beside OpenBLAS's, with the CPU's core type and with the fallback.
//!
//! Layout: outputs in blocks of 16, blocks in groups of `NV`; in a group, for each input, the
//! group's weights side by side (zeros past the last output), so a tile reads one stream. A
//! tile is `MR` rows by one group. The rows are taken `MC` at a time and copied, tile by tile,
//! into a panel the kernel reads in order (a few KiB for a query); for each chunk the kernel
//! walks groups, then slices of `KC` inputs (`NV` x 16 x `KC` floats, 32 KiB, stay in the
//! first-level cache while every row tile of the chunk uses them), then row tiles. So a query's
//! pass reads each weight from memory once.
//!
//! Measured on a 2-core Xeon (family 6, model 207) with `make bench`: one short query about
//! 2 ms against OpenBLAS's 5.5 to 7 ms with its AVX-512 kernels (8 to 18 ms with the fallback
//! it picks itself); on passes of thousands of rows OpenBLAS's AVX-512 kernels run 5 to 15%
//! faster, and `kernel.rs` gives it those passes when it is installed.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use crate::assist::Assist;
use crate::cpu::InstructionSet;

/// Rows of `x` per tile.
const MR: usize = 6;
/// Blocks of 16 outputs per tile (AVX-512: 6 x 4 accumulators + 4 weight registers of 32).
const NV: usize = 4;
/// Inputs per slice.
const KC: usize = 128;
/// Rows per chunk: a chunk's rows, packed, stay in the second-level cache while every block of
/// outputs uses them (288 x 1,536 inputs x 4 bytes = 1.7 MiB).
const MC: usize = 288;
/// Outputs per block.
const LANES: usize = 16;

/// A matrix of `outputs` x `inputs` weights in the kernel's order.
#[derive(Default)]
pub struct PackedMatrix {
    lanes: Vec<f32>,
    outputs: usize,
    inputs: usize,
}

impl PackedMatrix {
    /// Packs the matrix whose element (output `o`, input `i`) is `at(o, i)`.
    pub fn pack(outputs: usize, inputs: usize, at: impl Fn(usize, usize) -> f32) -> PackedMatrix {
        let mut packed = PackedMatrix::default();
        packed.repack(outputs, inputs, at);
        packed
    }

    /// Packs a row-major `outputs` x `inputs` matrix (a linear layer's weights as stored).
    pub fn from_rows(weight: &[f32], outputs: usize, inputs: usize) -> PackedMatrix {
        assert_eq!(weight.len(), outputs * inputs, "the weights do not fit their shape");
        PackedMatrix::pack(outputs, inputs, |o, i| weight[o * inputs + i])
    }

    /// As [`PackedMatrix::pack`], reusing this matrix's memory (attention packs a matrix per
    /// head).
    pub fn repack(&mut self, outputs: usize, inputs: usize, at: impl Fn(usize, usize) -> f32) {
        (self.outputs, self.inputs) = (outputs, inputs);
        self.lanes.clear();
        self.lanes.resize(self.blocks() * inputs * LANES, 0.0);
        for o in 0..outputs {
            for i in 0..inputs {
                let at_index = self.index(o, i);
                self.lanes[at_index] = at(o, i);
            }
        }
    }

    /// Where weight (`o`, `i`) is: groups of `NV` blocks (the last one may be narrower), and in
    /// a group, for each input, the group's outputs side by side: one stream for the kernel.
    fn index(&self, o: usize, i: usize) -> usize {
        let (block, lane) = (o / LANES, o % LANES);
        (block / NV * NV * self.inputs + i * self.group_width(block) + block % NV) * LANES + lane
    }

    /// Blocks in the group of block `block`: `NV`, or fewer in the last group.
    fn group_width(&self, block: usize) -> usize {
        NV.min(self.blocks() - block / NV * NV)
    }

    /// The matrix back in row-major order (`outputs` x `inputs`).
    pub fn to_rows(&self) -> Vec<f32> {
        let mut rows = Vec::with_capacity(self.outputs * self.inputs);
        for o in 0..self.outputs {
            rows.extend((0..self.inputs).map(|i| self.lanes[self.index(o, i)]));
        }
        rows
    }

    fn blocks(&self) -> usize {
        self.outputs.div_ceil(LANES)
    }

    /// The weights of block `block` from input `input` on, and the distance from one input's to
    /// the next's.
    fn at(&self, block: usize, input: usize) -> (*const f32, usize) {
        (
            self.lanes[self.index(block * LANES, input)..].as_ptr(),
            self.group_width(block) * LANES,
        )
    }
}

/// Rows of a matrix inside a slice: `rows` rows, `stride` floats apart.
#[derive(Clone, Copy)]
pub struct Rows<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub stride: usize,
}

/// `y = x w'` (or `y += x w'` when `accumulate`) for `x.rows` rows of `w.inputs` values into
/// rows of `w.outputs` values, `y_stride` apart in `y`.
pub fn gemm_packed(isa: InstructionSet, x: Rows, w: &PackedMatrix, y: &mut [f32], y_stride: usize, accumulate: bool) {
    if let Some(out) = checked(isa, x, w, y, y_stride, accumulate) {
        // SAFETY: `checked` verified the shapes and the CPU.
        in_chunks(x, w.inputs, |panel| unsafe {
            chunk(isa, panel, w, out, accumulate, 0..w.blocks())
        })
    }
}

/// As [`gemm_packed`], the output blocks split in two halves, one computed by `assist`'s helper.
pub fn gemm_packed_split(
    isa: InstructionSet,
    x: Rows,
    w: &PackedMatrix,
    (y, y_stride): (&mut [f32], usize),
    accumulate: bool,
    assist: &Assist,
) {
    if let Some(out) = checked(isa, x, w, y, y_stride, accumulate) {
        // Whole tiles to each side, so neither runs a narrower tile than it must.
        let half = (w.blocks().div_ceil(2)).div_ceil(NV) * NV;
        let half = half.min(w.blocks());
        // SAFETY: `checked` verified the shapes and the CPU; the halves read the same panel,
        // write disjoint columns of `y`, and `both` returns only once the helper is done.
        in_chunks(x, w.inputs, |(panel, rows)| {
            assist.both(
                || unsafe { chunk(isa, (panel, rows.clone()), w, out, accumulate, 0..half) },
                || unsafe { chunk(isa, (panel, rows.clone()), w, out, accumulate, half..w.blocks()) },
            )
        })
    }
}

/// Checks the operands' shapes and the CPU; `None` when there is nothing (left) to compute.
fn checked(isa: InstructionSet, x: Rows, w: &PackedMatrix, y: &mut [f32], y_stride: usize, accumulate: bool) -> Option<Out> {
    if x.rows == 0 || w.outputs == 0 {
        return None;
    }
    assert!(
        w.inputs <= x.stride && x.data.len() >= (x.rows - 1) * x.stride + w.inputs,
        "the input rows do not fit their slice"
    );
    assert!(
        w.outputs <= y_stride && y.len() >= (x.rows - 1) * y_stride + w.outputs,
        "the product does not fit its output"
    );
    assert!(isa.runs_here(), "this CPU cannot run the {} kernel", isa.name());
    if w.inputs == 0 {
        if !accumulate {
            y.chunks_mut(y_stride).take(x.rows).for_each(|row| row[..w.outputs].fill(0.0));
        }
        return None;
    }
    Some(Out {
        y: y.as_mut_ptr(),
        stride: y_stride,
    })
}

/// Calls `product` for each chunk of `MC` rows of `x`, packed into this thread's panel, with
/// the rows it holds.
fn in_chunks(x: Rows, inputs: usize, mut product: impl FnMut((&[f32], std::ops::Range<usize>))) {
    PANEL.with_borrow_mut(|panel| {
        let mut m0 = 0;
        while m0 < x.rows {
            let m1 = (m0 + MC).min(x.rows);
            pack_rows(x, m0..m1, inputs, panel);
            product((panel, m0..m1));
            m0 = m1;
        }
    })
}

thread_local! {
    /// The rows of `x` being multiplied, in the kernel's order; kept from call to call.
    static PANEL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Rows `rows` of `x` (`inputs` of each) into `panel`: for each tile of `MR` rows, for each
/// input, the tile's `MR` values (zeros past the last row), so the kernel reads one stream.
fn pack_rows(x: Rows, rows: std::ops::Range<usize>, inputs: usize, panel: &mut Vec<f32>) {
    panel.clear();
    let mut first = rows.start;
    while first < rows.end {
        // The tile's rows; rows past the last are zeros.
        let row: [&[f32]; MR] = std::array::from_fn(|r| match first + r < rows.end {
            true => &x.data[(first + r) * x.stride..(first + r) * x.stride + inputs],
            false => &[],
        });
        for i in 0..inputs {
            panel.extend(row.iter().map(|values| values.get(i).copied().unwrap_or(0.0)));
        }
        first += MR;
    }
}

/// The product of the rows packed in `panel` (rows `rows` of `x`) for output blocks `range`.
///
/// # Safety
/// The operands passed [`checked`], and nothing else writes these blocks' columns of `out`
/// meanwhile.
unsafe fn chunk(
    isa: InstructionSet,
    (panel, rows): (&[f32], std::ops::Range<usize>),
    w: &PackedMatrix,
    out: Out,
    accumulate: bool,
    range: std::ops::Range<usize>,
) {
    let mut block = range.start;
    while block < range.end {
        let nv = NV.min(range.end - block);
        let mut k0 = 0;
        while k0 < w.inputs {
            let kc = KC.min(w.inputs - k0);
            let load = accumulate || k0 > 0;
            let mut r0 = rows.start;
            while r0 < rows.end {
                let tile = Tile {
                    r0,
                    live: (rows.end - r0).min(MR),
                    block,
                    k0,
                    kc,
                    load,
                };
                // The tile reads `MR` x `kc` values of the panel from its own (whole tiles of
                // `w.inputs` each), writes outputs inside `y` (rows below `x.rows`, masked to
                // `w.outputs` columns) and reads weights inside `w.lanes` (whole blocks).
                let xp = panel[((r0 - rows.start) / MR * w.inputs + k0) * MR..].as_ptr();
                run_tile(isa, nv, xp, w, &tile, out);
                r0 += MR;
            }
            k0 += kc;
        }
        block += nv;
    }
}

/// Where the product goes.
#[derive(Clone, Copy)]
struct Out {
    y: *mut f32,
    stride: usize,
}

// SAFETY: the two halves of a split product write disjoint columns through it (see `chunk`).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// One tile: rows `r0..r0 + live` by the blocks from `block`, over inputs `k0..k0 + kc`;
/// `load`: add to what `y` holds (else start from zero).
struct Tile {
    r0: usize,
    live: usize,
    block: usize,
    k0: usize,
    kc: usize,
    load: bool,
}

impl Tile {
    /// The valid outputs of block `block + v` (1 to 16).
    fn valid(&self, w: &PackedMatrix, v: usize) -> usize {
        (w.outputs - (self.block + v) * LANES).min(LANES)
    }

    /// Where row `r`, block `block + v` starts in `y`.
    fn out(&self, out: Out, r: usize, v: usize) -> *mut f32 {
        out.y.wrapping_add((self.r0 + r) * out.stride + (self.block + v) * LANES)
    }
}

unsafe fn run_tile(isa: InstructionSet, nv: usize, xp: *const f32, w: &PackedMatrix, tile: &Tile, out: Out) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        InstructionSet::Avx512 => match nv {
            4 => tile_avx512::<4>(xp, w, tile, out),
            3 => tile_avx512::<3>(xp, w, tile, out),
            2 => tile_avx512::<2>(xp, w, tile, out),
            _ => tile_avx512::<1>(xp, w, tile, out),
        },
        #[cfg(target_arch = "x86_64")]
        InstructionSet::Avx2 => (0..nv).for_each(|v| tile_avx2(xp, w, tile, v, out)),
        _ => (0..nv).for_each(|v| tile_baseline(xp, w, tile, v, out)),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<const V: usize>(xp: *const f32, w: &PackedMatrix, t: &Tile, out: Out) {
    let masks: [__mmask16; V] = std::array::from_fn(|v| ((1u32 << t.valid(w, v)) - 1) as __mmask16);
    let mut acc = [[_mm512_setzero_ps(); V]; MR];
    if t.load {
        for (r, row) in acc.iter_mut().enumerate().take(t.live) {
            for (v, a) in row.iter_mut().enumerate() {
                *a = _mm512_maskz_loadu_ps(masks[v], t.out(out, r, v));
            }
        }
    }
    // The tile's blocks are one group (tiles start at a group and take all of it), so its
    // weights for one input are `V` x 16 consecutive values.
    let (wp, step) = w.at(t.block, t.k0);
    for i in 0..t.kc {
        let b: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(wp.add(i * step + v * LANES)));
        for (r, row) in acc.iter_mut().enumerate() {
            let a = _mm512_set1_ps(*xp.add(i * MR + r));
            for (v, av) in row.iter_mut().enumerate() {
                *av = _mm512_fmadd_ps(a, b[v], *av);
            }
        }
    }
    for (r, row) in acc.iter().enumerate().take(t.live) {
        for (v, a) in row.iter().enumerate() {
            _mm512_mask_storeu_ps(t.out(out, r, v), masks[v], *a);
        }
    }
}

/// AVX2: one block (two registers of 8) by `MR` rows: 12 accumulators, 2 weight registers and
/// a broadcast, within the 16 registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(xp: *const f32, w: &PackedMatrix, t: &Tile, v: usize, out: Out) {
    let valid = t.valid(w, v) as i32;
    let half_mask = |half: i32| {
        let lane = |l: i32| if half * 8 + l < valid { -1 } else { 0 };
        _mm256_setr_epi32(lane(0), lane(1), lane(2), lane(3), lane(4), lane(5), lane(6), lane(7))
    };
    let masks = [half_mask(0), half_mask(1)];
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    if t.load {
        for (r, row) in acc.iter_mut().enumerate().take(t.live) {
            for (h, a) in row.iter_mut().enumerate() {
                *a = _mm256_maskload_ps(t.out(out, r, v).add(8 * h), masks[h]);
            }
        }
    }
    let (wp, step) = w.at(t.block + v, t.k0);
    for i in 0..t.kc {
        let b = [_mm256_loadu_ps(wp.add(i * step)), _mm256_loadu_ps(wp.add(i * step + 8))];
        for (r, row) in acc.iter_mut().enumerate() {
            let a = _mm256_set1_ps(*xp.add(i * MR + r));
            row[0] = _mm256_fmadd_ps(a, b[0], row[0]);
            row[1] = _mm256_fmadd_ps(a, b[1], row[1]);
        }
    }
    for (r, row) in acc.iter().enumerate().take(t.live) {
        for (h, a) in row.iter().enumerate() {
            _mm256_maskstore_ps(t.out(out, r, v).add(8 * h), masks[h], *a);
        }
    }
}

/// Plain loops over the same tile, for CPUs without AVX2 (the compiler vectorises them with
/// the baseline's SSE2).
unsafe fn tile_baseline(xp: *const f32, w: &PackedMatrix, t: &Tile, v: usize, out: Out) {
    let valid = t.valid(w, v);
    let mut acc = [[0.0f32; LANES]; MR];
    if t.load {
        for (r, row) in acc.iter_mut().enumerate().take(t.live) {
            row[..valid].copy_from_slice(std::slice::from_raw_parts(t.out(out, r, v), valid));
        }
    }
    let (wp, step) = w.at(t.block + v, t.k0);
    for i in 0..t.kc {
        let b: &[f32; LANES] = &*(wp.add(i * step) as *const [f32; LANES]);
        for (r, row) in acc.iter_mut().enumerate() {
            let a = *xp.add(i * MR + r);
            for (s, bw) in row.iter_mut().zip(b) {
                *s += a * bw;
            }
        }
    }
    for (r, row) in acc.iter().enumerate().take(t.live) {
        std::slice::from_raw_parts_mut(t.out(out, r, v), valid).copy_from_slice(&row[..valid]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], rows: usize, x_stride: usize, w: &[f32], outputs: usize, inputs: usize) -> Vec<f64> {
        let mut y = vec![0.0; rows * outputs];
        for r in 0..rows {
            for o in 0..outputs {
                y[r * outputs + o] = (0..inputs)
                    .map(|i| f64::from(x[r * x_stride + i]) * f64::from(w[o * inputs + i]))
                    .sum();
            }
        }
        y
    }

    /// Every kernel this CPU runs, on shapes that leave partial tiles, blocks and slices, with
    /// strided rows, with and without accumulation; and nothing outside the product written.
    #[test]
    fn every_kernel_matches_a_plain_product_on_ragged_shapes() {
        let kernels: Vec<_> = [InstructionSet::Avx512, InstructionSet::Avx2, InstructionSet::Baseline]
            .into_iter()
            .filter(|isa| isa.runs_here())
            .collect();
        for &(rows, outputs, inputs, x_stride) in &[
            (1, 1, 1, 1),
            (1, 16, 2, 3),
            (7, 33, 5, 5),
            (13, 70, 300, 301),
            (6, 64, 256, 256),
            (20, 384, 384, 1152),
            (3, 80, 129, 129),
        ] {
            let x: Vec<f32> = (0..rows * x_stride)
                .map(|i| ((i * 7919 % 113) as f32 - 56.0) / 37.0)
                .collect();
            let w: Vec<f32> = (0..outputs * inputs)
                .map(|i| ((i * 104_729 % 97) as f32 - 48.0) / 51.0)
                .collect();
            let want = reference(&x, rows, x_stride, &w, outputs, inputs);
            let packed = PackedMatrix::from_rows(&w, outputs, inputs);
            let y_stride = outputs + 3;
            for &isa in &kernels {
                for accumulate in [false, true] {
                    let mut y = vec![2.0f32; rows * y_stride];
                    let xr = Rows {
                        data: &x,
                        rows,
                        stride: x_stride,
                    };
                    gemm_packed(isa, xr, &packed, &mut y, y_stride, accumulate);
                    let mut split = vec![2.0f32; rows * y_stride];
                    Assist::with_helper(|assist| gemm_packed_split(isa, xr, &packed, (&mut split, y_stride), accumulate, assist));
                    assert_eq!(split, y, "{} split in two", isa.name());
                    for r in 0..rows {
                        for o in 0..y_stride {
                            let got = f64::from(y[r * y_stride + o]);
                            let expected = match o < outputs {
                                true => want[r * outputs + o] + if accumulate { 2.0 } else { 0.0 },
                                false => 2.0,
                            };
                            assert!(
                                (got - expected).abs() <= 1e-4 * expected.abs().max(1.0),
                                "{} {rows}x{outputs}x{inputs} accumulate={accumulate} at ({r}, {o}): {got} against {expected}",
                                isa.name()
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "do not fit")]
    fn a_short_input_is_refused_before_the_kernel_runs() {
        let packed = PackedMatrix::from_rows(&[1.0; 8], 2, 4);
        let mut y = [0.0; 4];
        let x = Rows {
            data: &[1.0; 7],
            rows: 2,
            stride: 4,
        };
        gemm_packed(InstructionSet::Baseline, x, &packed, &mut y, 2, false);
    }
}
