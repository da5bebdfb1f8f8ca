//! SGD with momentum, dampening and Nesterov (torch.optim.SGD).
//!
//! ```text
//! g  = ±grad + wd·p + l1·sign(p)
//! b  = g                        on the first momentum step
//! b  = μ·b + (1−τ)·g            afterwards
//! d  = g + μ·b  (nesterov)   or   d = b   (momentum)   or   d = g
//! p -= lr·d
//! ```

use super::prelude::Prelude;
use super::{flag, simd, Algorithm, Real, MAX_SLOTS};
use crate::error::{Error, Result};
use crate::hyper::HyperSource;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdHyper {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub l1: f64,
    pub nesterov: bool,
    pub maximize: bool,
}

impl Default for SgdHyper {
    fn default() -> Self {
        SgdHyper {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            l1: 0.0,
            nesterov: false,
            maximize: false,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct SgdScalars<T> {
    pre: Prelude<T>,
    momentum: T,
    one_minus_dampening: T,
    neg_lr: T,
    nesterov: bool,
    mode: Mode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Plain,
    /// The momentum buffer starts as a copy of the grad.
    FirstMomentum,
    Momentum,
}

pub struct Sgd;

/// The mode as `kernels.cu` reads it.
fn mode_number(mode: Mode) -> f64 {
    match mode {
        Mode::Plain => 0.0,
        Mode::FirstMomentum => 1.0,
        Mode::Momentum => 2.0,
    }
}

impl Algorithm for Sgd {
    const SLOTS: &'static [&'static str] = &["momentum_buffer"];
    type Hyper = SgdHyper;
    type Scalars<T: Real> = SgdScalars<T>;

    fn from_group(g: &dyn HyperSource) -> Result<SgdHyper> {
        let h = SgdHyper {
            lr: g.non_negative("lr")?,
            momentum: g.non_negative("momentum")?,
            dampening: g.finite("dampening")?,
            weight_decay: g.non_negative("weight_decay")?,
            l1: g.non_negative("l1")?,
            nesterov: g.flag("nesterov")?,
            maximize: g.flag("maximize")?,
        };
        if h.nesterov && (h.momentum <= 0.0 || h.dampening != 0.0) {
            return Err(Error::hyper(
                "nesterov",
                "Nesterov momentum requires a momentum > 0 and zero dampening",
            ));
        }
        Ok(h)
    }

    fn flat(s: &SgdScalars<f64>) -> (Prelude<f64>, Vec<f64>) {
        (
            s.pre,
            vec![
                mode_number(s.mode),
                flag(s.nesterov),
                s.momentum,
                s.one_minus_dampening,
                s.neg_lr,
            ],
        )
    }

    fn slots_used(h: &SgdHyper) -> [bool; MAX_SLOTS] {
        [h.momentum != 0.0, false, false]
    }

    fn scalars<T: Real>(h: &SgdHyper, _step: u64, fresh: [bool; MAX_SLOTS]) -> SgdScalars<T> {
        let mode = match (h.momentum != 0.0, fresh[0]) {
            (false, _) => Mode::Plain,
            (true, true) => Mode::FirstMomentum,
            (true, false) => Mode::Momentum,
        };
        SgdScalars {
            pre: Prelude::new(h.maximize, h.weight_decay, false, h.lr, h.l1),
            momentum: T::from_f64(h.momentum),
            one_minus_dampening: T::from_f64(1.0 - h.dampening),
            neg_lr: T::from_f64(-h.lr),
            nesterov: h.nesterov,
            mode,
        }
    }

    fn update<T: Real>(
        param: &mut [T],
        grad: &[T],
        state: [&mut [T]; MAX_SLOTS],
        s: &SgdScalars<T>,
    ) {
        let [buf, _, _] = state;
        macro_rules! go {
            ($mode:literal, $nesterov:literal) => {
                if s.pre.regularize {
                    simd::dispatch(
                        #[inline(always)]
                        || sgd::<T, $mode, $nesterov, true>(param, grad, buf, s),
                    )
                } else {
                    simd::dispatch(
                        #[inline(always)]
                        || sgd::<T, $mode, $nesterov, false>(param, grad, buf, s),
                    )
                }
            };
        }
        match (s.mode, s.nesterov) {
            (Mode::Plain, _) => go!(0, false),
            (Mode::FirstMomentum, false) => go!(1, false),
            (Mode::FirstMomentum, true) => go!(1, true),
            (Mode::Momentum, false) => go!(2, false),
            (Mode::Momentum, true) => go!(2, true),
        }
    }
}

#[inline(always)]
fn sgd<T: Real, const MODE: u8, const NESTEROV: bool, const REGULARIZE: bool>(
    param: &mut [T],
    grad: &[T],
    buf: &mut [T],
    s: &SgdScalars<T>,
) {
    let n = param.len();
    let grad = &grad[..n];
    let buf = if MODE == 0 { buf } else { &mut buf[..n] };
    crate::blocked!(n; param, grad, buf; |i| {
        let (g, p) = s.pre.apply::<REGULARIZE>(grad[i], param[i]);
        let d = match MODE {
            0 => g,
            _ => {
                let b = if MODE == 1 {
                    g
                } else {
                    buf[i] * s.momentum + s.one_minus_dampening * g
                };
                buf[i] = b;
                if NESTEROV {
                    g + s.momentum * b
                } else {
                    b
                }
            }
        };
        param[i] = p + s.neg_lr * d;
    });
}
