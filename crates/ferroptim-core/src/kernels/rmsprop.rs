//! RMSprop, plain or centered, with optional momentum (torch.optim.RMSprop).
//!
//! ```text
//! g  = ±grad + wd·p + l1·sign(p)
//! s  = α·s + (1−α)·g²
//! a  = a + (1−α)(g − a)                    (centered)
//! d  = √(s − a²) + ε   (centered)   or   √s + ε
//! b  = μ·b + g/d;  p -= lr·b               (momentum > 0)
//! p -= lr·g/d                              (otherwise)
//! ```

use super::prelude::Prelude;
use super::{flag, simd, Algorithm, Real, MAX_SLOTS};
use crate::error::Result;
use crate::hyper::HyperSource;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmspropHyper {
    pub lr: f64,
    pub alpha: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub l1: f64,
    pub momentum: f64,
    pub centered: bool,
    pub maximize: bool,
}

impl Default for RmspropHyper {
    fn default() -> Self {
        RmspropHyper {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            l1: 0.0,
            momentum: 0.0,
            centered: false,
            maximize: false,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct RmspropScalars<T> {
    pre: Prelude<T>,
    alpha: T,
    one_minus_alpha: T,
    eps: T,
    momentum: T,
    neg_lr: T,
    centered: bool,
    use_momentum: bool,
}

pub struct Rmsprop;

impl Algorithm for Rmsprop {
    const SLOTS: &'static [&'static str] = &["square_avg", "momentum_buffer", "grad_avg"];
    const NON_NEGATIVE: [bool; MAX_SLOTS] = [true, false, false];
    type Hyper = RmspropHyper;
    type Scalars<T: Real> = RmspropScalars<T>;

    fn from_group(g: &dyn HyperSource) -> Result<RmspropHyper> {
        Ok(RmspropHyper {
            lr: g.non_negative("lr")?,
            alpha: g.non_negative("alpha")?,
            eps: g.non_negative("eps")?,
            weight_decay: g.non_negative("weight_decay")?,
            l1: g.non_negative("l1")?,
            momentum: g.non_negative("momentum")?,
            centered: g.flag("centered")?,
            maximize: g.flag("maximize")?,
        })
    }

    fn flat(s: &RmspropScalars<f64>) -> (Prelude<f64>, Vec<f64>) {
        (
            s.pre,
            vec![
                flag(s.centered),
                flag(s.use_momentum),
                s.alpha,
                s.one_minus_alpha,
                s.eps,
                s.momentum,
                s.neg_lr,
            ],
        )
    }

    fn incompressible(h: &RmspropHyper) -> Option<&'static str> {
        // √(s − a²) of two rounded moving averages goes negative (NaN) where
        // the grads' mean dominates their spread.
        h.centered.then_some(
            "centered=True needs float32 state: the variance s - a² of two rounded moving \
             averages goes negative where the grads' mean dominates their spread",
        )
    }

    fn slots_used(h: &RmspropHyper) -> [bool; MAX_SLOTS] {
        [true, h.momentum > 0.0, h.centered]
    }

    fn scalars<T: Real>(
        h: &RmspropHyper,
        _step: u64,
        _fresh: [bool; MAX_SLOTS],
    ) -> RmspropScalars<T> {
        RmspropScalars {
            pre: Prelude::new(h.maximize, h.weight_decay, false, h.lr, h.l1),
            alpha: T::from_f64(h.alpha),
            one_minus_alpha: T::from_f64(1.0 - h.alpha),
            eps: T::from_f64(h.eps),
            momentum: T::from_f64(h.momentum),
            neg_lr: T::from_f64(-h.lr),
            centered: h.centered,
            use_momentum: h.momentum > 0.0,
        }
    }

    fn update<T: Real>(
        param: &mut [T],
        grad: &[T],
        state: [&mut [T]; MAX_SLOTS],
        s: &RmspropScalars<T>,
    ) {
        let [sq, buf, gavg] = state;
        macro_rules! go {
            ($c:literal, $m:literal) => {
                if s.pre.regularize {
                    simd::dispatch(
                        #[inline(always)]
                        || rmsprop::<T, $c, $m, true>(param, grad, sq, buf, gavg, s),
                    )
                } else {
                    simd::dispatch(
                        #[inline(always)]
                        || rmsprop::<T, $c, $m, false>(param, grad, sq, buf, gavg, s),
                    )
                }
            };
        }
        match (s.centered, s.use_momentum) {
            (false, false) => go!(false, false),
            (false, true) => go!(false, true),
            (true, false) => go!(true, false),
            (true, true) => go!(true, true),
        }
    }
}

#[inline(always)]
fn rmsprop<T: Real, const CENTERED: bool, const MOMENTUM: bool, const REGULARIZE: bool>(
    param: &mut [T],
    grad: &[T],
    sq: &mut [T],
    buf: &mut [T],
    gavg: &mut [T],
    s: &RmspropScalars<T>,
) {
    let n = param.len();
    let (grad, sq) = (&grad[..n], &mut sq[..n]);
    let buf = if MOMENTUM { &mut buf[..n] } else { buf };
    let gavg = if CENTERED { &mut gavg[..n] } else { gavg };
    crate::blocked!(n; param, grad, sq, buf, gavg; |i| {
        let (g, p) = s.pre.apply::<REGULARIZE>(grad[i], param[i]);
        let si = sq[i] * s.alpha + s.one_minus_alpha * g * g;
        sq[i] = si;
        let avg = if CENTERED {
            let a = gavg[i] + s.one_minus_alpha * (g - gavg[i]);
            gavg[i] = a;
            (si + -T::ONE * a * a).sqrt()
        } else {
            si.sqrt()
        } + s.eps;
        param[i] = if MOMENTUM {
            let b = buf[i] * s.momentum + g / avg;
            buf[i] = b;
            p + s.neg_lr * b
        } else {
            p + s.neg_lr * g / avg
        };
    });
}
