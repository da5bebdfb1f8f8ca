//! The one error type of the binding layer, and its mapping to Python.

use pyo3::exceptions::{PyMemoryError, PyTypeError, PyValueError};
use pyo3::{create_exception, PyErr};

create_exception!(
    _core,
    HyperparameterError,
    PyValueError,
    "A hyperparameter is out of range, NaN, or of the wrong type."
);
create_exception!(
    _core,
    ParamError,
    PyValueError,
    "A param array cannot be optimized (read-only, not contiguous, given twice, ...)."
);
create_exception!(
    _core,
    GradError,
    PyValueError,
    "The grads do not fit the params (count, shape, shared memory)."
);
create_exception!(
    _core,
    DtypeError,
    PyTypeError,
    "An array has the wrong type or dtype."
);
create_exception!(
    _core,
    StateDictError,
    PyValueError,
    "A state_dict does not match the optimizer it is loaded into."
);

#[derive(Debug)]
pub enum Error {
    /// `name` is the hyperparameter's key, so the message can lead with it.
    Hyper {
        name: String,
        detail: String,
    },
    Param(String),
    Grad(String),
    Dtype(String),
    State(String),
    /// Plain ValueError: settings outside an optimizer (threads, SIMD level).
    Setting(String),
    /// MemoryError: an allocation failed; nothing was changed.
    Memory(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        match err {
            Error::Hyper { name, detail } => {
                HyperparameterError::new_err(format!("{name}: {detail}"))
            }
            Error::Param(m) => ParamError::new_err(m),
            Error::Grad(m) => GradError::new_err(m),
            Error::Dtype(m) => DtypeError::new_err(m),
            Error::State(m) => StateDictError::new_err(m),
            Error::Setting(m) => PyValueError::new_err(m),
            Error::Memory(m) => PyMemoryError::new_err(m),
        }
    }
}
