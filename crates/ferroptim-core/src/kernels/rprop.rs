//! Rprop, resilient backpropagation (torch.optim.Rprop).
//!
//! ```text
//! g  = ±grad + wd·p + l1·sign(p)
//! f  = η+ if g·prev > 0,  η− if g·prev < 0,  1 if g·prev = 0
//! d  = clamp(d·f, d_min, d_max)            (d starts at lr)
//! g  = 0 where g·prev < 0                  (a sign change: skip this step)
//! p -= sign(g)·d;   prev = g
//! ```
//!
//! As torch, the sign test is on the product `g·prev` rounded to the param's
//! dtype (it can underflow to 0), and `η±` are rounded to that dtype before
//! they scale `d`. `lr` only sets `d` on the first step.

use super::prelude::Prelude;
use super::{flag, simd, Algorithm, Real, MAX_SLOTS};
use crate::error::{Error, Result};
use crate::hyper::HyperSource;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RpropHyper {
    pub lr: f64,
    /// `(η−, η+)`: 0 < η− < 1 < η+.
    pub etas: (f64, f64),
    /// `(d_min, d_max)`: 0 <= d_min <= d_max.
    pub step_sizes: (f64, f64),
    pub weight_decay: f64,
    pub l1: f64,
    pub maximize: bool,
}

