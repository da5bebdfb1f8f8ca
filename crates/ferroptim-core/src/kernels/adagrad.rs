//! Adagrad (torch.optim.Adagrad).
//!
//! ```text
//! g  = ±grad + wd·p + l1·sign(p)
//! s  = s + g²                         (s starts at initial_accumulator_value)
//! p -= lr/(1 + (t−1)·lr_decay) · g / (√s + ε)
//! ```

use super::prelude::Prelude;
use super::{flag, simd, Algorithm, Real, MAX_SLOTS};
use crate::error::Result;
use crate::hyper::HyperSource;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdagradHyper {
    pub lr: f64,
    pub lr_decay: f64,
    pub weight_decay: f64,
    pub l1: f64,
    pub initial_accumulator_value: f64,
    pub eps: f64,
    pub maximize: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct AdagradScalars<T> {
    pre: Prelude<T>,
    /// The accumulator's value before its first step.
    initial: T,
    neg_clr: T,
    eps: T,
    fresh: bool,
}

pub struct Adagrad;

impl Algorithm for Adagrad {
    const SLOTS: &'static [&'static str] = &["sum"];
    const NON_NEGATIVE: [bool; MAX_SLOTS] = [true, false, false];
    type Hyper = AdagradHyper;
    type Scalars<T: Real> = AdagradScalars<T>;

    fn from_group(g: &dyn HyperSource) -> Result<AdagradHyper> {
        Ok(AdagradHyper {
            lr: g.non_negative("lr")?,
            lr_decay: g.non_negative("lr_decay")?,
            weight_decay: g.non_negative("weight_decay")?,
            l1: g.non_negative("l1")?,
            initial_accumulator_value: g.non_negative("initial_accumulator_value")?,
            eps: g.non_negative("eps")?,
            maximize: g.flag("maximize")?,
        })
    }

    fn flat(s: &AdagradScalars<f64>) -> (Prelude<f64>, Vec<f64>) {
        (s.pre, vec![flag(s.fresh), s.initial, s.neg_clr, s.eps])
    }

    fn slots_used(_h: &AdagradHyper) -> [bool; MAX_SLOTS] {
        [true, false, false]
    }

    fn scalars<T: Real>(
        h: &AdagradHyper,
        step: u64,
        fresh: [bool; MAX_SLOTS],
    ) -> AdagradScalars<T> {
        let clr = h.lr / (1.0 + (step as f64 - 1.0) * h.lr_decay);
        AdagradScalars {
            pre: Prelude::new(h.maximize, h.weight_decay, false, h.lr, h.l1),
            initial: T::from_f64(h.initial_accumulator_value),
            neg_clr: T::from_f64(-clr),
            eps: T::from_f64(h.eps),
            fresh: fresh[0],
        }
    }

    fn update<T: Real>(
        param: &mut [T],
        grad: &[T],
        state: [&mut [T]; MAX_SLOTS],
        s: &AdagradScalars<T>,
    ) {
        let [sum, _, _] = state;
        match (s.fresh, s.pre.regularize) {
            (false, false) => simd::dispatch(
                #[inline(always)]
                || adagrad::<T, false, false>(param, grad, sum, s),
            ),
            (false, true) => simd::dispatch(
                #[inline(always)]
                || adagrad::<T, false, true>(param, grad, sum, s),
            ),
            (true, false) => simd::dispatch(
                #[inline(always)]
                || adagrad::<T, true, false>(param, grad, sum, s),
            ),
            (true, true) => simd::dispatch(
                #[inline(always)]
                || adagrad::<T, true, true>(param, grad, sum, s),
            ),
        }
    }
}

#[inline(always)]
fn adagrad<T: Real, const FRESH: bool, const REGULARIZE: bool>(
    param: &mut [T],
    grad: &[T],
    sum: &mut [T],
    s: &AdagradScalars<T>,
) {
    let n = param.len();
    let (grad, sum) = (&grad[..n], &mut sum[..n]);
    crate::blocked!(n; param, grad, sum; |i| {
        let (g, p) = s.pre.apply::<REGULARIZE>(grad[i], param[i]);
        let prev = if FRESH { s.initial } else { sum[i] };
        let acc = prev + g * g;
        sum[i] = acc;
        param[i] = p + s.neg_clr * g / (acc.sqrt() + s.eps);
    });
}
