//! The Python side of the engine: reads NumPy arrays into the core's
//! [`ferroptim_core::engine::Engine`], holds the arrays alive, and releases
//! the GIL around the work. The bookkeeping and every rule are the core's.

use std::sync::{Mutex, MutexGuard, TryLockError};

use ferroptim_core::engine::{self as core, Kind, NewParam};
use ferroptim_core::kernels::Algorithm;
use ferroptim_core::options::{Options, Precision};
use ferroptim_core::{Error, Result};
use numpy::{PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::bindings::{option_number, Group};
use crate::error::PyFerrResult;
use crate::ndarray::{
    as_array, contiguous_copy, header, kind_of, type_name, IS_ALIGNED, IS_C_CONTIGUOUS,
    IS_WRITEABLE,
};
use crate::state;

/// Step options from `configure`'s Python arguments, checked by the core.
pub fn read_options(
    max_grad_norm: Option<Bound<'_, PyAny>>,
    norm_type: Option<Bound<'_, PyAny>>,
    clip_value: Option<Bound<'_, PyAny>>,
    skip_nonfinite: bool,
    ema_decay: Option<Bound<'_, PyAny>>,
    ema_equal: bool,
) -> Result<Options> {
    Options::new(
        option_number("max_grad_norm", max_grad_norm)?,
        option_number("norm_type", norm_type)?.unwrap_or(2.0),
        option_number("clip_value", clip_value)?,
        skip_nonfinite,
        option_number("ema_decay", ema_decay)?,
        ema_equal,
    )
}

struct Inner<A> {
    core: core::Engine<A>,
    /// The param arrays, by index: kept alive, and re-read before each use.
    arrays: Vec<Py<PyUntypedArray>>,
}

pub struct Engine<A> {
    inner: Mutex<Inner<A>>,
}

impl<A: Algorithm> Default for Engine<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Algorithm> Inner<A> {
    /// Param `i` is still the array it was when added, and writeable.
    fn check_param(&self, py: Python<'_>, i: usize) -> Result<()> {
        let (label, kind, _, len, addr) = self.core.param(i);
        let param = self.arrays[i].bind(py);
        let (now, fl) = header(param);
        if now != addr || param.len() != len {
            return Err(Error::Param(format!(
                "param {label} was resized or reallocated after it was added"
            )));
        }
        if fl & IS_WRITEABLE == 0 {
            return Err(Error::Param(format!("param {label} is read-only")));
        }
        if kind_of(param) != Some(kind) {
            return Err(Error::Param(format!(
                "param {label} changed dtype to {} after it was added",
                param.dtype()
            )));
        }
        Ok(())
    }

    /// Checks the grad of param `i` and returns the address to read it
    /// from. Messages are only formatted on failure: this runs per tensor.
    /// Checks every grad (and that no param changed under us) before any
    /// work; the address to read each stepping param's grad from.
    fn check_grads<'py>(
        &self,
        py: Python<'py>,
        grads: &[Bound<'py, PyAny>],
        copies: &mut Vec<Bound<'py, PyAny>>,
    ) -> Result<Vec<Option<(usize, Kind)>>> {
        self.core.check_grad_count(grads.len())?;
        let mut ready = Vec::with_capacity(grads.len());
        for (i, g) in grads.iter().enumerate() {
            ready.push(if g.is_none() {
                None
            } else if self.core.is_frozen(i) {
                self.check_grad_fits(i, g)?;
                None
            } else {
                Some(self.check_grad(py, i, g, copies)?)
            });
        }
        Ok(ready)
    }

    /// The grad is an array of its param's dtype (or float32 for a 16-bit
    /// param) and shape. Frozen params' grads are checked this far too, so
    /// freezing never hides a wrong grad.
    fn check_grad_fits<'a, 'py>(
        &self,
        i: usize,
        g: &'a Bound<'py, PyAny>,
    ) -> Result<(&'a Bound<'py, PyUntypedArray>, Kind)> {
        let (label, kind, shape, _, _) = self.core.param(i);
        let what = || format!("grad for param {label}");
        let arr = as_array(g, what)?;
        let grad_kind = match kind_of(arr) {
            Some(k) if kind.accepts_grad(k) => k,
            _ => {
                let allowed = if kind.is_low_precision() {
                    format!("{} (or float32)", kind.name())
                } else {
                    kind.name().to_string()
                };
                return Err(Error::Dtype(format!(
                    "{} has dtype {}, the param has {allowed}",
                    what(),
                    arr.dtype(),
                )));
            }
        };
        if arr.shape() != shape {
            return Err(Error::Grad(format!(
                "{} has shape {:?}, the param has shape {shape:?}",
                what(),
                arr.shape(),
            )));
        }
        Ok((arr, grad_kind))
    }

    fn check_grad<'py>(
        &self,
        py: Python<'py>,
        i: usize,
        g: &Bound<'py, PyAny>,
        copies: &mut Vec<Bound<'py, PyAny>>,
    ) -> Result<(usize, Kind)> {
        self.check_param(py, i)?;
        let (arr, grad_kind) = self.check_grad_fits(i, g)?;
        let label = self.core.param(i).0;
        let what = || format!("grad for param {label}");
        let (gaddr, gfl) = header(arr);
        if gfl & IS_C_CONTIGUOUS != 0 && gfl & IS_ALIGNED != 0 {
            self.core.check_grad_memory(i, gaddr, grad_kind, what)?;
            Ok((gaddr, grad_kind))
        } else {
            // Strided or Fortran-ordered: read it in index order from a copy.
            let copy = contiguous_copy(arr).map_err(|e| Error::Grad(format!("{}: {e}", what())))?;
            let addr = header(
                copy.cast::<PyUntypedArray>()
                    .map_err(|_| Error::Grad(format!("{}: copy is not an array", what())))?,
            )
            .0;
            copies.push(copy);
            Ok((addr, grad_kind))
        }
    }
}

