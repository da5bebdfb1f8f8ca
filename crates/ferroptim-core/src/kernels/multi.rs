//! One pass over many tensors.
//!
//! A step over thousands of small tensors must not fan threads out per
//! tensor. The tensors are laid end to end in one flat element space, that
//! space is cut into equal chunks, and each chunk walks the tensors it covers.

use std::ptr;

use super::{parallel, simd, Algorithm, Real};

pub const MAX_SLOTS: usize = 3;

/// One tensor's share of a step, as raw parts. Built by the caller after it
/// has checked that every buffer is live, long enough, and that no written
/// buffer overlaps any other buffer of the step.
pub struct Job<T, S> {
    param: *mut T,
    grad: *const T,
    /// Null where the slot is unused.
    state: [*mut T; MAX_SLOTS],
    len: usize,
    /// Offset of this tensor in the flat element space; set by [`run`].
    start: usize,
    scalars: S,
    /// Grads are read as `clamp(g·scale, −clip, clip)` when set.
    grad_transform: Option<(T, T)>,
    /// Averaged weights `a += w·(p − a)`, updated right after the param; null when off.
    average: *mut T,
    average_weight: T,
}

// SAFETY: jobs only travel to the pool's threads for the duration of `run`,
// and the chunks they hand out are disjoint.
unsafe impl<T: Send, S: Send> Send for Job<T, S> {}
unsafe impl<T: Send, S: Sync> Sync for Job<T, S> {}

impl<T: Real, S: Copy> Job<T, S> {
    /// A job from slices; unused state slots are empty slices.
    pub fn new(param: &mut [T], grad: &[T], state: [&mut [T]; MAX_SLOTS], scalars: S) -> Self {
        let len = param.len();
        let state = state.map(|s| {
            if s.is_empty() {
                ptr::null_mut()
            } else {
                s.as_mut_ptr()
            }
        });
        Job {
            param: param.as_mut_ptr(),
            grad: grad.as_ptr(),
            state,
            len,
            start: 0,
            scalars,
            grad_transform: None,
            average: ptr::null_mut(),
            average_weight: T::ZERO,
        }
    }

    /// A job from raw pointers.
    ///
    /// # Safety
    /// `param`, `grad` and every non-null `state` pointer must be valid for
    /// `len` elements until [`run`] returns, and the written buffers (param
    /// and state) must not overlap each other or any other buffer of the run.
    pub unsafe fn from_raw(
        param: *mut T,
        grad: *const T,
        state: [*mut T; MAX_SLOTS],
        len: usize,
        scalars: S,
    ) -> Self {
        Job {
            param,
            grad,
            state,
            len,
            start: 0,
            scalars,
            grad_transform: None,
            average: ptr::null_mut(),
            average_weight: T::ZERO,
        }
    }

    /// Reads every grad as `clamp(g·scale, −clip, clip)` (gradient clipping
    /// by norm and by value, fused into the step: no copy of the grads).
    pub fn with_grad_transform(mut self, scale: T, clip: T) -> Self {
        self.grad_transform = Some((scale, clip));
        self
    }

    /// Also updates averaged weights `a += weight·(p − a)` from the new param.
    ///
    /// # Safety
    /// `average` must be valid for `len` elements and overlap no other buffer.
    pub unsafe fn with_average(mut self, average: *mut T, weight: T) -> Self {
        self.average = average;
        self.average_weight = weight;
        self
    }

    /// Starts loading the head of this tensor's param and grad. Small
    /// tensors sit at scattered addresses, a few cache lines each: without
    /// this every one of them starts with a cache miss (a step over 10000
    /// tensors of 100 spent most of its time waiting on them). The state
    /// lies end to end in the arena, where the hardware prefetcher follows.
    #[inline(always)]
    fn prefetch_head(&self) {
        let bytes = (self.len * std::mem::size_of::<T>()).min(PREFETCH_BYTES);
        simd::prefetch(self.param as *const u8, bytes);
        simd::prefetch(self.grad as *const u8, bytes);
    }

