//! The multi-tensor engine's bookkeeping, over plain addresses.
//!
//! Params are registered by address, length and dtype ([`NewParam`]); the
//! engine checks that no two overlap, keeps their state in one arena per
//! dtype, counts their steps, and turns a step into one
//! [`kernels::multi::run`](crate::kernels::multi::run) per dtype. A front end
//! (the Python extension) reads the arrays and checks they are live and
//! writeable; everything else is decided here.

mod arena;
mod spans;
mod state;
mod step;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_lowp;

use std::marker::PhantomData;

use crate::error::{Error, Result};
use crate::kernels::lowp::Storage;
use crate::kernels::{initial_aux, Algorithm, Aux, MAX_SLOTS};
use crate::options::{Options, Precision, StateDtype};

use arena::Arenas;
pub use spans::{Span, Spans};
pub use state::{
    aux_entries, aux_value, check_shape, count, Buffer, Layout, ParamState, StagedState, StateKey,
    Values, AVERAGED, AVERAGED_STEPS, MASTER, SCALES_SUFFIX,
};

/// The dtypes the engine steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    F32,
    F64,
    /// bfloat16 and float16 params compute in float32 (their state lives
    /// in the float32 arena) and are written back rounded.
    Bf16,
    F16,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::F32 => "float32",
            Kind::F64 => "float64",
            Kind::Bf16 => "bfloat16",
            Kind::F16 => "float16",
        }
    }

    pub fn itemsize(self) -> usize {
        match self {
            Kind::F32 => 4,
            Kind::F64 => 8,
            Kind::Bf16 | Kind::F16 => 2,
        }
    }

    /// The dtype its arithmetic and state use.
    pub fn compute(self) -> Kind {
        match self {
            Kind::F64 => Kind::F64,
            _ => Kind::F32,
        }
    }

    pub fn is_low_precision(self) -> bool {
        matches!(self, Kind::Bf16 | Kind::F16)
    }

    /// How the float32 kernels read and write it (float64 is not one).
    pub fn storage(self) -> Storage {
        match self {
            Kind::Bf16 => Storage::Bf16,
            Kind::F16 => Storage::F16,
            _ => Storage::F32,
        }
    }

    /// A grad of dtype `grad` may step a param of this dtype: its own
    /// dtype, or float32 for a 16-bit param.
    pub fn accepts_grad(self, grad: Kind) -> bool {
        grad == self || (self.is_low_precision() && grad == Kind::F32)
    }
}

/// A param to register: where its elements are, and how to name it in errors.
#[derive(Clone, Debug)]
pub struct NewParam {
    pub label: String,
    pub kind: Kind,
    pub shape: Vec<usize>,
    /// The address of its first element (C-contiguous, aligned, writeable).
    pub addr: usize,
}

pub(crate) struct Param {
    pub(crate) label: String,
    pub(crate) kind: Kind,
    pub(crate) shape: Vec<usize>,
    pub(crate) len: usize,
    pub(crate) group: usize,
    /// Where this param's state starts in its dtype's arena.
    pub(crate) offset: usize,
    /// The data address when it was added.
    pub(crate) addr: usize,
    pub(crate) step: u64,
    /// Slots that hold state (torch creates some lazily).
    pub(crate) live: [bool; MAX_SLOTS],
    /// The algorithm's per-tensor numbers ([`Algorithm::AUX`]).
    pub(crate) aux: Aux,
    /// Frozen params take no step and get no state.
    pub(crate) frozen: bool,
    /// How many steps have been averaged into the averaged weights.
    pub(crate) averaged: u64,
    /// The float32 master copy (16-bit params) holds this param's values.
    pub(crate) master_live: bool,
}

/// One optimizer's params, state and options.
pub struct Engine<A> {
    params: Vec<Param>,
    num_groups: usize,
    arenas: Arenas,
    /// The params' memory, for the overlap checks.
    spans: Spans,
    options: Options,
    skipped: u64,
    last_grad_norm: Option<f64>,
    precision: Precision,
    /// 16-bit params' own values while their averaged weights are swapped
    /// in without master weights ([`Engine::swap_averages`]).
    stash: Option<Vec<u16>>,
    algorithm: PhantomData<fn() -> A>,
}

impl<A: Algorithm> Default for Engine<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Algorithm> Engine<A> {
    pub fn new() -> Self {
        Engine {
            params: Vec::new(),
            num_groups: 0,
            arenas: Arenas::new(),
            spans: Spans::default(),
            options: Options::default(),
            skipped: 0,
            last_grad_norm: None,
            precision: Precision::default(),
            stash: None,
            algorithm: PhantomData,
        }
    }

    pub fn len(&self) -> usize {
        self.params.len()
    }

    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Param `i`'s label, dtype, shape, element count and address.
    pub fn param(&self, i: usize) -> (&str, Kind, &[usize], usize, usize) {
        let p = &self.params[i];
        (&p.label, p.kind, &p.shape, p.len, p.addr)
    }

    pub fn steps(&self) -> Vec<u64> {
        self.params.iter().map(|p| p.step).collect()
    }

    pub fn options(&self) -> Options {
        self.options
    }

