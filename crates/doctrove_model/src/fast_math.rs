//! `exp` and BERT's exact GELU written so the compiler can vectorise the loops that call them:
//! straight-line arithmetic with no call into libm (whose `expf` and `erff` run one value at a
//! time and took a fifth of the encoder's time on abstract-length texts). Accurate to a few
//! units in the last place of an f32 for `exp`, and to 2e-7 absolute for GELU's `Phi`; the
//! tests compare both with the standard library and libm over their whole useful range.

use std::f32::consts::{FRAC_1_SQRT_2, LOG2_E};

use crate::cpu::InstructionSet;

/// `a * b + c`: fused (one rounding, one instruction) in the loops compiled for CPUs with FMA,
/// two operations elsewhere (where `mul_add` would be a call into libm).
#[inline(always)]
fn madd<const FUSED: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FUSED {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `e^x`, with x clamped to [-87, 88] (so about 1.6e-38 below, and finite above).
#[cfg(test)]
pub fn exp(x: f32) -> f32 {
    exp_with::<false>(x)
}

/// `e^x`, its multiply-adds fused or not.
#[inline(always)]
fn exp_with<const FUSED: bool>(x: f32) -> f32 {
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
    let shifted = madd::<FUSED>(x, LOG2_E, ROUND);
    let k = shifted - ROUND;
    let k_bits = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    // r = x - k ln 2 in two parts (Cody and Waite), so r keeps its precision.
    let r = madd::<FUSED>(-k, LN_2_LOW, madd::<FUSED>(-k, LN_2_HIGH, x));
    // e^r on [-ln2/2, ln2/2] (the Cephes expf polynomial).
    let mut p = 1.987_569_1e-4_f32;
    p = madd::<FUSED>(p, r, 1.398_2e-3);
    p = madd::<FUSED>(p, r, 8.333_452e-3);
    p = madd::<FUSED>(p, r, 4.166_579_6e-2);
    p = madd::<FUSED>(p, r, 1.666_666_5e-1);
    // Cephes' coefficient as published; f32 rounds it to 0.5.
    #[allow(clippy::excessive_precision)]
    const HALF: f32 = 5.000_000_1e-1;
    p = madd::<FUSED>(p, r, HALF);
    let e_r = madd::<FUSED>(p * r, r, r + 1.0);
    // 2^k from its exponent bits.
    e_r * f32::from_bits(((k_bits + 127) as u32) << 23)
}

/// `x * Phi(x)`, Phi the standard normal distribution function, as BERT's `gelu`
/// (`0.5 x (1 + erf(x / sqrt 2))`). `1 + erf(z)` is taken as `erfc(-z)` for negative z rather
/// than computed as a difference of values near 1 (the approximation is good to 1.5e-7
/// absolute). One value at a time, in plain arithmetic: the reference for [`gelu_all`].
#[cfg(test)]
pub fn gelu(x: f32) -> f32 {
    let mut one = [x; VALUES];
    gelu_values::<false>(&mut one, |d| d.map(|d| 1.0 / d));
    one[0]
}

/// GELU of `VALUES` values, with `reciprocal` for the one division.
#[inline(always)]
fn gelu_values<const FUSED: bool>(values: &mut [f32; VALUES], reciprocal: impl Fn([f32; VALUES]) -> [f32; VALUES]) {
    let z = values.map(|x| x * FRAC_1_SQRT_2);
    let a = z.map(f32::abs);
    // erfc(a) = poly(t) t e^(-a^2), t = 1 / (1 + p a): Abramowitz and Stegun 7.1.26.
    let t = reciprocal(a.map(|a| madd::<FUSED>(0.327_591_1, a, 1.0)));
    for (((x, z), a), t) in values.iter_mut().zip(z).zip(a).zip(t) {
        let mut poly = 1.061_405_4_f32;
        poly = madd::<FUSED>(poly, t, -1.453_152);
        poly = madd::<FUSED>(poly, t, 1.421_413_8);
        poly = madd::<FUSED>(poly, t, -0.284_496_74);
        poly = madd::<FUSED>(poly, t, 0.254_829_6);
        let erfc = poly * t * exp_with::<FUSED>(-a * a);
        let one_plus_erf = if z >= 0.0 { 2.0 - erfc } else { erfc };
        *x *= 0.5 * one_plus_erf;
    }
}

/// Values per step of the vector loops: one AVX-512 register of `f32`.
const VALUES: usize = 16;

/// GELU of every value, `VALUES` at a time (the last step padded with zeros).
#[inline(always)]
fn gelu_slice<const FUSED: bool>(values: &mut [f32], reciprocal: impl Fn([f32; VALUES]) -> [f32; VALUES] + Copy) {
    let mut chunks = values.chunks_exact_mut(VALUES);
    for chunk in &mut chunks {
        let block: &mut [f32; VALUES] = chunk.try_into().expect("chunks are VALUES long");
        gelu_values::<FUSED>(block, reciprocal);
    }
    let tail = chunks.into_remainder();
    if tail.is_empty() {
        return;
    }
    let mut block = [0.0; VALUES];
    block[..tail.len()].copy_from_slice(tail);
    gelu_values::<FUSED>(&mut block, reciprocal);
    tail.copy_from_slice(&block[..tail.len()]);
}

/// Applies GELU to every value. The loop runs sixteen values at a time with AVX-512 F (the
/// division as a reciprocal estimate and one Newton step, good to about 2^-28, where `vdivps`
/// was a third of the loop's time), eight with AVX2 and FMA (the CPU's instruction set,
/// `cpu.rs`); the portable build of the crate targets SSE2 only.
pub fn gelu_all(values: &mut [f32]) {
    match InstructionSet::detect() {
        // SAFETY (both): the CPU has the features the function is compiled for.
        #[cfg(target_arch = "x86_64")]
        InstructionSet::Avx512 => unsafe { gelu_all_avx512(values) },
        #[cfg(target_arch = "x86_64")]
        InstructionSet::Avx2 => unsafe { gelu_all_avx2(values) },
        _ => gelu_slice::<false>(values, |d| d.map(|d| 1.0 / d)),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn gelu_all_avx512(values: &mut [f32]) {
    gelu_slice::<true>(values, |d| reciprocal_avx512(d))
}

/// `1 / d` from `vrcp14ps` (relative error below 2^-14) and one Newton step, `r (2 - d r)`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn reciprocal_avx512(d: [f32; VALUES]) -> [f32; VALUES] {
    use std::arch::x86_64::*;
    // SAFETY: `[f32; 16]` and `__m512` have the same size; every bit pattern is valid for both.
    let d: __m512 = unsafe { std::mem::transmute::<[f32; VALUES], __m512>(d) };
    let r = _mm512_rcp14_ps(d);
    let refined = _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0)));
    // Where the estimate is zero (d infinite; GELU's d stays below 1e38 otherwise) the step
    // would give 0 * inf, a NaN.
    let r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(r, _mm512_setzero_ps()), refined, r);
    // SAFETY: as above.
    unsafe { std::mem::transmute::<__m512, [f32; VALUES]>(r) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_all_avx2(values: &mut [f32]) {
    gelu_slice::<true>(values, |d| reciprocal_avx2(d))
}

/// `1 / d` as two `vdivps` on eight values each: the same bits as `1.0 / d`. Named and compiled
/// for AVX so it is inlined as two instructions; `d.map(|d| 1.0 / d)` here stayed a call to
/// `array::map` and sixteen calls of a one-division closure per step.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
fn reciprocal_avx2(d: [f32; VALUES]) -> [f32; VALUES] {
    use std::arch::x86_64::*;
    // SAFETY: `[f32; 16]` and `[__m256; 2]` have the same size; every bit pattern is valid for
    // both.
    let [low, high] = unsafe { std::mem::transmute::<[f32; VALUES], [__m256; 2]>(d) };
    let one = _mm256_set1_ps(1.0);
    let r = [_mm256_div_ps(one, low), _mm256_div_ps(one, high)];
    // SAFETY: as above.
    unsafe { std::mem::transmute::<[__m256; 2], [f32; VALUES]>(r) }
}

/// Softmax of one row of scores, in place. The maximum, then the exponentials and their sum,
/// then the scaling, are each a loop over the row, so the exponentials (the bulk of the work)
/// are computed several at a time: sixteen with AVX-512 F, eight with AVX2 and FMA.
pub fn softmax(row: &mut [f32]) {
    match InstructionSet::detect() {
        // SAFETY (both): the CPU has the features the function is compiled for.
        #[cfg(target_arch = "x86_64")]
        InstructionSet::Avx512 => unsafe { softmax_avx512(row) },
        #[cfg(target_arch = "x86_64")]
        InstructionSet::Avx2 => unsafe { softmax_avx2(row) },
        _ => softmax_portable::<false>(row),
    }
}

/// The row's maximum subtracted, then each exponential computed and summed in one loop, then
/// scaled by the reciprocal of the sum.
#[inline(always)]
fn softmax_portable<const FUSED: bool>(row: &mut [f32]) {
    let max = max(row);
    let mut acc = [0.0; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *v = exp_with::<FUSED>(*v - max);
            *a += *v;
        }
    }
    for (a, v) in acc.iter_mut().zip(chunks.into_remainder()) {
        *v = exp_with::<FUSED>(*v - max);
        *a += *v;
    }
    let scale = 1.0 / join(acc, |a, b| a + b);
    row.iter_mut().for_each(|v| *v *= scale);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn softmax_avx512(row: &mut [f32]) {
    softmax_portable::<true>(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_avx2(row: &mut [f32]) {
    softmax_portable::<true>(row)
}

/// Accumulators side by side: a reduction over one accumulator is a chain of dependent
/// operations the compiler may not reorder (float addition is not associative), and ran at one
/// value per four cycles; sixteen chains fill a vector register.
const LANES: usize = 16;
// `join` halves the chains until one is left.
const _: () = assert!(LANES.is_power_of_two());

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
    self::join(acc, join)
}

/// The chains joined in halves (a few vector shuffles rather than a chain of sixteen scalar
/// steps).
#[inline(always)]
fn join(mut acc: [f32; LANES], op: impl Fn(f32, f32) -> f32) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] = op(acc[i], acc[i + width]);
        }
        width /= 2;
    }
    acc[0]
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
            // Both forms: two operations per step, and fused (`mul_add`, exact here in software
            // where the CPU has no FMA).
            for got in [exp(x), exp_with::<true>(x)] {
                worst = worst.max(((got - want) / want).abs());
            }
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
        // 600 values: whole steps of 16 and a partial last one; the CPU's path (AVX-512 with
        // the reciprocal estimate here), and the fused arithmetic with a division, which only
        // CPUs with AVX2 run otherwise.
        let mut fused = values.clone();
        gelu_slice::<true>(&mut fused, |d| d.map(|d| 1.0 / d));
        gelu_all(&mut values);
        for ((got, fused), want) in values.iter().zip(&fused).zip(&want) {
            assert!((got - want).abs() < 1e-6, "{got} against {want}");
            assert!((fused - want).abs() < 1e-6, "{fused} against {want}");
        }
        // The AVX2 build's two `vdivps` give the division's bits.
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            let mut avx2: Vec<f32> = (-300..300).map(|i| i as f32 / 37.0).collect();
            // SAFETY: the CPU has AVX2 and FMA.
            unsafe { gelu_all_avx2(&mut avx2) };
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&avx2), bits(&fused));
        }
        // Where the reciprocal's estimate is zero, as the division gives it (-inf times a zero
        // weight is a NaN in both).
        let extremes = [f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e30, f32::MAX, f32::NAN];
        let mut got = extremes;
        gelu_all(&mut got);
        for (got, x) in got.into_iter().zip(extremes) {
            let want = gelu(x);
            assert!(
                got == want || (got.is_nan() && want.is_nan()),
                "gelu({x}): {got} against {want}"
            );
        }
        assert_eq!([got[0], got[2], got[3], got[4]], [f32::INFINITY, 1e30, 0.0, f32::MAX]);
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
