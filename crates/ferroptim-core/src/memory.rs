//! Fallible allocation of optimizer state.
//!
//! `vec![0.0; n]` aborts the process when the allocator fails; a user whose
//! model does not fit must get a `MemoryError` and an optimizer that is
//! unchanged, so every state buffer is allocated through here.

use std::alloc::{alloc_zeroed, Layout};

use crate::error::{Error, Result};

fn out_of_memory<T>(len: usize, what: &str) -> Error {
    let bytes = len.saturating_mul(std::mem::size_of::<T>());
    Error::Memory(format!(
        "out of memory allocating {what}: {len} elements ({:.1} MiB)",
        bytes as f64 / (1024.0 * 1024.0)
    ))
}

/// `len` zeros, or `Error::Memory`. The pages come zeroed from the OS
/// (calloc), so they are only touched when first written, as with `vec!`.
/// Types whose all-zero bits are a valid value (0.0 or 0).
///
/// # Safety
/// Only for plain numbers with no invalid bit patterns.
pub unsafe trait Zeroable: Copy {}
// SAFETY: plain numbers; all-zero bits are 0.
unsafe impl Zeroable for f32 {}
// SAFETY: as above.
unsafe impl Zeroable for f64 {}
// SAFETY: as above.
unsafe impl Zeroable for u16 {}
// SAFETY: as above.
unsafe impl Zeroable for u8 {}

pub fn try_zeroed<T: Zeroable>(len: usize, what: &str) -> Result<Vec<T>> {
    if len == 0 || std::mem::size_of::<T>() == 0 {
        return Ok(Vec::new());
    }
    let layout = Layout::array::<T>(len).map_err(|_| out_of_memory::<T>(len, what))?;
    // SAFETY: `layout` has a non-zero size. For `Zeroable` types all-zero
    // bits are a value, so the buffer holds `len`
    // initialized values; it was allocated by the global allocator with
    // exactly the layout `Vec<T>` uses for capacity `len`, so the Vec may own it.
    unsafe {
        let ptr = alloc_zeroed(layout).cast::<T>();
        if ptr.is_null() {
            return Err(out_of_memory::<T>(len, what));
        }
        Ok(Vec::from_raw_parts(ptr, len, len))
    }
}

/// Makes room for `extra` more elements in `buf`, or `Error::Memory`.
pub fn try_reserve<T>(buf: &mut Vec<T>, extra: usize, what: &str) -> Result<()> {
    buf.try_reserve(extra)
        .map_err(|_| out_of_memory::<T>(buf.len().saturating_add(extra), what))
}

/// A copy of `values`, or `Error::Memory`.
pub fn try_copy<T: Copy>(values: &[T], what: &str) -> Result<Vec<T>> {
    let mut copy = Vec::new();
    copy.try_reserve_exact(values.len())
        .map_err(|_| out_of_memory::<T>(values.len(), what))?;
    copy.extend_from_slice(values);
    Ok(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_buffers_are_zero() {
        let v = try_zeroed::<f64>(1000, "test").unwrap();
        assert_eq!(v.len(), 1000);
        assert!(v.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn impossible_sizes_are_errors_not_aborts() {
        let err = try_zeroed::<f32>(usize::MAX / 2, "test").unwrap_err();
        assert!(matches!(err, Error::Memory(_)), "{err:?}");
        let mut buf = vec![0.0f32; 4];
        let err = try_reserve(&mut buf, usize::MAX / 8, "test").unwrap_err();
        assert!(matches!(err, Error::Memory(_)), "{err:?}");
        assert_eq!(buf.len(), 4);
    }
}
