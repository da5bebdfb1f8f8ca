//! Fused blocks ([`Algorithm::update_int8`], [`Algorithm::update_bf16`])
//! give the generic mixed path's bits: the same rule run through a wrapper
//! without the fused forms.

use super::super::adam::{Adam, AdamHyper};
use super::super::lowp::{self, Storage, QBLOCK};
use super::super::mixed::{self, MixedJob, Rounding, SlotPtr};
use super::super::{Algorithm, Aux, Real, MAX_SLOTS};
use crate::error::Result;
use crate::hyper::HyperSource;
use crate::kernels::prelude::Prelude;

/// `A` with every item forwarded except the fused blocks `update_int8` and
/// `update_bf16` (the defaults: none).
struct Generic<A>(A);

impl<A: Algorithm> Algorithm for Generic<A> {
    const SLOTS: &'static [&'static str] = A::SLOTS;
    const NON_NEGATIVE: [bool; MAX_SLOTS] = A::NON_NEGATIVE;
    type Hyper = A::Hyper;
    type Scalars<T: Real> = A::Scalars<T>;

    fn from_group(g: &dyn HyperSource) -> Result<A::Hyper> {
        A::from_group(g)
    }
    fn flat(s: &A::Scalars<f64>) -> (Prelude<f64>, Vec<f64>) {
        A::flat(s)
    }
    fn slots_used(h: &A::Hyper) -> [bool; MAX_SLOTS] {
        A::slots_used(h)
    }
    fn scalars<T: Real>(h: &A::Hyper, step: u64, fresh: [bool; MAX_SLOTS]) -> A::Scalars<T> {
        A::scalars(h, step, fresh)
    }
    fn scalars_aux<T: Real>(
        h: &A::Hyper,
        step: u64,
        fresh: [bool; MAX_SLOTS],
        aux: Aux,
    ) -> (A::Scalars<T>, Aux) {
        A::scalars_aux(h, step, fresh, aux)
    }
    fn update<T: Real>(p: &mut [T], g: &[T], s: [&mut [T]; MAX_SLOTS], sc: &A::Scalars<T>) {
        A::update(p, g, s, sc)
    }
}

/// One tensor's buffers: bfloat16 bits or float32 params; 8-bit or
/// bfloat16 moments.
struct Run {
    master: Vec<f32>,
    average: Vec<f32>,
    param32: Vec<f32>,
    param16: Vec<u16>,
    codes: [Vec<u8>; 2],
    scales: [Vec<f32>; 2],
    bits: [Vec<u16>; 2],
}

/// How a case stores its params and state.
#[derive(Clone, Copy, Debug)]
struct Case {
    bf16_params: bool,
    /// float32 master weights for the bfloat16 params.
    master: bool,
    /// A running average (EMA) of the params.
    average: bool,
    int8_state: bool,
    stochastic: bool,
    transform: Option<(f32, f32)>,
    /// Grads in bfloat16 (else float32).
    bf16_grads: bool,
}

