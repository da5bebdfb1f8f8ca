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

// ---------------------------------------------------------------------------
// SGD reference
// ---------------------------------------------------------------------------

/// One SGD step, element by element in f64. `buf` is `None` until the first
/// step with momentum, which copies the (regularized) grad into it.
fn ref_sgd(h: &SgdHyper, p: &mut [f64], grad: &[f64], buf: &mut Option<Vec<f64>>) {
    let n = p.len();
    let mut g = vec![0.0; n];
    for i in 0..n {
        g[i] = if h.maximize { -grad[i] } else { grad[i] };
        g[i] += h.weight_decay * p[i];
        g[i] += h.l1 * sgn(p[i]);
    }
    let d = if h.momentum != 0.0 {
        if let Some(b) = buf.as_mut() {
            for i in 0..n {
                b[i] = h.momentum * b[i] + (1.0 - h.dampening) * g[i];
            }
        } else {
            *buf = Some(g.clone());
        }
        let b = buf.as_ref().expect("set above");
        if h.nesterov {
            (0..n).map(|i| g[i] + h.momentum * b[i]).collect()
        } else {
            b.clone()
        }
    } else {
        g
    };
    for i in 0..n {
        p[i] -= h.lr * d[i];
    }
}

fn check_sgd<T: Real>(seed: u64, hyper_at: impl Fn(u64) -> SgdHyper, n: usize, steps: usize) {
    let (p0, grads) = problem::<T>(seed, n, steps);
    let got = run_kernel::<Sgd, T>(&hyper_at, &p0, &grads);
    let mut p = p0.clone();
    let mut buf = None;
    for (i, g) in grads.iter().enumerate() {
        ref_sgd(&hyper_at(i as u64 + 1), &mut p, g, &mut buf);
    }
    let what = format!(
        "{:?} {}",
        hyper_at(steps as u64),
        std::any::type_name::<T>()
    );
    let tol = rtol::<T>();
    assert_close(&format!("sgd param, {what}"), &got.param, &p, tol);
    match &buf {
        Some(b) => {
            assert!(got.written[0], "{what}: momentum_buffer never used");
            assert_close(
                &format!("sgd momentum_buffer, {what}"),
                &got.state[0],
                b,
                tol,
            );
        }
        None => assert!(!got.written[0], "{what}: momentum_buffer used"),
    }
}

fn sgd_all_combinations<T: Real>() {
    for (c, o) in combos(6).enumerate() {
        let h = SgdHyper {
            lr: 0.05,
            momentum: if o[0] { 0.9 } else { 0.0 },
            dampening: if o[1] { 0.25 } else { 0.0 },
            weight_decay: if o[2] { 0.03 } else { 0.0 },
            l1: if o[3] { 0.02 } else { 0.0 },
            nesterov: o[4],
            maximize: o[5],
        };
        check_sgd::<T>(100 + c as u64, |_| h, 1031, 50);
    }
}

#[test]
fn sgd_matches_reference_f64() {
    let _g = lock_globals();
    sgd_all_combinations::<f64>();
}

#[test]
fn sgd_matches_reference_f32() {
    let _g = lock_globals();
    sgd_all_combinations::<f32>();
}

/// Momentum switched on at step 11: the buffer starts as a copy of that
/// step's grad, not as a zero buffer fed one update.
#[test]
fn sgd_momentum_switched_on_later_starts_from_the_grad() {
    let _g = lock_globals();
    for (c, o) in combos(3).enumerate() {
        let hyper_at = move |step: u64| SgdHyper {
            lr: 0.05,
            momentum: if step > 10 { 0.8 } else { 0.0 },
            dampening: 0.3,
            weight_decay: if o[0] { 0.01 } else { 0.0 },
            l1: 0.0,
            nesterov: o[1],
            maximize: o[2],
        };
        check_sgd::<f64>(200 + c as u64, &hyper_at, 517, 30);
        check_sgd::<f32>(200 + c as u64, &hyper_at, 517, 30);
    }
}

