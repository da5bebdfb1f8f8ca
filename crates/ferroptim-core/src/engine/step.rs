//! A step: the global grad norm, then one planned multi-tensor run per dtype.

use crate::error::Result;
use crate::kernels::lowp::{self, Storage, QBLOCK};
use crate::kernels::mixed::{self, MixedJob, Rounding, SlotPtr};
use crate::kernels::{gradtools, multi, Algorithm, Aux, Job, Real, MAX_AUX, MAX_SLOTS};
use crate::memory;
use crate::options::StateDtype;

use super::arena::Arena;
use super::{Engine, Kind, Param};

type MemoKey = (usize, u64, [bool; MAX_SLOTS], [u64; MAX_AUX]);

/// The last (group, step, freshness, aux) and the scalars computed for it.
struct Memo<A: Algorithm, T: Real> {
    last: Option<(MemoKey, A::Scalars<T>, Aux)>,
}

impl<A: Algorithm, T: Real> Memo<A, T> {
    fn new() -> Self {
        Memo { last: None }
    }

    fn get(&mut self, key: MemoKey, hyper: &A::Hyper) -> (A::Scalars<T>, Aux) {
        match &self.last {
            Some((k, s, aux)) if *k == key => (*s, *aux),
            _ => {
                let (s, aux) = A::scalars_aux::<T>(hyper, key.1, key.2, key.3.map(f64::from_bits));
                self.last = Some((key, s, aux));
                (s, aux)
            }
        }
    }
}

impl<A: Algorithm> Engine<A> {
    /// One step of every param whose grad is `Some(address)`; returns false
    /// when it was skipped (non-finite grads with `skip_nonfinite`).
    ///
    /// # Safety
    /// Every param must still be live and writeable at the address it was
    /// added with. Every `Some` address must hold param `i`'s grad: as many
    /// elements of its dtype, C-contiguous and aligned, sharing no memory with
    /// any param ([`Engine::check_grad_memory`]), alive until this returns.
    pub unsafe fn step(
        &mut self,
        hypers: &[A::Hyper],
        ready: &[Option<(usize, Kind)>],
        grad_scale: f64,
    ) -> Result<bool> {
        if self.precision.state != StateDtype::Float32 {
            if let Some(why) = hypers.iter().find_map(A::incompressible) {
                return Err(crate::error::Error::hyper("state_dtype", why));
            }
        }
        // Global norm and finite check, on the grads as the step will see them.
        let options = self.options;
        let mut scale = grad_scale;
        let mut grad_norm = None;
        if options.max_grad_norm.is_some() || options.skip_nonfinite {
            // SAFETY: upheld by the caller.
            let (norm, finite) = unsafe { self.grad_norm(ready, options.inf_norm) };
            let norm = norm * grad_scale;
            if options.skip_nonfinite && !finite {
                self.skipped += 1;
                self.last_grad_norm = Some(norm);
                return Ok(false);
            }
            grad_norm = Some(norm);
            if let Some(max_norm) = options.max_grad_norm {
                // torch.nn.utils.clip_grad_norm_'s coefficient, clamped at 1.
                scale *= gradtools::clip_coefficient(max_norm, norm);
            }
        }
        let transform = (scale != 1.0 || options.clip_value.is_some())
            .then(|| (scale, options.clip_value.unwrap_or(f64::INFINITY)));

        // Allocate the state slots this step needs before taking any pointer
        // into them, then build the work lists.
        let precision = self.precision;
        for (p, grad) in self.params.iter().zip(ready) {
            if grad.is_some() {
                let used = A::slots_used(&hypers[p.group]);
                for k in (0..MAX_SLOTS).filter(|&k| used[k]) {
                    self.arenas.ensure(p.kind, k)?;
                }
                if options.averaging.is_some() {
                    self.arenas.ensure_average(p.kind)?;
                }
                if p.kind.is_low_precision() && precision.master_weights {
                    self.arenas.f32.ensure_master()?;
                }
            }
        }
        let mut jobs32 = Vec::new();
        let mut jobs64 = Vec::new();
        let mut mixed = Vec::new();
        // Neighbouring tensors usually share group, step and freshness: their
        // scalars (a few powf calls) are computed once.
        let mut memo32 = Memo::<A, f32>::new();
        let mut memo64 = Memo::<A, f64>::new();
        let arenas = &mut self.arenas;
        let packed_state = arenas.f32.state != StateDtype::Float32;
        for (index, (p, grad)) in self.params.iter_mut().zip(ready).enumerate() {
            let Some((grad, grad_kind)) = *grad else {
                continue;
            };
            let hyper = &hypers[p.group];
            let used = A::slots_used(hyper);
            let fresh = p.live.map(|l| !l);
            p.step += 1;
            let key = (p.group, p.step, fresh, p.aux.map(f64::to_bits));
            let average = options.averaging.map(|a| {
                let w = a.weight(p.averaged);
                p.averaged += 1;
                w
            });
            if p.kind == Kind::F64 {
                let (s, aux) = memo64.get(key, hyper);
                p.aux = aux;
                jobs64.push(job::<A, f64>(
                    &mut arenas.f64,
                    p,
                    grad,
                    used,
                    s,
                    transform,
                    average,
                ));
            } else {
                let (s, aux) = memo32.get(key, hyper);
                p.aux = aux;
                if p.kind == Kind::F32 && grad_kind == Kind::F32 && !packed_state {
                    jobs32.push(job::<A, f32>(
                        &mut arenas.f32,
                        p,
                        grad,
                        used,
                        s,
                        transform,
                        average,
                    ));
                } else {
                    let rounding = Rounding {
                        stochastic: precision.stochastic_rounding,
                        seed: precision.seed,
                        tensor: index as u64,
                        step: p.step,
                    };
                    // SAFETY: as for `job`; the param was checked by the caller.
                    mixed.push(unsafe {
                        mixed_job::<A>(
                            &mut arenas.f32,
                            p,
                            (grad, grad_kind),
                            used,
                            s,
                            transform,
                            average,
                            precision.master_weights,
                            rounding,
                        )
                    });
                }
            }
            for (live, u) in p.live.iter_mut().zip(used) {
                *live |= u;
            }
        }
        // SAFETY: the caller vouches for params and grads (right length, no
        // overlap with any param); params never overlap each other; state
        // slices are disjoint ranges of arenas that are not resized during the run.
        unsafe {
            multi::run::<A, f32>(&mut jobs32);
            multi::run::<A, f64>(&mut jobs64);
            mixed::run::<A>(&mut mixed);
        }
        self.last_grad_norm = grad_norm;
        Ok(true)
    }

