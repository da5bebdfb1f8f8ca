//! State dicts: what a param's state looks like from outside, and loading
//! one (every value checked and converted first, then one commit).

use crate::error::{Error, Result};
use crate::kernels::{initial_aux, Algorithm, Real, MAX_AUX, MAX_SLOTS};

use super::arena::Arena;
use super::{Engine, Kind, Param};

/// State-dict key of the averaged weights.
pub const AVERAGED: &str = "averaged_param";
/// State-dict key of how many steps the averaged weights hold.
pub const AVERAGED_STEPS: &str = "n_averaged";

/// What a state-dict key of algorithm `A` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateKey {
    Step,
    AveragedSteps,
    /// The algorithm's per-tensor number `k` ([`Algorithm::AUX`]).
    Aux(usize),
    /// An array: state slot `k`.
    Slot(usize),
    /// An array: the averaged weights.
    Average,
}

impl StateKey {
    /// Classifies `key` of param `label`'s state, or names the keys expected.
    pub fn parse<A: Algorithm>(label: &str, key: &str) -> Result<StateKey> {
        if key == "step" {
            return Ok(StateKey::Step);
        }
        if key == AVERAGED_STEPS {
            return Ok(StateKey::AveragedSteps);
        }
        if let Some(k) = A::AUX.iter().position(|a| a.0 == key) {
            return Ok(StateKey::Aux(k));
        }
        if key == AVERAGED {
            return Ok(StateKey::Average);
        }
        if let Some(k) = A::SLOTS.iter().position(|s| *s == key) {
            return Ok(StateKey::Slot(k));
        }
        let mut known = vec!["step", AVERAGED_STEPS, AVERAGED];
        known.extend(A::AUX.iter().map(|a| a.0));
        known.extend(A::SLOTS);
        Err(Error::State(format!(
            "state of param {label} has unknown key '{key}' (expected {})",
            known.join(", ")
        )))
    }
}

/// A count (`step`, `n_averaged`) read as a number: a whole number >= 0.
pub fn count(label: &str, key: &str, value: Option<f64>) -> Result<u64> {
    value
        .filter(|s| s.fract() == 0.0 && *s >= 0.0 && *s < 2f64.powi(53))
        .map(|s| s as u64)
        .ok_or_else(|| {
            Error::State(format!(
                "{key} of param {label} must be a whole number >= 0"
            ))
        })
}

/// A state's [`Algorithm::AUX`] entries: none before the first step; a value
/// not given (`None`) is the initial one; NaN (ASGD's "not carried yet") is left out.
pub fn aux_entries<A: Algorithm>(
    step: u64,
    aux: [Option<f64>; MAX_AUX],
) -> Vec<(&'static str, f64)> {
    if step == 0 {
        return Vec::new();
    }
    let initial = initial_aux::<A>();
    A::AUX
        .iter()
        .enumerate()
        .map(|(k, a)| (a.0, aux[k].unwrap_or(initial[k])))
        .filter(|(_, v)| !v.is_nan())
        .collect()
}

/// The aux value (NaN-free, finite), or `None` when it is not a number.
pub fn aux_value(label: &str, key: &str, value: Option<f64>) -> Result<f64> {
    value
        .filter(|v| v.is_finite())
        .ok_or_else(|| Error::State(format!("{key} of param {label} must be a finite number")))
}

/// An array of a param's state must have the param's shape.
pub fn check_shape(what: &str, shape: &[usize], param_shape: &[usize]) -> Result<()> {
    if shape != param_shape {
        return Err(Error::State(format!(
            "{what} has shape {shape:?}, the param has shape {param_shape:?}"
        )));
    }
    Ok(())
}

/// Values of one dtype, owned.
#[derive(Clone, Debug, PartialEq)]
pub enum Buffer {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Buffer {
    fn kind(&self) -> Kind {
        match self {
            Buffer::F32(_) => Kind::F32,
            Buffer::F64(_) => Kind::F64,
        }
    }

    fn len(&self) -> usize {
        match self {
            Buffer::F32(v) => v.len(),
            Buffer::F64(v) => v.len(),
        }
    }

    /// The values, borrowed.
    pub fn values(&self) -> Values<'_> {
        match self {
            Buffer::F32(v) => Values::F32(v),
            Buffer::F64(v) => Values::F64(v),
        }
    }
}

/// Values of one dtype, borrowed from the engine.
#[derive(Clone, Copy, Debug)]
pub enum Values<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// One param's checked state, ready to commit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StagedState {
    pub step: u64,
    /// `None`: the algorithm's initial value.
    pub aux: [Option<f64>; MAX_AUX],
    pub averaged: u64,
    pub average: Option<Buffer>,
    pub slots: [Option<Buffer>; MAX_SLOTS],
}

impl StagedState {
    /// The averaged weights and a positive count go together.
    pub fn check(&self, label: &str) -> Result<()> {
        if self.average.is_some() != (self.averaged > 0) {
            return Err(Error::State(format!(
                "state of param {label}: '{AVERAGED}' and a positive '{AVERAGED_STEPS}' go together"
            )));
        }
        Ok(())
    }
}

