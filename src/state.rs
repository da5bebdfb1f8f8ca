//! State dicts: the core's [`ParamState`] to Python dicts, and Python dicts
//! to checked [`StagedState`]s. Every rule is the core's; this file only
//! converts values and names them in errors.

use ferroptim_core::engine::{self, Buffer, Kind, ParamState, StagedState, StateKey, Values};
use ferroptim_core::kernels::{Algorithm, Real};
use ferroptim_core::{memory, Error};
use numpy::PyUntypedArrayMethods;
use numpy::{PyArray1, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList};

use crate::error::PyFerrResult;
use crate::ndarray::type_name;

/// One param's state as a dict: `{"step": n, slot: array, ...}`.
pub fn export<'py>(py: Python<'py>, state: &ParamState<'_>) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("step", state.step)?;
    for (name, value) in &state.aux {
        dict.set_item(*name, *value)?;
    }
    if let Some((averaged, values)) = state.average {
        dict.set_item(engine::AVERAGED_STEPS, averaged)?;
        dict.set_item(engine::AVERAGED, array(py, values, state.shape)?)?;
    }
    for (name, values) in &state.slots {
        dict.set_item(*name, array(py, *values, state.shape)?)?;
    }
    Ok(dict)
}

fn array<'py>(py: Python<'py>, values: Values<'_>, shape: &[usize]) -> PyResult<Bound<'py, PyAny>> {
    Ok(match values {
        Values::F32(v) => PyArray1::from_slice(py, v).reshape(shape)?.into_any(),
        Values::F64(v) => PyArray1::from_slice(py, v).reshape(shape)?.into_any(),
    })
}

/// Reads and checks param `label`'s entry of a state dict against the
/// param's dtype and shape; algorithm `A` says which keys exist.
pub fn stage<A: Algorithm>(
    numpy: &Bound<'_, PyModule>,
    entry: &Bound<'_, PyAny>,
    label: &str,
    kind: Kind,
    shape: &[usize],
) -> PyFerrResult<StagedState> {
    let dict = entry
        .cast::<PyDict>()
        .map_err(|_| Error::State(format!("state of param {label} must be a dict")))?;
    let mut staged = StagedState::default();
    for (key, value) in dict.iter() {
        let key: String = key
            .extract()
            .map_err(|_| Error::State(format!("state of param {label} has a non-string key")))?;
        let number = || {
            (!is_bool(&value))
                .then(|| value.extract::<f64>().ok())
                .flatten()
        };
        let count = || {
            if is_bool(&value) {
                return Err(Error::State(format!(
                    "{key} of param {label} must be a whole number >= 0, got a bool"
                )));
            }
            engine::count(label, &key, number())
        };
        let slot = match StateKey::parse::<A>(label, &key)? {
            StateKey::Step => {
                staged.step = count()?;
                continue;
            }
            StateKey::AveragedSteps => {
                staged.averaged = count()?;
                continue;
            }
            StateKey::Aux(k) => {
                staged.aux[k] = Some(engine::aux_value(label, &key, number())?);
                continue;
            }
            StateKey::Slot(k) => Some(k),
            StateKey::Average => None,
        };
        let what = format!("state '{key}' of param {label}");
        let arr = value.cast::<PyUntypedArray>().map_err(|_| {
            Error::State(format!(
                "{what} must be a NumPy array, got {}",
                type_name(&value)
            ))
        })?;
        engine::check_shape(&what, arr.shape(), shape)?;
        // Casting would drop an imaginary part or parse strings silently.
        if !matches!(arr.dtype().kind(), b'f' | b'i' | b'u') {
            return Err(Error::State(format!(
                "{what} must hold real numbers, got dtype {}",
                arr.dtype()
            ))
            .into());
        }
        let converted = numpy
            .getattr("ascontiguousarray")?
            .call1((arr, kind.name()))
            .map_err(|e| Error::State(format!("{what} cannot be read as numbers: {e}")))?;
        let values = match kind {
            Kind::F32 => Buffer::F32(read_all::<f32>(&converted)?),
            Kind::F64 => Buffer::F64(read_all::<f64>(&converted)?),
        };
        match slot {
            Some(k) => staged.slots[k] = Some(values),
            None => staged.average = Some(values),
        }
    }
    staged.check(label)?;
    Ok(staged)
}

/// A checked state dict without an engine, for the CUDA engine: each entry
/// read as [`stage`] does for a param of `(label, shape, dtype name)`, and
/// returned as the CPU engine's `state()` would show it after loading.
pub fn check<'py, A: Algorithm>(
    py: Python<'py>,
    states: &Bound<'py, PyList>,
    params: Vec<(String, Vec<usize>, String)>,
) -> PyFerrResult<Vec<Bound<'py, PyDict>>> {
    if states.len() != params.len() {
        return Err(Error::State(format!(
            "the state_dict has state for {} params, the optimizer has {}",
            states.len(),
            params.len()
        ))
        .into());
    }
    let numpy = py.import("numpy")?;
    let mut out = Vec::with_capacity(params.len());
    for (entry, (label, shape, dtype)) in states.iter().zip(&params) {
        let kind = match dtype.as_str() {
            "float32" => Kind::F32,
            "float64" => Kind::F64,
            _ => {
                return Err(
                    Error::Dtype(format!("param {label}: no state of dtype {dtype}")).into(),
                )
            }
        };
        let s = stage::<A>(&numpy, &entry, label, kind, shape)?;
        let state = ParamState {
            shape,
            step: s.step,
            aux: engine::aux_entries::<A>(s.step, s.aux),
            average: s.average.as_ref().map(|b| (s.averaged, b.values())),
            slots: (0..A::SLOTS.len())
                .filter_map(|k| s.slots[k].as_ref().map(|b| (A::SLOTS[k], b.values())))
                .collect(),
        };
        out.push(export(py, &state)?);
    }
    Ok(out)
}

fn read_all<T: Real + numpy::Element>(obj: &Bound<'_, PyAny>) -> PyFerrResult<Vec<T>> {
    let arr = obj.cast::<PyArrayDyn<T>>().map_err(PyErr::from)?;
    let view = arr
        .try_readonly()
        .map_err(|e| Error::State(e.to_string()))?;
    let values = view.as_slice().map_err(|e| Error::State(e.to_string()))?;
    Ok(memory::try_copy(values, "a state_dict")?)
}

/// A Python or NumPy bool: valid as a number to `float()`, never as a count.
fn is_bool(value: &Bound<'_, PyAny>) -> bool {
    value.is_instance_of::<PyBool>()
        || value
            .cast::<PyUntypedArray>()
            .map(|a| a.dtype().kind() == b'b')
            .unwrap_or(false)
        || value
            .getattr("dtype")
            .and_then(|d| d.getattr("kind"))
            .and_then(|k| k.extract::<String>())
            .is_ok_and(|k| k == "b")
}
