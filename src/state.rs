//! State dicts: the core's [`ParamState`] to Python dicts, and Python dicts
//! to checked [`StagedState`]s. Every rule is the core's; this file only
//! converts values and names them in errors.

use ferroptim_core::engine::{
    self, Buffer, Kind, Layout, ParamState, StagedState, StateKey, Values,
};
use ferroptim_core::kernels::lowp::QBLOCK;
use ferroptim_core::kernels::{Algorithm, MAX_SLOTS};
use ferroptim_core::{memory, Error};
use numpy::PyUntypedArrayMethods;
use numpy::{PyArray1, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList};

use crate::error::PyFerrResult;
use crate::ndarray::{kind_of, type_name};

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
        if let Values::Int8 { scales, .. } = values {
            let key = format!("{name}{}", engine::SCALES_SUFFIX);
            dict.set_item(key, PyArray1::from_slice(py, scales))?;
        }
        dict.set_item(*name, array(py, *values, state.shape)?)?;
    }
    if let Some(master) = state.master {
        dict.set_item(engine::MASTER, array(py, master, state.shape)?)?;
    }
    Ok(dict)
}

fn array<'py>(py: Python<'py>, values: Values<'_>, shape: &[usize]) -> PyResult<Bound<'py, PyAny>> {
    Ok(match values {
        Values::F32(v) => PyArray1::from_slice(py, v).reshape(shape)?.into_any(),
        Values::F64(v) => PyArray1::from_slice(py, v).reshape(shape)?.into_any(),
        Values::Bf16(v) => {
            let bits = PyArray1::from_slice(py, v).reshape(shape)?;
            let dtype = py.import("ml_dtypes")?.getattr("bfloat16")?;
            bits.call_method1("view", (dtype,))?
        }
        Values::Int8 { codes, .. } => PyArray1::from_slice(py, codes).reshape(shape)?.into_any(),
    })
}

/// Reads and checks param `label`'s entry of a state dict against the
/// param's shape and state layout; algorithm `A` says which keys exist.
/// Arrays are read as they are stored (float, bfloat16, 8-bit codes with
/// their scales); the core refuses a layout other than the optimizer's.
pub fn stage<A: Algorithm>(
    numpy: &Bound<'_, PyModule>,
    entry: &Bound<'_, PyAny>,
    label: &str,
    layout: Layout,
    shape: &[usize],
) -> PyFerrResult<StagedState> {
    let dict = entry
        .cast::<PyDict>()
        .map_err(|_| Error::State(format!("state of param {label} must be a dict")))?;
    let mut staged = StagedState::default();
    let mut codes: [Option<Vec<u8>>; MAX_SLOTS] = Default::default();
    let mut scales: [Option<Vec<f32>>; MAX_SLOTS] = Default::default();
    // Float arrays are read as the layout's float (float32 for 16-bit and 8-bit state).
    let float = if layout == Layout::F64 {
        Kind::F64
    } else {
        Kind::F32
    };
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
        let parsed = StateKey::parse::<A>(label, &key)?;
        match parsed {
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
            _ => {}
        }
        let what = format!("state '{key}' of param {label}");
        let arr = value.cast::<PyUntypedArray>().map_err(|_| {
            Error::State(format!(
                "{what} must be a NumPy array, got {}",
                type_name(&value)
            ))
        })?;
        if let StateKey::Scales(k) = parsed {
            let blocks = shape.iter().product::<usize>().div_ceil(QBLOCK);
            engine::check_shape(&what, arr.shape(), &[blocks])?;
            scales[k] = Some(read_as::<f32>(numpy, arr, &what)?);
            continue;
        }
        engine::check_shape(&what, arr.shape(), shape)?;
        let values = if kind_of(arr) == Some(Kind::Bf16) {
            let bits = arr.call_method1("view", (numpy.getattr("uint16")?,))?;
            Buffer::Bf16(read_as::<u16>(
                numpy,
                bits.cast().map_err(PyErr::from)?,
                &what,
            )?)
        } else if let (StateKey::Slot(k), true) = (
            parsed,
            dict.contains(format!("{key}{}", engine::SCALES_SUFFIX))?,
        ) {
            if arr.dtype().num() != numpy::dtype::<u8>(numpy.py()).num() {
                return Err(Error::State(format!(
                    "{what} must hold 8-bit codes (dtype uint8), got dtype {}",
                    arr.dtype()
                ))
                .into());
            }
            codes[k] = Some(read_as::<u8>(numpy, arr, &what)?);
            continue;
        } else {
            // Casting would drop an imaginary part or parse strings silently.
            if !matches!(arr.dtype().kind(), b'f' | b'i' | b'u') {
                return Err(Error::State(format!(
                    "{what} must hold real numbers, got dtype {}",
                    arr.dtype()
                ))
                .into());
            }
            match float {
                Kind::F64 => Buffer::F64(read_as::<f64>(numpy, arr, &what)?),
                _ => Buffer::F32(read_as::<f32>(numpy, arr, &what)?),
            }
        };
        match parsed {
            StateKey::Slot(k) => staged.slots[k] = Some(values),
            StateKey::Master => staged.master = Some(values),
            _ => staged.average = Some(values),
        }
    }
    for k in 0..MAX_SLOTS {
        match (codes[k].take(), scales[k].take()) {
            (Some(codes), Some(scales)) => staged.slots[k] = Some(Buffer::Int8 { codes, scales }),
            (None, None) => {}
            _ => {
                return Err(Error::State(format!(
                    "state '{}' of param {label}: 8-bit codes and their scales '{}{}' go together",
                    A::SLOTS[k],
                    A::SLOTS[k],
                    engine::SCALES_SUFFIX
                ))
                .into())
            }
        }
    }
    staged.check(label)?;
    Ok(staged)
}

/// `arr` read as a contiguous vector of `T`, cast to `T`'s dtype (a no-op
/// for the 16-bit bits and 8-bit codes, already of their dtype).
fn read_as<T: numpy::Element + Copy>(
    numpy: &Bound<'_, PyModule>,
    arr: &Bound<'_, PyUntypedArray>,
    what: &str,
) -> PyFerrResult<Vec<T>> {
    let converted = numpy
        .getattr("ascontiguousarray")?
        .call1((arr, numpy::dtype::<T>(numpy.py())))
        .map_err(|e| Error::State(format!("{what} cannot be read as numbers: {e}")))?;
    let arr = converted.cast::<PyArrayDyn<T>>().map_err(PyErr::from)?;
    let view = arr
        .try_readonly()
        .map_err(|e| Error::State(e.to_string()))?;
    let values = view.as_slice().map_err(|e| Error::State(e.to_string()))?;
    Ok(memory::try_copy(values, "a state_dict")?)
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
        let layout = match dtype.as_str() {
            "float32" => Layout::F32,
            "float64" => Layout::F64,
            _ => {
                return Err(
                    Error::Dtype(format!("param {label}: no state of dtype {dtype}")).into(),
                )
            }
        };
        let s = stage::<A>(&numpy, &entry, label, layout, shape)?;
        let state = ParamState {
            shape,
            step: s.step,
            aux: engine::aux_entries::<A>(s.step, s.aux),
            average: s.average.as_ref().map(|b| (s.averaged, b.values(true))),
            slots: (0..A::SLOTS.len())
                .filter_map(|k| s.slots[k].as_ref().map(|b| (A::SLOTS[k], b.values(true))))
                .collect(),
            master: None,
        };
        out.push(export(py, &state)?);
    }
    Ok(out)
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
