//! ferroptim: optimizer updates for NumPy arrays in Rust.
//!
//! [`kernels`] is pure Rust (no pyo3): the update rules, SIMD dispatch and
//! threading. [`engine`] and [`bindings`] are the Python boundary.

pub mod bindings;
pub mod engine;
pub mod error;
pub mod kernels;
pub mod memory;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<bindings::sgd::PySGD>()?;
    m.add_class::<bindings::adam::PyAdam>()?;
    m.add_class::<bindings::rmsprop::PyRMSprop>()?;
    m.add_class::<bindings::adagrad::PyAdagrad>()?;
    m.add_class::<bindings::adadelta::PyAdadelta>()?;
    m.add_class::<bindings::adamax::PyAdamax>()?;
    m.add_class::<bindings::nadam::PyNAdam>()?;
    m.add_class::<bindings::radam::PyRAdam>()?;
    m.add_class::<bindings::lion::PyLion>()?;
    m.add_function(wrap_pyfunction!(bindings::gradtools::grad_norm, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::gradtools::all_finite, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::gradtools::clip_grad_norm, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::gradtools::clip_grad_value, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::runtime::simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::runtime::set_simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::runtime::get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::runtime::set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::runtime::stream_add, m)?)?;
    m.add(
        "HyperparameterError",
        py.get_type::<error::HyperparameterError>(),
    )?;
    m.add("ParamError", py.get_type::<error::ParamError>())?;
    m.add("GradError", py.get_type::<error::GradError>())?;
    m.add("DtypeError", py.get_type::<error::DtypeError>())?;
    m.add("StateDictError", py.get_type::<error::StateDictError>())?;
    Ok(())
}
