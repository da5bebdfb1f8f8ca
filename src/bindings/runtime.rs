//! Process-wide settings: SIMD level and thread count.

use pyo3::prelude::*;

use ferroptim_core::Error;

use crate::error::PyFerrResult;
use ferroptim_core::kernels::{parallel, simd};

/// The instruction set the kernels use: "avx512", "avx2", "sse2" or "neon".
#[pyfunction]
pub fn simd_level() -> &'static str {
    simd::level().name()
}

/// Caps the instruction set (for testing the slower paths); returns the level in use.
#[pyfunction]
pub fn set_simd_level(level: &str) -> PyFerrResult<&'static str> {
    let wanted = simd::SimdLevel::parse(level).ok_or_else(|| {
        Error::Setting(format!(
            "level: unknown SIMD level '{level}' (expected avx512, avx2, baseline)"
        ))
    })?;
    Ok(simd::set_level(wanted).name())
}

/// The number of threads the kernels run on.
#[pyfunction]
pub fn get_num_threads() -> usize {
    parallel::num_threads()
}

/// Sets the number of threads the kernels run on (at least 1).
#[pyfunction]
pub fn set_num_threads(py: Python<'_>, n: &Bound<'_, PyAny>) -> PyFerrResult<()> {
    let max = parallel::MAX_THREADS;
    // Any int (2**70 too) gets the range message; bools and floats are not counts.
    let count = (!n.is_instance_of::<pyo3::types::PyBool>())
        .then(|| n.extract::<i64>().ok())
        .flatten();
    let n = count
        .and_then(|c| usize::try_from(c).ok())
        .filter(|&n| (1..=max).contains(&n))
        .ok_or_else(|| {
            Error::Setting(format!(
                "n: the number of threads must be in 1..={max}, got {n}"
            ))
        })?;
    py.detach(|| parallel::set_num_threads(n))
        .map_err(|e| Error::Setting(format!("n: {e}")).into())
}

/// `a += b` in place on the kernels' thread pool: the bandwidth roofline
/// the benchmarks report against (reads 8 or 16 bytes, writes 4 or 8 per element).
#[pyfunction]
pub fn stream_add(
    py: Python<'_>,
    a: &Bound<'_, numpy::PyArray1<f32>>,
    b: &Bound<'_, numpy::PyArray1<f32>>,
) -> PyFerrResult<()> {
    use numpy::PyArrayMethods;
    let mut a = a
        .try_readwrite()
        .map_err(|e| Error::Setting(format!("a: {e}")))?;
    let b = b
        .try_readonly()
        .map_err(|e| Error::Setting(format!("b: {e}")))?;
    let a = a
        .as_slice_mut()
        .map_err(|e| Error::Setting(format!("a: {e}")))?;
    let b = b
        .as_slice()
        .map_err(|e| Error::Setting(format!("b: {e}")))?;
    if a.len() != b.len() {
        return Err(Error::Setting("b: length differs from a".into()).into());
    }
    py.detach(|| ferroptim_core::kernels::roofline::add_assign(a, b));
    Ok(())
}
