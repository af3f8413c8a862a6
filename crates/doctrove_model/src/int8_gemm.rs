//! `--precision int8`: the linear layers' products in 8-bit integers with VNNI dot products
//! (`vpdpbusd`: four unsigned-by-signed byte products added into each 32-bit lane): AVX-512 VNNI
//! on 16 lanes, or AVX-VNNI on 8 (`int8_gemm/avx_vnni.rs`) on CPUs without AVX-512.
//!
//! Weights are quantised once, at load: symmetric, one scale per output and per group of
//! [`GROUP`] inputs. Each layer's input is quantised when the layer runs: unsigned with a zero
//! point, one scale per row and per group. Each group's integer sum (exact in 32 bits: 64
//! products of at most 255 x 127) is corrected for the zero point, scaled back to float32 and
//! added there. Groups rather than whole rows and whole outputs, because whole rows are not
//! accurate enough for this family: measured on all-MiniLM-L6-v2 over 23 texts against float
//! arithmetic, one scale per output and per row gives a lowest cosine of 0.9974, one per group of
//! 64 inputs 0.9993 (the bar for replacing a model's vectors is 0.999).
//!
//! Written here for the same reason as the bf16 kernel: no library at hand multiplies in 8 bits
//! with per-group scales inside the encoder's one-pass-per-core scheduling.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

#[cfg(target_arch = "x86_64")]
mod avx_vnni;

/// Inputs per quantisation group: four bytes per lane, sixteen lanes' worth of steps.
pub const GROUP: usize = 64;
/// Rows of the input per tile.
const MR: usize = 6;
/// 16-output blocks per tile.
const NV: usize = 2;
/// Four-input steps per group.
const QUADS_PER_GROUP: usize = GROUP / 4;

/// The kernel a product runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Kernel {
    /// AVX-512 F and VNNI: 16 lanes.
    Avx512Vnni,
    /// AVX2, FMA and AVX-VNNI (256-bit, VEX-encoded): 8 lanes.
    AvxVnni,
}

impl Int8Kernel {
    /// AVX-512 VNNI where the CPU has it, AVX-VNNI otherwise; `None` without either.
    pub fn fastest() -> Option<Int8Kernel> {
        [Int8Kernel::Avx512Vnni, Int8Kernel::AvxVnni]
            .into_iter()
            .find(|k| k.runs_here())
    }

    /// Whether this CPU has the kernel's instructions.
    pub fn runs_here(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Int8Kernel::Avx512Vnni => is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni"),
                Int8Kernel::AvxVnni => {
                    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("avxvnni")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// `avx512vnni` or `avxvnni`.
    pub fn name(self) -> &'static str {
        match self {
            Int8Kernel::Avx512Vnni => "avx512vnni",
            Int8Kernel::AvxVnni => "avxvnni",
        }
    }
}

/// Whether this CPU runs one of the kernels.
pub fn available() -> bool {
    Int8Kernel::fastest().is_some()
}

/// A weight matrix (`outputs` x `inputs`, as stored) quantised and packed: for each block of
/// 16 outputs, for each step of four inputs, 16 lanes of the four signed bytes; and for each
/// block and group, 16 lanes of the scale and of the sum of the group's bytes (for the zero
/// point). Outputs and inputs are padded with zeros to whole blocks and groups.
pub struct PackedInt8 {
    lanes: Vec<i32>,
    scales: Vec<f32>,
    sums: Vec<i32>,
    outputs: usize,
    inputs: usize,
    blocks: usize,
    groups: usize,
}

/// One group of weights quantised: the bytes and the scale (`max |w| / 127`).
fn quantise_weights(group: &[f32]) -> (Vec<i8>, f32) {
    let most = group.iter().fold(0f32, |m, v| m.max(v.abs()));
    if most == 0.0 {
        return (vec![0; group.len()], 0.0);
    }
    let scale = most / 127.0;
    (
        group.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8).collect(),
        scale,
    )
}

