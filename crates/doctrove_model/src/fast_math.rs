//! `exp` and BERT's exact GELU written so the compiler can vectorise the loops that call them:
//! straight-line arithmetic with no call into libm (whose `expf` and `erff` run one value at a
//! time and took a fifth of the encoder's time on abstract-length texts). Accurate to a few
//! units in the last place of an f32 for `exp`, and to 2e-7 absolute for GELU's `Phi`; the
//! tests compare both with the standard library and libm over their whole useful range.

use std::f32::consts::{FRAC_1_SQRT_2, LOG2_E};

use crate::cpu::InstructionSet;

/// `e^x`, with x clamped to [-87, 88] (so about 1.6e-38 below, and finite above).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // The integer read from the bits rather than cast (`as i32` saturates, which made the
    // callers' loops partly scalar); comparisons rather than max and min, so a NaN stays a NaN.
    #[allow(clippy::manual_clamp)]
    let x = if x < -87.0 {
        -87.0
    } else if x > 88.0 {
        88.0
    } else {
        x
    };
    // Round x / ln 2 to the nearest integer k without a call: adding 1.5 * 2^23 leaves the
    // integer part in the mantissa.
    const ROUND: f32 = 12_582_912.0;
    let shifted = x * LOG2_E + ROUND;
    let k = shifted - ROUND;
    let k_bits = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    // r = x - k ln 2 in two parts (Cody and Waite), so r keeps its precision.
    let r = x - k * LN_2_HIGH - k * LN_2_LOW;
    // e^r on [-ln2/2, ln2/2] (the Cephes expf polynomial).
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    // Cephes' coefficient as published; f32 rounds it to 0.5.
    #[allow(clippy::excessive_precision)]
    const HALF: f32 = 5.000_000_1e-1;
    p = p * r + HALF;
    let e_r = p * r * r + r + 1.0;
    // 2^k from its exponent bits.
    e_r * f32::from_bits(((k_bits + 127) as u32) << 23)
}

/// `x * Phi(x)`, Phi the standard normal distribution function, as BERT's `gelu`
/// (`0.5 x (1 + erf(x / sqrt 2))`). `1 + erf(z)` is taken as `erfc(-z)` for negative z rather
/// than computed as a difference of values near 1 (the approximation is good to 1.5e-7
/// absolute).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    let z = x * FRAC_1_SQRT_2;
    let a = z.abs();
    // erfc(a) = poly(t) t e^(-a^2), t = 1 / (1 + p a): Abramowitz and Stegun 7.1.26.
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let mut poly = 1.061_405_4_f32;
    poly = poly * t - 1.453_152;
    poly = poly * t + 1.421_413_8;
    poly = poly * t - 0.284_496_74;
    poly = poly * t + 0.254_829_6;
    let erfc = poly * t * exp(-a * a);
    let one_plus_erf = if z >= 0.0 { 2.0 - erfc } else { erfc };
    0.5 * x * one_plus_erf
}

/// Applies GELU to every value. The loop runs sixteen values at a time with AVX-512 F, eight
/// with AVX2 and FMA (the CPU's instruction set, `cpu.rs`); the portable build of the crate
/// targets SSE2 only.
pub fn gelu_all(values: &mut [f32]) {
    match InstructionSet::detect() {
        // SAFETY (both): the CPU has the features the function is compiled for.
        #[cfg(target_arch = "x86_64")]
        InstructionSet::Avx512 => unsafe { gelu_all_avx512(values) },
        #[cfg(target_arch = "x86_64")]
        InstructionSet::Avx2 => unsafe { gelu_all_avx2(values) },
        _ => gelu_all_portable(values),
    }
}

