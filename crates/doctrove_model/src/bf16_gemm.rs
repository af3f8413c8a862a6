//! `--precision bf16`: the linear layers' products in bfloat16 with float32 sums, on AMX tiles
//! (`bf16_gemm/amx_tiles.rs`) where the CPU has them and Linux grants them, with AVX-512 BF16
//! dot products (`bf16_gemm/avx512_bf16.rs`) otherwise. Weights are rounded to bfloat16 once,
//! at load, and packed in the order the kernels read them (`bf16_gemm/packing.rs`); each
//! layer's input is rounded when the layer runs.
//!
//! Written here because Debian's OpenBLAS (0.3.21) has no `sbgemm` in its library and oneDNN
//! would add a runtime with threads of its own beside the encoder's one-pass-per-core
//! scheduling. The tile kernel runs the same products ten to thirteen times faster than the
//! AVX-512 one (measured on the encoders' shapes).

#[cfg(target_arch = "x86_64")]
mod amx_tiles;
#[cfg(target_arch = "x86_64")]
mod avx512_bf16;
mod packing;

use packing::pack_rows;
pub use packing::{Lanes, PackedWeights};

/// The kernel a product runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Kernel {
    /// AVX-512 BF16 dot products (`vdpbf16ps`).
    Avx512,
    /// AMX tile products (`tdpbf16ps`).
    Amx,
}

impl Bf16Kernel {
    /// AMX where the process may use it, AVX-512 BF16 otherwise.
    pub fn fastest() -> Bf16Kernel {
        if crate::amx::bf16_granted() {
            Bf16Kernel::Amx
        } else {
            Bf16Kernel::Avx512
        }
    }

    /// `amx-bf16` or `avx512bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Bf16Kernel::Avx512 => "avx512bf16",
            Bf16Kernel::Amx => "amx-bf16",
        }
    }
}

/// Whether this CPU runs the kernel.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `y += x w'` for `rows` rows of `x` (`w.inputs` wide) into `y` (`w.outputs` wide), on the
/// fastest kernel this process may run. (The encoder fills `y` with the bias first: measured on
/// all-mpnet-base-v2 with AMX, writing `x w' + bias` in one pass instead ran 15% slower with
/// fresh, unaligned outputs and still 2% slower with reused, aligned ones: its scattered stores
/// wait for each line of `y`, where the fill streams them in order.) `x` is rounded into
/// `rounded`, which the caller keeps for the next product.
pub fn gemm_bf16(x: &[f32], rows: usize, w: &PackedWeights, y: &mut [f32], rounded: &mut Lanes) {
    product(Bf16Kernel::fastest(), x, rows, w, y, rounded)
}

/// `y += x w'` on `on`.
#[cfg(test)]
pub fn gemm_bf16_on(on: Bf16Kernel, x: &[f32], rows: usize, w: &PackedWeights, y: &mut [f32], rounded: &mut Lanes) {
    product(on, x, rows, w, y, rounded)
}

