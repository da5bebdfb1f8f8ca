//! Adam and AdamW (torch.optim.Adam / AdamW, single-tensor form).
//!
//! ```text
//! g  = ±grad                                  (maximize flips the sign)
//! g += wd·p + l1·sign(p)                      (coupled L2 and L1)
//! p *= 1 − lr·wd                              (decoupled, AdamW)
//! m  = m + (1−β1)(g − m)
//! v  = β2·v + (1−β2)·g²
//! v̂  = max(v̂, v)                              (amsgrad)
//! p -= lr/(1−β1ᵗ) · m / (√v / √(1−β2ᵗ) + ε)
//! ```

use super::lowp::{self, Int8Slot, QBLOCK};
use super::prelude::Prelude;
use super::{flag, simd, Algorithm, Real, MAX_SLOTS};
use crate::error::Result;
use crate::hyper::HyperSource;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamHyper {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub l1: f64,
    pub amsgrad: bool,
    pub maximize: bool,
    /// AdamW: weight decay multiplies the param instead of joining the grad.
    pub decoupled: bool,
}

impl Default for AdamHyper {
    fn default() -> Self {
        AdamHyper {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            l1: 0.0,
            amsgrad: false,
            maximize: false,
            decoupled: false,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct AdamScalars<T> {
    pre: Prelude<T>,
    one_minus_beta1: T,
    beta2: T,
    one_minus_beta2: T,
    neg_step_size: T,
    bias_correction2_sqrt: T,
    eps: T,
    amsgrad: bool,
}

impl<T: Real> AdamScalars<T> {
    /// The moments after one step on grad `g` (torch's lerp for the first:
    /// its weight is below 0.5).
    #[inline(always)]
    fn moments(&self, g: T, m: T, v: T) -> (T, T) {
        (
            m + self.one_minus_beta1 * (g - m),
            v * self.beta2 + self.one_minus_beta2 * g * g,
        )
    }

    /// Param `p` (after decoupled decay) moved by first moment `m` over the
    /// second moment `second` (amsgrad's running maximum, or `v`).
    #[inline(always)]
    fn moved(&self, p: T, m: T, second: T) -> T {
        let denom = second.sqrt() / self.bias_correction2_sqrt + self.eps;
        p + self.neg_step_size * m / denom
    }
}

pub struct Adam;

impl Algorithm for Adam {
    const SLOTS: &'static [&'static str] = &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"];
    const NON_NEGATIVE: [bool; MAX_SLOTS] = [false, true, true];
    type Hyper = AdamHyper;
    type Scalars<T: Real> = AdamScalars<T>;

    fn from_group(g: &dyn HyperSource) -> Result<AdamHyper> {
        let (beta1, beta2) = g.betas("betas")?;
        Ok(AdamHyper {
            lr: g.non_negative("lr")?,
            beta1,
            beta2,
            eps: g.non_negative("eps")?,
            weight_decay: g.non_negative("weight_decay")?,
            l1: g.non_negative("l1")?,
            amsgrad: g.flag("amsgrad")?,
            maximize: g.flag("maximize")?,
            decoupled: g.flag("decoupled_weight_decay")?,
        })
    }

    fn flat(s: &AdamScalars<f64>) -> (Prelude<f64>, Vec<f64>) {
        (
            s.pre,
            vec![
                flag(s.amsgrad),
                s.one_minus_beta1,
                s.beta2,
                s.one_minus_beta2,
                s.neg_step_size,
                s.bias_correction2_sqrt,
                s.eps,
            ],
        )
    }

    fn slots_used(h: &AdamHyper) -> [bool; MAX_SLOTS] {
        [true, true, h.amsgrad]
    }

    fn scalars<T: Real>(h: &AdamHyper, step: u64, _fresh: [bool; MAX_SLOTS]) -> AdamScalars<T> {
        let t = step as f64;
        let bias_correction1 = 1.0 - h.beta1.powf(t);
        let bias_correction2 = 1.0 - h.beta2.powf(t);
        AdamScalars {
            pre: Prelude::new(h.maximize, h.weight_decay, h.decoupled, h.lr, h.l1),
            one_minus_beta1: T::from_f64(1.0 - h.beta1),
            beta2: T::from_f64(h.beta2),
            one_minus_beta2: T::from_f64(1.0 - h.beta2),
            neg_step_size: T::from_f64(-(h.lr / bias_correction1)),
            bias_correction2_sqrt: T::from_f64(bias_correction2.sqrt()),
            eps: T::from_f64(h.eps),
            amsgrad: h.amsgrad,
        }
    }

    fn update<T: Real>(
        param: &mut [T],
        grad: &[T],
        state: [&mut [T]; MAX_SLOTS],
        s: &AdamScalars<T>,
    ) {
        let [m, v, vmax] = state;
        match (s.amsgrad, s.pre.regularize) {
            (false, false) => simd::dispatch(
                #[inline(always)]
                || adam::<T, false, false>(param, grad, m, v, vmax, s),
            ),
            (false, true) => simd::dispatch(
                #[inline(always)]
                || adam::<T, false, true>(param, grad, m, v, vmax, s),
            ),
            (true, false) => simd::dispatch(
                #[inline(always)]
                || adam::<T, true, false>(param, grad, m, v, vmax, s),
            ),
            (true, true) => simd::dispatch(
                #[inline(always)]
                || adam::<T, true, true>(param, grad, m, v, vmax, s),
            ),
        }
    }

    #[inline(always)]
    fn update_int8(
        param: &mut [f32],
        grad: &[f32],
        slots: [Int8Slot<'_>; 2],
        random: &[u32],
        s: &AdamScalars<f32>,
    ) -> bool {
        if s.amsgrad {
            return false;
        }
        // Called inside the mixed pass's dispatched body: vectorized for it.
        if s.pre.regularize {
            adam_int8::<true>(param, grad, slots, random, s);
        } else {
            adam_int8::<false>(param, grad, slots, random, s);
        }
        true
    }

    #[inline(always)]
    fn update_bf16(
        param: &mut [f32],
        grad: &[f32],
        slots: [&mut [u16]; 2],
        stochastic: Option<(&[u32], [u32; 2])>,
        s: &AdamScalars<f32>,
    ) -> bool {
        if s.amsgrad {
            return false;
        }
        let (random, rotate) = stochastic.unwrap_or((&[], [0, 0]));
        match (s.pre.regularize, stochastic.is_some()) {
            (false, false) => adam_bf16::<false, false>(param, grad, slots, random, rotate, s),
            (false, true) => adam_bf16::<false, true>(param, grad, slots, random, rotate, s),
            (true, false) => adam_bf16::<true, false>(param, grad, slots, random, rotate, s),
            (true, true) => adam_bf16::<true, true>(param, grad, slots, random, rotate, s),
        }
        true
    }
}

/// [`adam`] on one block of bfloat16 moments, rounded back in the same loop.
#[inline(always)]
fn adam_bf16<const REGULARIZE: bool, const STOCHASTIC: bool>(
    param: &mut [f32],
    grad: &[f32],
    slots: [&mut [u16]; 2],
    random: &[u32],
    rotate: [u32; 2],
    s: &AdamScalars<f32>,
) {
    let [m, v] = slots;
    let n = param.len();
    let (grad, m, v) = (&grad[..n], &mut m[..n], &mut v[..n]);
    let random = if STOCHASTIC { &random[..n] } else { random };
    for i in 0..n {
        let (m_old, v_old) = (lowp::bf16_to_f32(m[i]), lowp::bf16_to_f32(v[i]));
        let (g, p) = s.pre.apply::<REGULARIZE>(grad[i], param[i]);
        let (mi, vi) = s.moments(g, m_old, v_old);
        param[i] = s.moved(p, mi, vi);
        if STOCHASTIC {
            m[i] = lowp::f32_to_bf16_stochastic(mi, random[i].rotate_left(rotate[0]));
            v[i] = lowp::f32_to_bf16_stochastic(vi, random[i].rotate_left(rotate[1]));
        } else {
            m[i] = lowp::f32_to_bf16(mi);
            v[i] = lowp::f32_to_bf16(vi);
        }
    }
}

/// [`adam`] on one block of 8-bit moments: the codes are decoded and the
/// moments' largest magnitudes tracked in the rule's own loop, then both
/// slots are encoded (the same operations as the generic widen/update/narrow,
/// so the same bits).
#[inline(always)]
fn adam_int8<const REGULARIZE: bool>(
    param: &mut [f32],
    grad: &[f32],
    slots: [Int8Slot<'_>; 2],
    random: &[u32],
    s: &AdamScalars<f32>,
) {
    let [m, v] = slots;
    let n = param.len().min(QBLOCK);
    let (param, grad) = (&mut param[..n], &grad[..n]);
    let (m_codes, v_codes) = (&m.codes[..n], &v.codes[..n]);
    let (m_scale, v_scale) = (*m.scale, *v.scale);
    let (m_new, v_new) = (&mut m.values[..n], &mut v.values[..n]);
    let (mut m_top, mut v_top) = (0u32, 0u32);
    for i in 0..n {
        let m_old = lowp::decode(m_codes[i], true) * m_scale;
        let v_old = lowp::decode(v_codes[i], false) * v_scale;
        let (g, p) = s.pre.apply::<REGULARIZE>(grad[i], param[i]);
        let (mi, vi) = s.moments(g, m_old, v_old);
        m_new[i] = mi;
        v_new[i] = vi;
        m_top = m_top.max(lowp::magnitude_bits(mi));
        v_top = v_top.max(lowp::magnitude_bits(vi));
        param[i] = s.moved(p, mi, vi);
    }
    *m.scale = lowp::encode_block(m_new, m_top, m.codes, true, random, m.rotate);
    *v.scale = lowp::encode_block(v_new, v_top, v.codes, false, random, v.rotate);
}

#[inline(always)]
fn adam<T: Real, const AMSGRAD: bool, const REGULARIZE: bool>(
    param: &mut [T],
    grad: &[T],
    m: &mut [T],
    v: &mut [T],
    vmax: &mut [T],
    s: &AdamScalars<T>,
) {
    let n = param.len();
    let (grad, m, v) = (&grad[..n], &mut m[..n], &mut v[..n]);
    let vmax = if AMSGRAD { &mut vmax[..n] } else { vmax };
    crate::blocked!(n; param, grad, m, v, vmax; |i| {
        let (g, p) = s.pre.apply::<REGULARIZE>(grad[i], param[i]);
        let (mi, vi) = s.moments(g, m[i], v[i]);
        m[i] = mi;
        v[i] = vi;
        let second = if AMSGRAD {
            let hi = vmax[i].max_val(vi);
            vmax[i] = hi;
            hi
        } else {
            vi
        };
        param[i] = s.moved(p, mi, second);
    });
}