fn run<A: Algorithm<Hyper = AdamHyper>>(hyper: &AdamHyper, n: usize, case: Case) -> Run {
    let blocks = n.div_ceil(QBLOCK);
    let mut r = Run {
        master: (0..n).map(|i| (i as f32 * 0.37).sin()).collect(),
        average: vec![0.0; n],
        param32: (0..n).map(|i| (i as f32 * 0.37).sin()).collect(),
        param16: (0..n)
            .map(|i| lowp::f32_to_bf16((i as f32 * 0.37).sin()))
            .collect(),
        codes: [vec![0; n], vec![0; n]],
        scales: [vec![0.0; blocks], vec![0.0; blocks]],
        bits: [vec![0; n], vec![0; n]],
    };
    for step in 1..=4u64 {
        // Sparse, signed, varied grads: zeros make zero second moments.
        let grad: Vec<f32> = (0..n)
            .map(|i| {
                let x = ((i as u64 * 7 + step * 13) % 23) as f32 - 11.0;
                if i % 5 == 3 {
                    0.0
                } else {
                    x * 1e-3 * (1.0 + step as f32)
                }
            })
            .collect();
        let grad16: Vec<u16> = grad.iter().map(|&g| lowp::f32_to_bf16(g)).collect();
        let grad_in = match case.bf16_grads {
            false => (grad.as_ptr() as *const u8, Storage::F32),
            true => (grad16.as_ptr() as *const u8, Storage::Bf16),
        };
        let fresh = [step == 1; MAX_SLOTS];
        let scalars = A::scalars::<f32>(hyper, step, fresh);
        let param = match case.bf16_params {
            false => (r.param32.as_mut_ptr() as *mut u8, Storage::F32),
            true => (r.param16.as_mut_ptr() as *mut u8, Storage::Bf16),
        };
        let int8: [SlotPtr; MAX_SLOTS] = [
            SlotPtr::Int8 {
                codes: r.codes[0].as_mut_ptr(),
                scales: r.scales[0].as_mut_ptr(),
                signed: true,
            },
            SlotPtr::Int8 {
                codes: r.codes[1].as_mut_ptr(),
                scales: r.scales[1].as_mut_ptr(),
                signed: false,
            },
            SlotPtr::Unused,
        ];
        let bf16 = [
            SlotPtr::Bf16(r.bits[0].as_mut_ptr()),
            SlotPtr::Bf16(r.bits[1].as_mut_ptr()),
            SlotPtr::Unused,
        ];
        let state = if case.int8_state { int8 } else { bf16 };
        let rounding = Rounding {
            stochastic: case.stochastic,
            seed: 5,
            tensor: 0,
            step,
        };
        // SAFETY: every buffer has `n` elements (scales: one per block) and
        // lives until `run` returns; none overlaps another.
        let mut jobs = vec![unsafe {
            MixedJob::new(
                param,
                grad_in,
                if case.master {
                    r.master.as_mut_ptr()
                } else {
                    std::ptr::null_mut()
                },
                state,
                n,
                scalars,
                case.transform,
                case.average.then_some((r.average.as_mut_ptr(), 0.25)),
                rounding,
            )
        }];
        unsafe { mixed::run::<A>(&mut jobs) };
    }
    r
}

#[test]
fn fused_adam_blocks_equal_the_generic_path_bit_for_bit() {
    let hypers = [
        AdamHyper::default(),
        AdamHyper {
            lr: 0.01,
            weight_decay: 0.1,
            decoupled: true,
            ..AdamHyper::default()
        },
        AdamHyper {
            weight_decay: 0.05,
            l1: 1e-3,
            maximize: true,
            ..AdamHyper::default()
        },
    ];
    for hyper in &hypers {
        for n in [1, 255, 256, 3 * QBLOCK + 17] {
            for int8_state in [true, false] {
                // (bf16 params, master, average, stochastic, transform, bf16 grads):
                // every way the fused loops read params and grads.
                for (bf16_params, master, average, stochastic, transform, bf16_grads) in [
                    (false, false, false, false, None, false),
                    (false, false, false, false, Some((0.5, 0.004)), false),
                    (false, false, true, true, None, false),
                    (true, false, false, false, None, false),
                    (true, false, false, true, None, false),
                    (true, false, false, true, None, true),
                    (true, false, false, false, None, true),
                    (true, false, true, true, None, false),
                    (true, true, false, false, None, false),
                    (true, true, false, true, None, true),
                    (true, true, true, true, Some((2.0, 0.01)), false),
                    (true, true, false, false, Some((2.0, 0.01)), true),
                ] {
                    let case = Case {
                        bf16_params,
                        master,
                        average,
                        int8_state,
                        stochastic,
                        transform,
                        bf16_grads,
                    };
                    let fused = run::<Adam>(hyper, n, case);
                    let generic = run::<Generic<Adam>>(hyper, n, case);
                    let what = format!("{hyper:?} n={n} {case:?}");
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&fused.param32), bits(&generic.param32), "{what}");
                    assert_eq!(fused.param16, generic.param16, "{what}");
                    assert_eq!(bits(&fused.master), bits(&generic.master), "{what}");
                    assert_eq!(bits(&fused.average), bits(&generic.average), "{what}");
                    if average {
                        assert!(fused.average.iter().any(|&x| x != 0.0), "{what}");
                    }
                    for k in 0..2 {
                        assert_eq!(fused.codes[k], generic.codes[k], "{what} slot {k}");
                        assert_eq!(bits(&fused.scales[k]), bits(&generic.scales[k]), "{what}");
                        assert_eq!(fused.bits[k], generic.bits[k], "{what} slot {k}");
                    }
                    // The moments moved: the comparison is not between zeros.
                    let moved = if int8_state {
                        fused.codes[1].iter().any(|&c| c != 0)
                    } else {
                        fused.bits[1].iter().any(|&b| b != 0)
                    };
                    assert!(moved, "{what}");
                }
            }
        }
    }
}