/// One param's state as a state dict shows it.
pub struct ParamState<'a> {
    pub shape: &'a [usize],
    pub step: u64,
    /// `(name, value)` of each [`Algorithm::AUX`] number, after the first step only.
    pub aux: Vec<(&'static str, f64)>,
    /// `(n_averaged, averaged weights)` once averaging has started.
    pub average: Option<(u64, Values<'a>)>,
    /// `(name, values)` of the slots that hold state.
    pub slots: Vec<(&'static str, Values<'a>)>,
}

impl<A: Algorithm> Engine<A> {
    /// Each param's state, borrowed.
    pub fn state(&self) -> Vec<ParamState<'_>> {
        self.params
            .iter()
            .map(|p| {
                let (a32, a64) = (&self.arenas.f32, &self.arenas.f64);
                ParamState {
                    shape: &p.shape,
                    step: p.step,
                    aux: aux_entries::<A>(p.step, p.aux.map(Some)),
                    average: (p.averaged > 0)
                        .then(|| (p.averaged, values(p, &a32.average, &a64.average))),
                    slots: (0..A::SLOTS.len())
                        .filter(|&k| p.live[k])
                        .map(|k| (A::SLOTS[k], values(p, &a32.slots[k], &a64.slots[k])))
                        .collect(),
                }
            })
            .collect()
    }

    /// A state dict holds one entry per param.
    pub fn check_state_count(&self, n: usize) -> Result<()> {
        if n != self.params.len() {
            return Err(Error::State(format!(
                "the state_dict has state for {n} params, the optimizer has {}",
                self.params.len()
            )));
        }
        Ok(())
    }

    /// Replaces all state with `staged` (one per param, each
    /// [`StagedState::check`]ed, converted to its param's dtype and shape).
    /// Allocates first: on error the optimizer keeps its old state.
    pub fn load_state(&mut self, staged: Vec<StagedState>) -> Result<()> {
        self.check_state_count(staged.len())?;
        for (p, s) in self.params.iter().zip(&staged) {
            s.check(&p.label)?;
            let buffers = s.slots.iter().chain([&s.average]).flatten();
            if buffers
                .into_iter()
                .any(|b| b.kind() != p.kind || b.len() != p.len)
            {
                return Err(Error::State(format!(
                    "state of param {}: an array does not match the param",
                    p.label
                )));
            }
        }
        // Allocate what the new state needs, so the commit below cannot fail.
        for (p, s) in self.params.iter().zip(&staged) {
            for k in (0..MAX_SLOTS).filter(|&k| s.slots[k].is_some()) {
                self.arenas.ensure(p.kind, k)?;
            }
            if s.average.is_some() {
                self.arenas.ensure_average(p.kind)?;
            }
        }
        // Checked; now commit.
        for (p, s) in self.params.iter_mut().zip(staged) {
            p.step = s.step;
            let initial = initial_aux::<A>();
            p.aux = std::array::from_fn(|k| s.aux[k].unwrap_or(initial[k]));
            p.averaged = s.averaged;
            match s.average {
                Some(Buffer::F32(v)) => store_average(&mut self.arenas.f32, p, &v),
                Some(Buffer::F64(v)) => store_average(&mut self.arenas.f64, p, &v),
                None => {}
            }
            for (k, slot) in s.slots.into_iter().enumerate() {
                p.live[k] = slot.is_some();
                match p.kind {
                    Kind::F32 => store(&mut self.arenas.f32, k, p, slot),
                    Kind::F64 => store(&mut self.arenas.f64, k, p, slot),
                }
            }
        }
        Ok(())
    }
}

/// Param `p`'s part of a buffer of its dtype.
fn values<'a>(p: &Param, f32: &'a [f32], f64: &'a [f64]) -> Values<'a> {
    let range = p.offset..p.offset + p.len;
    match p.kind {
        Kind::F32 => Values::F32(&f32[range]),
        Kind::F64 => Values::F64(&f64[range]),
    }
}

/// Values of a buffer checked to have dtype `T`.
trait Unwrap<T> {
    fn values(self) -> Vec<T>;
}

impl Unwrap<f32> for Buffer {
    fn values(self) -> Vec<f32> {
        match self {
            Buffer::F32(v) => v,
            Buffer::F64(_) => unreachable!("checked against the param's dtype"),
        }
    }
}

impl Unwrap<f64> for Buffer {
    fn values(self) -> Vec<f64> {
        match self {
            Buffer::F64(v) => v,
            Buffer::F32(_) => unreachable!("checked against the param's dtype"),
        }
    }
}

fn store<T: Real>(arena: &mut Arena<T>, k: usize, p: &Param, values: Option<Buffer>)
where
    Buffer: Unwrap<T>,
{
    let range = p.offset..p.offset + p.len;
    match values {
        // Allocated by `load_state` before the commit.
        Some(v) => arena.slots[k][range].copy_from_slice(&v.values()),
        None if !arena.slots[k].is_empty() => arena.slots[k][range].fill(T::ZERO),
        None => {}
    }
}

fn store_average<T: Real>(arena: &mut Arena<T>, p: &Param, values: &[T]) {
    // Allocated by `load_state` before the commit.
    arena.average[p.offset..p.offset + p.len].copy_from_slice(values);
}
