//! The memory-bandwidth yardstick the benchmarks compare against: an
//! in-place `a += b` on the same pool and SIMD path as the optimizers, so
//! "fraction of roofline" compares like with like.

use super::{parallel, simd, Real};

/// `a[i] += b[i]`, split over the pool like an optimizer step.
pub fn add_assign<T: Real>(a: &mut [T], b: &[T]) {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let (pa, pb) = (a.as_mut_ptr() as usize, b.as_ptr() as usize);
    parallel::for_each_range(a.len(), |lo, hi| {
        // SAFETY: ranges from `for_each_range` are disjoint and within both slices.
        let (a, b) = unsafe {
            (
                std::slice::from_raw_parts_mut((pa as *mut T).add(lo), hi - lo),
                std::slice::from_raw_parts((pb as *const T).add(lo), hi - lo),
            )
        };
        simd::dispatch(
            #[inline(always)]
            || {
                for (x, y) in a.iter_mut().zip(b) {
                    *x = *x + *y;
                }
            },
        );
    });
}
