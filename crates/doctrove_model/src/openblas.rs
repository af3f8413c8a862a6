//! `--kernel openblas`: the encoder's products through OpenBLAS's `cblas_sgemm`, loaded at run
//! time from the system's `libopenblas.so.0` (so the default kernel needs no OpenBLAS at all).
//! OpenBLAS picks its kernels from a table of CPU models it knows; on a newer CPU it falls back
//! to SSE3 ones at a third of the speed. [`choose_core_type`] sets `OPENBLAS_CORETYPE` from the
//! CPU's features before the library loads, unless the user set it.

use std::ffi::{c_char, c_int, CStr};

use crate::cpu::InstructionSet;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

type Sgemm = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    f32,
    *const f32,
    c_int,
    *const f32,
    c_int,
    f32,
    *mut f32,
    c_int,
);

/// The library's soname on Debian and Ubuntu (package `libopenblas0`).
const LIBRARY: &str = "libopenblas.so.0";

/// Sets `OPENBLAS_CORETYPE` for this process from the CPU's features (SKYLAKEX with AVX-512
/// F/BW/DQ/VL, HASWELL with AVX2 and FMA), unless it is set already; returns the core type in
/// force. An empty value counts as unset. Call it before any thread starts: it changes the
/// environment.
pub fn choose_core_type() -> Option<String> {
    if let Some(set) = std::env::var_os("OPENBLAS_CORETYPE").filter(|set| !set.is_empty()) {
        return Some(set.to_string_lossy().into_owned());
    }
    let core = core_type_for_this_cpu()?;
    std::env::set_var("OPENBLAS_CORETYPE", core);
    Some(core.to_string())
}

fn core_type_for_this_cpu() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl") {
            return Some("SKYLAKEX");
        }
        if InstructionSet::detect() == InstructionSet::Avx2 {
            return Some("HASWELL");
        }
    }
    None
}

/// The instruction set behind one of OpenBLAS's core names (as `openblas_get_corename` gives
/// them, such as `Prescott`, `Haswell` or `SkylakeX`).
pub fn instruction_set_of(core: &str) -> &'static str {
    match core.to_ascii_lowercase().as_str() {
        "skylakex" | "cooperlake" | "sapphirerapids" => "avx512f",
        "haswell" | "zen" | "skylake" | "excavator" => "avx2",
        "sandybridge" | "bulldozer" | "piledriver" | "steamroller" => "avx",
        _ => "sse3",
    }
}

/// OpenBLAS, loaded.
pub struct OpenBlas {
    sgemm: Sgemm,
    core: String,
    _library: libloading::Library,
}

impl OpenBlas {
    /// Loads the library (its kernels are chosen now, from `OPENBLAS_CORETYPE` or its own
    /// detection) and makes each product run on the calling thread only: the encoder runs whole
    /// passes side by side, one per core.
    pub fn load() -> Result<OpenBlas, Error> {
        // SAFETY: loading OpenBLAS runs its initialisers, which only read the CPU and the
        // environment; the symbols are declared as OpenBLAS's cblas.h and openblas_config.h do.
        unsafe {
            let library = libloading::Library::new(LIBRARY)
                .map_err(|e| format!("--kernel openblas needs {LIBRARY} (Debian's libopenblas0): {e}"))?;
            let sgemm = *library.get::<Sgemm>(b"cblas_sgemm\0")?;
            let set_threads = library.get::<unsafe extern "C" fn(c_int)>(b"openblas_set_num_threads\0")?;
            set_threads(1);
            let core_name = library.get::<unsafe extern "C" fn() -> *const c_char>(b"openblas_get_corename\0")?;
            let core = CStr::from_ptr(core_name()).to_string_lossy().into_owned();
            Ok(OpenBlas {
                sgemm,
                core,
                _library: library,
            })
        }
    }

    /// The core type whose kernels run, as OpenBLAS names it.
    pub fn core(&self) -> &str {
        &self.core
    }

    /// `c = alpha * a * b' + beta * c`, where `b'` is `b` transposed when `transpose_b` (so `b`
    /// is n x k) and `b` itself otherwise (k x n); `c` is m x n with rows `ldc` apart.
    pub fn gemm(&self, alpha: f32, a: Matrix, b: Matrix, transpose_b: bool, beta: f32, (c, ldc): (&mut [f32], usize)) {
        let (m, k) = (a.rows, a.cols);
        let (b_k, n) = if transpose_b { (b.cols, b.rows) } else { (b.rows, b.cols) };
        assert!(a.fits() && b.fits() && b_k == k, "matrix shapes do not agree");
        assert!(
            n <= ldc && c.len() >= (m - 1) * ldc + n,
            "the product does not fit its output"
        );
        let int = |v: usize| c_int::try_from(v).expect("matrix dimension beyond c_int");
        // SAFETY: the asserts above keep every element OpenBLAS reads or writes inside the slices.
        unsafe {
            (self.sgemm)(
                ROW_MAJOR,
                NO_TRANS,
                if transpose_b { TRANS } else { NO_TRANS },
                int(m),
                int(n),
                int(k),
                alpha,
                a.data.as_ptr(),
                int(a.stride),
                b.data.as_ptr(),
                int(b.stride),
                beta,
                c.as_mut_ptr(),
                int(ldc),
            )
        }
    }
}

/// A row-major matrix inside a slice: `rows` x `cols`, rows `stride` apart.
#[derive(Clone, Copy)]
pub struct Matrix<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
}

impl Matrix<'_> {
    fn fits(&self) -> bool {
        self.rows > 0 && self.cols > 0 && self.cols <= self.stride && self.data.len() >= (self.rows - 1) * self.stride + self.cols
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(data: &[f32], rows: usize, cols: usize, stride: usize) -> Matrix<'_> {
        Matrix {
            data,
            rows,
            cols,
            stride,
        }
    }

    #[test]
    fn products_with_and_without_a_transposed_operand_and_strides() {
        let Ok(blas) = OpenBlas::load() else {
            eprintln!("no {LIBRARY} here: nothing to check");
            return;
        };
        // a = [[1,2],[3,4]] inside rows of 3; b = [[5,6],[7,8]].
        let a = [1.0, 2.0, 0.0, 3.0, 4.0, 0.0];
        let b = [5.0, 6.0, 7.0, 8.0];
        let mut c = [1.0; 4];
        blas.gemm(1.0, matrix(&a, 2, 2, 3), matrix(&b, 2, 2, 2), false, 0.0, (&mut c, 2));
        assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
        let mut c = [1.0; 4];
        blas.gemm(2.0, matrix(&a, 2, 2, 3), matrix(&b, 2, 2, 2), true, 1.0, (&mut c, 2));
        assert_eq!(c, [35.0, 47.0, 79.0, 107.0]);
    }

    #[test]
    fn core_names_map_to_their_instruction_sets() {
        assert_eq!(instruction_set_of("Prescott"), "sse3");
        assert_eq!(instruction_set_of("SkylakeX"), "avx512f");
        assert_eq!(instruction_set_of("Haswell"), "avx2");
        assert_eq!(instruction_set_of("Zen"), "avx2");
    }
}
