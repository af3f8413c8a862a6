//! The cores' multiply-add peak, measured rather than read from a datasheet: a tight loop of
//! independent fused multiply-adds on the widest vectors the CPU has (enough accumulators to
//! hide the instruction's latency on every port), one thread per core at once, so turbo and
//! shared limits count as they do when the encoder runs; in float32 (FMA), in bfloat16 where
//! the CPU has AVX-512 BF16 (AMX's `tdpbf16ps` where Linux grants the tiles: 8,192 multiply-adds
//! an instruction), and in 8-bit integers where it has AVX-512 VNNI or AVX-VNNI (`vpdpbusd`: 64
//! or 32 multiply-adds an instruction), or else AVX2 (`vpmaddwd` on words, then an add: 16).
//! `make bench` divides the encoder's achieved rate at each precision by its peak
//! (`doctrove-model --measure-peak`).

use std::time::{Duration, Instant};

use crate::bf16_gemm::Bf16Kernel;
use crate::cpu::InstructionSet;
use crate::int8_gemm::Int8Kernel;

/// The arithmetic a loop measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arithmetic {
    /// Float32 fused multiply-adds on the widest vectors the CPU has.
    F32,
    /// 8-bit integer products into 32-bit sums (AVX-512 VNNI, AVX-VNNI, or AVX2 on words).
    Int8,
    /// bfloat16 products into float32 sums: AMX tiles where the process may use them
    /// (`tdpbf16ps`), AVX-512 BF16 otherwise (`vdpbf16ps`).
    Bf16,
}

/// What the loop measured.
#[derive(Clone, Copy, Debug)]
pub struct Peak {
    pub arithmetic: Arithmetic,
    /// The instructions it ran: `avx512f`, `avx2`, `baseline`, `avx512vnni`, `avxvnni`,
    /// `amx-bf16` or `avx512bf16`.
    pub instruction_set: &'static str,
    pub threads: usize,
    /// Operations per second over all threads (a multiply-add counts two).
    pub ops: f64,
}

/// Independent accumulators per thread: at 4 cycles of latency and two FMA ports, 8 keep every
/// port busy; 12 leave room for CPUs with longer latency.
const ACCUMULATORS: usize = 12;
/// Multiply-adds per accumulator between two checks of the clock.
const ROUNDS: u64 = 1 << 20;
/// Multiply-adds of one `tdpbf16ps`.
const TILE_PRODUCT: u64 = 16 * 16 * 32;
/// The AMX loop runs this many times fewer rounds than the vector loops (each is 256 times more
/// work), so a call takes about as long.
const AMX_PER_VECTOR_ROUNDS: u64 = 64;

/// Runs the loop on `threads` threads for about `duration`; the operations are summed over
/// threads. `None` for int8 on a CPU with neither VNNI nor AVX2, and for bf16 on one
/// without AVX-512 BF16.
pub fn measure(arithmetic: Arithmetic, threads: usize, duration: Duration) -> Option<Peak> {
    let isa = InstructionSet::detect();
    let (instruction_set, per_round) = match arithmetic {
        Arithmetic::Int8 => {
            let kernel = Int8Kernel::fastest()?;
            // 16 lanes of four byte products each with AVX-512 VNNI, 8 with AVX-VNNI, 8 lanes of
            // two word products with AVX2.
            let per_round = match kernel {
                Int8Kernel::Avx512Vnni => 64,
                Int8Kernel::AvxVnni => 32,
                Int8Kernel::Avx2 => 16,
            };
            (kernel.name(), per_round)
        }
        Arithmetic::Bf16 if !crate::bf16_gemm::available() => return None,
        Arithmetic::Bf16 => {
            let kernel = Bf16Kernel::fastest();
            // A 16 x 32 by 32 x 16 tile product per accumulator, where a vector has 16 lanes of two.
            let per_round = match kernel {
                Bf16Kernel::Amx => TILE_PRODUCT / AMX_PER_VECTOR_ROUNDS,
                Bf16Kernel::Avx512 => 32,
            };
            (kernel.name(), per_round)
        }
        Arithmetic::F32 => (
            isa.name(),
            match isa {
                InstructionSet::Avx512 => 16,
                InstructionSet::Avx2 => 8,
                InstructionSet::Baseline => 1,
            },
        ),
    };
    let ops = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|seed| scope.spawn(move || rounds_per_second(arithmetic, isa, duration, seed as f32)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("the peak loop does not panic"))
            .sum::<f64>()
    }) * (ROUNDS * ACCUMULATORS as u64 * per_round * 2) as f64;
    Some(Peak {
        arithmetic,
        instruction_set,
        threads: threads.max(1),
        ops,
    })
}