    /// The global norm of the grads that will step (2-norm, or the
    /// infinity norm), and whether every element is finite.
    ///
    /// # Safety
    /// As [`Engine::step`].
    unsafe fn grad_norm(&self, ready: &[Option<(usize, Kind)>], inf_norm: bool) -> (f64, bool) {
        let mut t32: Vec<&[f32]> = Vec::new();
        let mut t64: Vec<&[f64]> = Vec::new();
        let mut t16: Vec<(&[u16], Storage)> = Vec::new();
        for (p, grad) in self.params.iter().zip(ready) {
            let Some((addr, kind)) = *grad else { continue };
            // SAFETY: upheld by the caller.
            unsafe {
                match kind {
                    Kind::F32 => t32.push(std::slice::from_raw_parts(addr as *const f32, p.len)),
                    Kind::F64 => t64.push(std::slice::from_raw_parts(addr as *const f64, p.len)),
                    Kind::Bf16 | Kind::F16 => t16.push((
                        std::slice::from_raw_parts(addr as *const u16, p.len),
                        kind.storage(),
                    )),
                }
            }
        }
        let (norm, finite16) = if t16.is_empty() {
            (gradtools::global_norm(&t32, &t64, inf_norm), true)
        } else {
            let (x, finite16) = half_norm(&t16, inf_norm);
            let y = gradtools::global_norm(&t32, &t64, inf_norm);
            let norm = if inf_norm {
                if x.is_nan() || y.is_nan() {
                    f64::NAN
                } else {
                    x.max(y)
                }
            } else {
                (x * x + y * y).sqrt()
            };
            (norm, finite16)
        };
        // A huge but finite grad can overflow the sum of squares: only then
        // is the slower exact check needed.
        let finite = finite16
            && (norm.is_finite()
                || (!norm.is_nan() && gradtools::all_finite(&t32) && gradtools::all_finite(&t64)));
        (norm, finite)
    }