impl Default for RpropHyper {
    fn default() -> Self {
        RpropHyper {
            lr: 1e-2,
            etas: (0.5, 1.2),
            step_sizes: (1e-6, 50.0),
            weight_decay: 0.0,
            l1: 0.0,
            maximize: false,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct RpropScalars<T> {
    pre: Prelude<T>,
    /// `d` before its first step: lr.
    initial: T,
    eta_minus: T,
    eta_plus: T,
    min_step: T,
    max_step: T,
    fresh: bool,
}

pub struct Rprop;

impl Algorithm for Rprop {
    const SLOTS: &'static [&'static str] = &["prev", "step_size"];
    // Not compressible: its step sizes are the update itself.
    const COMPRESSIBLE: bool = false;
    type Hyper = RpropHyper;
    type Scalars<T: Real> = RpropScalars<T>;

    fn from_group(g: &dyn HyperSource) -> Result<RpropHyper> {
        let lr = g.non_negative("lr")?;
        let (eta_minus, eta_plus) = g.pair("etas")?;
        // torch's check; written so that NaN fails it too.
        if !(0.0 < eta_minus && eta_minus < 1.0 && 1.0 < eta_plus && eta_plus.is_finite()) {
            return Err(Error::hyper(
                "etas",
                &format!("must be (eta_minus, eta_plus) with 0 < eta_minus < 1 < eta_plus, got ({eta_minus}, {eta_plus})"),
            ));
        }
        let (lo, hi) = g.pair("step_sizes")?;
        if !(lo.is_finite() && 0.0 <= lo && lo <= hi) {
            return Err(Error::hyper(
                "step_sizes",
                &format!("must be (min, max) with 0 <= min <= max, got ({lo}, {hi})"),
            ));
        }
        Ok(RpropHyper {
            lr,
            etas: (eta_minus, eta_plus),
            step_sizes: (lo, hi),
            weight_decay: g.non_negative("weight_decay")?,
            l1: g.non_negative("l1")?,
            maximize: g.flag("maximize")?,
        })
    }

    fn flat(s: &RpropScalars<f64>) -> (Prelude<f64>, Vec<f64>) {
        (
            s.pre,
            vec![
                flag(s.fresh),
                s.initial,
                s.eta_minus,
                s.eta_plus,
                s.min_step,
                s.max_step,
            ],
        )
    }

    fn slots_used(_h: &RpropHyper) -> [bool; MAX_SLOTS] {
        [true, true, false]
    }

    fn scalars<T: Real>(h: &RpropHyper, _step: u64, fresh: [bool; MAX_SLOTS]) -> RpropScalars<T> {
        RpropScalars {
            pre: Prelude::new(h.maximize, h.weight_decay, false, h.lr, h.l1),
            initial: T::from_f64(h.lr),
            eta_minus: T::from_f64(h.etas.0),
            eta_plus: T::from_f64(h.etas.1),
            min_step: T::from_f64(h.step_sizes.0),
            max_step: T::from_f64(h.step_sizes.1),
            fresh: fresh[1],
        }
    }

    fn update<T: Real>(
        param: &mut [T],
        grad: &[T],
        state: [&mut [T]; MAX_SLOTS],
        s: &RpropScalars<T>,
    ) {
        let [prev, size, _] = state;
        match (s.fresh, s.pre.regularize) {
            (false, false) => simd::dispatch(
                #[inline(always)]
                || rprop::<T, false, false>(param, grad, prev, size, s),
            ),
            (false, true) => simd::dispatch(
                #[inline(always)]
                || rprop::<T, false, true>(param, grad, prev, size, s),
            ),
            (true, false) => simd::dispatch(
                #[inline(always)]
                || rprop::<T, true, false>(param, grad, prev, size, s),
            ),
            (true, true) => simd::dispatch(
                #[inline(always)]
                || rprop::<T, true, true>(param, grad, prev, size, s),
            ),
        }
    }
}

#[inline(always)]
fn rprop<T: Real, const FRESH: bool, const REGULARIZE: bool>(
    param: &mut [T],
    grad: &[T],
    prev: &mut [T],
    size: &mut [T],
    s: &RpropScalars<T>,
) {
    let n = param.len();
    let (grad, prev, size) = (&grad[..n], &mut prev[..n], &mut size[..n]);
    crate::blocked!(n; param, grad, prev, size; |i| {
        let (g, p) = s.pre.apply::<REGULARIZE>(grad[i], param[i]);
        let product = g * prev[i];
        let d = if FRESH { s.initial } else { size[i] };
        // NaN (a NaN grad) keeps the product, as torch's sign does.
        let factor = if product > T::ZERO {
            s.eta_plus
        } else if product < T::ZERO {
            s.eta_minus
        } else if product == T::ZERO {
            T::ONE
        } else {
            product
        };
        let d = d * factor;
        // torch's clamp: NaN passes through.
        let d = if d > s.max_step {
            s.max_step
        } else if d < s.min_step {
            s.min_step
        } else {
            d
        };
        size[i] = d;
        let g = if product < T::ZERO { T::ZERO } else { g };
        prev[i] = g;
        param[i] = p - g.sign() * d;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::step_slices;

    /// One element, written from torch's `_single_tensor_rprop`, in f64.
    fn reference(h: &RpropHyper, p: &mut f64, prev: &mut f64, d: &mut f64, grad: f64) {
        let mut g = if h.maximize { -grad } else { grad };
        g += h.weight_decay * *p + h.l1 * p.signum() * f64::from(*p != 0.0);
        let sign = (g * *prev).signum() * f64::from(g * *prev != 0.0);
        let factor = match sign {
            s if s > 0.0 => h.etas.1,
            s if s < 0.0 => h.etas.0,
            _ => 1.0,
        };
        *d = (*d * factor).clamp(h.step_sizes.0, h.step_sizes.1);
        if sign < 0.0 {
            g = 0.0;
        }
        *p -= g.signum() * f64::from(g != 0.0) * *d;
        *prev = g;
    }

    #[test]
    fn matches_the_reference_over_many_steps() {
        for (maximize, wd, l1, step_sizes) in [
            (false, 0.0, 0.0, (1e-6, 50.0)),
            (true, 0.1, 0.0, (1e-3, 0.05)),
            (false, 0.0, 0.01, (0.0, f64::INFINITY)),
        ] {
            let h = RpropHyper {
                lr: 0.01,
                etas: (0.4, 1.3),
                step_sizes,
                weight_decay: wd,
                l1,
                maximize,
            };
            let n = 37;
            let mut param: Vec<f64> = (0..n).map(|i| ((i * 7) % 11) as f64 - 5.0).collect();
            let mut prev = vec![0.0; n];
            let mut size = vec![0.0; n];
            let mut want = param.clone();
            let (mut want_prev, mut want_size) = (vec![0.0; n], vec![h.lr; n]);
            for step in 1..=40u64 {
                let grad: Vec<f64> = (0..n)
                    .map(|i| ((i as f64 * 1.7 + step as f64 * 0.9).sin() * 3.0).round() / 3.0)
                    .collect();
                let s = Rprop::scalars::<f64>(&h, step, [step == 1; MAX_SLOTS]);
                step_slices::<Rprop, f64>(&mut param, &grad, [&mut prev, &mut size, &mut []], &s);
                for i in 0..n {
                    reference(
                        &h,
                        &mut want[i],
                        &mut want_prev[i],
                        &mut want_size[i],
                        grad[i],
                    );
                }
                assert_eq!(param, want, "param, step {step}");
                assert_eq!(size, want_size, "step_size, step {step}");
                assert_eq!(prev, want_prev, "prev, step {step}");
            }
        }
    }

    #[test]
    fn checks_etas_and_step_sizes() {
        use crate::hyper::{Group, Value};
        let group = |etas: (f64, f64), sizes: (f64, f64)| {
            Group::default()
                .with("lr", Value::Number(0.01))
                .with("etas", Value::Pair(etas.0, etas.1))
                .with("step_sizes", Value::Pair(sizes.0, sizes.1))
                .with("weight_decay", Value::Number(0.0))
                .with("l1", Value::Number(0.0))
                .with("maximize", Value::Flag(false))
        };
        assert!(Rprop::from_group(&group((0.5, 1.2), (1e-6, 50.0))).is_ok());
        for etas in [
            (0.0, 1.2),
            (1.0, 1.2),
            (0.5, 1.0),
            (f64::NAN, 1.2),
            (0.5, f64::INFINITY),
        ] {
            let err = Rprop::from_group(&group(etas, (1e-6, 50.0))).unwrap_err();
            assert!(err.to_string().contains("etas"), "{err}");
        }
        for sizes in [(-1.0, 50.0), (2.0, 1.0), (f64::NAN, 1.0), (0.0, f64::NAN)] {
            let err = Rprop::from_group(&group((0.5, 1.2), sizes)).unwrap_err();
            assert!(err.to_string().contains("step_sizes"), "{err}");
        }
    }
}
