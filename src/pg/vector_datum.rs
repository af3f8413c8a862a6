//! pgvector values built in memory, so a batch is written as one `vector[]` parameter with no
//! text parsing. A `vector` is a varlena: 4-byte header, int16 dim, int16 unused (0), then
//! dim float4 (pgvector's `src/vector.h`).

use pgrx::pg_sys;

/// Bytes before the floats: varlena header, dim, unused.
const VECTOR_HEADER_BYTES: usize = 8;

/// A `vector` datum holding `values`, palloc'd in the current memory context.
pub fn vector_datum(values: &[f32]) -> pg_sys::Datum {
    let size = VECTOR_HEADER_BYTES + std::mem::size_of_val(values);
    // SAFETY: palloc0 returns `size` zeroed bytes or raises an ERROR; we write within them.
    unsafe {
        let ptr = pg_sys::palloc0(size) as *mut u8;
        pgrx::set_varsize_4b(ptr as *mut pg_sys::varlena, size as i32);
        (ptr.add(4) as *mut i16).write_unaligned(values.len() as i16);
        std::ptr::copy_nonoverlapping(
            values.as_ptr() as *const u8,
            ptr.add(VECTOR_HEADER_BYTES),
            size - VECTOR_HEADER_BYTES,
        );
        pg_sys::Datum::from(ptr)
    }
}

/// A one-dimensional `vector[]` datum of `vectors`, in order.
pub fn vector_array_datum(vector_type: pg_sys::Oid, vectors: &[Vec<f32>]) -> pg_sys::Datum {
    let mut datums: Vec<pg_sys::Datum> = vectors.iter().map(|v| vector_datum(v)).collect();
    let (mut typlen, mut typbyval, mut typalign) = (0i16, false, 0 as std::ffi::c_char);
    // SAFETY: the type oid is pgvector's `vector`; construct_array copies the datums into a
    // new palloc'd array in the current memory context.
    unsafe {
        pg_sys::get_typlenbyvalalign(vector_type, &mut typlen, &mut typbyval, &mut typalign);
        let array = pg_sys::construct_array(
            datums.as_mut_ptr(),
            datums.len() as i32,
            vector_type,
            typlen as i32,
            typbyval,
            typalign,
        );
        pg_sys::Datum::from(array)
    }
}

/// Bytes one `vector` value of `dims` dimensions takes.
pub fn vector_bytes(dims: usize) -> usize {
    VECTOR_HEADER_BYTES + 4 * dims
}
