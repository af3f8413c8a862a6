//! `--precision int8`: the linear layers' products in 8-bit integers with VNNI dot products
//! (`vpdpbusd`: four unsigned-by-signed byte products added into each 32-bit lane): AVX-512 VNNI
//! on 16 lanes, or AVX-VNNI on 8 (`int8_gemm/avx_vnni.rs`) on CPUs without AVX-512; on CPUs with
//! neither, AVX2's `vpmaddwd` on the bytes widened to words (`int8_gemm/avx2_words.rs`). All
//! three give the same integer sums, and the same bits.
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
mod avx2_words;
#[cfg(target_arch = "x86_64")]
mod avx512_vnni;
#[cfg(target_arch = "x86_64")]
mod avx_vnni;
mod quantised;

pub use quantised::PackedInt8;

/// The kernel a product runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Kernel {
    /// AVX-512 F and VNNI: 16 lanes.
    Avx512Vnni,
    /// AVX2, FMA and AVX-VNNI (256-bit, VEX-encoded): 8 lanes.
    AvxVnni,
    /// AVX2 and FMA: 8 lanes of `vpmaddwd` on words.
    Avx2,
}

impl Int8Kernel {
    /// AVX-512 VNNI where the CPU has it, then AVX-VNNI, then AVX2; `None` without any.
    pub fn fastest() -> Option<Int8Kernel> {
        [Int8Kernel::Avx512Vnni, Int8Kernel::AvxVnni, Int8Kernel::Avx2]
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
                Int8Kernel::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// The input quantiser of the kernel's instruction set: AVX-512's, or AVX2's for both
    /// 256-bit kernels (all give the same bytes).
    #[cfg(target_arch = "x86_64")]
    fn group_quantiser(self) -> quantised::GroupQuantiser {
        match self {
            Int8Kernel::Avx512Vnni => avx512_vnni::quantise_group,
            Int8Kernel::AvxVnni | Int8Kernel::Avx2 => avx_vnni::quantise_group,
        }
    }

    /// `avx512vnni`, `avxvnni` or `avx2`.
    pub fn name(self) -> &'static str {
        match self {
            Int8Kernel::Avx512Vnni => "avx512vnni",
            Int8Kernel::AvxVnni => "avxvnni",
            Int8Kernel::Avx2 => "avx2",
        }
    }
}

/// Whether this CPU runs one of the kernels.
pub fn available() -> bool {
    Int8Kernel::fastest().is_some()
}