/// The first momentum step stores the grad itself; a later one with a zero
/// buffer stores (1 − dampening)·grad.
#[test]
fn sgd_first_momentum_step_copies_the_grad() {
    let _g = lock_globals();
    let h = SgdHyper {
        lr: 0.1,
        momentum: 0.9,
        dampening: 0.5,
        ..SgdHyper::default()
    };
    let (p0, grads) = problem::<f64>(7, 100, 1);
    let run = |fresh: bool| {
        let mut p = p0.clone();
        let mut buf = vec![0.0; p.len()];
        let s = Sgd::scalars::<f64>(&h, 1, [fresh; MAX_SLOTS]);
        step_slices::<Sgd, f64>(&mut p, &grads[0], [&mut buf[..], &mut [], &mut []], &s);
        (p, buf)
    };
    let (p, buf) = run(true);
    assert_bits_eq("first step buffer", &buf, &grads[0]);
    let want: Vec<f64> = (0..p.len()).map(|i| p0[i] - 0.1 * grads[0][i]).collect();
    assert_close("first step param", &p, &want, RTOL_F64);
    let (_, buf) = run(false);
    let want: Vec<f64> = grads[0].iter().map(|g| 0.5 * g).collect();
    assert_bits_eq("later step buffer", &buf, &want);
}

// ---------------------------------------------------------------------------
// Adam reference
// ---------------------------------------------------------------------------

struct AdamRef {
    m: Vec<f64>,
    v: Vec<f64>,
    vmax: Vec<f64>,
}

/// One Adam/AdamW step number `t`, element by element in f64.
fn ref_adam(h: &AdamHyper, t: u64, p: &mut [f64], grad: &[f64], st: &mut AdamRef) {
    let bc1 = 1.0 - h.beta1.powi(t as i32);
    let bc2 = 1.0 - h.beta2.powi(t as i32);
    for i in 0..p.len() {
        let mut g = if h.maximize { -grad[i] } else { grad[i] };
        if !h.decoupled {
            g += h.weight_decay * p[i];
        }
        g += h.l1 * sgn(p[i]);
        if h.decoupled {
            p[i] *= 1.0 - h.lr * h.weight_decay;
        }
        st.m[i] = h.beta1 * st.m[i] + (1.0 - h.beta1) * g;
        st.v[i] = h.beta2 * st.v[i] + (1.0 - h.beta2) * g * g;
        let second = if h.amsgrad {
            st.vmax[i] = st.vmax[i].max(st.v[i]);
            st.vmax[i]
        } else {
            st.v[i]
        };
        let m_hat = st.m[i] / bc1;
        let v_hat = second / bc2;
        p[i] -= h.lr * m_hat / (v_hat.sqrt() + h.eps);
    }
}

fn check_adam<T: Real>(seed: u64, h: AdamHyper, n: usize, steps: usize) {
    let (p0, grads) = problem::<T>(seed, n, steps);
    let got = run_kernel::<Adam, T>(|_| h, &p0, &grads);
    let mut p = p0.clone();
    let mut st = AdamRef {
        m: vec![0.0; n],
        v: vec![0.0; n],
        vmax: vec![0.0; n],
    };
    for (i, g) in grads.iter().enumerate() {
        ref_adam(&h, i as u64 + 1, &mut p, g, &mut st);
    }
    let what = format!("{h:?} {}", std::any::type_name::<T>());
    let tol = rtol::<T>();
    assert_eq!(got.written, [true, true, h.amsgrad], "{what}: slots used");
    assert_close(&format!("adam param, {what}"), &got.param, &p, tol);
    assert_close(&format!("adam exp_avg, {what}"), &got.state[0], &st.m, tol);
    assert_close(
        &format!("adam exp_avg_sq, {what}"),
        &got.state[1],
        &st.v,
        tol,
    );
    if h.amsgrad {
        assert_close(
            &format!("adam max_exp_avg_sq, {what}"),
            &got.state[2],
            &st.vmax,
            tol,
        );
    }
}

