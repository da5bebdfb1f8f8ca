//! The Python classes: one per optimizer of the core's list
//! (`ferroptim_core::for_each_optimizer!`), all declared by [`optimizer_class!`],
//! plus the runtime settings, grad tools and overlap checks for the CUDA
//! engine. No optimizer math lives here.

pub mod gradtools;
pub mod lowp;
pub mod runtime;
pub mod spans;

use ferroptim_core::hyper::HyperSource;
use ferroptim_core::{Error, Result};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict};

/// A param group dict as the core's [`HyperSource`].
pub struct Group<'a, 'py>(pub &'a Bound<'py, PyDict>);

impl Group<'_, '_> {
    fn get(&self, key: &str) -> Result<Bound<'_, PyAny>> {
        match self.0.get_item(key) {
            Ok(Some(v)) => Ok(v),
            _ => Err(Error::hyper(key, "missing from the param group")),
        }
    }
}

impl HyperSource for Group<'_, '_> {
    fn number(&self, key: &str) -> Result<f64> {
        let v = self.get(key)?;
        if v.is_instance_of::<PyBool>() {
            return Err(Error::hyper(key, "must be a number, got a bool"));
        }
        v.extract::<f64>()
            .map_err(|_| Error::hyper(key, &format!("must be a number, got {v}")))
    }

    fn flag(&self, key: &str) -> Result<bool> {
        let v = self.get(key)?;
        v.extract::<bool>()
            .map_err(|_| Error::hyper(key, &format!("must be True or False, got {v}")))
    }

    fn pair(&self, key: &str) -> Result<(f64, f64)> {
        let v = self.get(key)?;
        // Any sequence of two numbers: a tuple, a list (after a JSON round trip), an array.
        v.extract::<Vec<f64>>()
            .ok()
            .filter(|p| p.len() == 2)
            .map(|p| (p[0], p[1]))
            .ok_or_else(|| Error::hyper(key, &format!("must be a pair of numbers, got {v}")))
    }

    fn choice(&self, key: &str, options: &[&str], default: usize) -> Result<usize> {
        let Ok(Some(v)) = self.0.get_item(key) else {
            return Ok(default);
        };
        v.extract::<String>()
            .ok()
            .and_then(|s| options.iter().position(|o| *o == s))
            .ok_or_else(|| {
                Error::hyper(
                    key,
                    &format!("must be one of {}, got {v}", options.join(", ")),
                )
            })
    }
}

/// Registers one class per optimizer of the core's list
/// ([`ferroptim_core::for_each_optimizer`]): nothing to add here for a new one.
pub fn add_optimizers(m: &Bound<'_, PyModule>) -> PyResult<()> {
    ferroptim_core::for_each_optimizer!(optimizer_class!(m,));
    Ok(())
}

/// An optional numeric option: None, or a real number (not a bool or a string).
pub fn option_number(name: &str, value: Option<Bound<'_, PyAny>>) -> Result<Option<f64>> {
    let Some(v) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    if v.is_instance_of::<PyBool>() {
        return Err(Error::hyper(name, "must be a number, got a bool"));
    }
    v.extract::<f64>().map(Some).map_err(|_| {
        Error::hyper(
            name,
            &format!(
                "must be a number, got {}",
                v.repr().map_or_else(|_| "?".into(), |r| r.to_string())
            ),
        )
    })
}

