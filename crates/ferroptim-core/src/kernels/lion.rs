//! Lion (Chen et al., "Symbolic Discovery of Optimization Algorithms", 2023).
//!
//! ```text
//! g  = ±grad + l1·sign(p)
//! c  = β1·m + (1−β1)·g
//! p  = p·(1 − lr·wd) − lr·sign(c)          (decoupled weight decay)
//! m  = β2·m + (1−β2)·g
//! ```

use super::prelude::Prelude;
use super::{simd, Algorithm, Real, MAX_SLOTS};
use crate::error::Result;
use crate::hyper::HyperSource;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LionHyper {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    pub l1: f64,
    pub maximize: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct LionScalars<T> {
    pre: Prelude<T>,
    beta1: T,
    one_minus_beta1: T,
    beta2: T,
    one_minus_beta2: T,
    neg_lr: T,
}

pub struct Lion;

impl Algorithm for Lion {
    const SLOTS: &'static [&'static str] = &["exp_avg"];
    type Hyper = LionHyper;
    type Scalars<T: Real> = LionScalars<T>;

    fn from_group(g: &dyn HyperSource) -> Result<LionHyper> {
        let (beta1, beta2) = g.betas("betas")?;
        Ok(LionHyper {
            lr: g.non_negative("lr")?,
            beta1,
            beta2,
            weight_decay: g.non_negative("weight_decay")?,
            l1: g.non_negative("l1")?,
            maximize: g.flag("maximize")?,
        })
    }

    fn flat(s: &LionScalars<f64>) -> (Prelude<f64>, Vec<f64>) {
        (
            s.pre,
            vec![
                s.beta1,
                s.one_minus_beta1,
                s.beta2,
                s.one_minus_beta2,
                s.neg_lr,
            ],
        )
    }

    fn slots_used(_h: &LionHyper) -> [bool; MAX_SLOTS] {
        [true, false, false]
    }

    fn scalars<T: Real>(h: &LionHyper, _step: u64, _fresh: [bool; MAX_SLOTS]) -> LionScalars<T> {
        LionScalars {
            // Lion's weight decay is always decoupled.
            pre: Prelude::new(h.maximize, h.weight_decay, true, h.lr, h.l1),
            beta1: T::from_f64(h.beta1),
            one_minus_beta1: T::from_f64(1.0 - h.beta1),
            beta2: T::from_f64(h.beta2),
            one_minus_beta2: T::from_f64(1.0 - h.beta2),
            neg_lr: T::from_f64(-h.lr),
        }
    }

    fn update<T: Real>(
        param: &mut [T],
        grad: &[T],
        state: [&mut [T]; MAX_SLOTS],
        s: &LionScalars<T>,
    ) {
        let [m, _, _] = state;
        if s.pre.regularize {
            simd::dispatch(
                #[inline(always)]
                || lion::<T, true>(param, grad, m, s),
            )
        } else {
            simd::dispatch(
                #[inline(always)]
                || lion::<T, false>(param, grad, m, s),
            )
        }
    }
}

#[inline(always)]
fn lion<T: Real, const REGULARIZE: bool>(
    param: &mut [T],
    grad: &[T],
    m: &mut [T],
    s: &LionScalars<T>,
) {
    let n = param.len();
    let (grad, m) = (&grad[..n], &mut m[..n]);
    crate::blocked!(n; param, grad, m; |i| {
        let (g, p) = s.pre.apply::<REGULARIZE>(grad[i], param[i]);
        let c = m[i] * s.beta1 + s.one_minus_beta1 * g;
        param[i] = p + s.neg_lr * c.sign();
        m[i] = m[i] * s.beta2 + s.one_minus_beta2 * g;
    });
}
