//! Process-wide settings: SIMD level and thread count.

use pyo3::prelude::*;

use crate::error::Error;
use crate::kernels::{parallel, simd};

/// The instruction set the kernels use: "avx512", "avx2", "sse2" or "neon".
#[pyfunction]
pub fn simd_level() -> &'static str {
    simd::level().name()
}

/// Caps the instruction set (for testing the slower paths); returns the level in use.
#[pyfunction]
pub fn set_simd_level(level: &str) -> PyResult<&'static str> {
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
pub fn set_num_threads(py: Python<'_>, n: i64) -> PyResult<()> {
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| Error::Setting(format!("n: the number of threads must be >= 1, got {n}")))?;
    py.detach(|| parallel::set_num_threads(n))
        .map_err(|e| Error::Setting(format!("n: {e}")).into())
}
