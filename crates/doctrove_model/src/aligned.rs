//! Buffers of 4-byte values (`f32`, `u32`) that start on a cache line and grow by whole lines:
//! every 16-value row segment the kernels load or store, every tile row, is then one line.
//! (The allocator aligns a large `Vec` to 16 bytes only, so each segment spanned two lines.
//! Measured here with bfloat16 on AMX: aligned tile inputs and weights made all-mpnet-base-v2
//! a fifth faster end to end; aligned outputs made the tile kernel 7 to 16% faster on the
//! encoders' shapes.)

use std::ops::{Deref, DerefMut};

/// Values per cache line.
const PER_LINE: usize = 16;

/// One cache line of values.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Line<T: Copy + Default>([T; PER_LINE]);

/// A buffer of `len` values in whole, aligned lines; reading it reads the first `len`.
#[derive(Default)]
pub struct Aligned<T: Copy + Default> {
    lines: Vec<Line<T>>,
    len: usize,
}

impl<T: Copy + Default> Aligned<T> {
    /// Four-byte values only: sixteen to a 64-byte line, with no padding between lines.
    const FOUR_BYTES: () = assert!(std::mem::size_of::<T>() == 4 && std::mem::size_of::<Line<T>>() == 64);

    /// `values`, copied.
    #[cfg(test)]
    pub fn from_values(values: &[T]) -> Aligned<T> {
        let mut buffer = Aligned::default();
        buffer.set_len(values.len());
        buffer.copy_from_slice(values);
        buffer
    }

    /// `len` values: those the buffer's lines held (from an earlier, longer use too), then
    /// default (zero) ones in lines it allocates. Callers that reuse a buffer overwrite what
    /// they read.
    pub fn set_len(&mut self, len: usize) {
        let () = Self::FOUR_BYTES;
        let lines = len.div_ceil(PER_LINE);
        if self.lines.len() < lines {
            // Exactly the lines asked for, not double: a pass's buffers are sized once.
            self.lines.reserve_exact(lines - self.lines.len());
            self.lines.resize(lines, Line::default());
        }
        self.len = len;
    }

    /// Bytes the buffer holds allocated.
    pub fn allocated_bytes(&self) -> usize {
        self.lines.capacity() * std::mem::size_of::<Line<T>>()
    }
}

impl<T: Copy + Default> Deref for Aligned<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        let () = Self::FOUR_BYTES;
        // SAFETY: a line is 16 `T`s with no padding (`repr(C)`, checked to be 64 bytes), so the
        // lines are `16 * lines.len()` initialised `T`s, contiguous and aligned; `len` is at
        // most that (`set_len`).
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Copy + Default> DerefMut for Aligned<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        let () = Self::FOUR_BYTES;
        // SAFETY: as in `deref`, borrowed mutably once.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<T>(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_start_on_a_line_and_keep_their_values_as_they_grow() {
        let mut buffer = Aligned::from_values(&[1.0f32, 2.0, 3.0]);
        assert_eq!(&buffer[..], [1.0, 2.0, 3.0]);
        assert_eq!(buffer.as_ptr() as usize % 64, 0);
        buffer.set_len(40);
        assert_eq!(buffer[..4], [1.0, 2.0, 3.0, 0.0]);
        assert_eq!(buffer.len(), 40);
        buffer[39] = 7.0;
        buffer.set_len(2);
        assert_eq!(&buffer[..], [1.0, 2.0]);
        buffer.set_len(40);
        assert_eq!(buffer[39], 7.0, "shrinking keeps the lines");
        assert_eq!(buffer.as_ptr() as usize % 64, 0);
        let empty = Aligned::<u32>::default();
        assert!(empty.is_empty());
    }
}