#[inline(always)]
fn gelu_all_portable(values: &mut [f32]) {
    values.iter_mut().for_each(|v| *v = gelu(*v));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn gelu_all_avx512(values: &mut [f32]) {
    gelu_all_portable(values)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_all_avx2(values: &mut [f32]) {
    gelu_all_portable(values)
}

/// Softmax of one row of scores, in place. Each step is a loop of its own, so the
/// exponentials (the bulk of the work) are computed several at a time: sixteen with AVX-512 F,
/// eight with AVX2 and FMA.
pub fn softmax(row: &mut [f32]) {
    match InstructionSet::detect() {
        // SAFETY (both): the CPU has the features the function is compiled for.
        #[cfg(target_arch = "x86_64")]
        InstructionSet::Avx512 => unsafe { softmax_avx512(row) },
        #[cfg(target_arch = "x86_64")]
        InstructionSet::Avx2 => unsafe { softmax_avx2(row) },
        _ => softmax_portable(row),
    }
}

#[inline(always)]
fn softmax_portable(row: &mut [f32]) {
    let max = max(row);
    row.iter_mut().for_each(|v| *v = exp(*v - max));
    let total = sum(row);
    let scale = 1.0 / total;
    row.iter_mut().for_each(|v| *v *= scale);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn softmax_avx512(row: &mut [f32]) {
    softmax_portable(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_avx2(row: &mut [f32]) {
    softmax_portable(row)
}

/// Accumulators side by side: a reduction over one accumulator is a chain of dependent
/// operations the compiler may not reorder (float addition is not associative), and ran at one
/// value per four cycles; sixteen chains fill a vector register.
const LANES: usize = 16;

/// `values` folded by `step` from `start` in `LANES` interleaved chains, then the chains
/// joined by `join`.
#[inline(always)]
fn lanes(values: &[f32], start: f32, step: impl Fn(f32, f32) -> f32, join: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [start; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a = step(*a, *v);
        }
    }
    for (a, v) in acc.iter_mut().zip(tail) {
        *a = step(*a, *v);
    }
    acc.into_iter().fold(start, join)
}

/// The sum of `values`, in `LANES` chains (so in another order than one after the other).
#[inline(always)]
pub fn sum(values: &[f32]) -> f32 {
    lanes(values, 0.0, |a, v| a + v, |a, b| a + b)
}

/// The sum of the squares of `values`' distances to `mean`, in `LANES` chains.
#[inline(always)]
pub fn squared_deviations(values: &[f32], mean: f32) -> f32 {
    lanes(values, 0.0, |a, v| a + (v - mean) * (v - mean), |a, b| a + b)
}

/// The largest of `values` (minus infinity for none), in `LANES` chains.
#[inline(always)]
fn max(values: &[f32]) -> f32 {
    lanes(values, f32::NEG_INFINITY, f32::max, f32::max)
}

/// `ln 2` in two parts (Cody and Waite): the high part has few enough bits that `k * LN_2_HIGH`
/// is exact for the `k` an `f32` exponent takes.
const LN_2_HIGH: f32 = 0.693_359_4;
const LN_2_LOW: f32 = -2.121_944_4e-4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_parts_of_ln_2_add_up_to_it() {
        assert!((f64::from(LN_2_HIGH) + f64::from(LN_2_LOW) - std::f64::consts::LN_2).abs() < 1e-7);
    }

    #[test]
    fn exp_agrees_with_the_standard_library() {
        let mut worst = 0f32;
        for i in -87_000..=88_000 {
            let x = i as f32 / 1000.0;
            let want = x.exp();
            worst = worst.max(((exp(x) - want) / want).abs());
        }
        assert!(worst < 4e-7, "largest relative error {worst}");
        assert_eq!(exp(-1000.0), exp(-87.0));
        assert!(exp(1000.0).is_finite());
        // A NaN (from a broken input or kernel) stays visible rather than becoming a weight.
        assert!(exp(f32::NAN).is_nan());
        let mut row = [0.5, f32::NAN, 1.0];
        softmax(&mut row);
        assert!(row.iter().any(|v| v.is_nan()), "{row:?}");
    }

    #[test]
    fn sums_and_maxima_over_lanes_cover_every_value_once() {
        for n in [0, 1, 15, 16, 17, 100, 384] {
            let values: Vec<f32> = (0..n).map(|i| (i % 7) as f32 - 3.0 + i as f32 / 1024.0).collect();
            let want: f64 = values.iter().map(|&v| f64::from(v)).sum();
            assert!((f64::from(sum(&values)) - want).abs() < 1e-4, "{n} values");
            let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(super::max(&values), max, "{n} values");
            let mean = want as f32 / n.max(1) as f32;
            let squares: f64 = values.iter().map(|&v| f64::from(v - mean).powi(2)).sum();
            assert!(
                (f64::from(squared_deviations(&values, mean)) - squares).abs() < 1e-3 * squares.max(1.0),
                "{n} values"
            );
        }
    }

    #[test]
    fn softmax_rows_sum_to_one_and_keep_order() {
        let mut row = [1.0, 2.0, 3.0, 4.0];
        softmax(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[0] < row[1] && row[1] < row[2] && row[2] < row[3]);
        assert!((row[3] - 0.643_914_3).abs() < 1e-6);
        // Large scores do not overflow: the row's maximum is subtracted first.
        let mut large = [1000.0, 1001.0];
        softmax(&mut large);
        assert!((large[1] - 0.731_058_6).abs() < 1e-6);
    }

    #[test]
    fn gelu_over_a_slice_equals_gelu_of_each_value() {
        let mut values: Vec<f32> = (-300..300).map(|i| i as f32 / 37.0).collect();
        let want: Vec<f32> = values.iter().map(|&x| gelu(x)).collect();
        gelu_all(&mut values);
        for (got, want) in values.iter().zip(&want) {
            assert!((got - want).abs() < 1e-6);
        }
    }

    #[test]
    fn gelu_agrees_with_libm_erf() {
        let mut worst = 0f64;
        for i in -10_000..=10_000 {
            let x = i as f32 / 1000.0;
            let want = 0.5 * f64::from(x) * (1.0 + libm::erf(f64::from(x) / std::f64::consts::SQRT_2));
            worst = worst.max((f64::from(gelu(x)) - want).abs());
        }
        assert!(worst < 1e-6, "largest absolute error {worst}");
        assert_eq!(gelu(0.0), 0.0);
    }
}
