//! Adamax (torch.optim.Adamax): Adam with an infinity-norm second moment.
//!
//! ```text
//! g  = ±grad + wd·p + l1·sign(p)
//! m  = m + (1−β1)(g − m)
//! u  = max(β2·u, |g| + ε)
//! p -= lr/(1−β1ᵗ) · m / u
//! ```

use super::prelude::Prelude;
use super::{simd, Algorithm, Real, MAX_SLOTS};
use crate::error::Result;
use crate::hyper::HyperSource;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamaxHyper {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub l1: f64,
    pub maximize: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct AdamaxScalars<T> {
    pre: Prelude<T>,
    one_minus_beta1: T,
    beta2: T,
    eps: T,
    neg_clr: T,
}

pub struct Adamax;

impl Algorithm for Adamax {
    const SLOTS: &'static [&'static str] = &["exp_avg", "exp_inf"];
    const NON_NEGATIVE: [bool; MAX_SLOTS] = [false, true, false];
    type Hyper = AdamaxHyper;
    type Scalars<T: Real> = AdamaxScalars<T>;

    fn from_group(g: &dyn HyperSource) -> Result<AdamaxHyper> {
        let (beta1, beta2) = g.betas("betas")?;
        Ok(AdamaxHyper {
            lr: g.non_negative("lr")?,
            beta1,
            beta2,
            eps: g.non_negative("eps")?,
            weight_decay: g.non_negative("weight_decay")?,
            l1: g.non_negative("l1")?,
            maximize: g.flag("maximize")?,
        })
    }

    fn flat(s: &AdamaxScalars<f64>) -> (Prelude<f64>, Vec<f64>) {
        (s.pre, vec![s.one_minus_beta1, s.beta2, s.eps, s.neg_clr])
    }

    fn slots_used(_h: &AdamaxHyper) -> [bool; MAX_SLOTS] {
        [true, true, false]
    }

    fn scalars<T: Real>(h: &AdamaxHyper, step: u64, _fresh: [bool; MAX_SLOTS]) -> AdamaxScalars<T> {
        let bias_correction = 1.0 - h.beta1.powf(step as f64);
        AdamaxScalars {
            pre: Prelude::new(h.maximize, h.weight_decay, false, h.lr, h.l1),
            one_minus_beta1: T::from_f64(1.0 - h.beta1),
            beta2: T::from_f64(h.beta2),
            eps: T::from_f64(h.eps),
            neg_clr: T::from_f64(-(h.lr / bias_correction)),
        }
    }

    fn update<T: Real>(
        param: &mut [T],
        grad: &[T],
        state: [&mut [T]; MAX_SLOTS],
        s: &AdamaxScalars<T>,
    ) {
        let [m, u, _] = state;
        if s.pre.regularize {
            simd::dispatch(
                #[inline(always)]
                || adamax::<T, true>(param, grad, m, u, s),
            )
        } else {
            simd::dispatch(
                #[inline(always)]
                || adamax::<T, false>(param, grad, m, u, s),
            )
        }
    }
}

#[inline(always)]
fn adamax<T: Real, const REGULARIZE: bool>(
    param: &mut [T],
    grad: &[T],
    m: &mut [T],
    u: &mut [T],
    s: &AdamaxScalars<T>,
) {
    let n = param.len();
    let (grad, m, u) = (&grad[..n], &mut m[..n], &mut u[..n]);
    crate::blocked!(n; param, grad, m, u; |i| {
        let (g, p) = s.pre.apply::<REGULARIZE>(grad[i], param[i]);
        let mi = m[i] + s.one_minus_beta1 * (g - m[i]);
        m[i] = mi;
        let ui = (u[i] * s.beta2).max_val(g.abs() + s.eps);
        u[i] = ui;
        param[i] = p + s.neg_clr * mi / ui;
    });
}
