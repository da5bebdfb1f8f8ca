//! Thin PyO3 wrappers: one optimizer class per algorithm, plus the runtime
//! settings. Each reads its hyperparameters from a param group dict and hands
//! everything else to [`crate::engine::Engine`].

pub mod adadelta;
pub mod adagrad;
pub mod adam;
pub mod adamax;
pub mod gradtools;
pub mod lion;
pub mod nadam;
pub mod radam;
pub mod rmsprop;
pub mod runtime;
pub mod sgd;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::{Error, Result};

/// Typed, checked reads from one param group dict.
pub struct Group<'a, 'py>(pub &'a Bound<'py, PyDict>);

impl Group<'_, '_> {
    fn get(&self, key: &str) -> Result<Bound<'_, PyAny>> {
        match self.0.get_item(key) {
            Ok(Some(v)) => Ok(v),
            _ => Err(hyper(key, "missing from the param group")),
        }
    }

    /// A finite number >= 0.
    pub fn non_negative(&self, key: &str) -> Result<f64> {
        let v = self.number(key)?;
        if v.is_finite() && v >= 0.0 {
            Ok(v)
        } else {
            Err(hyper(
                key,
                &format!("must be a finite number >= 0, got {v}"),
            ))
        }
    }

    /// A number in [0, 1].
    pub fn unit(&self, key: &str) -> Result<f64> {
        let v = self.number(key)?;
        if (0.0..=1.0).contains(&v) {
            Ok(v)
        } else {
            Err(hyper(key, &format!("must be in [0, 1], got {v}")))
        }
    }

    /// A finite number.
    pub fn finite(&self, key: &str) -> Result<f64> {
        let v = self.number(key)?;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(hyper(key, &format!("must be finite, got {v}")))
        }
    }

    pub fn flag(&self, key: &str) -> Result<bool> {
        let v = self.get(key)?;
        v.extract::<bool>()
            .map_err(|_| hyper(key, &format!("must be True or False, got {v}")))
    }

    /// The index of the group's value in `options`; `default` when the key
    /// is absent (groups saved before the option existed).
    pub fn choice(&self, key: &str, options: &[&str], default: usize) -> Result<usize> {
        let Ok(Some(v)) = self.0.get_item(key) else {
            return Ok(default);
        };
        v.extract::<String>()
            .ok()
            .and_then(|s| options.iter().position(|o| *o == s))
            .ok_or_else(|| {
                hyper(
                    key,
                    &format!("must be one of {}, got {v}", options.join(", ")),
                )
            })
    }

    /// `(beta1, beta2)`, each in [0, 1).
    pub fn betas(&self, key: &str) -> Result<(f64, f64)> {
        let v = self.get(key)?;
        // Any sequence of two numbers: a tuple, a list (after a JSON round trip), an array.
        let pair: Vec<f64> = v
            .extract()
            .ok()
            .filter(|p: &Vec<f64>| p.len() == 2)
            .ok_or_else(|| hyper(key, &format!("must be a pair of numbers, got {v}")))?;
        let (b1, b2) = (pair[0], pair[1]);
        for (i, b) in [b1, b2].into_iter().enumerate() {
            if !(0.0..1.0).contains(&b) {
                return Err(hyper(
                    key,
                    &format!("beta{} must be in [0, 1), got {b}", i + 1),
                ));
            }
        }
        Ok((b1, b2))
    }

    fn number(&self, key: &str) -> Result<f64> {
        let v = self.get(key)?;
        if v.is_instance_of::<pyo3::types::PyBool>() {
            return Err(hyper(key, "must be a number, got a bool"));
        }
        v.extract::<f64>()
            .map_err(|_| hyper(key, &format!("must be a number, got {v}")))
    }
}

/// Checks the per-optimizer options.
pub fn options(
    max_grad_norm: Option<f64>,
    norm_type: f64,
    clip_value: Option<f64>,
    skip_nonfinite: bool,
    ema_decay: Option<f64>,
    ema_equal: bool,
) -> Result<crate::engine::Options> {
    use crate::engine::{Averaging, Options};
    let positive = |name: &str, v: Option<f64>| match v {
        Some(x) if !(x.is_finite() && x > 0.0) => Err(hyper(
            name,
            &format!("must be a finite number > 0, got {x}"),
        )),
        _ => Ok(v),
    };
    let inf_norm = if norm_type == 2.0 {
        false
    } else if norm_type == f64::INFINITY {
        true
    } else {
        return Err(hyper(
            "norm_type",
            &format!("must be 2 or inf, got {norm_type}"),
        ));
    };
    let averaging = match (ema_decay, ema_equal) {
        (Some(_), true) => {
            return Err(hyper(
                "ema_decay",
                "give ema_decay or ema_equal_weights, not both",
            ))
        }
        (Some(d), false) if !(0.0..1.0).contains(&d) => {
            return Err(hyper("ema_decay", &format!("must be in [0, 1), got {d}")))
        }
        (Some(d), false) => Some(Averaging::Ema(d)),
        (None, true) => Some(Averaging::Equal),
        (None, false) => None,
    };
    Ok(Options {
        max_grad_norm: positive("max_grad_norm", max_grad_norm)?,
        inf_norm,
        clip_value: positive("clip_value", clip_value)?,
        skip_nonfinite,
        averaging,
    })
}