fn adam_all_combinations<T: Real>() {
    for (c, o) in combos(5).enumerate() {
        let h = AdamHyper {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: if o[0] { 0.05 } else { 0.0 },
            l1: if o[1] { 0.01 } else { 0.0 },
            amsgrad: o[2],
            maximize: o[3],
            decoupled: o[4],
        };
        check_adam::<T>(300 + c as u64, h, 1031, 50);
    }
    // torch's defaults, and a large weight decay where coupled and
    // decoupled differ a lot.
    check_adam::<T>(399, AdamHyper::default(), 777, 50);
    for decoupled in [false, true] {
        let h = AdamHyper {
            lr: 0.02,
            weight_decay: 2.0,
            amsgrad: true,
            decoupled,
            ..AdamHyper::default()
        };
        check_adam::<T>(398, h, 777, 50);
    }
}

#[test]
fn adam_matches_reference_f64() {
    let _g = lock_globals();
    adam_all_combinations::<f64>();
}

#[test]
fn adam_matches_reference_f32() {
    let _g = lock_globals();
    adam_all_combinations::<f32>();
}

// ---------------------------------------------------------------------------
// RMSprop reference
// ---------------------------------------------------------------------------

struct RmspropRef {
    sq: Vec<f64>,
    buf: Vec<f64>,
    gavg: Vec<f64>,
}

/// One RMSprop step, element by element in f64.
fn ref_rmsprop(h: &RmspropHyper, p: &mut [f64], grad: &[f64], st: &mut RmspropRef) {
    for i in 0..p.len() {
        let mut g = if h.maximize { -grad[i] } else { grad[i] };
        g += h.weight_decay * p[i] + h.l1 * sgn(p[i]);
        st.sq[i] = h.alpha * st.sq[i] + (1.0 - h.alpha) * g * g;
        let d = if h.centered {
            st.gavg[i] = h.alpha * st.gavg[i] + (1.0 - h.alpha) * g;
            (st.sq[i] - st.gavg[i] * st.gavg[i]).sqrt() + h.eps
        } else {
            st.sq[i].sqrt() + h.eps
        };
        if h.momentum > 0.0 {
            st.buf[i] = h.momentum * st.buf[i] + g / d;
            p[i] -= h.lr * st.buf[i];
        } else {
            p[i] -= h.lr * g / d;
        }
    }
}

fn check_rmsprop<T: Real>(seed: u64, h: RmspropHyper, n: usize, steps: usize) {
    let (p0, grads) = problem::<T>(seed, n, steps);
    let got = run_kernel::<Rmsprop, T>(|_| h, &p0, &grads);
    let mut p = p0.clone();
    let mut st = RmspropRef {
        sq: vec![0.0; n],
        buf: vec![0.0; n],
        gavg: vec![0.0; n],
    };
    for g in &grads {
        ref_rmsprop(&h, &mut p, g, &mut st);
    }
    let what = format!("{h:?} {}", std::any::type_name::<T>());
    let tol = rtol::<T>();
    assert_eq!(
        got.written,
        [true, h.momentum > 0.0, h.centered],
        "{what}: slots used"
    );
    assert_close(&format!("rmsprop param, {what}"), &got.param, &p, tol);
    assert_close(
        &format!("rmsprop square_avg, {what}"),
        &got.state[0],
        &st.sq,
        tol,
    );
    if h.momentum > 0.0 {
        assert_close(
            &format!("rmsprop momentum_buffer, {what}"),
            &got.state[1],
            &st.buf,
            tol,
        );
    }
    if h.centered {
        assert_close(
            &format!("rmsprop grad_avg, {what}"),
            &got.state[2],
            &st.gavg,
            tol,
        );
    }
}

fn rmsprop_all_combinations<T: Real>() {
    for (c, o) in combos(5).enumerate() {
        let h = RmspropHyper {
            lr: 0.01,
            alpha: 0.9,
            eps: 1e-8,
            weight_decay: if o[0] { 0.05 } else { 0.0 },
            l1: if o[1] { 0.01 } else { 0.0 },
            momentum: if o[2] { 0.9 } else { 0.0 },
            centered: o[3],
            maximize: o[4],
        };
        check_rmsprop::<T>(500 + c as u64, h, 1031, 50);
    }
    check_rmsprop::<T>(599, RmspropHyper::default(), 777, 50);
}

