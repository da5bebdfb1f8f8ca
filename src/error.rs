//! The one place core errors become Python exceptions.
//!
//! The orphan rule forbids `From<ferroptim_core::Error> for PyErr` here, so
//! binding code returns [`PyFerrError`], which `?` fills from either side.

use ferroptim_core::Error;
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

/// A core error, or a Python exception raised while converting.
#[derive(Debug)]
pub enum PyFerrError {
    Core(Error),
    Py(PyErr),
}

pub type PyFerrResult<T> = std::result::Result<T, PyFerrError>;

impl From<Error> for PyFerrError {
    fn from(err: Error) -> Self {
        PyFerrError::Core(err)
    }
}

impl From<PyErr> for PyFerrError {
    fn from(err: PyErr) -> Self {
        PyFerrError::Py(err)
    }
}

impl From<PyFerrError> for PyErr {
    fn from(err: PyFerrError) -> PyErr {
        let err = match err {
            PyFerrError::Py(e) => return e,
            PyFerrError::Core(e) => e,
        };
        let message = err.to_string();
        match err {
            Error::Hyper { .. } => HyperparameterError::new_err(message),
            Error::Param(_) => ParamError::new_err(message),
            Error::Grad(_) => GradError::new_err(message),
            Error::Dtype(_) => DtypeError::new_err(message),
            Error::State(_) => StateDictError::new_err(message),
            Error::Setting(_) => PyValueError::new_err(message),
            Error::Memory(_) => PyMemoryError::new_err(message),
        }
    }
}