impl<A: Algorithm> Engine<A> {
    pub fn new() -> Self {
        Engine {
            inner: Mutex::new(Inner {
                core: core::Engine::new(),
                arrays: Vec::new(),
            }),
        }
    }

    /// Two Python threads stepping one optimizer take turns: the waiting
    /// one releases the GIL so the running step can finish.
    fn lock(&self, py: Python<'_>) -> MutexGuard<'_, Inner<A>> {
        loop {
            match self.inner.try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => py.detach(std::thread::yield_now),
            }
        }
    }

    pub fn steps(&self, py: Python<'_>) -> Vec<u64> {
        self.lock(py).core.steps()
    }

    pub fn configure(&self, py: Python<'_>, options: Options) {
        self.lock(py).core.configure(options);
    }

    pub fn set_precision(&self, py: Python<'_>, precision: Precision) -> Result<()> {
        self.lock(py).core.set_precision(precision)
    }

    pub fn precision(&self, py: Python<'_>) -> Precision {
        self.lock(py).core.precision()
    }

    pub fn set_frozen(&self, py: Python<'_>, indices: &[usize], frozen: bool) -> Result<()> {
        self.lock(py).core.set_frozen(indices, frozen)
    }

    pub fn frozen(&self, py: Python<'_>) -> Vec<bool> {
        self.lock(py).core.frozen()
    }

    pub fn skipped(&self, py: Python<'_>) -> u64 {
        self.lock(py).core.skipped()
    }

    pub fn last_grad_norm(&self, py: Python<'_>) -> Option<f64> {
        self.lock(py).core.last_grad_norm()
    }

    /// Swaps params and their averaged weights in place (see the core).
    pub fn swap_averages(&self, py: Python<'_>) -> Result<usize> {
        let mut inner = self.lock(py);
        for i in (0..inner.core.len()).filter(|&i| inner.core.has_average(i)) {
            inner.check_param(py, i)?;
        }
        // SAFETY: every param with an average was just checked to be live,
        // writeable and where it was added; the GIL is held throughout.
        unsafe { inner.core.swap_averages() }
    }