impl PackedInt8 {
    pub fn pack(weight: &[f32], outputs: usize, inputs: usize) -> PackedInt8 {
        assert_eq!(weight.len(), outputs * inputs, "the weights do not fit their shape");
        let (blocks, groups) = (outputs.div_ceil(16), inputs.div_ceil(GROUP));
        let padded = groups * GROUP;
        // Each output's row, quantised group by group.
        let mut bytes = vec![0i8; blocks * 16 * padded];
        let mut scale_of = vec![0f32; blocks * 16 * groups];
        for o in 0..outputs {
            let mut row = weight[o * inputs..(o + 1) * inputs].to_vec();
            row.resize(padded, 0.0);
            for g in 0..groups {
                let (q, scale) = quantise_weights(&row[g * GROUP..(g + 1) * GROUP]);
                bytes[o * padded + g * GROUP..o * padded + (g + 1) * GROUP].copy_from_slice(&q);
                scale_of[o * groups + g] = scale;
            }
        }
        let quads = padded / 4;
        let mut lanes = Vec::with_capacity(blocks * quads * 16);
        for block in 0..blocks {
            for q in 0..quads {
                for lane in 0..16 {
                    let o = block * 16 + lane;
                    let four = &bytes[o * padded + 4 * q..o * padded + 4 * q + 4];
                    lanes.push(i32::from_le_bytes([
                        four[0] as u8,
                        four[1] as u8,
                        four[2] as u8,
                        four[3] as u8,
                    ]));
                }
            }
        }
        let (mut scales, mut sums) = (Vec::new(), Vec::new());
        for block in 0..blocks {
            for g in 0..groups {
                for lane in 0..16 {
                    let o = block * 16 + lane;
                    scales.push(scale_of[o * groups + g]);
                    let group = &bytes[o * padded + g * GROUP..o * padded + (g + 1) * GROUP];
                    sums.push(group.iter().map(|&b| i32::from(b)).sum());
                }
            }
        }
        PackedInt8 {
            lanes,
            scales,
            sums,
            outputs,
            inputs,
            blocks,
            groups,
        }
    }
}

/// `rows` rows of `x` quantised: the bytes (four to a lane), and each row's scale and zero
/// point per group; padded with zero rows to whole tiles.
struct QuantisedRows {
    quads: Vec<u32>,
    scales: Vec<f32>,
    zeros: Vec<i32>,
}

/// # Safety
/// The CPU must have `on`'s instructions.
unsafe fn quantise_rows(on: Int8Kernel, x: &[f32], rows: usize, inputs: usize, groups: usize) -> QuantisedRows {
    let padded_rows = rows.div_ceil(MR) * MR;
    let quads_per_row = groups * QUADS_PER_GROUP;
    let mut out = QuantisedRows {
        quads: vec![0; padded_rows * quads_per_row],
        scales: vec![1.0; padded_rows * groups],
        zeros: vec![0; padded_rows * groups],
    };
    let mut row_values = vec![0f32; groups * GROUP];
    for (r, row) in x.chunks_exact(inputs).take(rows).enumerate() {
        row_values[..inputs].copy_from_slice(row);
        row_values[inputs..].fill(0.0);
        let quads = &mut out.quads[r * quads_per_row..(r + 1) * quads_per_row];
        for (g, (values, four_bytes)) in row_values
            .chunks_exact(GROUP)
            .zip(quads.chunks_exact_mut(QUADS_PER_GROUP))
            .enumerate()
        {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the caller checked the CPU's features; both slices hold one whole group.
            let (scale, zero) = unsafe {
                match on {
                    Int8Kernel::Avx512Vnni => quantise_group(values, four_bytes),
                    Int8Kernel::AvxVnni => avx_vnni::quantise_group(values, four_bytes),
                }
            };
            #[cfg(not(target_arch = "x86_64"))]
            let (scale, zero) = {
                let _ = (on, values, four_bytes);
                unreachable!("int8 products run on x86-64 only (available() is false elsewhere)")
            };
            out.scales[r * groups + g] = scale;
            out.zeros[r * groups + g] = zero;
        }
    }
    out
}

/// One group of 64 input values quantised with AVX-512, the bytes written four to a
/// lane into `quads`: unsigned, with a zero point, over a range that holds 0 (so
/// zeros, the padding included, stay exact); a multiply, then an add, then half and truncation
/// (the tests' plain version does the same arithmetic). Every input of every linear layer passes here.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn quantise_group(values: &[f32], quads: &mut [u32]) -> (f32, i32) {
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

/// `y += x w'` for `rows` rows of `x` (`w.inputs` wide) into `y` (`w.outputs` wide), on the
/// fastest kernel this CPU runs.
pub fn gemm_int8(x: &[f32], rows: usize, w: &PackedInt8, y: &mut [f32]) {
    let on = Int8Kernel::fastest().expect("this CPU has neither AVX-512 VNNI nor AVX-VNNI");
    gemm_int8_on(on, x, rows, w, y)
}

