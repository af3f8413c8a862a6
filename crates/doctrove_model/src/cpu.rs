//! The instruction sets the matrix kernels can use, read from the CPU's feature flags at run
//! time (never from a table of CPU models, which every new CPU generation outruns).

/// The widest vector instructions the packed kernels use on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstructionSet {
    /// AVX-512 F: 16 floats a register, 32 registers.
    Avx512,
    /// AVX2 with FMA: 8 floats a register, 16 registers.
    Avx2,
    /// What every x86-64 (SSE2) or other CPU has: plain loops the compiler vectorises.
    Baseline,
}

impl InstructionSet {
    /// The best this CPU offers.
    pub fn detect() -> InstructionSet {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return InstructionSet::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return InstructionSet::Avx2;
            }
        }
        InstructionSet::Baseline
    }

    /// As the CPU's feature flags name it: `avx512f`, `avx2` or `baseline`.
    pub fn name(self) -> &'static str {
        match self {
            InstructionSet::Avx512 => "avx512f",
            InstructionSet::Avx2 => "avx2",
            InstructionSet::Baseline => "baseline",
        }
    }

    /// From a name as [`InstructionSet::name`] gives it.
    pub fn from_name(name: &str) -> Option<InstructionSet> {
        [InstructionSet::Avx512, InstructionSet::Avx2, InstructionSet::Baseline]
            .into_iter()
            .find(|isa| isa.name() == name)
    }

    /// Whether this CPU runs code written for `self`.
    pub fn runs_here(self) -> bool {
        match (self, InstructionSet::detect()) {
            (InstructionSet::Baseline, _) | (_, InstructionSet::Avx512) => true,
            (InstructionSet::Avx2, found) => found == InstructionSet::Avx2,
            (InstructionSet::Avx512, _) => false,
        }
    }
}

/// The mask of the lanes of 16-wide block `block` that hold one of `width` values (the last
/// block of a row may be partial), as the AVX-512 kernels' masked loads and stores take it.
pub fn block_mask(width: usize, block: usize) -> u16 {
    let valid = (width - block * 16).min(16);
    if valid == 16 {
        0xffff
    } else {
        ((1u32 << valid) - 1) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::InstructionSet;

    #[test]
    fn names_round_trip_and_the_detected_set_runs_here() {
        for isa in [InstructionSet::Avx512, InstructionSet::Avx2, InstructionSet::Baseline] {
            assert_eq!(InstructionSet::from_name(isa.name()), Some(isa));
        }
        assert_eq!(InstructionSet::from_name("sse3"), None);
        assert!(InstructionSet::detect().runs_here());
        assert!(InstructionSet::Baseline.runs_here());
    }
}
