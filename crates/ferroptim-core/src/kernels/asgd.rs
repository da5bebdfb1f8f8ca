//! ASGD, averaged stochastic gradient descent (torch.optim.ASGD).
//!
//! ```text
//! g   = ±grad + wd·p + l1·sign(p)
//! p   = p·(1 − λ·η)
//! p  -= η·g
//! ax  = p                       (μ = 1)
//! ax += μ·(p − ax)              (otherwise)
//! ```
//!
//! η and μ are per-tensor numbers carried from step to step, as torch keeps
//! them: after step t they become `η = lr / (1 + λ·lr·t)^α` and
//! `μ = 1 / max(1, t − t0)`, computed in f64 from the hyperparameters of step
//! t and used by step t + 1 (step 1 uses η = lr, μ = 1). torch stores them as
//! scalar tensors of its default dtype, float32 unless the user changed it,
//! so by default they are rounded to float32 (`scalars_f32`).

use super::prelude::Prelude;
use super::{flag, simd, Algorithm, Aux, Real, MAX_SLOTS};
use crate::error::{Error, Result};
use crate::hyper::HyperSource;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AsgdHyper {
    pub lr: f64,
    pub lambd: f64,
    pub alpha: f64,
    pub t0: f64,
    pub weight_decay: f64,
    pub l1: f64,
    pub maximize: bool,
    /// Round η and μ to float32 (torch's default dtype) instead of keeping f64.
    pub scalars_f32: bool,
}

impl Default for AsgdHyper {
    fn default() -> Self {
        AsgdHyper {
            lr: 1e-2,
            lambd: 1e-4,
            alpha: 0.75,
            t0: 1e6,
            weight_decay: 0.0,
            l1: 0.0,
            maximize: false,
            scalars_f32: true,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct AsgdScalars<T> {
    pre: Prelude<T>,
    /// 1 − λ·η.
    decay: T,
    neg_eta: T,
    mu: T,
    /// μ = 1: the average is a copy of the param.
    copy: bool,
}

pub struct Asgd;

impl Asgd {
    fn round(h: &AsgdHyper, x: f64) -> f64 {
        if h.scalars_f32 {
            f64::from(x as f32)
        } else {
            x
        }
    }

    /// `(η, μ)` after step `t` (t >= 1), before their rounding.
    fn after(h: &AsgdHyper, t: f64) -> (f64, f64) {
        let eta = h.lr / (1.0 + h.lambd * h.lr * t).powf(h.alpha);
        // Python's max(1, t − t0): the 1 when t − t0 is not larger.
        let mu = 1.0 / if t - h.t0 > 1.0 { t - h.t0 } else { 1.0 };
        (eta, mu)
    }

    /// `(η, μ)` that step `step` uses when the hyperparameters never changed.
    fn closed_form(h: &AsgdHyper, step: u64) -> (f64, f64) {
        if step <= 1 {
            return (Self::round(h, h.lr), 1.0);
        }
        let (eta, mu) = Self::after(h, (step - 1) as f64);
        (Self::round(h, eta), Self::round(h, mu))
    }

    fn make<T: Real>(h: &AsgdHyper, step: u64, aux: Aux) -> (AsgdScalars<T>, Aux) {
        // NaN: not carried yet (before the first step, or a state dict without
        // the value): the value the step would have with constant hyperparameters.
        let closed = Self::closed_form(h, step);
        let eta = if aux[0].is_nan() { closed.0 } else { aux[0] };
        let mu = if aux[1].is_nan() { closed.1 } else { aux[1] };
        let s = AsgdScalars {
            pre: Prelude::new(h.maximize, h.weight_decay, false, h.lr, h.l1),
            decay: T::from_f64(1.0 - h.lambd * eta),
            neg_eta: T::from_f64(-eta),
            mu: T::from_f64(mu),
            copy: mu == 1.0,
        };
        let (next_eta, next_mu) = Self::after(h, step as f64);
        (s, [Self::round(h, next_eta), Self::round(h, next_mu)])
    }
}

impl Algorithm for Asgd {
    const SLOTS: &'static [&'static str] = &["ax"];
    // Not compressible: the averaged params need the params' precision.
    const COMPRESSIBLE: bool = false;
    const AUX: &'static [(&'static str, f64)] = &[("eta", f64::NAN), ("mu", f64::NAN)];
    type Hyper = AsgdHyper;
    type Scalars<T: Real> = AsgdScalars<T>;

    fn from_group(g: &dyn HyperSource) -> Result<AsgdHyper> {
        let t0 = g.number("t0")?;
        if t0.is_nan() {
            return Err(Error::hyper("t0", "must be a number, got nan"));
        }
        Ok(AsgdHyper {
            lr: g.non_negative("lr")?,
            lambd: g.non_negative("lambd")?,
            alpha: g.non_negative("alpha")?,
            t0,
            weight_decay: g.non_negative("weight_decay")?,
            l1: g.non_negative("l1")?,
            maximize: g.flag("maximize")?,
            scalars_f32: g.choice("scalar_dtype", &["float32", "float64"], 0)? == 0,
        })
    }

    fn flat(s: &AsgdScalars<f64>) -> (Prelude<f64>, Vec<f64>) {
        (s.pre, vec![s.decay, s.neg_eta, s.mu, flag(s.copy)])
    }

    fn slots_used(_h: &AsgdHyper) -> [bool; MAX_SLOTS] {
        [true, false, false]
    }