    /// Swaps every param's values with its averaged weights, in place; params
    /// without an average are left alone. Returns how many were swapped.
    ///
    /// # Safety
    /// Every param with an average ([`Engine::has_average`]) must be live and
    /// writeable at the address it was added with.
    pub unsafe fn swap_averages(&mut self) -> Result<usize> {
        let mut swapped = 0;
        for p in self.params.iter() {
            if p.averaged == 0 || p.len == 0 {
                continue;
            }
            // SAFETY: upheld by the caller; the arena never overlaps a param.
            unsafe {
                match p.kind {
                    Kind::F32 => swap_with(&mut self.arenas.f32.average, p),
                    Kind::F64 => swap_with(&mut self.arenas.f64.average, p),
                    // Below.
                    Kind::Bf16 | Kind::F16 => continue,
                }
            }
            swapped += 1;
        }
        // 16-bit params show their float32 averages rounded; swapping back
        // restores their exact values (from the stash or the master copy),
        // so the averages never lose precision to a round trip.
        let low: Vec<&Param> = self
            .params
            .iter()
            .filter(|p| p.averaged > 0 && p.len > 0 && p.kind.is_low_precision())
            .collect();
        if low.is_empty() {
            return Ok(swapped);
        }
        let arena = &self.arenas.f32;
        match self.stash.take() {
            None => {
                let total = low.iter().map(|p| p.len).sum();
                let mut stash: Vec<u16> = memory::try_zeroed(total, "swapped params")?;
                let mut at = 0;
                for p in &low {
                    // SAFETY: upheld by the caller.
                    let values =
                        unsafe { std::slice::from_raw_parts_mut(p.addr as *mut u16, p.len) };
                    stash[at..at + p.len].copy_from_slice(values);
                    at += p.len;
                    let mut avg = arena.average[p.offset..p.offset + p.len].to_vec();
                    lowp::store_half(values, &mut avg, p.kind.storage(), None);
                }
                self.stash = Some(stash);
            }
            Some(stash) => {
                let mut at = 0;
                for p in &low {
                    // SAFETY: upheld by the caller.
                    let values =
                        unsafe { std::slice::from_raw_parts_mut(p.addr as *mut u16, p.len) };
                    values.copy_from_slice(&stash[at..at + p.len]);
                    at += p.len;
                }
            }
        }
        Ok(swapped + low.len())
    }
}

/// One tensor's job: its state slots, grad transform and averaging pointer.
fn job<A: Algorithm, T: Real>(
    arena: &mut Arena<T>,
    p: &Param,
    grad: usize,
    used: [bool; MAX_SLOTS],
    scalars: A::Scalars<T>,
    transform: Option<(f64, f64)>,
    average: Option<f64>,
) -> Job<T, A::Scalars<T>> {
    let mut state = [std::ptr::null_mut(); MAX_SLOTS];
    for k in (0..MAX_SLOTS).filter(|&k| used[k]) {
        debug_assert_eq!(
            arena.slots[k].len(),
            arena.len,
            "slot allocated before planning"
        );
        // SAFETY: `offset + len` lies within the arena.
        state[k] = unsafe { arena.slots[k].as_mut_ptr().add(p.offset) };
    }
    // SAFETY: see `Engine::step`.
    let job = unsafe { Job::from_raw(p.addr as *mut T, grad as *const T, state, p.len, scalars) };
    let job = match transform {
        Some((scale, clip)) => job.with_grad_transform(T::from_f64(scale), T::from_f64(clip)),
        None => job,
    };
    match average {
        // SAFETY: the average buffer was sized before planning and is disjoint from everything else.
        Some(w) => unsafe {
            job.with_average(arena.average.as_mut_ptr().add(p.offset), T::from_f64(w))
        },
        None => job,
    }
}

