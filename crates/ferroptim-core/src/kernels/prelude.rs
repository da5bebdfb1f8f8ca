//! The first lines of every update rule: the grad's sign (maximize), the L2
//! and L1 terms joined to the grad, and decoupled weight decay of the param.

use super::Real;

#[derive(Clone, Copy, Debug)]
pub struct Prelude<T> {
    grad_sign: T,
    coupled_wd: T,
    l1: T,
    /// 1 − lr·wd with decoupled decay, exactly 1 otherwise.
    decay: T,
    /// False when both added terms are zero, so rules can skip them.
    pub regularize: bool,
}

impl<T: Real> Prelude<T> {
    /// `weight_decay` joins the grad as `wd·p` (torch's coupled L2) unless
    /// `decoupled`, where the param is scaled by `1 − lr·wd` instead;
    /// `l1·sign(p)` always joins the grad, after the sign flip.
    pub fn new(maximize: bool, weight_decay: f64, decoupled: bool, lr: f64, l1: f64) -> Self {
        let decoupled = decoupled && weight_decay != 0.0;
        let coupled = if decoupled { 0.0 } else { weight_decay };
        Prelude {
            grad_sign: T::from_f64(if maximize { -1.0 } else { 1.0 }),
            coupled_wd: T::from_f64(coupled),
            l1: T::from_f64(l1),
            decay: T::from_f64(if decoupled {
                1.0 - lr * weight_decay
            } else {
                1.0
            }),
            regularize: coupled != 0.0 || l1 != 0.0,
        }
    }

    /// Grad sign, coupled L2, L1 and decoupled decay: the first four
    /// scalars of every CUDA rule (`kernels.cu`, `Prelude`).
    pub fn flat(&self) -> [T; 4] {
        [self.grad_sign, self.coupled_wd, self.l1, self.decay]
    }

    /// `(grad the rule uses, param after decoupled decay)`.
    #[inline(always)]
    pub fn apply<const REGULARIZE: bool>(&self, grad: T, param: T) -> (T, T) {
        let mut g = grad * self.grad_sign;
        if REGULARIZE {
            g = g + self.coupled_wd * param + self.l1 * param.sign();
        }
        (g, param * self.decay)
    }
}