/// `y += x w'` for `rows` rows of `x` (`w.inputs` wide) into `y` (`w.outputs` wide), on the
/// fastest kernel this CPU runs.
pub fn gemm_int8(x: &[f32], rows: usize, w: &PackedInt8, y: &mut [f32]) {
    let on = Int8Kernel::fastest().expect("this CPU has neither VNNI nor AVX2");
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
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has `on`'s instructions (checked above); every index the kernel uses is
    // inside the quantised rows (whole tiles of rows), `w`'s vectors (whole blocks and groups)
    // and the rows of `y` below `rows` (checked above); the last block's outputs past `w.outputs`
    // are never touched (masks on AVX-512, a copy on the 256-bit kernels).
    unsafe {
        let xq = quantised::quantise_rows(on.group_quantiser(), x, rows, w.inputs, w.groups);
        match on {
            Int8Kernel::Avx512Vnni => avx512_vnni::kernel(&xq, rows, w, y),
            Int8Kernel::AvxVnni => avx_vnni::kernel(&xq, rows, w, y),
            Int8Kernel::Avx2 => avx2_words::kernel(&xq, rows, w, y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::quantised::{quantise_weights, GROUP, QUADS_PER_GROUP};
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
            let (vector_scale, vector_zero) = unsafe { on.group_quantiser()(&values, &mut quads) };
            let vector_bytes: Vec<u8> = quads.iter().flat_map(|q| q.to_le_bytes()).collect();
            assert_eq!((vector_bytes, vector_scale, vector_zero), (bytes, scale, zero), "{on:?}");
        }
    }

    /// The kernels this CPU runs (each test says which it could not check).
    fn kernels_here() -> Vec<Int8Kernel> {
        [Int8Kernel::Avx512Vnni, Int8Kernel::AvxVnni, Int8Kernel::Avx2]
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

    /// The kernels' arithmetic in plain code: each group's exact integer sum, corrected for the
    /// zero point, then one fused multiply-add by the product of the two scales, group after
    /// group.
    fn integer_reference(x: &[f32], rows: usize, w: &PackedInt8, y: &mut [f32]) {
        let padded = w.groups * GROUP;
        let weight = |o: usize, i: usize| {
            let lane = w.lanes[((o / 16) * (padded / 4) + i / 4) * 16 + o % 16];
            i32::from(lane.to_le_bytes()[i % 4] as i8)
        };
        for r in 0..rows {
            let mut row = x[r * w.inputs..(r + 1) * w.inputs].to_vec();
            row.resize(padded, 0.0);
            let groups: Vec<_> = row.chunks_exact(GROUP).map(quantise_inputs).collect();
            for o in 0..w.outputs {
                let mut total = y[r * w.outputs + o];
                for (g, (bytes, x_scale, zero)) in groups.iter().enumerate() {
                    let sum: i32 = (0..GROUP).map(|i| i32::from(bytes[i]) * weight(o, g * GROUP + i)).sum();
                    let at = ((o / 16) * w.groups + g) * 16 + o % 16;
                    let exact = sum - zero * w.sums[at];
                    total = (exact as f32).mul_add(w.scales[at] * x_scale, total);
                }
                y[r * w.outputs + o] = total;
            }
        }
    }

    /// Times each kernel this CPU runs, and the float32 packed kernel, at the encoders' shapes
    /// (run by hand with `--ignored --nocapture`); `make bench` gives the encoder's figures.
    #[test]
    #[ignore]
    fn kernels_timed() {
        use crate::cpu::InstructionSet;
        use crate::packed_gemm::{gemm_packed, PackedMatrix, Rows};
        for (rows, outputs, inputs) in [(510, 1152, 384), (510, 2304, 768), (510, 768, 3072)] {
            let x: Vec<f32> = (0..rows * inputs).map(|i| (i % 13) as f32 / 13.0 - 0.4).collect();
            let w: Vec<f32> = (0..outputs * inputs).map(|i| (i % 7) as f32 / 70.0 - 0.04).collect();
            let (packed, float) = (
                PackedInt8::pack(&w, outputs, inputs),
                PackedMatrix::from_rows(&w, outputs, inputs),
            );
            let times = (20_000_000_000 / (rows * outputs * inputs)).max(1);
            let rate = |seconds: f64| 2.0 * (rows * outputs * inputs * times) as f64 / seconds / 1e9;
            let mut y = vec![0.0; rows * outputs];
            for on in kernels_here() {
                let started = std::time::Instant::now();
                for _ in 0..times {
                    gemm_int8_on(on, &x, rows, &packed, &mut y);
                }
                eprintln!(
                    "{rows}x{outputs}x{inputs} {on:?}: {:.0} G operations/s",
                    rate(started.elapsed().as_secs_f64())
                );
            }
            let isa = InstructionSet::detect();
            let started = std::time::Instant::now();
            for _ in 0..times {
                let x = Rows {
                    data: &x,
                    rows,
                    stride: inputs,
                };
                gemm_packed(isa, x, &float, &mut y, outputs, false);
            }
            eprintln!(
                "{rows}x{outputs}x{inputs} float32 {isa:?}: {:.0} G operations/s",
                rate(started.elapsed().as_secs_f64())
            );
        }
    }

    #[test]
    fn every_kernel_gives_the_bits_of_the_integer_arithmetic() {
        // The same integer sums and the same float operations in the same order, per output.
        let (rows, outputs, inputs) = (37, 200, 700);
        let x: Vec<f32> = (0..rows * inputs).map(|i| ((i * 31 % 101) as f32 - 50.0) / 9.0).collect();
        let w: Vec<f32> = (0..outputs * inputs).map(|i| ((i * 17 % 89) as f32 - 44.0) / 60.0).collect();
        let packed = PackedInt8::pack(&w, outputs, inputs);
        let bias: Vec<f32> = (0..rows * outputs).map(|i| (i % 3) as f32).collect();
        let mut want = bias.clone();
        integer_reference(&x, rows, &packed, &mut want);
        for on in kernels_here() {
            let mut y = bias.clone();
            gemm_int8_on(on, &x, rows, &packed, &mut y);
            let differ = y.iter().zip(&want).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            assert_eq!(differ, 0, "{on:?}: {differ} of {} outputs differ in their bits", y.len());
        }
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