/// `y += x w'` on `on`.
fn product(on: Bf16Kernel, x: &[f32], rows: usize, w: &PackedWeights, y: &mut [f32], rounded: &mut Lanes) {
    assert!(available(), "this CPU has no AVX-512 BF16");
    assert!(
        on == Bf16Kernel::Avx512 || crate::amx::bf16_granted(),
        "AMX is not granted here"
    );
    assert!(
        x.len() >= rows * w.inputs && y.len() >= rows * w.outputs,
        "the product does not fit its operands"
    );
    if rows == 0 {
        return;
    }
    pack_rows(x, rows, w.inputs, w.pairs, rounded);
    let xp = &rounded[..];
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has the features (checked above); every index the kernel uses is inside
    // `xp` (whole tiles of rows), `w.lanes` (whole blocks and pairs) and the rows of `y` below
    // `rows` (checked above), with a mask on the last block's columns; AMX only where granted.
    unsafe {
        match on {
            Bf16Kernel::Avx512 => avx512_bf16::kernel(xp, rows, w, y),
            Bf16Kernel::Amx => amx_tiles::kernel(xp, rows, w, y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::packing::to_bf16;
    use super::*;
    use crate::aligned::Aligned;

    fn reference(x: &[f32], rows: usize, w: &[f32], outputs: usize, inputs: usize, y: &mut [f32]) {
        for r in 0..rows {
            for o in 0..outputs {
                let round = |v: f32| f32::from_bits(u32::from(to_bf16(v)) << 16);
                y[r * outputs + o] += (0..inputs)
                    .map(|i| round(x[r * inputs + i]) * round(w[o * inputs + i]))
                    .sum::<f32>();
            }
        }
    }

    /// Times the product on each kernel at one layer's shape (run by hand with `--ignored
    /// --nocapture`); `make bench` gives the encoder's figures.
    #[test]
    #[ignore]
    fn kernels_timed() {
        if !available() {
            eprintln!("no AVX-512 BF16 here: nothing to time");
            return;
        }
        for (rows, outputs, inputs) in [
            (1600, 2304, 768),
            (1600, 3072, 768),
            (1600, 768, 3072),
            (32, 32, 512),
            (800, 1152, 384),
        ] {
            let x: Vec<f32> = (0..rows * inputs).map(|i| (i % 13) as f32 / 13.0).collect();
            let w = PackedWeights::pack(&vec![0.01; outputs * inputs], outputs, inputs);
            for on in [Bf16Kernel::Avx512, Bf16Kernel::Amx] {
                if on == Bf16Kernel::Amx && !crate::amx::bf16_granted() {
                    continue;
                }
                // Outputs aligned and already written, as the encoder's are.
                let (mut y, mut rounded) = (Aligned::from_values(&vec![0.0; rows * outputs]), Lanes::default());
                let times = (20_000_000_000 / (rows * outputs * inputs)).max(1);
                let started = std::time::Instant::now();
                for _ in 0..times {
                    gemm_bf16_on(on, &x, rows, &w, &mut y, &mut rounded);
                }
                let seconds = started.elapsed().as_secs_f64() / times as f64;
                eprintln!(
                    "{rows}x{outputs}x{inputs} {on:?}: {:.0} G operations/s",
                    2.0 * (rows * outputs * inputs) as f64 / seconds / 1e9
                );
            }
        }
    }

    #[test]
    fn rounding_to_bf16_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        assert_eq!(to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80, "a tie rounds to even");
        assert_eq!(to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82, "a tie rounds to even");
        assert_eq!(to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert!(f32::from_bits(u32::from(to_bf16(f32::NAN)) << 16).is_nan());
    }

    /// One rounding buffer goes from shape to shape, as in an encoder pass; it starts full of
    /// NaN, so a padding lane or row left unzeroed would show in the sums.
    #[test]
    fn both_kernels_match_a_plain_product_of_rounded_values_on_ragged_shapes() {
        if !available() {
            eprintln!("no AVX-512 BF16 here: nothing to check");
            return;
        }
        let mut kernels = vec![Bf16Kernel::Avx512];
        if crate::amx::bf16_granted() {
            kernels.push(Bf16Kernel::Amx);
        } else {
            eprintln!("no AMX BF16 granted here: the tile kernel is not checked");
        }
        let nan_pair = u32::from(to_bf16(f32::NAN)) * 0x1_0001;
        let mut rounded = Lanes::from_values(&vec![nan_pair; 1 << 18]);
        for (on, &(rows, outputs, inputs)) in kernels.iter().flat_map(|k| {
            [
                (1, 16, 2),
                (7, 33, 5),
                (13, 70, 300),
                (6, 64, 256),
                (20, 384, 384),
                (33, 48, 40),
                (70, 100, 1000),
            ]
            .iter()
            .map(move |shape| (*k, shape))
        }) {
            let x: Vec<f32> = (0..rows * inputs).map(|i| ((i * 7919 % 113) as f32 - 56.0) / 37.0).collect();
            let w: Vec<f32> = (0..outputs * inputs)
                .map(|i| ((i * 104_729 % 97) as f32 - 48.0) / 51.0)
                .collect();
            let bias: Vec<f32> = (0..rows * outputs).map(|i| (i % 5) as f32).collect();
            let mut want = bias.clone();
            reference(&x, rows, &w, outputs, inputs, &mut want);
            let mut got = bias.clone();
            gemm_bf16_on(
                on,
                &x,
                rows,
                &PackedWeights::pack(&w, outputs, inputs),
                &mut got,
                &mut rounded,
            );
            for (g, e) in got.iter().zip(&want) {
                assert!(
                    (g - e).abs() <= 1e-3 * e.abs().max(1.0),
                    "{on:?} {rows}x{outputs}x{inputs}: {g} against {e}"
                );
            }
        }
    }
}
