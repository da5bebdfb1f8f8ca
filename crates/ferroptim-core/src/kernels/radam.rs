//! RAdam (torch.optim.RAdam): Adam with a rectified adaptive learning rate.
//!
//! ```text
//! g  = ±grad + wd·p + l1·sign(p)          (wd only when coupled)
//! p *= 1 − lr·wd                          (decoupled)
//! m  = m + (1−β1)(g − m);   v = β2·v + (1−β2)·g²
//! ρ∞ = 2/(1−β2) − 1;   ρt = ρ∞ − 2t·β2ᵗ/(1−β2ᵗ)
//! ρt > 5:  p -= m/(1−β1ᵗ) · lr · √(1−β2ᵗ)/(√v + ε) · r,
//!          r = √((ρt−4)(ρt−2)ρ∞ / ((ρ∞−4)(ρ∞−2)ρt))
//! else:    p -= m/(1−β1ᵗ) · lr
//! ```

use super::prelude::Prelude;
use super::{flag, simd, Algorithm, Real, MAX_SLOTS};
use crate::error::Result;
use crate::hyper::HyperSource;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RadamHyper {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub l1: f64,
    pub decoupled: bool,
    pub maximize: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct RadamScalars<T> {
    pre: Prelude<T>,
    one_minus_beta1: T,
    beta2: T,
    one_minus_beta2: T,
    bias_correction1: T,
    lr: T,
    bias_correction2_sqrt: T,
    eps: T,
    rect: T,
    rectified: bool,
}

pub struct Radam;

impl Algorithm for Radam {
    const SLOTS: &'static [&'static str] = &["exp_avg", "exp_avg_sq"];
    const NON_NEGATIVE: [bool; MAX_SLOTS] = [false, true, false];
    type Hyper = RadamHyper;
    type Scalars<T: Real> = RadamScalars<T>;

    fn from_group(g: &dyn HyperSource) -> Result<RadamHyper> {
        let (beta1, beta2) = g.betas("betas")?;
        Ok(RadamHyper {
            lr: g.non_negative("lr")?,
            beta1,
            beta2,
            eps: g.non_negative("eps")?,
            weight_decay: g.non_negative("weight_decay")?,
            l1: g.non_negative("l1")?,
            decoupled: g.flag("decoupled_weight_decay")?,
            maximize: g.flag("maximize")?,
        })
    }

    fn flat(s: &RadamScalars<f64>) -> (Prelude<f64>, Vec<f64>) {
        (
            s.pre,
            vec![
                flag(s.rectified),
                s.one_minus_beta1,
                s.beta2,
                s.one_minus_beta2,
                s.bias_correction1,
                s.lr,
                s.bias_correction2_sqrt,
                s.eps,
                s.rect,
            ],
        )
    }

    fn slots_used(_h: &RadamHyper) -> [bool; MAX_SLOTS] {
        [true, true, false]
    }

    fn scalars<T: Real>(h: &RadamHyper, step: u64, _fresh: [bool; MAX_SLOTS]) -> RadamScalars<T> {
        let t = step as f64;
        let bias_correction1 = 1.0 - h.beta1.powf(t);
        let bias_correction2 = 1.0 - h.beta2.powf(t);
        let rho_inf = 2.0 / (1.0 - h.beta2) - 1.0;
        let rho_t = rho_inf - 2.0 * t * h.beta2.powf(t) / bias_correction2;
        let rectified = rho_t > 5.0;
        let rect = if rectified {
            ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                .sqrt()
        } else {
            1.0
        };
        RadamScalars {
            pre: Prelude::new(h.maximize, h.weight_decay, h.decoupled, h.lr, h.l1),
            one_minus_beta1: T::from_f64(1.0 - h.beta1),
            beta2: T::from_f64(h.beta2),
            one_minus_beta2: T::from_f64(1.0 - h.beta2),
            bias_correction1: T::from_f64(bias_correction1),
            lr: T::from_f64(h.lr),
            bias_correction2_sqrt: T::from_f64(bias_correction2.sqrt()),
            eps: T::from_f64(h.eps),
            rect: T::from_f64(rect),
            rectified,
        }
    }

    fn update<T: Real>(
        param: &mut [T],
        grad: &[T],
        state: [&mut [T]; MAX_SLOTS],
        s: &RadamScalars<T>,
    ) {
        let [m, v, _] = state;
        match (s.rectified, s.pre.regularize) {
            (false, false) => simd::dispatch(
                #[inline(always)]
                || radam::<T, false, false>(param, grad, m, v, s),
            ),
            (false, true) => simd::dispatch(
                #[inline(always)]
                || radam::<T, false, true>(param, grad, m, v, s),
            ),
            (true, false) => simd::dispatch(
                #[inline(always)]
                || radam::<T, true, false>(param, grad, m, v, s),
            ),
            (true, true) => simd::dispatch(
                #[inline(always)]
                || radam::<T, true, true>(param, grad, m, v, s),
            ),
        }
    }
}

#[inline(always)]
fn radam<T: Real, const RECTIFIED: bool, const REGULARIZE: bool>(
    param: &mut [T],
    grad: &[T],
    m: &mut [T],
    v: &mut [T],
    s: &RadamScalars<T>,
) {
    let n = param.len();
    let (grad, m, v) = (&grad[..n], &mut m[..n], &mut v[..n]);
    crate::blocked!(n; param, grad, m, v; |i| {
        let (g, p) = s.pre.apply::<REGULARIZE>(grad[i], param[i]);
        let mi = m[i] + s.one_minus_beta1 * (g - m[i]);
        let vi = v[i] * s.beta2 + s.one_minus_beta2 * g * g;
        m[i] = mi;
        v[i] = vi;
        let corrected = mi / s.bias_correction1;
        let step = if RECTIFIED {
            let adaptive = s.bias_correction2_sqrt / (vi.sqrt() + s.eps);
            corrected * s.lr * adaptive * s.rect
        } else {
            corrected * s.lr
        };
        param[i] = p - step;
    });
}
