//! The core's one error type. Each variant is one kind of mistake; the
//! Python extension maps them to its exception classes in one place.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A hyperparameter or option is out of range or of the wrong type;
    /// `name` is its key, so the message can lead with it.
    Hyper { name: String, detail: String },
    /// A param cannot be optimized (read-only, not contiguous, given twice, ...).
    Param(String),
    /// The grads do not fit the params (count, shape, shared memory).
    Grad(String),
    /// An array has the wrong type or dtype.
    Dtype(String),
    /// A state dict does not match the optimizer it is loaded into.
    State(String),
    /// A setting outside an optimizer (threads, SIMD level).
    Setting(String),
    /// An allocation failed; nothing was changed.
    Memory(String),
}

impl Error {
    /// [`Error::Hyper`] from borrowed parts.
    pub fn hyper(name: &str, detail: &str) -> Error {
        Error::Hyper {
            name: name.to_string(),
            detail: detail.to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Hyper { name, detail } => write!(f, "{name}: {detail}"),
            Error::Param(m)
            | Error::Grad(m)
            | Error::Dtype(m)
            | Error::State(m)
            | Error::Setting(m)
            | Error::Memory(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
