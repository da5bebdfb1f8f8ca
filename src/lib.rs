//! ferroptim's Python extension: converts Python objects to the core's types
//! ([`ferroptim_core`]), releases the GIL around the work, and maps the
//! core's errors to exception classes ([`error`]). No optimizer math here.

pub mod bindings;
pub mod engine;
pub mod error;
mod ndarray;
mod state;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    bindings::add_optimizers(m)?;
    m.add_class::<bindings::spans::MemorySpans>()?;
    m.add_function(wrap_pyfunction!(bindings::gradtools::grad_norm, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::gradtools::all_finite, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::gradtools::clip_grad_norm, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::gradtools::clip_grad_value, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::runtime::simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::runtime::set_simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::runtime::get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::runtime::set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::runtime::stream_add, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::lowp::register_bfloat16, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::lowp::quantize_blockwise, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::lowp::dequantize_blockwise, m)?)?;
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