#[test]
fn rmsprop_matches_reference_f64() {
    let _g = lock_globals();
    rmsprop_all_combinations::<f64>();
}

#[test]
fn rmsprop_matches_reference_f32() {
    let _g = lock_globals();
    rmsprop_all_combinations::<f32>();
}

// ---------------------------------------------------------------------------
// Many tensors, threads and SIMD levels
// ---------------------------------------------------------------------------

/// One tensor of a multi-tensor step, in the kernel's dtype.
#[derive(Clone)]
struct Tensor<T> {
    param: Vec<T>,
    grads: Vec<Vec<T>>,
    state: [Vec<T>; MAX_SLOTS],
}

fn make_tensors<T: Real>(seed: u64, sizes: &[usize], steps: usize) -> Vec<Tensor<T>> {
    sizes
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            let (p0, grads) = problem::<T>(seed * 1000 + k as u64, n, steps);
            Tensor {
                param: to_t(&p0),
                grads: grads.iter().map(|g| to_t(g)).collect(),
                state: std::array::from_fn(|_| vec![T::ZERO; n]),
            }
        })
        .collect()
}

/// `steps` steps over all tensors, tensor `k` using `hypers[k % len]`.
/// `fused`: one [`multi::run`] per step; otherwise one [`step_slices`] per
/// tensor per step.
fn step_tensors<A: Algorithm, T: Real>(
    hypers: &[A::Hyper],
    tensors: &mut [Tensor<T>],
    steps: usize,
    fused: bool,
) {
    for i in 0..steps {
        let step = i as u64 + 1;
        let fresh = [step == 1; MAX_SLOTS];
        let mut jobs = Vec::new();
        for (k, t) in tensors.iter_mut().enumerate() {
            let h = &hypers[k % hypers.len()];
            let used = A::slots_used(h);
            let s = A::scalars::<T>(h, step, fresh);
            let state = state_slices(&mut t.state, used);
            if fused {
                jobs.push(Job::new(&mut t.param, &t.grads[i], state, s));
            } else {
                step_slices::<A, T>(&mut t.param, &t.grads[i], state, &s);
            }
        }
        if fused {
            // SAFETY: every job comes from distinct live vectors of `tensors`,
            // which are not touched until `run` returns.
            unsafe { multi::run::<A, T>(&mut jobs) };
        }
    }
}

fn assert_tensors_bits_eq<T: Real>(what: &str, got: &[Tensor<T>], want: &[Tensor<T>]) {
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert_bits_eq(&format!("{what}, tensor {k} param"), &g.param, &w.param);
        for s in 0..MAX_SLOTS {
            assert_bits_eq(
                &format!("{what}, tensor {k} slot {s}"),
                &g.state[s],
                &w.state[s],
            );
        }
    }
}

/// Odd sizes, empty tensors, and sizes next to the chunk sizes, adding up to
/// well over the parallel threshold.
const SIZES: &[usize] = &[
    0, 1, 7, 1000, 70001, 300000, 0, 2, 8191, 8193, 33, 262145, 1, 0, 12345, 32767, 65537, 3,
];

fn sgd_variants() -> Vec<SgdHyper> {
    vec![
        SgdHyper {
            lr: 0.05,
            momentum: 0.9,
            dampening: 0.1,
            weight_decay: 0.01,
            l1: 0.001,
            nesterov: true,
            maximize: false,
        },
        SgdHyper::default(),
        SgdHyper {
            lr: 0.02,
            momentum: 0.5,
            maximize: true,
            ..SgdHyper::default()
        },
    ]
}

fn adam_variants() -> Vec<AdamHyper> {
    vec![
        AdamHyper {
            weight_decay: 0.01,
            l1: 0.001,
            amsgrad: true,
            ..AdamHyper::default()
        },
        AdamHyper::default(),
        AdamHyper {
            lr: 0.01,
            weight_decay: 0.1,
            decoupled: true,
            maximize: true,
            ..AdamHyper::default()
        },
    ]
}