/// One thread's calls of a loop per second, until `duration` has passed.
fn rounds_per_second(arithmetic: Arithmetic, isa: InstructionSet, duration: Duration, seed: f32) -> f64 {
    let started = Instant::now();
    let mut rounds = 0u64;
    let mut sink = 0.0f32;
    while started.elapsed() < duration {
        sink += match arithmetic {
            Arithmetic::F32 => run_rounds(isa, seed),
            Arithmetic::Int8 => int8_rounds(seed as i32),
            Arithmetic::Bf16 => bf16_rounds(seed),
        };
        rounds += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    // Keeps the loop's result alive.
    std::hint::black_box(sink);
    rounds as f64 / seconds
}

fn int8_rounds(seed: i32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: measure() runs it only where Int8Kernel::fastest() found one of the kernels, and
    // each loop only where its kernel runs.
    unsafe {
        match Int8Kernel::fastest() {
            Some(Int8Kernel::Avx512Vnni) => rounds_vnni(seed),
            Some(Int8Kernel::AvxVnni) => rounds_avx_vnni(seed),
            _ => rounds_avx2_words(seed),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        seed as f32
    }
}

/// `acc += a . b` on every accumulator, four byte products a lane: the sums wrap harmlessly.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn rounds_vnni(seed: i32) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm512_set1_epi32(0x0102_0304), _mm512_set1_epi32(0x0101_0101));
    let mut acc = [_mm512_set1_epi32(seed); ACCUMULATORS];
    for _ in 0..ROUNDS {
        for x in acc.iter_mut() {
            *x = _mm512_dpbusd_epi32(*x, a, b);
        }
    }
    acc.iter().map(|x| _mm512_reduce_add_epi32(*x) as f32).sum()
}

/// The same with AVX-VNNI, 8 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn rounds_avx_vnni(seed: i32) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm256_set1_epi32(0x0102_0304), _mm256_set1_epi32(0x0101_0101));
    let mut acc = [_mm256_set1_epi32(seed); ACCUMULATORS];
    for _ in 0..ROUNDS {
        for x in acc.iter_mut() {
            *x = _mm256_dpbusd_avx_epi32(*x, a, b);
        }
    }
    lane_sum(&acc)
}

/// The sum of every 32-bit lane of `sums`, as a float (keeps a loop's result alive).
#[cfg(target_arch = "x86_64")]
fn lane_sum(sums: &[std::arch::x86_64::__m256i]) -> f32 {
    sums.iter()
        .flat_map(|x| {
            // SAFETY: both are 32 bytes, and every bit pattern is valid for both.
            unsafe { std::mem::transmute::<std::arch::x86_64::__m256i, [i32; 8]>(*x) }
        })
        .map(|l| l as f32)
        .sum()
}

/// `acc += a . b` with AVX2 as the int8 kernel runs it on CPUs without VNNI: `vpmaddwd` on
/// words, then an add; `ACCUMULATORS` of them a round, into six sums. (In assembly: the
/// products' operands never change, so a compiler may compute one product and add it twelve
/// times.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rounds_avx2_words(seed: i32) -> f32 {
    use std::arch::x86_64::*;
    const _: () = assert!(ACCUMULATORS == 12, "the loop below is written out for 12");
    let (a, b) = (_mm256_set1_epi32(0x0003_0004 + seed), _mm256_set1_epi32(0x0001_0001));
    let mut x = [_mm256_setzero_si256(); 6];
    std::arch::asm!(
        "2:",
        "vpmaddwd {t0}, {a}, {b}",
        "vpaddd {x0}, {x0}, {t0}",
        "vpmaddwd {t1}, {a}, {b}",
        "vpaddd {x1}, {x1}, {t1}",
        "vpmaddwd {t2}, {a}, {b}",
        "vpaddd {x2}, {x2}, {t2}",
        "vpmaddwd {t3}, {a}, {b}",
        "vpaddd {x3}, {x3}, {t3}",
        "vpmaddwd {t4}, {a}, {b}",
        "vpaddd {x4}, {x4}, {t4}",
        "vpmaddwd {t5}, {a}, {b}",
        "vpaddd {x5}, {x5}, {t5}",
        "vpmaddwd {t0}, {a}, {b}",
        "vpaddd {x0}, {x0}, {t0}",
        "vpmaddwd {t1}, {a}, {b}",
        "vpaddd {x1}, {x1}, {t1}",
        "vpmaddwd {t2}, {a}, {b}",
        "vpaddd {x2}, {x2}, {t2}",
        "vpmaddwd {t3}, {a}, {b}",
        "vpaddd {x3}, {x3}, {t3}",
        "vpmaddwd {t4}, {a}, {b}",
        "vpaddd {x4}, {x4}, {t4}",
        "vpmaddwd {t5}, {a}, {b}",
        "vpaddd {x5}, {x5}, {t5}",
        "dec {rounds}",
        "jnz 2b",
        a = in(ymm_reg) a,
        b = in(ymm_reg) b,
        x0 = inout(ymm_reg) x[0],
        x1 = inout(ymm_reg) x[1],
        x2 = inout(ymm_reg) x[2],
        x3 = inout(ymm_reg) x[3],
        x4 = inout(ymm_reg) x[4],
        x5 = inout(ymm_reg) x[5],
        t0 = out(ymm_reg) _,
        t1 = out(ymm_reg) _,
        t2 = out(ymm_reg) _,
        t3 = out(ymm_reg) _,
        t4 = out(ymm_reg) _,
        t5 = out(ymm_reg) _,
        rounds = inout(reg) ROUNDS => _,
        options(nostack, nomem)
    );
    lane_sum(&x)
}

