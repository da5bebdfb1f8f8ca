//! Pure-Rust update kernels: plain functions over slices, no Python.
//!
//! Each algorithm lives in its own file and implements [`Algorithm`]
//! (hyperparameters, state slots, per-step scalars, element update); the
//! shared pieces are [`simd`] (run-time instruction-set dispatch),
//! [`parallel`] (the thread pool) and [`multi`] (one pass over many tensors).

pub mod adadelta;
pub mod adagrad;
pub mod adam;
pub mod adamax;
pub mod asgd;
pub mod gradtools;
pub mod lion;
pub mod lowp;
pub mod mixed;
pub mod multi;
pub mod nadam;
pub mod parallel;
pub mod prelude;
pub mod radam;
pub mod real;
pub mod rmsprop;
pub mod roofline;
pub mod rprop;
pub mod sgd;
pub mod simd;

#[cfg(test)]
mod tests;

/// Every optimizer, as `"PythonName", type`: a front end declares one class
/// per entry by passing its own macro and leading arguments, as in
/// `for_each_optimizer!(my_macro!(module,))`. Adding an optimizer to the
/// library is its file, its `pub mod` line above, and one line here.
#[macro_export]
macro_rules! for_each_optimizer {
    ($callback:ident!($($args:tt)*)) => {
        $callback!($($args)* "SGD", $crate::kernels::sgd::Sgd);
        $callback!($($args)* "Adam", $crate::kernels::adam::Adam);
        $callback!($($args)* "RMSprop", $crate::kernels::rmsprop::Rmsprop);
        $callback!($($args)* "Adagrad", $crate::kernels::adagrad::Adagrad);
        $callback!($($args)* "Adadelta", $crate::kernels::adadelta::Adadelta);
        $callback!($($args)* "Adamax", $crate::kernels::adamax::Adamax);
        $callback!($($args)* "NAdam", $crate::kernels::nadam::Nadam);
        $callback!($($args)* "RAdam", $crate::kernels::radam::Radam);
        $callback!($($args)* "Lion", $crate::kernels::lion::Lion);
        $callback!($($args)* "Rprop", $crate::kernels::rprop::Rprop);
        $callback!($($args)* "ASGD", $crate::kernels::asgd::Asgd);
    };
}

pub use multi::{Job, MAX_SLOTS};

/// The most per-tensor numbers a rule carries ([`Algorithm::AUX`]).
pub const MAX_AUX: usize = 2;
/// A tensor's carried numbers, in [`Algorithm::AUX`] order (unused ones 0).
pub type Aux = [f64; MAX_AUX];
pub use real::Real;

use crate::error::Result;
use crate::hyper::HyperSource;
use prelude::Prelude;