    fn scalars<T: Real>(h: &AsgdHyper, step: u64, _fresh: [bool; MAX_SLOTS]) -> AsgdScalars<T> {
        Self::make(h, step, [f64::NAN; 2]).0
    }

    fn scalars_aux<T: Real>(
        h: &AsgdHyper,
        step: u64,
        _fresh: [bool; MAX_SLOTS],
        aux: Aux,
    ) -> (AsgdScalars<T>, Aux) {
        Self::make(h, step, aux)
    }

    fn update<T: Real>(
        param: &mut [T],
        grad: &[T],
        state: [&mut [T]; MAX_SLOTS],
        s: &AsgdScalars<T>,
    ) {
        let [ax, _, _] = state;
        match (s.copy, s.pre.regularize) {
            (false, false) => simd::dispatch(
                #[inline(always)]
                || asgd::<T, false, false>(param, grad, ax, s),
            ),
            (false, true) => simd::dispatch(
                #[inline(always)]
                || asgd::<T, false, true>(param, grad, ax, s),
            ),
            (true, false) => simd::dispatch(
                #[inline(always)]
                || asgd::<T, true, false>(param, grad, ax, s),
            ),
            (true, true) => simd::dispatch(
                #[inline(always)]
                || asgd::<T, true, true>(param, grad, ax, s),
            ),
        }
    }
}

#[inline(always)]
fn asgd<T: Real, const COPY: bool, const REGULARIZE: bool>(
    param: &mut [T],
    grad: &[T],
    ax: &mut [T],
    s: &AsgdScalars<T>,
) {
    let n = param.len();
    let (grad, ax) = (&grad[..n], &mut ax[..n]);
    crate::blocked!(n; param, grad, ax; |i| {
        let (g, p) = s.pre.apply::<REGULARIZE>(grad[i], param[i]);
        // Two rounded updates, as torch applies them.
        let p = p * s.decay;
        let p = p + s.neg_eta * g;
        param[i] = p;
        ax[i] = if COPY { p } else { ax[i] + (p - ax[i]) * s.mu };
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::step_slices;

    #[test]
    fn carried_scalars_follow_torch() {
        let h = AsgdHyper {
            t0: 3.0,
            scalars_f32: false,
            ..AsgdHyper::default()
        };
        let mut aux = [f64::NAN; 2];
        let mut seen = Vec::new();
        for step in 1..=6u64 {
            let (s, next) = Asgd::scalars_aux::<f64>(&h, step, [false; MAX_SLOTS], aux);
            seen.push((-s.neg_eta, s.mu, s.copy));
            aux = next;
        }
        // torch: η(1) = lr; afterwards lr/(1 + λ·lr·(t−1))^α. μ = 1 until t − 1 − t0 > 1.
        for (k, (eta, mu, copy)) in seen.into_iter().enumerate() {
            let t = (k + 1) as f64;
            let want_eta = h.lr / (1.0 + h.lambd * h.lr * (t - 1.0)).powf(h.alpha);
            let want_mu = if t <= 1.0 {
                1.0
            } else {
                1.0 / f64::max(1.0, t - 1.0 - h.t0)
            };
            assert_eq!(eta, want_eta, "eta of step {t}");
            assert_eq!(mu, want_mu, "mu of step {t}");
            assert_eq!(copy, want_mu == 1.0);
        }
        // Rounded to float32 by default, as torch's float32 scalar tensors.
        let f32_h = AsgdHyper::default();
        let (_, after) = Asgd::scalars_aux::<f32>(&f32_h, 1, [true; MAX_SLOTS], [f64::NAN; 2]);
        assert_eq!(
            after[0],
            f64::from((f32_h.lr / (1.0 + f32_h.lambd * f32_h.lr).powf(0.75)) as f32)
        );
        assert_eq!(after[1], 1.0);
    }

    #[test]
    fn averages_as_torch() {
        let h = AsgdHyper {
            lr: 0.1,
            lambd: 0.01,
            t0: 2.0,
            weight_decay: 0.05,
            scalars_f32: false,
            ..AsgdHyper::default()
        };
        let n = 19;
        let mut param: Vec<f64> = (0..n).map(|i| i as f64 * 0.25 - 2.0).collect();
        let mut ax = vec![0.0; n];
        let (mut want, mut want_ax) = (param.clone(), vec![0.0; n]);
        let mut aux = [f64::NAN; 2];
        let (mut eta, mut mu) = (h.lr, 1.0);
        for step in 1..=12u64 {
            let grad: Vec<f64> = (0..n).map(|i| (i as f64 + step as f64).cos()).collect();
            let (s, next) = Asgd::scalars_aux::<f64>(&h, step, [step == 1; MAX_SLOTS], aux);
            aux = next;
            step_slices::<Asgd, f64>(&mut param, &grad, [&mut ax, &mut [], &mut []], &s);
            for i in 0..n {
                let g = grad[i] + h.weight_decay * want[i];
                want[i] *= 1.0 - h.lambd * eta;
                want[i] += -eta * g;
                want_ax[i] = if mu != 1.0 {
                    want_ax[i] + (want[i] - want_ax[i]) * mu
                } else {
                    want[i]
                };
            }
            let t = step as f64;
            eta = h.lr / (1.0 + h.lambd * h.lr * t).powf(h.alpha);
            mu = 1.0 / f64::max(1.0, t - h.t0);
            assert_eq!(param, want, "param, step {step}");
            assert_eq!(ax, want_ax, "ax, step {step}");
        }
    }
}