fn bf16_rounds(seed: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: measure() runs it only where bf16_gemm::available() found AVX-512 BF16, and the
    // tile loop only where AMX was granted (Bf16Kernel::fastest).
    unsafe {
        match Bf16Kernel::fastest() {
            Bf16Kernel::Amx => rounds_amx_bf16(),
            Bf16Kernel::Avx512 => rounds_avx512_bf16(seed),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        seed
    }
}

/// `acc += a . b` on every accumulator, two bfloat16 products a lane.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn rounds_avx512_bf16(seed: f32) -> f32 {
    use std::arch::x86_64::*;
    // 0.5 in both halves of each lane: the sums grow slowly and stay finite.
    let half = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(0x3f00_3f00));
    let mut acc = [_mm512_set1_ps(seed); ACCUMULATORS];
    for _ in 0..ROUNDS {
        for x in acc.iter_mut() {
            *x = _mm512_dpbf16_ps(*x, half, half);
        }
    }
    acc.iter().map(|x| _mm512_reduce_add_ps(*x)).sum()
}

/// Tile products into four accumulator tiles from four source tiles of ones,
/// `ACCUMULATORS` of them a round; returns one of the sums.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rounds_amx_bf16() -> f32 {
    use crate::amx::tile_asm;
    // Sources of bfloat16 ones (0x3f80), so the products are real work; the sums stay finite
    // (32 a product, about 1.6 million at the end of a call).
    #[repr(C, align(64))]
    struct Ones([u16; 512]);
    let ones = Ones([0x3f80; 512]);
    let mut sums = [0f32; 256];
    crate::amx::TileConfig::all_full().with_tiles(|| {
        tile_asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "tileloadd tmm4, [{ones} + {row}*1]",
            "tileloadd tmm5, [{ones} + {row}*1]",
            "tileloadd tmm6, [{ones} + {row}*1]",
            "tileloadd tmm7, [{ones} + {row}*1]",
            "2:",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "dec {rounds}",
            "jnz 2b",
            "tilestored [{sums} + {row}*1], tmm0",
            ones = in(reg) ones.0.as_ptr(),
            sums = in(reg) sums.as_mut_ptr(),
            row = in(reg) crate::amx::ROW_BYTES,
            rounds = inout(reg) ROUNDS / AMX_PER_VECTOR_ROUNDS * ACCUMULATORS as u64 / 4 => _
        );
    });
    sums[0]
}

fn run_rounds(isa: InstructionSet, seed: f32) -> f32 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: detect() found AVX-512 F.
        InstructionSet::Avx512 => unsafe { rounds_avx512(seed) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: detect() found AVX2 and FMA.
        InstructionSet::Avx2 => unsafe { rounds_avx2(seed) },
        _ => rounds_scalar(seed),
    }
}

/// `acc = acc * a + b` on every accumulator: a multiplier just under one and a small addend keep
/// the values bounded, so no denormal or infinity slows a round.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rounds_avx512(seed: f32) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-6));
    let mut acc = [_mm512_set1_ps(seed); ACCUMULATORS];
    for _ in 0..ROUNDS {
        for x in acc.iter_mut() {
            *x = _mm512_fmadd_ps(*x, a, b);
        }
    }
    acc.iter().map(|x| _mm512_reduce_add_ps(*x)).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rounds_avx2(seed: f32) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-6));
    let mut acc = [_mm256_set1_ps(seed); ACCUMULATORS];
    for _ in 0..ROUNDS {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, a, b);
        }
    }
    let mut lanes = [0.0f32; 8];
    acc.iter()
        .map(|x| {
            _mm256_storeu_ps(lanes.as_mut_ptr(), *x);
            lanes.iter().sum::<f32>()
        })
        .sum()
}