/// Swaps a param's values with its slice of `average`.
///
/// # Safety
/// The param must be live, writeable and `p.len` elements long.
unsafe fn swap_with<T: Real>(average: &mut [T], p: &Param) {
    // SAFETY: upheld by the caller; the arena never overlaps a param.
    let values = unsafe { std::slice::from_raw_parts_mut(p.addr as *mut T, p.len) };
    values.swap_with_slice(&mut average[p.offset..p.offset + p.len]);
}

/// One mixed-precision tensor's job (see [`mixed`]); fills the master copy
/// from the param on its first step.
///
/// # Safety
/// The param must be live and writeable at its address, the grad valid
/// for `p.len` elements of its kind; as for [`Engine::step`].
#[allow(clippy::too_many_arguments)]
unsafe fn mixed_job<A: Algorithm>(
    arena: &mut Arena<f32>,
    p: &mut Param,
    grad: (usize, Kind),
    used: [bool; MAX_SLOTS],
    scalars: A::Scalars<f32>,
    transform: Option<(f64, f64)>,
    average: Option<f64>,
    master_weights: bool,
    rounding: Rounding,
) -> MixedJob<A::Scalars<f32>> {
    let range = p.offset..p.offset + p.len;
    let master = if p.kind.is_low_precision() && master_weights {
        if !p.master_live {
            // SAFETY: upheld by the caller.
            unsafe {
                lowp::load(
                    p.addr as *const u8,
                    p.kind.storage(),
                    0,
                    &mut arena.master[range.clone()],
                )
            };
            p.master_live = true;
        }
        // SAFETY: `range` lies within the arena.
        unsafe { arena.master.as_mut_ptr().add(p.offset) }
    } else {
        std::ptr::null_mut()
    };
    let mut state = [SlotPtr::Unused; MAX_SLOTS];
    for k in (0..MAX_SLOTS).filter(|&k| used[k]) {
        debug_assert!(arena.has(k), "slot allocated before planning");
        // SAFETY: `offset + len` lies within the arena (and its blocks within the scales).
        state[k] = unsafe {
            match arena.state {
                StateDtype::Float32 => SlotPtr::F32(arena.slots[k].as_mut_ptr().add(p.offset)),
                StateDtype::Bfloat16 => SlotPtr::Bf16(arena.half[k].as_mut_ptr().add(p.offset)),
                StateDtype::Int8 => SlotPtr::Int8 {
                    codes: arena.codes[k].as_mut_ptr().add(p.offset),
                    scales: arena.scales[k].as_mut_ptr().add(p.offset / QBLOCK),
                    signed: !A::NON_NEGATIVE[k],
                },
            }
        };
    }
    let average = average.map(|w| {
        // SAFETY: the average buffer was sized before planning.
        (
            unsafe { arena.average.as_mut_ptr().add(p.offset) },
            w as f32,
        )
    });
    // SAFETY: see `Engine::step`.
    unsafe {
        MixedJob::new(
            (p.addr as *mut u8, p.kind.storage()),
            (grad.0 as *const u8, grad.1.storage()),
            master,
            state,
            p.len,
            scalars,
            transform.map(|(s, c)| (s as f32, c as f32)),
            average,
            rounding,
        )
    }
}

/// The norm (2-norm's square root, or the infinity norm) of 16-bit grads,
/// read in blocks, and whether all are finite.
fn half_norm(tensors: &[(&[u16], Storage)], inf_norm: bool) -> (f64, bool) {
    let mut buf = [0f32; QBLOCK];
    let (mut sum, mut max, mut finite) = (0f64, 0f64, true);
    for (t, storage) in tensors {
        for chunk in t.chunks(QBLOCK) {
            let out = &mut buf[..chunk.len()];
            // SAFETY: `chunk` holds `out.len()` elements.
            unsafe { lowp::load(chunk.as_ptr() as *const u8, *storage, 0, out) };
            let mut block = 0f32;
            for &x in out.iter() {
                finite &= x.is_finite();
                block += x * x;
                if inf_norm {
                    max = max.max(x.abs() as f64);
                    if x.is_nan() {
                        max = f64::NAN;
                    }
                }
            }
            sum += block as f64;
        }
    }
    if inf_norm {
        (max, finite)
    } else {
        (sum.sqrt(), finite)
    }
}