fn rmsprop_variants() -> Vec<RmspropHyper> {
    vec![
        RmspropHyper {
            weight_decay: 0.01,
            l1: 0.001,
            momentum: 0.9,
            centered: true,
            ..RmspropHyper::default()
        },
        RmspropHyper::default(),
        RmspropHyper {
            momentum: 0.5,
            maximize: true,
            ..RmspropHyper::default()
        },
        RmspropHyper {
            centered: true,
            ..RmspropHyper::default()
        },
    ]
}

const MULTI_STEPS: usize = 3;

fn check_multi<A: Algorithm, T: Real>(seed: u64, hypers: &[A::Hyper], threads: &[usize]) {
    let initial = make_tensors::<T>(seed, SIZES, MULTI_STEPS);
    let mut want = initial.clone();
    step_tensors::<A, T>(hypers, &mut want, MULTI_STEPS, false);
    // The steps did something.
    let moved = want
        .iter()
        .zip(&initial)
        .filter(|(w, i)| w.param.iter().zip(&i.param).any(|(a, b)| a != b))
        .count();
    assert!(moved >= SIZES.iter().filter(|&&n| n > 10).count());
    for &n in threads {
        set_threads(n);
        let mut got = initial.clone();
        step_tensors::<A, T>(hypers, &mut got, MULTI_STEPS, true);
        let what = format!("{} {} threads", std::any::type_name::<A>(), n);
        assert_tensors_bits_eq(&what, &got, &want);
    }
}

#[test]
fn multi_run_matches_step_slices() {
    let _g = lock_globals();
    let _r = RestoreGlobals::new();
    let threads = [1, 2, 3, 7];
    check_multi::<Sgd, f32>(1, &sgd_variants(), &threads);
    check_multi::<Sgd, f64>(2, &sgd_variants(), &threads);
    check_multi::<Adam, f32>(3, &adam_variants(), &threads);
    check_multi::<Adam, f64>(4, &adam_variants(), &threads);
    check_multi::<Rmsprop, f32>(5, &rmsprop_variants(), &threads);
    check_multi::<Rmsprop, f64>(6, &rmsprop_variants(), &threads);
}

#[test]
fn multi_run_with_no_jobs_or_only_empty_tensors() {
    let _g = lock_globals();
    let mut none: Vec<Job<f64, <Adam as Algorithm>::Scalars<f64>>> = Vec::new();
    // SAFETY: no jobs.
    unsafe { multi::run::<Adam, f64>(&mut none) };
    let mut tensors = make_tensors::<f64>(9, &[0, 0, 0], 1);
    step_tensors::<Adam, f64>(&adam_variants(), &mut tensors, 1, true);
    assert!(tensors.iter().all(|t| t.param.is_empty()));
}