fn rounds_scalar(seed: f32) -> f32 {
    let mut acc = [seed; ACCUMULATORS];
    for _ in 0..ROUNDS {
        for x in acc.iter_mut() {
            *x = x.mul_add(0.999_999, 1e-6);
        }
    }
    acc.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_counts_every_lane_and_stays_finite() {
        let isa = InstructionSet::detect();
        let value = run_rounds(isa, 1.0);
        assert!(value.is_finite() && value > 0.0, "{value}");
        // One round from 1.0 converges towards b / (1 - a) = 1: each lane stays near 1.
        let lanes = match isa {
            InstructionSet::Avx512 => 16.0,
            InstructionSet::Avx2 => 8.0,
            InstructionSet::Baseline => 1.0,
        };
        assert!((value / (lanes * ACCUMULATORS as f32) - 1.0).abs() < 1e-3, "{value}");
        let peak = measure(Arithmetic::F32, 1, Duration::from_millis(50)).unwrap();
        // Any CPU this runs on does more than a hundred million operations a second.
        assert!(peak.ops > 1e8, "{peak:?}");
        assert_eq!(peak.instruction_set, isa.name());
    }

    #[test]
    fn the_tile_loop_adds_every_product() {
        if !crate::amx::bf16_granted() {
            eprintln!("no AMX BF16 granted here: the tile loop is not checked");
            return;
        }
        // SAFETY: AMX is granted (checked above).
        let sum = unsafe { rounds_amx_bf16() };
        // Each product adds 32 ones times ones to every sum.
        let products = (ROUNDS / AMX_PER_VECTOR_ROUNDS * ACCUMULATORS as u64 / 4) as f32;
        assert_eq!(sum, 32.0 * products);
    }

    #[test]
    fn the_bf16_loop_runs_where_the_bf16_kernel_does_and_beats_float32() {
        let peak = measure(Arithmetic::Bf16, 1, Duration::from_millis(50));
        assert_eq!(peak.is_some(), crate::bf16_gemm::available());
        if let Some(peak) = peak {
            let name = crate::bf16_gemm::Bf16Kernel::fastest().name();
            assert_eq!(peak.instruction_set, name);
            let f32 = measure(Arithmetic::F32, 1, Duration::from_millis(50)).unwrap();
            assert!(peak.ops > f32.ops, "{peak:?} {f32:?}");
        }
    }

    #[test]
    fn each_int8_loop_adds_every_product_of_every_lane() {
        // VNNI: bytes 4, 3, 2, 1 times 1, 1, 1, 1, 10 a lane; AVX2: words 4, 3 times 1, 1, 7 a
        // lane; a round adds that on every accumulator.
        let want = |lanes: f32, per_lane: f32| per_lane * ROUNDS as f32 * lanes * ACCUMULATORS as f32;
        #[cfg(target_arch = "x86_64")]
        for (on, lanes, per_lane) in [
            (Int8Kernel::Avx512Vnni, 16.0, 10.0),
            (Int8Kernel::AvxVnni, 8.0, 10.0),
            (Int8Kernel::Avx2, 8.0, 7.0),
        ] {
            if !on.runs_here() {
                eprintln!("no {} here: its loop is not checked", on.name());
                continue;
            }
            // SAFETY: the CPU has the loop's instructions (checked above).
            let got = unsafe {
                match on {
                    Int8Kernel::Avx512Vnni => rounds_vnni(0),
                    Int8Kernel::AvxVnni => rounds_avx_vnni(0),
                    Int8Kernel::Avx2 => rounds_avx2_words(0),
                }
            };
            assert!(
                (got / want(lanes, per_lane) - 1.0).abs() < 1e-5,
                "{on:?}: {got} against {}",
                want(lanes, per_lane)
            );
        }
    }

    #[test]
    fn the_int8_loop_runs_where_the_int8_kernel_does() {
        let peak = measure(Arithmetic::Int8, 1, Duration::from_millis(50));
        assert_eq!(peak.is_some(), crate::int8_gemm::available());
        if let Some(peak) = peak {
            // Two or four products a lane where float32 has one: above the float32 loop's rate.
            let f32 = measure(Arithmetic::F32, 1, Duration::from_millis(50)).unwrap();
            assert!(peak.ops > f32.ops, "{peak:?} {f32:?}");
        }
    }
}