    pub fn configure(&mut self, options: Options) {
        self.options = options;
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Sets how params and state are stored; only before any param is added.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        if !self.params.is_empty() {
            return Err(Error::Setting(
                "state_dtype, master_weights and stochastic_rounding are set before params are added"
                    .into(),
            ));
        }
        if precision.state != StateDtype::Float32 && !A::COMPRESSIBLE {
            return Err(Error::hyper(
                "state_dtype",
                &format!(
                    "'{}' is not supported by this optimizer (its state holds values that need \
                     the params' precision); use 'float32'",
                    precision.state.name()
                ),
            ));
        }
        self.precision = precision;
        self.arenas.f32.state = precision.state;
        Ok(())
    }

    /// Steps skipped because their grads were not finite.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The global grad norm of the last step that computed one.
    pub fn last_grad_norm(&self) -> Option<f64> {
        self.last_grad_norm
    }

    /// Freezes (or thaws) params by index; all indices are checked first.
    pub fn set_frozen(&mut self, indices: &[usize], frozen: bool) -> Result<()> {
        let n = self.params.len();
        if let Some(bad) = indices.iter().find(|&&i| i >= n) {
            return Err(Error::Param(format!(
                "no param #{bad}: the optimizer has {n}"
            )));
        }
        for &i in indices {
            self.params[i].frozen = frozen;
        }
        Ok(())
    }

    pub fn frozen(&self) -> Vec<bool> {
        self.params.iter().map(|p| p.frozen).collect()
    }

    /// Whether param `i` takes no step.
    pub fn is_frozen(&self, i: usize) -> bool {
        self.params[i].frozen
    }

    /// Params that hold averaged weights.
    pub fn has_average(&self, i: usize) -> bool {
        self.params[i].averaged > 0
    }

    /// Registers params as group `group`; all or nothing. The new params
    /// may overlap neither each other nor the registered ones.
    pub fn add_params(&mut self, new: Vec<NewParam>, group: usize) -> Result<()> {
        let base = self.params.len();
        let mut ranges = Vec::new();
        let mut staged = Vec::with_capacity(new.len());
        for (k, n) in new.into_iter().enumerate() {
            let len = n.shape.iter().product();
            if n.kind == Kind::F64 && self.precision.state != StateDtype::Float32 {
                return Err(Error::Dtype(format!(
                    "param {}: state_dtype='{}' needs float32, bfloat16 or float16 params, \
                     this one is float64",
                    n.label,
                    self.precision.state.name()
                )));
            }
            if len > 0 {
                ranges.push((n.addr, n.addr + len * n.kind.itemsize(), base + k));
            }
            staged.push(Param {
                label: n.label,
                kind: n.kind,
                shape: n.shape,
                len,
                group,
                offset: 0,
                addr: n.addr,
                step: 0,
                live: [false; MAX_SLOTS],
                aux: initial_aux::<A>(),
                frozen: false,
                averaged: 0,
                master_live: false,
            });
        }
        let registered = &self.params;
        let label = |i: usize| {
            if i < base {
                registered[i].label.clone()
            } else {
                staged[i - base].label.clone()
            }
        };
        self.spans.check_new(&mut ranges, label)?;
        for kind in [Kind::F32, Kind::F64] {
            let extra = staged.iter().filter(|p| p.kind.compute() == kind);
            // Blocks of 8-bit state start on a block boundary.
            let padded = extra.map(|p| p.len + crate::kernels::lowp::QBLOCK);
            self.arenas.reserve(kind, padded.sum())?;
        }
        // Checked; now commit.
        for mut p in staged {
            p.offset = self.arenas.grow(p.kind.compute(), p.len);
            self.params.push(p);
        }
        self.spans.insert(&ranges);
        self.num_groups = self.num_groups.max(group + 1);
        Ok(())
    }

    /// Checks a step's scale and group count, before anything else of it.
    pub fn begin_step(&mut self, grad_scale: f64, num_groups: usize) -> Result<()> {
        if !(grad_scale.is_finite() && grad_scale > 0.0) {
            return Err(Error::Setting(format!(
                "grad_scale: must be a finite number > 0, got {grad_scale}"
            )));
        }
        if num_groups != self.num_groups {
            return Err(Error::Param(format!(
                "got {num_groups} param groups, the optimizer has {}",
                self.num_groups
            )));
        }
        self.refresh_spans();
        Ok(())
    }

    /// Makes the grad memory checks see every registered param (the sorted
    /// spans are rebuilt lazily, once after params were added).
    pub fn refresh_spans(&mut self) {
        self.spans.refresh();
    }

    /// One grad per param.
    pub fn check_grad_count(&self, n: usize) -> Result<()> {
        if n != self.params.len() {
            return Err(Error::Grad(format!(
                "got {n} grads for {} params",
                self.params.len()
            )));
        }
        Ok(())
    }

    /// The grad of param `i`, contiguous at `addr`, may not share memory
    /// with any param (the step writes them). `what` names it in the error.
    pub fn check_grad_memory(
        &self,
        i: usize,
        addr: usize,
        kind: Kind,
        what: impl Fn() -> String,
    ) -> Result<()> {
        let p = &self.params[i];
        let span = (addr, addr + p.len * kind.itemsize());
        self.spans
            .check_grad(i, span, what, |j| self.params[j].label.clone())
    }
}
