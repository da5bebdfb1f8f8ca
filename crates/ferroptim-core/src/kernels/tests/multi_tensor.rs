//! Many tensors, threads, SIMD levels, [`parallel`]'s splitting, [`Real`].

use super::*;
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
