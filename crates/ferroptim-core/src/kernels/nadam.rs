//! NAdam (torch.optim.NAdam): Adam with Nesterov momentum and a momentum schedule.
//!
//! ```text
//! g   = ±grad + wd·p + l1·sign(p)          (wd only when coupled)
//! p  *= 1 − lr·wd                          (decoupled)
//! μt  = β1(1 − ½·0.96^(t·ψ)),  μt+1 = β1(1 − ½·0.96^((t+1)·ψ)),  Πt = Πt−1·μt
//! m   = m + (1−β1)(g − m);   v = β2·v + (1−β2)·g²
//! d   = √(v / (1−β2ᵗ)) + ε
//! p  += −lr(1−μt)/(1−Πt) · g/d
//! p  += −lr·μt+1/(1−Πt·μt+1) · m/d
//! ```
//!
//! Πt (`mu_product`) is carried per tensor from step to step. torch keeps it
//! as a scalar tensor of its default dtype, float32 unless the user changed
//! it, so by default Πt is rounded to float32 after each product, as torch
//! does (`mu_product_f32`); μt, μt+1 and the coefficients stay in float64.

use super::prelude::Prelude;
use super::{simd, Algorithm, Aux, Real, MAX_SLOTS};
use crate::error::Result;
use crate::hyper::HyperSource;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NadamHyper {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub l1: f64,
    pub momentum_decay: f64,
    pub decoupled: bool,
    pub maximize: bool,
    /// Round Πt to float32 (torch's default dtype) instead of keeping float64.
    pub mu_product_f32: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct NadamScalars<T> {
    pre: Prelude<T>,
    one_minus_beta1: T,
    beta2: T,
    one_minus_beta2: T,
    bias_correction2: T,
    eps: T,
    grad_coef: T,
    avg_coef: T,
}

pub struct Nadam;

fn mu(h: &NadamHyper, t: f64) -> f64 {
    h.beta1 * (1.0 - 0.5 * 0.96f64.powf(t * h.momentum_decay))
}

impl Nadam {
    fn make<T: Real>(h: &NadamHyper, step: u64, mu_product_before: f64) -> (NadamScalars<T>, f64) {
        let t = step as f64;
        let bias_correction2 = 1.0 - h.beta2.powf(t);
        let mu_t = mu(h, t);
        let mu_next = mu(h, t + 1.0);
        let mu_product = if h.mu_product_f32 {
            // torch: a float32 tensor times a Python float, computed in float32.
            f64::from(mu_product_before as f32 * mu_t as f32)
        } else {
            mu_product_before * mu_t
        };
        let mu_product_next = mu_product * mu_next;
        let s = NadamScalars {
            pre: Prelude::new(h.maximize, h.weight_decay, h.decoupled, h.lr, h.l1),
            one_minus_beta1: T::from_f64(1.0 - h.beta1),
            beta2: T::from_f64(h.beta2),
            one_minus_beta2: T::from_f64(1.0 - h.beta2),
            bias_correction2: T::from_f64(bias_correction2),
            eps: T::from_f64(h.eps),
            grad_coef: T::from_f64(-h.lr * (1.0 - mu_t) / (1.0 - mu_product)),
            avg_coef: T::from_f64((-h.lr * mu_next) / (1.0 - mu_product_next)),
        };
        (s, mu_product)
    }
}

impl Algorithm for Nadam {
    const SLOTS: &'static [&'static str] = &["exp_avg", "exp_avg_sq"];
    const NON_NEGATIVE: [bool; MAX_SLOTS] = [false, true, false];
    const AUX: &'static [(&'static str, f64)] = &[("mu_product", 1.0)];
    type Hyper = NadamHyper;
    type Scalars<T: Real> = NadamScalars<T>;

    fn from_group(g: &dyn HyperSource) -> Result<NadamHyper> {
        let (beta1, beta2) = g.betas("betas")?;
        Ok(NadamHyper {
            lr: g.non_negative("lr")?,
            beta1,
            beta2,
            eps: g.non_negative("eps")?,
            weight_decay: g.non_negative("weight_decay")?,
            l1: g.non_negative("l1")?,
            momentum_decay: g.non_negative("momentum_decay")?,
            decoupled: g.flag("decoupled_weight_decay")?,
            maximize: g.flag("maximize")?,
            mu_product_f32: g.choice("mu_product_dtype", &["float32", "float64"], 0)? == 0,
        })
    }

    fn flat(s: &NadamScalars<f64>) -> (Prelude<f64>, Vec<f64>) {
        (
            s.pre,
            vec![
                s.one_minus_beta1,
                s.beta2,
                s.one_minus_beta2,
                s.bias_correction2,
                s.eps,
                s.grad_coef,
                s.avg_coef,
            ],
        )
    }

    fn slots_used(_h: &NadamHyper) -> [bool; MAX_SLOTS] {
        [true, true, false]
    }

    /// With constant hyperparameters, Πt−1 is the product of μ1..μt−1.
    fn scalars<T: Real>(h: &NadamHyper, step: u64, _fresh: [bool; MAX_SLOTS]) -> NadamScalars<T> {
        let mut before = 1.0;
        for k in 1..step {
            before = Self::make::<T>(h, k, before).1;
        }
        Self::make(h, step, before).0
    }

    fn scalars_aux<T: Real>(
        h: &NadamHyper,
        step: u64,
        _fresh: [bool; MAX_SLOTS],
        aux: Aux,
    ) -> (NadamScalars<T>, Aux) {
        let (s, mu_product) = Self::make(h, step, aux[0]);
        (s, [mu_product, 0.0])
    }

    fn update<T: Real>(
        param: &mut [T],
        grad: &[T],
        state: [&mut [T]; MAX_SLOTS],
        s: &NadamScalars<T>,
    ) {
        let [m, v, _] = state;
        if s.pre.regularize {
            simd::dispatch(
                #[inline(always)]
                || nadam::<T, true>(param, grad, m, v, s),
            )
        } else {
            simd::dispatch(
                #[inline(always)]
                || nadam::<T, false>(param, grad, m, v, s),
            )
        }
    }
}

#[inline(always)]
fn nadam<T: Real, const REGULARIZE: bool>(
    param: &mut [T],
    grad: &[T],
    m: &mut [T],
    v: &mut [T],
    s: &NadamScalars<T>,
) {
    let n = param.len();
    let (grad, m, v) = (&grad[..n], &mut m[..n], &mut v[..n]);
    crate::blocked!(n; param, grad, m, v; |i| {
        let (g, p) = s.pre.apply::<REGULARIZE>(grad[i], param[i]);
        let mi = m[i] + s.one_minus_beta1 * (g - m[i]);
        let vi = v[i] * s.beta2 + s.one_minus_beta2 * g * g;
        m[i] = mi;
        v[i] = vi;
        let denom = (vi / s.bias_correction2).sqrt() + s.eps;
        // Two rounded updates, as torch applies them.
        let p = p + s.grad_coef * g / denom;
        param[i] = p + s.avg_coef * mi / denom;
    });
}
