//! State dicts: what a param's state looks like from outside, and loading
//! one (every value checked and converted first, then one commit).

use crate::error::{Error, Result};
use crate::kernels::lowp::QBLOCK;
use crate::kernels::{initial_aux, Algorithm, Real, MAX_AUX, MAX_SLOTS};
use crate::options::StateDtype;

use super::arena::Arena;
use super::{Engine, Kind, Param};

/// State-dict key of the averaged weights.
pub const AVERAGED: &str = "averaged_param";
/// State-dict key of how many steps the averaged weights hold.
pub const AVERAGED_STEPS: &str = "n_averaged";
/// State-dict key of a 16-bit param's float32 master weights.
pub const MASTER: &str = "master_param";
/// Suffix of the key of an 8-bit slot's per-block scales (`exp_avg_absmax`).
pub const SCALES_SUFFIX: &str = "_absmax";

/// How a param's state slots are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    F32,
    F64,
    Bf16,
    Int8,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::F32 => "float32",
            Layout::F64 => "float64",
            Layout::Bf16 => "bfloat16",
            Layout::Int8 => "int8",
        }
    }
}

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
    /// An array: the float32 master weights.
    Master,
    /// An array: the per-block scales of 8-bit slot `k`.
    Scales(usize),
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
        if key == MASTER {
            return Ok(StateKey::Master);
        }
        if let Some(k) = key
            .strip_suffix(SCALES_SUFFIX)
            .and_then(|slot| A::SLOTS.iter().position(|s| *s == slot))
        {
            return Ok(StateKey::Scales(k));
        }
        if let Some(k) = A::SLOTS.iter().position(|s| *s == key) {
            return Ok(StateKey::Slot(k));
        }
        let mut known = vec!["step", AVERAGED_STEPS, AVERAGED, MASTER];
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

/// Values of one layout, owned.
#[derive(Clone, Debug, PartialEq)]
pub enum Buffer {
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bf16(Vec<u16>),
    Int8 { codes: Vec<u8>, scales: Vec<f32> },
}

impl Buffer {
    fn layout(&self) -> Layout {
        match self {
            Buffer::F32(_) => Layout::F32,
            Buffer::F64(_) => Layout::F64,
            Buffer::Bf16(_) => Layout::Bf16,
            Buffer::Int8 { .. } => Layout::Int8,
        }
    }

    /// Whether it holds `len` elements (and, for codes, their blocks' scales).
    fn fits(&self, len: usize) -> bool {
        match self {
            Buffer::F32(v) => v.len() == len,
            Buffer::F64(v) => v.len() == len,
            Buffer::Bf16(v) => v.len() == len,
            Buffer::Int8 { codes, scales } => {
                codes.len() == len && scales.len() == len.div_ceil(QBLOCK)
            }
        }
    }

    /// The values, borrowed; `signed` says how 8-bit codes read.
    pub fn values(&self, signed: bool) -> Values<'_> {
        match self {
            Buffer::F32(v) => Values::F32(v),
            Buffer::F64(v) => Values::F64(v),
            Buffer::Bf16(v) => Values::Bf16(v),
            Buffer::Int8 { codes, scales } => Values::Int8 {
                codes,
                scales,
                signed,
            },
        }
    }
}

/// Values of one layout, borrowed from the engine.
#[derive(Clone, Copy, Debug)]
pub enum Values<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
    Bf16(&'a [u16]),
    Int8 {
        codes: &'a [u8],
        scales: &'a [f32],
        signed: bool,
    },
}

/// One param's checked state, ready to commit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StagedState {
    pub step: u64,
    /// `None`: the algorithm's initial value.
    pub aux: [Option<f64>; MAX_AUX],
    pub averaged: u64,
    pub average: Option<Buffer>,
    pub master: Option<Buffer>,
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
    /// The float32 master weights of a 16-bit param, once it has stepped.
    pub master: Option<Values<'a>>,
}

impl<A: Algorithm> Engine<A> {
    /// How param `i`'s slots are stored.
    pub fn layout(&self, i: usize) -> Layout {
        layout_of(self.params[i].kind, self.arenas.f32.state)
    }

    /// Whether param `i` keeps float32 master weights.
    pub fn has_master(&self, i: usize) -> bool {
        self.params[i].kind.is_low_precision() && self.precision.master_weights
    }

