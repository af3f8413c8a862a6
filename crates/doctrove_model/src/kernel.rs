//! Which kernel the encoder's matrix products run on, chosen from the CPU's features and kept
//! where it is fastest (`make bench` shows them side by side): the packed kernel
//! (`packed_gemm.rs`) for products of few rows, where it reads each weight once and runs
//! several times faster than a general product (a search query: one short pass); OpenBLAS,
//! with the core type chosen from the CPU, for passes of many rows, where its kernels run a
//! little faster than the packed one. Either can run alone (`--kernel packed|openblas`).

use crate::cpu::InstructionSet;
use crate::openblas::{instruction_set_of, OpenBlas};

/// Rows up to which a product runs on the packed kernel when OpenBLAS is there too. Measured
/// one text a pass on one core (Xeon, family 6 model 207): the packed kernel 2.2x faster at 11
/// tokens, 1.1x at 101, even at 152, OpenBLAS 1.05x faster at 251 (and about 1.15x on passes
/// of thousands of rows).
pub const PACKED_UP_TO_ROWS: usize = 192;

pub struct Kernel {
    packed: Option<InstructionSet>,
    blas: Option<OpenBlas>,
}

/// The kernel one product runs on.
pub enum Choice<'a> {
    Packed(InstructionSet),
    OpenBlas(&'a OpenBlas),
}

impl Kernel {
    /// The packed kernel alone, for the best instruction set this CPU has.
    pub fn packed() -> Kernel {
        Kernel::packed_on(InstructionSet::detect())
    }

    /// The packed kernel alone, for `isa` (which this CPU must run).
    pub fn packed_on(isa: InstructionSet) -> Kernel {
        Kernel {
            packed: Some(isa),
            blas: None,
        }
    }

    /// OpenBLAS alone.
    pub fn openblas(blas: OpenBlas) -> Kernel {
        Kernel {
            packed: None,
            blas: Some(blas),
        }
    }

    /// The packed kernel up to [`PACKED_UP_TO_ROWS`] rows and OpenBLAS above, when OpenBLAS
    /// runs kernels of the same instruction set as the packed one (never a fallback); the packed
    /// kernel alone otherwise.
    pub fn fastest(blas: Option<OpenBlas>) -> Kernel {
        let isa = InstructionSet::detect();
        Kernel {
            packed: Some(isa),
            blas: blas.filter(|blas| instruction_set_of(blas.core()) == isa.name()),
        }
    }

    /// The kernel for a product of `rows` rows.
    pub fn for_rows(&self, rows: usize) -> Choice<'_> {
        match (self.packed, &self.blas) {
            (Some(isa), None) => Choice::Packed(isa),
            (Some(isa), Some(_)) if rows <= PACKED_UP_TO_ROWS => Choice::Packed(isa),
            (_, Some(blas)) => Choice::OpenBlas(blas),
            (None, None) => unreachable!("a kernel has the packed kernel, OpenBLAS or both"),
        }
    }

    /// Whether the weights are needed packed, and as stored (row-major, for OpenBLAS).
    pub fn reads_packed_and_rows(&self) -> (bool, bool) {
        (self.packed.is_some(), self.blas.is_some())
    }

    /// `packed`, `openblas <core>` (the core type OpenBLAS runs), or
    /// `packed up to 192 rows, openblas <core> above`.
    pub fn name(&self) -> String {
        match (self.packed, &self.blas) {
            (Some(_), None) => "packed".into(),
            (None, Some(blas)) => format!("openblas {}", blas.core()),
            (Some(_), Some(blas)) => format!("packed up to {PACKED_UP_TO_ROWS} rows, openblas {} above", blas.core()),
            (None, None) => unreachable!("a kernel has the packed kernel, OpenBLAS or both"),
        }
    }

    /// The instruction set the products use: `avx512f`, `avx2`, `avx`, `sse3` or `baseline`
    /// (both kernels use the same one when both run).
    pub fn instruction_set(&self) -> &'static str {
        match (self.packed, &self.blas) {
            (Some(isa), _) => isa.name(),
            (None, Some(blas)) => instruction_set_of(blas.core()),
            (None, None) => unreachable!("a kernel has the packed kernel, OpenBLAS or both"),
        }
    }
}
