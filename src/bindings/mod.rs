//! Thin PyO3 wrappers: one optimizer class per algorithm, plus the runtime
//! settings. Each reads its hyperparameters from a param group dict and hands
//! everything else to [`crate::engine::Engine`].

pub mod adam;
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

    /// `(beta1, beta2)`, each in [0, 1).
    pub fn betas(&self, key: &str) -> Result<(f64, f64)> {
        let v = self.get(key)?;
        let (b1, b2): (f64, f64) = v
            .extract()
            .map_err(|_| hyper(key, &format!("must be a pair of numbers, got {v}")))?;
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

            fn step(
                &self,
                py: Python<'_>,
                grads: &Bound<'_, PyAny>,
                groups: &Bound<'_, pyo3::types::PyList>,
            ) -> PyResult<()> {
                self.0.step(py, grads, groups)
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
