//! Unit tests for the pure-Rust kernels.
//!
//! * Each update rule against an independent element-by-element f64
//!   reference written from the equations in its module doc, over many steps
//!   and every combination of its options.
//! * [`multi::run`] over many tensors against per-tensor [`step_slices`].
//! * Bitwise identity across thread counts and SIMD levels.
//! * [`parallel`]'s splitting, and [`Real::sign`].
//!
//! Thread count and SIMD level are process globals and cargo runs tests on
//! several threads, so every test holds [`GLOBALS`] for its whole run.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::adam::{Adam, AdamHyper};
use super::rmsprop::{Rmsprop, RmspropHyper};
use super::sgd::{Sgd, SgdHyper};
use super::simd::{self, SimdLevel};
use super::{multi, parallel, step_slices, Algorithm, Job, Real, MAX_SLOTS};

// ---------------------------------------------------------------------------
// Globals
// ---------------------------------------------------------------------------

static GLOBALS: Mutex<()> = Mutex::new(());

/// Serializes the tests: held for a test's whole run. A test that failed while
/// holding it poisons it; the next one still runs.
fn lock_globals() -> MutexGuard<'static, ()> {
    GLOBALS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Puts the thread count and SIMD level back when dropped, even when the test
/// panics. Declare it after the [`lock_globals`] guard so it drops first.
struct RestoreGlobals {
    threads: usize,
}

impl RestoreGlobals {
    fn new() -> Self {
        RestoreGlobals {
            threads: parallel::num_threads(),
        }
    }
}

impl Drop for RestoreGlobals {
    fn drop(&mut self) {
        let _ = parallel::set_num_threads(self.threads);
        simd::set_level(simd::detect());
    }
}

fn set_threads(n: usize) {
    parallel::set_num_threads(n).expect("set_num_threads");
    assert_eq!(parallel::num_threads(), n, "the pool did not change size");
}

/// Sets the SIMD level, checks it took, and returns the level in use (the
/// wanted one capped at what the CPU has).
fn set_simd(wanted: SimdLevel) -> SimdLevel {
    let chosen = simd::set_level(wanted);
    assert_eq!(chosen, wanted.min(simd::detect()));
    assert_eq!(simd::level(), chosen, "set_level did not take");
    chosen
}

// ---------------------------------------------------------------------------
// Data and comparison helpers
// ---------------------------------------------------------------------------

/// `x` rounded to `T` and back: the exact value the kernel sees.
fn round<T: Real>(x: f64) -> f64 {
    T::from_f64(x).to_f64()
}

/// Uniform values in (−scale, scale), rounded to `T`, with about 5% exact
/// zeros (so `sign(0)` and zero grads are exercised).
fn random_vec<T: Real>(rng: &mut StdRng, n: usize, scale: f64) -> Vec<f64> {
    (0..n)
        .map(|_| {
            if rng.random_bool(0.05) {
                0.0
            } else {
                round::<T>(scale * rng.random_range(-1.0..1.0))
            }
        })
        .collect()
}

/// Initial params and `steps` grads for an `n`-element tensor, exact in `T`.
fn problem<T: Real>(seed: u64, n: usize, steps: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let p0 = random_vec::<T>(&mut rng, n, 1.0);
    let grads = (0..steps)
        .map(|_| {
            // Grad magnitudes vary from step to step.
            let scale = rng.random_range(0.25..2.0);
            random_vec::<T>(&mut rng, n, scale)
        })
        .collect();
    (p0, grads)
}

fn to_t<T: Real>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(x)).collect()
}

fn to_f64<T: Real>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

fn pick<T>(v: &mut [T], used: bool) -> &mut [T] {
    if used {
        v
    } else {
        &mut []
    }
}

/// The slices a step passes for its slots: the whole buffer where used,
/// empty where not.
fn state_slices<T>(
    state: &mut [Vec<T>; MAX_SLOTS],
    used: [bool; MAX_SLOTS],
) -> [&mut [T]; MAX_SLOTS] {
    let [a, b, c] = state;
    [pick(a, used[0]), pick(b, used[1]), pick(c, used[2])]
}

/// `got` within `rtol` of `want`, relative to the array's magnitude (its
/// largest element). Not element by element: state that averages random-sign
/// grads, and params that drift through zero, cancel down to values far below
/// the numbers they were computed from, and their relative error says nothing
/// about the kernel. (With these problems the worst errors are about 1e-14 in
/// f64 and 2e-6 in f32.)
fn assert_close(what: &str, got: &[f64], want: &[f64], rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let bound = rtol * scale;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(w.is_finite(), "{what}: reference [{i}] is {w}");
        let err = (g - w).abs();
        // `!(<=)` so that a NaN fails.
        assert!(
            err <= bound,
            "{what}: element {i} is {g:e}, the reference says {w:e} \
             (error {err:e}, allowed {bound:e} = {rtol:e} × largest |value| {scale:e})"
        );
    }
}

fn assert_bits_eq<T: Real>(what: &str, got: &[T], want: &[T]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.to_f64(), w.to_f64());
        assert!(
            g.to_bits() == w.to_bits(),
            "{what}: element {i} differs: {g:e} vs {w:e}"
        );
    }
}

/// Every combination of `n` boolean options.
fn combos(n: u32) -> impl Iterator<Item = Vec<bool>> {
    (0u32..1 << n).map(move |mask| (0..n).map(|b| (mask >> b) & 1 == 1).collect())
}

// ---------------------------------------------------------------------------
// Driving the kernels
// ---------------------------------------------------------------------------

/// The kernel's result after a run: param and the three slots (all as f64),
/// and which slots were ever used.
struct KernelRun {
    param: Vec<f64>,
    state: [Vec<f64>; MAX_SLOTS],
    written: [bool; MAX_SLOTS],
}

/// Runs one step per grad of `A` in dtype `T` through [`step_slices`], as the
/// engine does: slots start as zeros, steps count from 1, and `fresh[k]` is
/// true until the first step that uses slot `k`. `hyper_at(step)` gives each
/// step's hyperparameters.
fn run_kernel<A: Algorithm, T: Real>(
    hyper_at: impl Fn(u64) -> A::Hyper,
    p0: &[f64],
    grads: &[Vec<f64>],
) -> KernelRun {
    let n = p0.len();
    let mut param = to_t::<T>(p0);
    let mut state: [Vec<T>; MAX_SLOTS] = std::array::from_fn(|_| vec![T::ZERO; n]);
    let mut written = [false; MAX_SLOTS];
    for (i, g) in grads.iter().enumerate() {
        let step = i as u64 + 1;
        let h = hyper_at(step);
        let used = A::slots_used(&h);
        let s = A::scalars::<T>(&h, step, written.map(|w| !w));
        let grad = to_t::<T>(g);
        step_slices::<A, T>(&mut param, &grad, state_slices(&mut state, used), &s);
        for k in 0..MAX_SLOTS {
            written[k] |= used[k];
        }
    }
    KernelRun {
        param: to_f64(&param),
        state: state.map(|s| to_f64(&s)),
        written,
    }
}

fn sgn(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Tolerances against the f64 reference.
const RTOL_F64: f64 = 1e-12;
const RTOL_F32: f64 = 1e-5;

fn rtol<T: Real>() -> f64 {
    if std::mem::size_of::<T>() == 8 {
        RTOL_F64
    } else {
        RTOL_F32
    }
}

mod fused;
mod lowp_codec;
mod multi_tensor;
mod rules;
