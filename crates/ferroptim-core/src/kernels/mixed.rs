//! One pass over tensors whose params, grads or state are not all float32:
//! bfloat16/float16 params (with or without float32 master weights) and
//! state kept as bfloat16 or 8-bit codes ([`super::lowp`]).
//!
//! Each chunk is walked in blocks of [`QBLOCK`] elements: the block's grads,
//! params and state are widened to float32 in L1-sized buffers, the rule's
//! own float32 `update` runs on them, and the results are narrowed back, so
//! memory is still read and written once and every rule is written once.
//! With master weights the rule updates the master copy in place, and the
//! param is its rounding: the same numbers as a float32 run, rounded.

use std::ptr;

use super::lowp::{self, Storage, QBLOCK};
use super::{parallel, simd, Algorithm, MAX_SLOTS};

/// How many blocks ahead of the one being updated the pass prefetches. Two
/// rather than one: at 16M params on 2 threads, interleaved A/B in one
/// process, float32 params + int8 state 6% faster, bfloat16 params and
/// state 13%, the others 0-3% (docs/lowp_results.md, session 5).
const PREFETCH_AHEAD: usize = 2;

/// Where one state slot of a tensor lives.
#[derive(Clone, Copy)]
pub enum SlotPtr {
    Unused,
    F32(*mut f32),
    Bf16(*mut u16),
    /// Codes (one per element) and scales (one per [`QBLOCK`] elements).
    Int8 {
        codes: *mut u8,
        scales: *mut f32,
        signed: bool,
    },
}

/// How results are rounded into 16-bit storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rounding {
    /// Params (without master weights) and bfloat16 state: stochastic when
    /// set, else round-to-nearest-even. 8-bit codes are always stochastic.
    pub stochastic: bool,
    pub seed: u64,
    /// This tensor's index, for its random streams.
    pub tensor: u64,
    /// The tensor's step count, the position in its random streams.
    pub step: u64,
}

/// One tensor's share of a mixed-precision step, as raw parts.
pub struct MixedJob<S> {
    pub param: *mut u8,
    pub param_storage: Storage,
    pub grad: *const u8,
    pub grad_storage: Storage,
    /// Float32 master weights, or null.
    pub master: *mut f32,
    pub state: [SlotPtr; MAX_SLOTS],
    pub len: usize,
    pub scalars: S,
    /// Grads are read as `clamp(g·scale, −clip, clip)` when set.
    pub grad_transform: Option<(f32, f32)>,
    /// Averaged weights (float32), or null.
    pub average: *mut f32,
    pub average_weight: f32,
    pub rounding: Rounding,
    start: usize,
}

// SAFETY: as for `multi::Job`: jobs travel to the pool's threads only for
// the duration of `run`, and the chunks they hand out are disjoint.
unsafe impl<S: Send> Send for MixedJob<S> {}
unsafe impl<S: Sync> Sync for MixedJob<S> {}