/// An optional numeric option: None, or a real number (not a bool or a string).
pub fn option_number(name: &str, value: Option<Bound<'_, PyAny>>) -> Result<Option<f64>> {
    let Some(v) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    if v.is_instance_of::<pyo3::types::PyBool>() {
        return Err(hyper(name, "must be a number, got a bool"));
    }
    v.extract::<f64>().map(Some).map_err(|_| {
        hyper(
            name,
            &format!(
                "must be a number, got {}",
                v.repr().map_or_else(|_| "?".into(), |r| r.to_string())
            ),
        )
    })
}

pub fn hyper(name: &str, detail: &str) -> Error {
    Error::Hyper {
        name: name.to_string(),
        detail: detail.to_string(),
    }
}

/// Declares the Python class for one algorithm: the same ten methods for all.
macro_rules! optimizer_class {
    ($py_name:ident, $exported:literal, $algorithm:ty) => {
        #[pyo3::pyclass(name = $exported, module = "ferroptim._core", frozen)]
        pub struct $py_name(crate::engine::Engine<$algorithm>);

        #[pyo3::pymethods]
        impl $py_name {
            #[new]
            fn new() -> Self {
                Self(crate::engine::Engine::new())
            }

            /// Raises HyperparameterError naming the first bad value in `group`.
            #[staticmethod]
            fn validate_group(group: &Bound<'_, PyDict>) -> PyResult<()> {
                use crate::engine::FromGroup;
                <$algorithm as crate::kernels::Algorithm>::Hyper::from_group(group)?;
                Ok(())
            }

            #[classattr]
            fn state_names() -> Vec<&'static str> {
                <$algorithm as crate::kernels::Algorithm>::SLOTS.to_vec()
            }

            #[getter]
            fn num_params(&self, py: Python<'_>) -> usize {
                self.0.num_params(py)
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
            ) -> PyResult<()> {
                Ok(self.0.add_params(py, &params, group, &labels)?)
            }

            /// One step; returns False when it was skipped (non-finite grads).
            #[pyo3(signature = (grads, groups, grad_scale = 1.0))]
            fn step(
                &self,
                py: Python<'_>,
                grads: &Bound<'_, PyAny>,
                groups: &Bound<'_, pyo3::types::PyList>,
                grad_scale: f64,
            ) -> PyResult<bool> {
                Ok(self.0.step(py, grads, groups, grad_scale)?.applied)
            }

            // Numbers arrive as objects so a bad one is reported by its option's name.
            #[allow(clippy::too_many_arguments)] // Python keyword arguments
            #[pyo3(signature = (
                                        max_grad_norm = None, norm_type = None, clip_value = None,
                                        skip_nonfinite = false, ema_decay = None, ema_equal = false
                                    ))]
            fn configure(
                &self,
                py: Python<'_>,
                max_grad_norm: Option<Bound<'_, PyAny>>,
                norm_type: Option<Bound<'_, PyAny>>,
                clip_value: Option<Bound<'_, PyAny>>,
                skip_nonfinite: bool,
                ema_decay: Option<Bound<'_, PyAny>>,
                ema_equal: bool,
            ) -> PyResult<()> {
                use super::option_number as number;
                let options = super::options(
                    number("max_grad_norm", max_grad_norm)?,
                    number("norm_type", norm_type)?.unwrap_or(2.0),
                    number("clip_value", clip_value)?,
                    skip_nonfinite,
                    number("ema_decay", ema_decay)?,
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
            ) -> PyResult<()> {
                Ok(self.0.set_frozen(py, &indices, frozen)?)
            }

            fn frozen(&self, py: Python<'_>) -> Vec<bool> {
                self.0.frozen(py)
            }

            /// Swaps params and averaged weights in place; returns how many were swapped.
            fn swap_averages(&self, py: Python<'_>) -> PyResult<usize> {
                Ok(self.0.swap_averages(py)?)
            }

            fn state<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
                self.0.state(py)
            }

            fn load_state(
                &self,
                py: Python<'_>,
                states: &Bound<'_, pyo3::types::PyList>,
            ) -> PyResult<()> {
                self.0.load_state(py, states)
            }
        }
    };
}

pub(crate) use optimizer_class;
