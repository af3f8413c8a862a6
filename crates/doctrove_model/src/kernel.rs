//! Which kernel the encoder's matrix products run on: the packed kernel for the CPU's best
//! instruction set (the default: fastest here, and the same vectors; `make bench` shows both),
//! or OpenBLAS with the core type chosen from the CPU.

use crate::cpu::InstructionSet;
use crate::openblas::{instruction_set_of, OpenBlas};

pub enum Kernel {
    /// `packed_gemm.rs` for this instruction set.
    Packed(InstructionSet),
    /// The system's OpenBLAS.
    OpenBlas(OpenBlas),
}

impl Kernel {
    /// The packed kernel for the best instruction set this CPU has.
    pub fn packed() -> Kernel {
        Kernel::Packed(InstructionSet::detect())
    }

    /// `packed`, or `openblas <core>` with the core type OpenBLAS runs.
    pub fn name(&self) -> String {
        match self {
            Kernel::Packed(_) => "packed".into(),
            Kernel::OpenBlas(blas) => format!("openblas {}", blas.core()),
        }
    }

    /// The instruction set the products use: `avx512f`, `avx2`, `avx`, `sse3` or `baseline`.
    pub fn instruction_set(&self) -> &'static str {
        match self {
            Kernel::Packed(isa) => isa.name(),
            Kernel::OpenBlas(blas) => instruction_set_of(blas.core()),
        }
    }
}