/// The same product on `on`.
pub fn gemm_int8_on(on: Int8Kernel, x: &[f32], rows: usize, w: &PackedInt8, y: &mut [f32]) {
    assert!(on.runs_here(), "this CPU has no {}", on.name());
    assert!(
        x.len() >= rows * w.inputs && y.len() >= rows * w.outputs,
        "the product does not fit its operands"
    );
    if rows == 0 {
        return;
    }
    // SAFETY: the CPU has `on`'s instructions (checked above).
    let xq = unsafe { quantise_rows(on, x, rows, w.inputs, w.groups) };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has the features (checked above); every index the kernel uses is inside
    // `xq` (whole tiles of rows), `w`'s vectors (whole blocks and groups) and the rows of `y`
    // below `rows` (checked above), with a mask on the last block's outputs.
    unsafe {
        match on {
            Int8Kernel::Avx512Vnni => kernel(&xq, rows, w, y),
            Int8Kernel::AvxVnni => avx_vnni::kernel(&xq, rows, w, y),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn kernel(xq: &QuantisedRows, rows: usize, w: &PackedInt8, y: &mut [f32]) {
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
#[cfg(target_arch = "x86_64")]
fn output_mask(w: &PackedInt8, block: usize) -> __mmask16 {
    crate::cpu::block_mask(w.outputs, block)
}

/// One tile: rows `r0..r0+MR` (those below `rows`) by `V` blocks of 16 outputs from `block`,
/// over every group, added into `y`.
#[cfg(target_arch = "x86_64")]
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One group of an input row quantised in plain arithmetic, as `quantise_group` does it: the bytes, the scale and the zero point, over a range
    /// that holds 0 (so zeros, the padding included, stay exact).
    fn quantise_inputs(group: &[f32]) -> (Vec<u8>, f32, i32) {
        let low = group.iter().fold(0f32, |m, v| m.min(*v));
        let high = group.iter().fold(0f32, |m, v| m.max(*v));
        if high == low {
            return (vec![0; group.len()], 1.0, 0);
        }
        let scale = (high - low) / 255.0;
        let inverse = 1.0 / scale;
        // Rounded by adding a half and truncating: the values are not negative once clamped, and this
        // runs for every input of every layer, where `round` is a library call.
        let zero = ((-low * inverse).clamp(0.0, 255.0) + 0.5) as u32 as f32;
        let bytes = group
            .iter()
            .map(|v| ((v * inverse + zero).clamp(0.0, 255.0) + 0.5) as u8)
            .collect();
        (bytes, scale, zero as i32)
    }

    /// The same quantisation, dequantised and multiplied in plain float64.
    fn reference(x: &[f32], rows: usize, w: &[f32], outputs: usize, inputs: usize, y: &mut [f32]) {
        let groups = inputs.div_ceil(GROUP);
        let padded = groups * GROUP;
        let dequantised = |values: &[f32], weights: bool| -> Vec<f64> {
            let mut row = values.to_vec();
            row.resize(padded, 0.0);
            row.chunks_exact(GROUP)
                .flat_map(|group| {
                    if weights {
                        let (q, s) = quantise_weights(group);
                        q.iter().map(|&b| f64::from(b) * f64::from(s)).collect::<Vec<_>>()
                    } else {
                        let (q, s, z) = quantise_inputs(group);
                        q.iter().map(|&b| f64::from(i32::from(b) - z) * f64::from(s)).collect()
                    }
                })
                .collect()
        };
        for r in 0..rows {
            let xr = dequantised(&x[r * inputs..(r + 1) * inputs], false);
            for o in 0..outputs {
                let wr = dequantised(&w[o * inputs..(o + 1) * inputs], true);
                y[r * outputs + o] += xr.iter().zip(&wr).map(|(a, b)| a * b).sum::<f64>() as f32;
            }
        }
    }

    #[test]
    fn quantised_groups_stay_within_half_a_step_keep_zero_exact_and_match_the_plain_arithmetic() {
        let mut group: Vec<f32> = (0..GROUP).map(|i| (i as f32 - 20.0) / 7.0).collect();
        group[5] = 0.0;
        group[40] = 0.0;
        let (q, scale, zero) = quantise_inputs(&group);
        for (v, b) in group.iter().zip(&q) {
            let back = (f32::from(*b) - zero as f32) * scale;
            assert!((back - v).abs() <= scale / 2.0 + 1e-6, "{v} came back as {back}");
            if *v == 0.0 {
                assert_eq!(back, 0.0, "zero is not exact");
            }
        }
        let (q, _, zero) = quantise_inputs(&[0.0; GROUP]);
        assert_eq!((q, zero), (vec![0; GROUP], 0));
        let (q, scale) = quantise_weights(&group);
        assert_eq!(q.iter().map(|b| b.unsigned_abs()).max(), Some(127));
        assert!((scale - 43.0 / 7.0 / 127.0).abs() < 1e-6);
        // The vector code of each kernel gives the plain code's bytes, scale and zero point.
        for (on, values) in kernels_here().into_iter().flat_map(|on| {
            [
                group.clone(),
                group.iter().map(|v| -v * 3.0).collect(),
                vec![0.0; GROUP],
                vec![2.5; GROUP],
            ]
            .into_iter()
            .map(move |values| (on, values))
        }) {
            let (bytes, scale, zero) = quantise_inputs(&values);
            let mut quads = vec![0u32; QUADS_PER_GROUP];
            // SAFETY: the CPU has the features (kernels_here); both slices hold one group.
            let (vector_scale, vector_zero) = unsafe {
                match on {
                    Int8Kernel::Avx512Vnni => quantise_group(&values, &mut quads),
                    Int8Kernel::AvxVnni => avx_vnni::quantise_group(&values, &mut quads),
                }
            };
            let vector_bytes: Vec<u8> = quads.iter().flat_map(|q| q.to_le_bytes()).collect();
            assert_eq!((vector_bytes, vector_scale, vector_zero), (bytes, scale, zero), "{on:?}");
        }
    }

    /// The kernels this CPU runs (each test says which it could not check).
    fn kernels_here() -> Vec<Int8Kernel> {
        [Int8Kernel::Avx512Vnni, Int8Kernel::AvxVnni]
            .into_iter()
            .filter(|on| {
                let here = on.runs_here();
                if !here {
                    eprintln!("no {} here: its kernel is not checked", on.name());
                }
                here
            })
            .collect()
    }

    #[test]
    fn both_kernels_give_the_same_bits() {
        // The same integer sums and the same float operations in the same order, per output.
        if kernels_here().len() < 2 {
            return;
        }
        let (rows, outputs, inputs) = (37, 200, 700);
        let x: Vec<f32> = (0..rows * inputs).map(|i| ((i * 31 % 101) as f32 - 50.0) / 9.0).collect();
        let w: Vec<f32> = (0..outputs * inputs).map(|i| ((i * 17 % 89) as f32 - 44.0) / 60.0).collect();
        let packed = PackedInt8::pack(&w, outputs, inputs);
        let run = |on| {
            let mut y: Vec<f32> = (0..rows * outputs).map(|i| (i % 3) as f32).collect();
            gemm_int8_on(on, &x, rows, &packed, &mut y);
            y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(run(Int8Kernel::Avx512Vnni), run(Int8Kernel::AvxVnni));
    }

    #[test]
    fn each_kernel_matches_the_same_quantisation_in_plain_arithmetic_on_ragged_shapes() {
        for (on, &(rows, outputs, inputs)) in kernels_here().into_iter().flat_map(|on| {
            [
                (1, 16, 64),
                (7, 33, 5),
                (13, 70, 300),
                (4, 64, 256),
                (20, 384, 384),
                (5, 17, 1536),
                (2, 8, 64),
                (3, 9, 130),
            ]
            .iter()
            .map(move |shape| (on, shape))
        }) {
            let x: Vec<f32> = (0..rows * inputs).map(|i| ((i * 7919 % 113) as f32 - 56.0) / 37.0).collect();
            let w: Vec<f32> = (0..outputs * inputs)
                .map(|i| ((i * 104_729 % 97) as f32 - 48.0) / 51.0)
                .collect();
            let bias: Vec<f32> = (0..rows * outputs).map(|i| (i % 5) as f32).collect();
            let mut want = bias.clone();
            reference(&x, rows, &w, outputs, inputs, &mut want);
            let mut got = bias.clone();
            gemm_int8_on(on, &x, rows, &PackedInt8::pack(&w, outputs, inputs), &mut got);
            for (g, e) in got.iter().zip(&want) {
                assert!(
                    (g - e).abs() <= 1e-4 * e.abs().max(1.0),
                    "{on:?} {rows}x{outputs}x{inputs}: {g} against {e}"
                );
            }
        }
    }
}
