//! Adadelta (torch.optim.Adadelta).
//!
//! ```text
//! g  = ±grad + wd·p + l1·sign(p)
//! s  = ρ·s + (1−ρ)·g²
//! d  = √(u + ε) / √(s + ε) · g
//! u  = ρ·u + (1−ρ)·d²
//! p -= lr·d
//! ```

use super::prelude::Prelude;
use super::{simd, Algorithm, Real, MAX_SLOTS};
use crate::error::Result;
use crate::hyper::HyperSource;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdadeltaHyper {
    pub lr: f64,
    pub rho: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub l1: f64,
    pub maximize: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct AdadeltaScalars<T> {
    pre: Prelude<T>,
    rho: T,
    one_minus_rho: T,
    eps: T,
    neg_lr: T,
}

pub struct Adadelta;

impl Algorithm for Adadelta {
    const SLOTS: &'static [&'static str] = &["square_avg", "acc_delta"];
    const NON_NEGATIVE: [bool; MAX_SLOTS] = [true, true, false];
    type Hyper = AdadeltaHyper;
    type Scalars<T: Real> = AdadeltaScalars<T>;

    fn from_group(g: &dyn HyperSource) -> Result<AdadeltaHyper> {
        Ok(AdadeltaHyper {
            lr: g.non_negative("lr")?,
            rho: g.unit("rho")?,
            eps: g.non_negative("eps")?,
            weight_decay: g.non_negative("weight_decay")?,
            l1: g.non_negative("l1")?,
            maximize: g.flag("maximize")?,
        })
    }

    fn flat(s: &AdadeltaScalars<f64>) -> (Prelude<f64>, Vec<f64>) {
        (s.pre, vec![s.rho, s.one_minus_rho, s.eps, s.neg_lr])
    }

    fn slots_used(_h: &AdadeltaHyper) -> [bool; MAX_SLOTS] {
        [true, true, false]
    }

    fn scalars<T: Real>(
        h: &AdadeltaHyper,
        _step: u64,
        _fresh: [bool; MAX_SLOTS],
    ) -> AdadeltaScalars<T> {
        AdadeltaScalars {
            pre: Prelude::new(h.maximize, h.weight_decay, false, h.lr, h.l1),
            rho: T::from_f64(h.rho),
            one_minus_rho: T::from_f64(1.0 - h.rho),
            eps: T::from_f64(h.eps),
            neg_lr: T::from_f64(-h.lr),
        }
    }

    fn update<T: Real>(
        param: &mut [T],
        grad: &[T],
        state: [&mut [T]; MAX_SLOTS],
        s: &AdadeltaScalars<T>,
    ) {
        let [sq, acc, _] = state;
        if s.pre.regularize {
            simd::dispatch(
                #[inline(always)]
                || adadelta::<T, true>(param, grad, sq, acc, s),
            )
        } else {
            simd::dispatch(
                #[inline(always)]
                || adadelta::<T, false>(param, grad, sq, acc, s),
            )
        }
    }
}

#[inline(always)]
fn adadelta<T: Real, const REGULARIZE: bool>(
    param: &mut [T],
    grad: &[T],
    sq: &mut [T],
    acc: &mut [T],
    s: &AdadeltaScalars<T>,
) {
    let n = param.len();
    let (grad, sq, acc) = (&grad[..n], &mut sq[..n], &mut acc[..n]);
    crate::blocked!(n; param, grad, sq, acc; |i| {
        let (g, p) = s.pre.apply::<REGULARIZE>(grad[i], param[i]);
        let si = sq[i] * s.rho + s.one_minus_rho * g * g;
        sq[i] = si;
        let std = (si + s.eps).sqrt();
        let delta = (acc[i] + s.eps).sqrt() / std * g;
        acc[i] = acc[i] * s.rho + s.one_minus_rho * delta * delta;
        param[i] = p + s.neg_lr * delta;
    });
}