    /// Updates elements `[lo, hi)` of this tensor.
    ///
    /// # Safety
    /// As for [`Job::from_raw`], and no other thread touches `[lo, hi)`.
    #[inline]
    unsafe fn apply<A: Algorithm<Scalars<T> = S>>(&self, lo: usize, hi: usize) {
        if self.grad_transform.is_none() && self.average.is_null() {
            // SAFETY: forwarded from the caller.
            unsafe { self.apply_plain::<A>(lo, hi) };
            return;
        }
        // Sub-blocks small enough that the transformed grads and the fresh
        // params are still in L1 when the extra work reads them.
        const SUB: usize = 1024;
        let mut buffer = [T::ZERO; SUB];
        let mut a = lo;
        while a < hi {
            let b = (a + SUB).min(hi);
            let n = b - a;
            // SAFETY: `[a, b)` lies within `[lo, hi)`, which the caller owns.
            unsafe {
                let param = std::slice::from_raw_parts_mut(self.param.add(a), n);
                let mut grad = std::slice::from_raw_parts(self.grad.add(a), n);
                if let Some((scale, clip)) = self.grad_transform {
                    let out = &mut buffer[..n];
                    simd::dispatch(
                        #[inline(always)]
                        || transform(grad, out, scale, clip),
                    );
                    grad = &buffer[..n];
                }
                let state = self.state.map(|s| {
                    if s.is_null() {
                        &mut [][..]
                    } else {
                        std::slice::from_raw_parts_mut(s.add(a), n)
                    }
                });
                A::update(param, grad, state, &self.scalars);
                if !self.average.is_null() {
                    let avg = std::slice::from_raw_parts_mut(self.average.add(a), n);
                    let w = self.average_weight;
                    simd::dispatch(
                        #[inline(always)]
                        || average(avg, param, w),
                    );
                }
            }
            a = b;
        }
    }

    #[inline]
    unsafe fn apply_plain<A: Algorithm<Scalars<T> = S>>(&self, lo: usize, hi: usize) {
        let n = hi - lo;
        // SAFETY: upheld by the caller; `lo..hi` lies within `0..len`.
        unsafe {
            let param = std::slice::from_raw_parts_mut(self.param.add(lo), n);
            let grad = std::slice::from_raw_parts(self.grad.add(lo), n);
            let state = self.state.map(|s| {
                if s.is_null() {
                    &mut [][..]
                } else {
                    std::slice::from_raw_parts_mut(s.add(lo), n)
                }
            });
            A::update(param, grad, state, &self.scalars);
        }
    }
}

#[inline(always)]
fn transform<T: Real>(grad: &[T], out: &mut [T], scale: T, clip: T) {
    for (o, &g) in out.iter_mut().zip(grad) {
        let g = g * scale;
        *o = if g > clip {
            clip
        } else if g < -clip {
            -clip
        } else {
            g
        };
    }
}

#[inline(always)]
fn average<T: Real>(avg: &mut [T], param: &[T], weight: T) {
    for (a, &p) in avg.iter_mut().zip(param) {
        *a = *a + weight * (p - *a);
    }
}

/// How many tensors ahead a run prefetches (see [`Job::prefetch_head`]).
const PREFETCH_AHEAD: usize = 2;
/// Bytes of each buffer of a tensor that are prefetched ahead.
const PREFETCH_BYTES: usize = 2048;

/// Runs one step of `A` over all `jobs`, split into chunks that span tensors.
///
/// # Safety
/// Every job must satisfy the contract of [`Job::from_raw`].
pub unsafe fn run<A: Algorithm, T: Real>(jobs: &mut [Job<T, A::Scalars<T>>]) {
    let mut total = 0usize;
    for job in jobs.iter_mut() {
        job.start = total;
        total += job.len;
    }
    let jobs = &*jobs;
    parallel::for_each_range(total, |lo, hi| {
        // The first tensor that ends after `lo`.
        let mut k = jobs.partition_point(|j| j.start + j.len <= lo);
        for ahead in jobs.iter().skip(k).take(PREFETCH_AHEAD) {
            ahead.prefetch_head();
        }
        let mut pos = lo;
        while pos < hi {
            let job = &jobs[k];
            if let Some(ahead) = jobs.get(k + PREFETCH_AHEAD).filter(|j| j.start < hi) {
                ahead.prefetch_head();
            }
            let a = pos - job.start;
            let b = (hi - job.start).min(job.len);
            if b > a {
                // SAFETY: chunks are disjoint, so `[a, b)` of this tensor is ours alone.
                unsafe { job.apply::<A>(a, b) };
            }
            pos = job.start + b;
            k += 1;
        }
    });
}