/// One optimizer's update rule.
///
/// `Hyper` holds a param group's hyperparameters (f64, as the user gave
/// them); `Scalars<T>` holds what one tensor's step needs, computed once per
/// step in f64 and then rounded to the param's dtype.
pub trait Algorithm: Sync {
    /// State names (torch.optim's), one per slot.
    const SLOTS: &'static [&'static str];
    type Hyper: Sync;
    type Scalars<T: Real>: Copy + Send + Sync;

    /// Per-tensor numbers the rule carries from step to step besides the
    /// step count (NAdam's running product of momentum coefficients, ASGD's
    /// η and μ), at most [`MAX_AUX`]: each one's state-dict name and value
    /// before the first step.
    const AUX: &'static [(&'static str, f64)] = &[];

    /// Slots that never hold a negative value (second moments): 8-bit state
    /// codes them without a sign and never rounds a positive value to 0.
    const NON_NEGATIVE: [bool; MAX_SLOTS] = [false; MAX_SLOTS];

    /// Whether the state may be kept as bfloat16 or 8-bit codes. Not where
    /// a slot is a param-like value that needs the param's precision.
    const COMPRESSIBLE: bool = true;

    /// Why these hyperparameters cannot keep bfloat16 or 8-bit state, if
    /// they cannot (checked before a step changes anything).
    fn incompressible(_h: &Self::Hyper) -> Option<&'static str> {
        None
    }

    /// Reads and checks a param group: the one place each hyperparameter's
    /// range is stated.
    fn from_group(g: &dyn HyperSource) -> Result<Self::Hyper>;

    /// The prelude and this rule's scalars (computed in f64) in the order
    /// the CUDA kernel (`kernels.cu`) reads them.
    fn flat(s: &Self::Scalars<f64>) -> (Prelude<f64>, Vec<f64>);

    /// The slots a step with these hyperparameters reads and writes.
    fn slots_used(h: &Self::Hyper) -> [bool; MAX_SLOTS];

    /// Scalars for step number `step` (1-based, already counted); `fresh[k]`
    /// is true while slot `k` of this tensor has never been written.
    fn scalars<T: Real>(h: &Self::Hyper, step: u64, fresh: [bool; MAX_SLOTS]) -> Self::Scalars<T>;

    /// [`Algorithm::scalars`] for rules with [`Algorithm::AUX`] values:
    /// takes the values after the previous step, returns those after this.
    fn scalars_aux<T: Real>(
        h: &Self::Hyper,
        step: u64,
        fresh: [bool; MAX_SLOTS],
        aux: Aux,
    ) -> (Self::Scalars<T>, Aux) {
        (Self::scalars(h, step, fresh), aux)
    }

    /// Updates `param` and the used state slots in place, one pass over memory.
    /// All slices have `param.len()` elements except unused slots, which are empty.
    fn update<T: Real>(
        param: &mut [T],
        grad: &[T],
        state: [&mut [T]; MAX_SLOTS],
        s: &Self::Scalars<T>,
    );

    /// One block of a mixed-precision pass ([`mixed`]) whose first two slots
    /// are 8-bit codes (slot 2 unused), fused: decoding, the rule and
    /// encoding in two passes over L1 instead of six, with the same bits as
    /// the generic widen/update/narrow. Returns false when the rule has no
    /// fused form, and the generic path runs.
    #[inline(always)]
    fn update_int8(
        _param: &mut [f32],
        _grad: &[f32],
        _slots: [lowp::Int8Slot<'_>; 2],
        _random: &[u32],
        _s: &Self::Scalars<f32>,
    ) -> bool {
        false
    }

    /// [`Algorithm::update_int8`] for a block whose first two slots are
    /// bfloat16 (slot 2 unused): decoded, updated and rounded back in one
    /// loop. `stochastic`: the random bits and each slot's rotation, when the
    /// state rounds stochastically (else to nearest even).
    #[inline(always)]
    fn update_bf16(
        _param: &mut [f32],
        _grad: &[f32],
        _slots: [&mut [u16]; 2],
        _stochastic: Option<(&[u32], [u32; 2])>,
        _s: &Self::Scalars<f32>,
    ) -> bool {
        false
    }
}

/// Applies one algorithm to whole slices: the single-tensor entry point,
/// parallel over chunks when the tensor is large.
/// A rule's [`Algorithm::AUX`] values before the first step.
pub fn initial_aux<A: Algorithm>() -> Aux {
    let mut aux = [0.0; MAX_AUX];
    for (value, (_, initial)) in aux.iter_mut().zip(A::AUX) {
        *value = *initial;
    }
    aux
}

pub fn step_slices<A: Algorithm, T: Real>(
    param: &mut [T],
    grad: &[T],
    state: [&mut [T]; MAX_SLOTS],
    s: &A::Scalars<T>,
) {
    assert_eq!(grad.len(), param.len(), "grad length");
    for slot in state.iter() {
        assert!(slot.is_empty() || slot.len() == param.len(), "state length");
    }
    let [s0, s1, s2] = state;
    let mut jobs = [Job::new(param, grad, [s0, s1, s2], *s)];
    // SAFETY: the job is built from live, disjoint slices borrowed for this call.
    unsafe { multi::run::<A, T>(&mut jobs) };
}

/// A flag as the CUDA kernels read it.
fn flag(on: bool) -> f64 {
    if on {
        1.0
    } else {
        0.0
    }
}

/// One row of the CUDA kernels' scalar table for step `step` (1-based) of a
/// tensor: the prelude (grad sign, coupled L2, L1, decoupled decay), the
/// averaging weight, then the rule's own scalars; and the tensor's
/// [`Algorithm::AUX`] values after this step.
pub fn cuda_scalars<A: Algorithm>(
    h: &A::Hyper,
    step: u64,
    fresh: [bool; MAX_SLOTS],
    aux: Aux,
    average_weight: f64,
) -> (Vec<f64>, Aux) {
    let (s, aux) = A::scalars_aux::<f64>(h, step, fresh, aux);
    let (pre, rule) = A::flat(&s);
    let mut row = pre.flat().to_vec();
    row.push(average_weight);
    row.extend(rule);
    (row, aux)
}