/// Declares and registers the Python class of one algorithm: the engine's
/// methods, plus static methods the CUDA engine takes its math from.
macro_rules! optimizer_class {
    ($module:expr, $exported:literal, $algorithm:ty) => {{
        use ferroptim_core::kernels::{cuda_scalars, Algorithm, MAX_AUX, MAX_SLOTS};
        use pyo3::types::{PyDict, PyList};

        use crate::bindings::Group;
        use crate::engine::Engine;
        use crate::error::PyFerrResult;

        type A = $algorithm;

        #[pyo3::pyclass(name = $exported, module = "ferroptim._core", frozen)]
        struct Class(Engine<A>);

        #[pyo3::pymethods]
        impl Class {
            #[new]
            fn new() -> Self {
                Self(Engine::new())
            }

            /// Raises HyperparameterError naming the first bad value in `group`.
            #[staticmethod]
            fn validate_group(group: &Bound<'_, PyDict>) -> PyFerrResult<()> {
                A::from_group(&Group(group))?;
                Ok(())
            }

            /// State names (torch.optim's), one per slot.
            #[classattr]
            fn state_names() -> Vec<&'static str> {
                A::SLOTS.to_vec()
            }

            /// The per-tensor numbers carried between steps, as
            /// `(state-dict name, value before the first step)` pairs.
            /// Per slot: never negative (8-bit state codes it without a sign).
            #[classattr]
            fn non_negative_slots() -> Vec<bool> {
                A::NON_NEGATIVE[..A::SLOTS.len()].to_vec()
            }

            /// Whether `state_dtype` may be "bfloat16" or "int8".
            #[classattr]
            fn compressible() -> bool {
                A::COMPRESSIBLE
            }

            /// How params and state are stored; before any param is added.
            #[pyo3(signature = (state_dtype = "float32", master_weights = true, stochastic_rounding = false, seed = 0))]
            fn set_precision(
                &self,
                py: Python<'_>,
                state_dtype: &str,
                master_weights: bool,
                stochastic_rounding: bool,
                seed: u64,
            ) -> PyFerrResult<()> {
                let precision = ferroptim_core::options::Precision {
                    state: ferroptim_core::options::StateDtype::parse(state_dtype)?,
                    master_weights,
                    stochastic_rounding,
                    seed,
                };
                Ok(self.0.set_precision(py, precision)?)
            }

            #[classattr]
            #[allow(non_snake_case)]
            fn AUX() -> Vec<(&'static str, f64)> {
                A::AUX.to_vec()
            }

            /// The slots a step with this group's hyperparameters uses.
            #[staticmethod]
            fn slots_used(group: &Bound<'_, PyDict>) -> PyFerrResult<[bool; MAX_SLOTS]> {
                Ok(A::slots_used(&A::from_group(&Group(group))?))
            }

            /// The CUDA kernel's scalar row for step `step` of one tensor
            /// and the tensor's aux values after it (see `kernels::cuda_scalars`),
            /// `aux` and the values returned one per `AUX` entry, in its order.
            #[staticmethod]
            #[pyo3(signature = (group, step, fresh, aux, average_weight = 0.0))]
            fn cuda_scalars(
                group: &Bound<'_, PyDict>,
                step: u64,
                fresh: [bool; MAX_SLOTS],
                aux: Vec<f64>,
                average_weight: f64,
            ) -> PyFerrResult<(Vec<f64>, Vec<f64>)> {
                let h = A::from_group(&Group(group))?;
                if aux.len() != A::AUX.len() {
                    return Err(Error::State(format!(
                        "cuda_scalars: got {} aux values, {} keeps {}",
                        aux.len(),
                        $exported,
                        A::AUX.len()
                    ))
                    .into());
                }
                let mut carried = [0.0; MAX_AUX];
                carried[..aux.len()].copy_from_slice(&aux);
                let (row, after) = cuda_scalars::<A>(&h, step, fresh, carried, average_weight);
                Ok((row, after[..aux.len()].to_vec()))
            }

            /// Checks the step options as `configure` does, changing nothing.
            #[staticmethod]
            #[allow(clippy::too_many_arguments)] // Python keyword arguments
            #[pyo3(signature = (max_grad_norm = None, norm_type = None, clip_value = None, skip_nonfinite = false, ema_decay = None, ema_equal = false))]
            fn check_options(
                max_grad_norm: Option<Bound<'_, PyAny>>,
                norm_type: Option<Bound<'_, PyAny>>,
                clip_value: Option<Bound<'_, PyAny>>,
                skip_nonfinite: bool,
                ema_decay: Option<Bound<'_, PyAny>>,
                ema_equal: bool,
            ) -> PyFerrResult<()> {
                crate::engine::read_options(
                    max_grad_norm,
                    norm_type,
                    clip_value,
                    skip_nonfinite,
                    ema_decay,
                    ema_equal,
                )?;
                Ok(())
            }

            /// Checks a state dict as `load_state` would for params of
            /// `(label, shape, dtype name)`; returns it as `state()` would show it.
            #[staticmethod]
            fn check_state<'py>(
                py: Python<'py>,
                states: &Bound<'py, PyList>,
                params: Vec<(String, Vec<usize>, String)>,
            ) -> PyFerrResult<Vec<Bound<'py, PyDict>>> {
                crate::state::check::<A>(py, states, params)
            }

            fn steps(&self, py: Python<'_>) -> Vec<u64> {
                self.0.steps(py)
            }

            fn add_params(
                &self,
                py: Python<'_>,
                params: Vec<Bound<'_, PyAny>>,
                group: usize,
                labels: Vec<String>,
            ) -> PyFerrResult<()> {
                Ok(self.0.add_params(py, &params, group, &labels)?)
            }

            /// Raises what `step` would raise for these grads; changes nothing.
            fn check_grads(&self, py: Python<'_>, grads: &Bound<'_, PyAny>) -> PyFerrResult<()> {
                self.0.check_grads(py, grads)
            }

            /// One step; returns False when it was skipped (non-finite grads).
            #[pyo3(signature = (grads, groups, grad_scale = 1.0))]
            fn step(
                &self,
                py: Python<'_>,
                grads: &Bound<'_, PyAny>,
                groups: &Bound<'_, PyList>,
                grad_scale: f64,
            ) -> PyFerrResult<bool> {
                self.0.step(py, grads, groups, grad_scale)
            }

            /// `step` with grads given by address, for `ferroptim.torch` only:
            /// each address must be a live, C-contiguous buffer of its param's
            /// dtype and element count (the caller checks; params are checked here).
            #[pyo3(signature = (addresses, groups, grad_scale = 1.0))]
            fn step_addresses_unchecked(
                &self,
                py: Python<'_>,
                addresses: Vec<Option<usize>>,
                groups: &Bound<'_, PyList>,
                grad_scale: f64,
            ) -> PyFerrResult<bool> {
                // SAFETY: the contract above, kept by ferroptim.torch (it
                // checks each grad's dtype, size and contiguity and holds it).
                unsafe { self.0.step_addresses(py, &addresses, groups, grad_scale) }
            }

            // Numbers arrive as objects so a bad one is reported by its option's name.
            #[allow(clippy::too_many_arguments)] // Python keyword arguments
            #[pyo3(signature = (max_grad_norm = None, norm_type = None, clip_value = None, skip_nonfinite = false, ema_decay = None, ema_equal = false))]
            fn configure(
                &self,
                py: Python<'_>,
                max_grad_norm: Option<Bound<'_, PyAny>>,
                norm_type: Option<Bound<'_, PyAny>>,
                clip_value: Option<Bound<'_, PyAny>>,
                skip_nonfinite: bool,
                ema_decay: Option<Bound<'_, PyAny>>,
                ema_equal: bool,
            ) -> PyFerrResult<()> {
                let options = crate::engine::read_options(
                    max_grad_norm,
                    norm_type,
                    clip_value,
                    skip_nonfinite,
                    ema_decay,
                    ema_equal,
                )?;
                self.0.configure(py, options);
                Ok(())
            }

            #[getter]
            fn skipped_steps(&self, py: Python<'_>) -> u64 {
                self.0.skipped(py)
            }

            #[getter]
            fn last_grad_norm(&self, py: Python<'_>) -> Option<f64> {
                self.0.last_grad_norm(py)
            }

            fn set_frozen(
                &self,
                py: Python<'_>,
                indices: Vec<usize>,
                frozen: bool,
            ) -> PyFerrResult<()> {
                Ok(self.0.set_frozen(py, &indices, frozen)?)
            }

            fn frozen(&self, py: Python<'_>) -> Vec<bool> {
                self.0.frozen(py)
            }

            /// Swaps params and averaged weights in place; returns how many were swapped.
            fn swap_averages(&self, py: Python<'_>) -> PyFerrResult<usize> {
                Ok(self.0.swap_averages(py)?)
            }

            fn state<'py>(&self, py: Python<'py>) -> PyFerrResult<Vec<Bound<'py, PyDict>>> {
                self.0.state(py)
            }

            fn load_state(&self, py: Python<'_>, states: &Bound<'_, PyList>) -> PyFerrResult<()> {
                self.0.load_state(py, states)
            }
        }

        $module.add_class::<Class>()?;
    }};
}

use optimizer_class;