/// `with_grad_transform` and `with_average` give exactly what a separate
/// clip, step and averaging pass give.
fn check_transform_and_average<A: Algorithm, T: Real>(seed: u64, h: &A::Hyper) {
    let sizes = [1, 1023, 1024, 1025, 5000, 100_003, 0, 70_001];
    let (scale, clip) = (T::from_f64(0.7), T::from_f64(0.4));
    let weight = T::from_f64(0.25);
    let used = A::slots_used(h);
    let mut rng = StdRng::seed_from_u64(seed);
    for step in 1..=2u64 {
        let s = A::scalars::<T>(h, step, [step == 1; MAX_SLOTS]);
        let mut fused = make_tensors::<T>(seed + step, &sizes, 1);
        let mut plain = fused.clone();
        let mut avg_fused: Vec<Vec<T>> = sizes
            .iter()
            .map(|&n| to_t(&random_vec::<T>(&mut rng, n, 1.0)))
            .collect();
        let mut avg_plain = avg_fused.clone();

        let mut jobs = Vec::new();
        for (t, avg) in fused.iter_mut().zip(&mut avg_fused) {
            let job = Job::new(
                &mut t.param,
                &t.grads[0],
                state_slices(&mut t.state, used),
                s,
            )
            .with_grad_transform(scale, clip);
            // SAFETY: `avg` has the tensor's length and is its own buffer.
            jobs.push(unsafe { job.with_average(avg.as_mut_ptr(), weight) });
        }
        // SAFETY: all buffers are distinct live vectors, untouched until `run` returns.
        unsafe { multi::run::<A, T>(&mut jobs) };

        let mut clipped_any = false;
        for (t, avg) in plain.iter_mut().zip(&mut avg_plain) {
            let grad: Vec<T> = t.grads[0]
                .iter()
                .map(|&g| {
                    let g = g * scale;
                    clipped_any |= g > clip || g < -clip;
                    if g > clip {
                        clip
                    } else if g < -clip {
                        -clip
                    } else {
                        g
                    }
                })
                .collect();
            step_slices::<A, T>(&mut t.param, &grad, state_slices(&mut t.state, used), &s);
            for (a, &p) in avg.iter_mut().zip(&t.param) {
                *a = *a + weight * (p - *a);
            }
        }
        assert!(clipped_any, "the clip was never reached");
        let what = format!("{} step {step}", std::any::type_name::<A>());
        assert_tensors_bits_eq(&what, &fused, &plain);
        for (k, (g, w)) in avg_fused.iter().zip(&avg_plain).enumerate() {
            assert_bits_eq(&format!("{what}, tensor {k} average"), g, w);
        }
    }
}

#[test]
fn multi_grad_transform_and_average_match_separate_passes() {
    let _g = lock_globals();
    check_transform_and_average::<Sgd, f32>(11, &sgd_variants()[0]);
    check_transform_and_average::<Adam, f64>(12, &adam_variants()[0]);
    check_transform_and_average::<Rmsprop, f32>(13, &rmsprop_variants()[0]);
}

/// A few steps of `A` on one large tensor under every thread count and SIMD
/// level: all results bitwise equal.
fn check_identity<A: Algorithm, T: Real>(seed: u64, h: &A::Hyper) {
    const N: usize = (1 << 20) + 4099;
    const STEPS: usize = 3;
    let initial = make_tensors::<T>(seed, &[N], STEPS);
    let mut first: Option<(Vec<Tensor<T>>, String)> = None;
    for level in [SimdLevel::Baseline, SimdLevel::Avx2, SimdLevel::Avx512] {
        for threads in [1, 2, 3] {
            let level = set_simd(level);
            set_threads(threads);
            let mut t = initial.clone();
            step_tensors::<A, T>(std::slice::from_ref(h), &mut t, STEPS, false);
            let what = format!(
                "{} {}, {} threads, {}",
                std::any::type_name::<A>(),
                std::any::type_name::<T>(),
                threads,
                level.name()
            );
            match &first {
                None => {
                    assert!(t[0].param != initial[0].param, "{what}: nothing moved");
                    first = Some((t, what));
                }
                Some((want, base)) => {
                    assert_tensors_bits_eq(&format!("{what} vs {base}"), &t, want)
                }
            }
        }
    }
}

#[test]
fn identical_across_thread_counts_and_simd_levels() {
    let _g = lock_globals();
    let _r = RestoreGlobals::new();
    if simd::detect() < SimdLevel::Avx512 {
        eprintln!(
            "note: this CPU tops out at {}; higher levels run as that",
            simd::detect().name()
        );
    }
    for (k, h) in sgd_variants().iter().enumerate() {
        check_identity::<Sgd, f32>(20 + k as u64, h);
        check_identity::<Sgd, f64>(30 + k as u64, h);
    }
    for (k, h) in adam_variants().iter().enumerate() {
        check_identity::<Adam, f32>(40 + k as u64, h);
        check_identity::<Adam, f64>(50 + k as u64, h);
    }
    for (k, h) in rmsprop_variants().iter().enumerate() {
        check_identity::<Rmsprop, f32>(60 + k as u64, h);
        check_identity::<Rmsprop, f64>(70 + k as u64, h);
    }
}

// ---------------------------------------------------------------------------
// parallel
// ---------------------------------------------------------------------------