    /// Each param's state, borrowed.
    pub fn state(&self) -> Vec<ParamState<'_>> {
        let (a32, a64) = (&self.arenas.f32, &self.arenas.f64);
        self.params
            .iter()
            .map(|p| {
                let range = p.offset..p.offset + p.len;
                let average = (p.averaged > 0).then(|| {
                    let v = match p.kind {
                        Kind::F64 => Values::F64(&a64.average[range.clone()]),
                        _ => Values::F32(&a32.average[range.clone()]),
                    };
                    (p.averaged, v)
                });
                let slot = |k: usize| match layout_of(p.kind, a32.state) {
                    Layout::F64 => Values::F64(&a64.slots[k][range.clone()]),
                    Layout::F32 => Values::F32(&a32.slots[k][range.clone()]),
                    Layout::Bf16 => Values::Bf16(&a32.half[k][range.clone()]),
                    Layout::Int8 => Values::Int8 {
                        codes: &a32.codes[k][range.clone()],
                        scales: &a32.scales[k]
                            [p.offset / QBLOCK..p.offset / QBLOCK + p.len.div_ceil(QBLOCK)],
                        signed: !A::NON_NEGATIVE[k],
                    },
                };
                ParamState {
                    shape: &p.shape,
                    step: p.step,
                    aux: aux_entries::<A>(p.step, p.aux.map(Some)),
                    average,
                    slots: (0..A::SLOTS.len())
                        .filter(|&k| p.live[k])
                        .map(|k| (A::SLOTS[k], slot(k)))
                        .collect(),
                    master: p
                        .master_live
                        .then(|| Values::F32(&a32.master[range.clone()])),
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
        let state_dtype = self.arenas.f32.state;
        for (i, (p, s)) in self.params.iter().zip(&staged).enumerate() {
            s.check(&p.label)?;
            let layout = layout_of(p.kind, state_dtype);
            for (k, b) in s.slots.iter().enumerate() {
                let Some(b) = b else { continue };
                if b.layout() != layout {
                    return Err(Error::State(format!(
                        "state '{}' of param {} is stored as {}, this optimizer keeps {} state \
                         (state_dtype='{}'): convert the state_dict first \
                         (ferroptim.convert_state_dict)",
                        A::SLOTS[k],
                        p.label,
                        b.layout().name(),
                        layout.name(),
                        state_dtype.name()
                    )));
                }
            }
            let average_layout = if p.kind == Kind::F64 {
                Layout::F64
            } else {
                Layout::F32
            };
            let arrays = s.slots.iter().flatten().map(|b| (b, layout));
            let extra = [(&s.average, average_layout), (&s.master, Layout::F32)];
            let extra = extra
                .into_iter()
                .filter_map(|(b, l)| b.as_ref().map(|b| (b, l)));
            if arrays
                .chain(extra)
                .any(|(b, l)| b.layout() != l || !b.fits(p.len))
            {
                return Err(Error::State(format!(
                    "state of param {}: an array does not match the param",
                    p.label
                )));
            }
            if s.master.is_some() && !self.has_master(i) {
                return Err(Error::State(format!(
                    "state of param {} has '{MASTER}', but this optimizer keeps no master \
                     weights for it (a {} param{})",
                    p.label,
                    p.kind.name(),
                    if p.kind.is_low_precision() {
                        ", master_weights=False"
                    } else {
                        ""
                    }
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
            if s.master.is_some() {
                self.arenas.f32.ensure_master()?;
            }
        }
        // Checked; now commit.
        for (p, s) in self.params.iter_mut().zip(staged) {
            p.step = s.step;
            let initial = initial_aux::<A>();
            p.aux = std::array::from_fn(|k| s.aux[k].unwrap_or(initial[k]));
            p.averaged = s.averaged;
            let range = p.offset..p.offset + p.len;
            match s.average {
                Some(Buffer::F64(v)) => self.arenas.f64.average[range.clone()].copy_from_slice(&v),
                Some(Buffer::F32(v)) => self.arenas.f32.average[range.clone()].copy_from_slice(&v),
                _ => {}
            }
            // Without a saved master copy, the next step takes it from the param.
            p.master_live = false;
            if let Some(Buffer::F32(v)) = s.master {
                self.arenas.f32.master[range.clone()].copy_from_slice(&v);
                p.master_live = true;
            }
            for (k, slot) in s.slots.into_iter().enumerate() {
                p.live[k] = slot.is_some();
                match p.kind {
                    Kind::F64 => store(&mut self.arenas.f64, k, p, slot),
                    _ => store(&mut self.arenas.f32, k, p, slot),
                }
            }
        }
        Ok(())
    }
}

/// How a param of dtype `kind` stores its slots.
fn layout_of(kind: Kind, state: StateDtype) -> Layout {
    match (kind, state) {
        (Kind::F64, _) => Layout::F64,
        (_, StateDtype::Float32) => Layout::F32,
        (_, StateDtype::Bfloat16) => Layout::Bf16,
        (_, StateDtype::Int8) => Layout::Int8,
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
            _ => unreachable!("checked against the param's layout"),
        }
    }
}

impl Unwrap<f64> for Buffer {
    fn values(self) -> Vec<f64> {
        match self {
            Buffer::F64(v) => v,
            _ => unreachable!("checked against the param's layout"),
        }
    }
}

/// Writes (or, for `None`, zeroes) slot `k` of param `p`, in the arena's layout.
fn store<T: Real>(arena: &mut Arena<T>, k: usize, p: &Param, values: Option<Buffer>)
where
    Buffer: Unwrap<T>,
{
    let range = p.offset..p.offset + p.len;
    let blocks = p.offset / QBLOCK..p.offset / QBLOCK + p.len.div_ceil(QBLOCK);
    // Allocated by `load_state` before the commit.
    match values {
        Some(Buffer::Bf16(v)) => arena.half[k][range].copy_from_slice(&v),
        Some(Buffer::Int8 { codes, scales }) => {
            arena.codes[k][range].copy_from_slice(&codes);
            arena.scales[k][blocks].copy_from_slice(&scales);
        }
        Some(v) => arena.slots[k][range].copy_from_slice(&v.values()),
        None => {
            if !arena.slots[k].is_empty() {
                arena.slots[k][range.clone()].fill(T::ZERO);
            }
            if !arena.half[k].is_empty() {
                arena.half[k][range.clone()].fill(0);
            }
            if !arena.codes[k].is_empty() {
                arena.codes[k][range].fill(0);
                arena.scales[k][blocks].fill(0.0);
            }
        }
    }
}