impl<S: Copy> MixedJob<S> {
    /// # Safety
    /// Every non-null pointer must be valid for `len` elements of its
    /// storage (scales: `len.div_ceil(QBLOCK)`) until [`run`] returns, and
    /// no written buffer may overlap any other buffer of the run.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn new(
        param: (*mut u8, Storage),
        grad: (*const u8, Storage),
        master: *mut f32,
        state: [SlotPtr; MAX_SLOTS],
        len: usize,
        scalars: S,
        grad_transform: Option<(f32, f32)>,
        average: Option<(*mut f32, f32)>,
        rounding: Rounding,
    ) -> Self {
        let (average, average_weight) = average.unwrap_or((ptr::null_mut(), 0.0));
        MixedJob {
            param: param.0,
            param_storage: param.1,
            grad: grad.0,
            grad_storage: grad.1,
            master,
            state,
            len,
            scalars,
            grad_transform,
            average,
            average_weight,
            rounding,
            start: 0,
        }
    }

    /// Updates elements `[lo, hi)`; `lo` is a multiple of [`QBLOCK`].
    ///
    /// # Safety
    /// As for [`MixedJob::new`], and no other thread touches `[lo, hi)`.
    unsafe fn apply<A: Algorithm<Scalars<f32> = S>>(&self, lo: usize, hi: usize) {
        // The conversions are inlined into the dispatched body, so they are
        // vectorized for the CPU's instruction set like the rules are.
        // SAFETY: forwarded from the caller.
        simd::dispatch(
            #[inline(always)]
            || unsafe { self.apply_blocks::<A>(lo, hi) },
        )
    }

    /// Prefetches the `n` elements from `at` of every buffer this job streams.
    #[inline(always)]
    fn prefetch_block(&self, at: usize, n: usize) {
        let size = |s: Storage| if s == Storage::F32 { 4 } else { 2 };
        let (ps, gs) = (size(self.param_storage), size(self.grad_storage));
        simd::prefetch(self.param.wrapping_add(at * ps), n * ps);
        simd::prefetch(self.grad.wrapping_add(at * gs), n * gs);
        if !self.master.is_null() {
            simd::prefetch(self.master.wrapping_add(at) as *const u8, n * 4);
        }
        for slot in &self.state {
            match *slot {
                SlotPtr::Unused => {}
                SlotPtr::F32(s) => simd::prefetch(s.wrapping_add(at) as *const u8, n * 4),
                SlotPtr::Bf16(s) => simd::prefetch(s.wrapping_add(at) as *const u8, n * 2),
                SlotPtr::Int8 { codes, .. } => simd::prefetch(codes.wrapping_add(at), n),
            }
        }
    }

    #[inline(always)]
    unsafe fn apply_blocks<A: Algorithm<Scalars<f32> = S>>(&self, lo: usize, hi: usize) {
        debug_assert_eq!(lo % QBLOCK, 0);
        let r = self.rounding;
        let key = lowp::stream_key(r.seed, r.tensor, r.step, 0);
        // Random bits are drawn once per element when anything rounds
        // stochastically: 8-bit codes always, params and bfloat16 state when asked.
        let int8 = self.state.iter().any(|s| matches!(s, SlotPtr::Int8 { .. }));
        let draws = int8 || r.stochastic;
        let param_sr = r.stochastic && self.master.is_null();
        let mut random = [0u32; QBLOCK];
        let mut grad = [0f32; QBLOCK];
        let mut param = [0f32; QBLOCK];
        let mut slots = [[0f32; QBLOCK]; MAX_SLOTS];
        let mut a = lo;
        while a < hi {
            let b = (a + QBLOCK).min(hi);
            let n = b - a;
            // SAFETY: `[a, b)` lies within `[lo, hi)`, which the caller owns.
            unsafe {
                let ahead = a + PREFETCH_AHEAD * QBLOCK;
                if ahead < hi {
                    self.prefetch_block(ahead, (hi - ahead).min(QBLOCK));
                }
                if draws {
                    lowp::randoms(key, a, &mut random[..n]);
                }
                let random = &random[..n];
                let g: &[f32] = match (self.grad_storage, self.grad_transform) {
                    (Storage::F32, None) => {
                        std::slice::from_raw_parts((self.grad as *const f32).add(a), n)
                    }
                    (storage, transform) => {
                        let g = &mut grad[..n];
                        lowp::load(self.grad, storage, a, g);
                        if let Some((scale, clip)) = transform {
                            for x in g.iter_mut() {
                                *x = (*x * scale).clamp(-clip, clip);
                            }
                        }
                        g
                    }
                };
                let p: &mut [f32] = if !self.master.is_null() {
                    std::slice::from_raw_parts_mut(self.master.add(a), n)
                } else if self.param_storage == Storage::F32 {
                    std::slice::from_raw_parts_mut((self.param as *mut f32).add(a), n)
                } else {
                    lowp::load(self.param, self.param_storage, a, &mut param[..n]);
                    &mut param[..n]
                };
                // A rule's fused block for its two compressed moments, if it has one.
                let fused = match self.state {
                    [SlotPtr::Int8 {
                        codes: m_codes,
                        scales: m_scales,
                        signed: true,
                    }, SlotPtr::Int8 {
                        codes: v_codes,
                        scales: v_scales,
                        signed: false,
                    }, SlotPtr::Unused] => {
                        let [m_values, v_values, _] = &mut slots;
                        let slots = [
                            (m_codes, m_scales, 1, &mut m_values[..]),
                            (v_codes, v_scales, 2, &mut v_values[..]),
                        ]
                        .map(|(codes, scales, stream, values)| lowp::Int8Slot {
                            codes: std::slice::from_raw_parts_mut(codes.add(a), n),
                            scale: &mut *scales.add(a / QBLOCK),
                            rotate: lowp::rotation(stream),
                            values,
                        });
                        A::update_int8(p, g, slots, random, &self.scalars)
                    }
                    [SlotPtr::Bf16(m_bits), SlotPtr::Bf16(v_bits), SlotPtr::Unused] => {
                        let bits =
                            [m_bits, v_bits].map(|b| std::slice::from_raw_parts_mut(b.add(a), n));
                        let rotate = [lowp::rotation(1), lowp::rotation(2)];
                        let stochastic = r.stochastic.then_some((random, rotate));
                        A::update_bf16(p, g, bits, stochastic, &self.scalars)
                    }
                    _ => false,
                };
                if fused {
                    self.finish_block(a, n, p, param_sr, random);
                    a = b;
                    continue;
                }
                let [s0, s1, s2] = &mut slots;
                let mut views: [&mut [f32]; MAX_SLOTS] = [&mut [], &mut [], &mut []];
                for (k, (view, buf)) in views.iter_mut().zip([s0, s1, s2]).enumerate() {
                    *view = match self.state[k] {
                        SlotPtr::Unused => &mut [],
                        SlotPtr::F32(s) => std::slice::from_raw_parts_mut(s.add(a), n),
                        SlotPtr::Bf16(s) => {
                            lowp::load(s as *const u8, Storage::Bf16, a, &mut buf[..n]);
                            &mut buf[..n]
                        }
                        SlotPtr::Int8 {
                            codes,
                            scales,
                            signed,
                        } => {
                            let codes = std::slice::from_raw_parts(codes.add(a), n);
                            lowp::dequantize(codes, *scales.add(a / QBLOCK), signed, &mut buf[..n]);
                            &mut buf[..n]
                        }
                    };
                }
                let [v0, v1, v2] = views;
                A::update(p, g, [&mut *v0, &mut *v1, &mut *v2], &self.scalars);
                // Narrow the state back.
                for (k, view) in [v0, v1, v2].into_iter().enumerate() {
                    match self.state[k] {
                        SlotPtr::Unused | SlotPtr::F32(_) => {}
                        SlotPtr::Bf16(s) => {
                            let out = std::slice::from_raw_parts_mut(s.add(a), n);
                            let sr = r.stochastic.then(|| (random, lowp::rotation(1 + k)));
                            lowp::store_half(out, view, Storage::Bf16, sr);
                        }
                        SlotPtr::Int8 {
                            codes,
                            scales,
                            signed,
                        } => {
                            let codes = std::slice::from_raw_parts_mut(codes.add(a), n);
                            let rotate = lowp::rotation(1 + k);
                            *scales.add(a / QBLOCK) =
                                lowp::quantize(view, codes, signed, random, rotate);
                        }
                    }
                }
                self.finish_block(a, n, p, param_sr, random);
            }
            a = b;
        }
    }

    /// Writes the block's param (the master's or the update's rounding) and
    /// its running average.
    ///
    /// # Safety
    /// As for [`MixedJob::apply`], for elements `[a, a + n)`.
    #[inline(always)]
    unsafe fn finish_block(
        &self,
        a: usize,
        n: usize,
        p: &mut [f32],
        param_sr: bool,
        random: &[u32],
    ) {
        // SAFETY: forwarded from the caller.
        unsafe {
            if self.param_storage != Storage::F32 {
                let out = std::slice::from_raw_parts_mut((self.param as *mut u16).add(a), n);
                let sr = param_sr.then_some((random, lowp::rotation(0)));
                if self.master.is_null() && !self.average.is_null() {
                    // The average follows the param as stored.
                    lowp::store_half(out, p, self.param_storage, sr);
                } else {
                    // The master keeps its value (`sr` is None with one).
                    lowp::narrow_half(out, p, self.param_storage, sr);
                }
            }
            if !self.average.is_null() {
                let avg = std::slice::from_raw_parts_mut(self.average.add(a), n);
                let w = self.average_weight;
                for (x, &v) in avg.iter_mut().zip(p.iter()) {
                    *x = *x + w * (v - *x);
                }
            }
        }
    }
}

/// Runs one step of `A` over all `jobs`. Chunks are cut at multiples of
/// [`QBLOCK`] of each tensor, so a quantization block is never split
/// between threads.
///
/// # Safety
/// Every job must satisfy the contract of [`MixedJob::new`].
pub unsafe fn run<A: Algorithm>(jobs: &mut [MixedJob<A::Scalars<f32>>]) {
    // Lay the tensors end to end, each starting on a block boundary.
    let mut total = 0usize;
    for job in jobs.iter_mut() {
        job.start = total;
        total += job.len.next_multiple_of(QBLOCK);
    }
    let jobs = &*jobs;
    parallel::for_each_range_aligned(total, QBLOCK, |lo, hi| {
        let mut k = jobs.partition_point(|j| j.start + j.len <= lo);
        let mut pos = lo;
        while pos < hi && k < jobs.len() {
            let job = &jobs[k];
            let a = pos.max(job.start) - job.start;
            let b = (hi - job.start).min(job.len);
            if b > a {
                // SAFETY: chunks are disjoint and block-aligned.
                unsafe { job.apply::<A>(a, b) };
            }
            k += 1;
            pos = jobs.get(k).map_or(hi, |j| j.start);
        }
    });
}
