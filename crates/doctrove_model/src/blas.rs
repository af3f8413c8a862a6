//! The matrix product the encoder is built on: OpenBLAS's `cblas_sgemm` (Debian's
//! `libopenblas-dev`, linked by name), with every slice checked against the shape before the
//! call. Declared by hand: the wrapper crates (`cblas-sys` with `openblas-src`) either build
//! OpenBLAS from source or search for it with pkg-config, for these two declarations.

use std::ffi::c_int;

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

#[link(name = "openblas")]
extern "C" {
    fn cblas_sgemm(
        order: c_int,
        trans_a: c_int,
        trans_b: c_int,
        m: c_int,
        n: c_int,
        k: c_int,
        alpha: f32,
        a: *const f32,
        lda: c_int,
        b: *const f32,
        ldb: c_int,
        beta: f32,
        c: *mut f32,
        ldc: c_int,
    );
    fn openblas_set_num_threads(threads: c_int);
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

/// `c = alpha * a * b' + beta * c`, where `b'` is `b` transposed when `transpose_b` (so `b` is
/// n x k) and `b` itself otherwise (k x n); `c` is m x n with rows `ldc` apart.
pub fn gemm(alpha: f32, a: Matrix, b: Matrix, transpose_b: bool, beta: f32, c: &mut [f32], ldc: usize) {
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
        cblas_sgemm(
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

/// Makes each product run on the calling thread only: the encoder runs whole passes side by
/// side, one per core, which keeps the cores busier than splitting each product.
pub fn single_threaded() {
    // SAFETY: sets a global count OpenBLAS reads at each call.
    unsafe { openblas_set_num_threads(1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_with_and_without_a_transposed_operand_and_strides() {
        // a = [[1,2],[3,4]] inside rows of 3; b = [[5,6],[7,8]].
        let a = [1.0, 2.0, 0.0, 3.0, 4.0, 0.0];
        let b = [5.0, 6.0, 7.0, 8.0];
        let am = Matrix {
            data: &a,
            rows: 2,
            cols: 2,
            stride: 3,
        };
        let bm = Matrix {
            data: &b,
            rows: 2,
            cols: 2,
            stride: 2,
        };
        let mut c = [1.0; 4];
        gemm(1.0, am, bm, false, 0.0, &mut c, 2);
        assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
        let mut c = [1.0; 4];
        gemm(2.0, am, bm, true, 1.0, &mut c, 2);
        assert_eq!(c, [35.0, 47.0, 79.0, 107.0]);
    }

    #[test]
    #[should_panic(expected = "do not agree")]
    fn a_short_slice_is_refused_before_the_call() {
        let a = [1.0; 3];
        let mut c = [0.0; 4];
        gemm(
            1.0,
            Matrix {
                data: &a,
                rows: 2,
                cols: 2,
                stride: 2,
            },
            Matrix {
                data: &a,
                rows: 1,
                cols: 2,
                stride: 2,
            },
            true,
            0.0,
            &mut c,
            2,
        );
    }
}