fn interesting_totals() -> Vec<usize> {
    let p = parallel::PARALLEL_MIN_ELEMS;
    vec![
        0,
        1,
        2,
        p - 1,
        p,
        p + 1,
        2 * p - 1,
        2 * p,
        2 * p + 1,
        3 * p + 7,
        (1 << 18) * 12 - 1,
        (1 << 18) * 12 + 1,
        (1 << 20) + 3,
    ]
}

#[test]
fn chunk_len_cuts_cover_everything_once() {
    let _g = lock_globals();
    for total in interesting_totals() {
        for threads in 0..=9 {
            let chunk = parallel::chunk_len(total, threads);
            assert!(chunk >= 1, "chunk_len({total}, {threads}) = 0");
            assert_eq!(chunk, parallel::chunk_len(total, threads));
            assert_eq!(
                parallel::chunk_len(total, threads.max(1)),
                chunk,
                "0 threads counts as 1"
            );
            let items = total.div_ceil(chunk);
            let mut counts = vec![0u8; total];
            for k in 0..items {
                let (lo, hi) = (k * chunk, ((k + 1) * chunk).min(total));
                assert!(lo < hi, "empty chunk {k} for {total} / {threads}");
                for c in &mut counts[lo..hi] {
                    *c += 1;
                }
            }
            assert!(
                counts.iter().all(|&c| c == 1),
                "chunks of {chunk} miss or repeat elements of {total}"
            );
        }
    }
}

#[test]
fn for_each_range_covers_everything_once() {
    let _g = lock_globals();
    let _r = RestoreGlobals::new();
    for threads in [1, 2, 3, 5] {
        set_threads(threads);
        for total in interesting_totals() {
            let counts: Vec<AtomicU32> = (0..total).map(|_| AtomicU32::new(0)).collect();
            let calls = Mutex::new(Vec::new());
            parallel::for_each_range(total, |lo, hi| {
                calls.lock().unwrap().push((lo, hi));
                for c in &counts[lo..hi] {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            });
            for (i, c) in counts.iter().enumerate() {
                let c = c.load(Ordering::Relaxed);
                assert_eq!(
                    c, 1,
                    "{total} on {threads} threads: element {i} seen {c} times"
                );
            }
            let mut calls = calls.into_inner().unwrap();
            calls.sort_unstable();
            if threads == 1 || total < parallel::PARALLEL_MIN_ELEMS {
                assert_eq!(calls, vec![(0, total)], "{total} on {threads} threads");
            } else {
                let chunk = parallel::chunk_len(total, threads);
                assert_eq!(
                    calls.len(),
                    total.div_ceil(chunk),
                    "{total} on {threads} threads"
                );
                assert!(calls.len() > 1, "{total} on {threads} threads ran whole");
                assert!(calls.iter().all(|&(lo, hi)| lo < hi && hi - lo <= chunk));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Real
// ---------------------------------------------------------------------------

fn check_sign<T: Real>() {
    let sign = |x: f64| T::from_f64(x).sign().to_f64();
    assert_eq!(sign(0.0), 0.0);
    assert_eq!(sign(-0.0), 0.0, "sign(-0) is ±0");
    for x in [1.0, 3.5, 1e-30, 1e30, f64::INFINITY, 1e-300] {
        // 1e-300 rounds to +0 in f32.
        let want = if T::from_f64(x).to_f64() == 0.0 {
            0.0
        } else {
            1.0
        };
        assert_eq!(sign(x), want, "sign({x})");
        assert_eq!(sign(-x), -want, "sign(-{x})");
    }
    let tiny = if std::mem::size_of::<T>() == 8 {
        f64::from_bits(1) // smallest subnormal
    } else {
        f32::from_bits(1) as f64
    };
    assert_eq!(sign(tiny), 1.0, "sign of a subnormal");
    assert_eq!(sign(-tiny), -1.0, "sign of a negative subnormal");
    assert!(sign(f64::NAN).is_nan(), "sign(NaN) stays NaN");
}

#[test]
fn real_sign() {
    let _g = lock_globals();
    check_sign::<f32>();
    check_sign::<f64>();
}