    /// Registers params as group `group`; all or nothing.
    pub fn add_params(
        &self,
        py: Python<'_>,
        params: &[Bound<'_, PyAny>],
        group: usize,
        labels: &[String],
    ) -> Result<()> {
        if labels.len() != params.len() {
            return Err(Error::Param(format!(
                "got {} labels for {} params",
                labels.len(),
                params.len()
            )));
        }
        let mut inner = self.lock(py);
        let mut new = Vec::with_capacity(params.len());
        let mut arrays = Vec::with_capacity(params.len());
        for (obj, label) in params.iter().zip(labels) {
            let what = format!("param {label}");
            let arr = as_array(obj, || what.clone())?;
            let kind = kind_of(arr).ok_or_else(|| {
                Error::Dtype(format!(
                    "{what} must have dtype float32, float64, float16 or bfloat16 (native byte \
                     order; bfloat16 is ml_dtypes.bfloat16), got {}",
                    arr.dtype()
                ))
            })?;
            let (addr, fl) = header(arr);
            if fl & IS_WRITEABLE == 0 {
                return Err(Error::Param(format!("{what} is read-only")));
            }
            if fl & IS_C_CONTIGUOUS == 0 {
                return Err(Error::Param(format!(
                    "{what} is not C-contiguous: it is updated in place, so pass a contiguous \
                     array (np.ascontiguousarray makes a copy that you would then train)"
                )));
            }
            if fl & IS_ALIGNED == 0 {
                return Err(Error::Param(format!("{what} is not aligned in memory")));
            }
            new.push(NewParam {
                label: label.clone(),
                kind,
                shape: arr.shape().to_vec(),
                addr,
            });
            arrays.push(arr.clone().unbind());
        }
        inner.core.add_params(new, group)?;
        inner.arrays.extend(arrays);
        Ok(())
    }

    /// The checks of a step's grads, without the step (for the calls that
    /// only accumulate): raises what `step` would raise for these grads.
    pub fn check_grads(&self, py: Python<'_>, grads: &Bound<'_, PyAny>) -> PyFerrResult<()> {
        let mut inner = self.lock(py);
        inner.core.refresh_spans();
        let grads = grad_list(grads)?;
        inner.check_grads(py, &grads, &mut Vec::new())?;
        Ok(())
    }

    /// One step over all params whose grad is not None; false when skipped.
    pub fn step(
        &self,
        py: Python<'_>,
        grads: &Bound<'_, PyAny>,
        groups: &Bound<'_, PyList>,
        grad_scale: f64,
    ) -> PyFerrResult<bool> {
        let mut inner = self.lock(py);
        let inner = &mut *inner;
        inner.core.begin_step(grad_scale, groups.len())?;
        let hypers = hypers::<A>(groups)?;
        let grads = grad_list(grads)?;
        let mut copies = Vec::new();
        let ready = inner.check_grads(py, &grads, &mut copies)?;
        let core = &mut inner.core;
        // SAFETY: every param was checked live and writeable at its address
        // and every grad address checked (dtype, shape, contiguous, no shared
        // memory with a param); `inner.arrays`, `grads` and `copies` keep
        // them alive, and the engine's lock keeps other steps out. Python code
        // could still resize an array from another thread while the GIL is
        // released: as with any NumPy C extension, that is the caller's race.
        let applied = py.detach(|| unsafe { core.step(&hypers, &ready, grad_scale) })?;
        drop(copies);
        Ok(applied)
    }

    /// [`Engine::step`] with each grad given by address (`None`: no grad),
    /// for front ends whose tensors NumPy cannot view cheaply (torch: a
    /// `data_ptr()` costs 60 ns, a NumPy view 1 µs).
    ///
    /// # Safety
    /// Each address must be the first element of a live, C-contiguous,
    /// aligned buffer of its param's dtype and element count that nothing
    /// writes during the call. Params and the memory overlap with them are
    /// still checked here.
    pub unsafe fn step_addresses(
        &self,
        py: Python<'_>,
        grads: &[Option<usize>],
        groups: &Bound<'_, PyList>,
        grad_scale: f64,
    ) -> PyFerrResult<bool> {
        let mut inner = self.lock(py);
        let inner = &mut *inner;
        inner.core.begin_step(grad_scale, groups.len())?;
        let hypers = hypers::<A>(groups)?;
        inner.core.check_grad_count(grads.len())?;
        let mut ready = Vec::with_capacity(grads.len());
        for (i, g) in grads.iter().enumerate() {
            let Some(addr) = *g else {
                ready.push(None);
                continue;
            };
            if inner.core.is_frozen(i) {
                ready.push(None);
                continue;
            }
            inner.check_param(py, i)?;
            let (label, kind, _, _, _) = inner.core.param(i);
            inner
                .core
                .check_grad_memory(i, addr, kind, || format!("grad for param {label}"))?;
            ready.push(Some((addr, kind)));
        }
        let core = &mut inner.core;
        // SAFETY: params checked above; grads vouched for by the caller.
        let applied = py.detach(|| unsafe { core.step(&hypers, &ready, grad_scale) })?;
        Ok(applied)
    }

    /// Each param's state as fresh arrays: `{"step": n, slot: array, ...}`.
    pub fn state<'py>(&self, py: Python<'py>) -> PyFerrResult<Vec<Bound<'py, PyDict>>> {
        let inner = self.lock(py);
        let states = inner.core.state();
        Ok(states
            .iter()
            .map(|s| state::export(py, s))
            .collect::<PyResult<_>>()?)
    }

    /// Replaces all state from a list like [`Engine::state`] returns. Checks
    /// everything first: on error the optimizer keeps its old state.
    pub fn load_state(&self, py: Python<'_>, states: &Bound<'_, PyList>) -> PyFerrResult<()> {
        let mut inner = self.lock(py);
        inner.core.check_state_count(states.len())?;
        let numpy = py.import("numpy")?;
        let staged = states
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let (label, _, shape, _, _) = inner.core.param(i);
                let layout = inner.core.layout(i);
                state::stage::<A>(&numpy, &entry, label, layout, shape)
            })
            .collect::<PyFerrResult<Vec<_>>>()?;
        Ok(inner.core.load_state(staged)?)
    }
}

/// Every group's hyperparameters, checked.
fn hypers<A: Algorithm>(groups: &Bound<'_, PyList>) -> Result<Vec<A::Hyper>> {
    groups
        .iter()
        .map(|g| {
            let dict = g.cast::<PyDict>().map_err(|_| {
                Error::Dtype(format!(
                    "a param group must be a dict, got {}",
                    type_name(&g)
                ))
            })?;
            A::from_group(&Group(dict))
        })
        .collect()
}

fn grad_list<'py>(grads: &Bound<'py, PyAny>) -> PyFerrResult<Vec<Bound<'py, PyAny>>> {
    let items = grads.try_iter().map_err(|_| {
        Error::Dtype(format!(
            "grads must be a list of arrays, got {}",
            type_name(grads)
        ))
    })?;
    Ok(items.collect::<PyResult<Vec<_>>>()?)
}
