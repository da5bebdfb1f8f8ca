//! Module functions for low-precision storage: registering NumPy's
//! bfloat16 dtype, and the 8-bit state codec for converting state dicts
//! between `state_dtype`s (`ferroptim.convert_state_dict`).

use ferroptim_core::kernels::lowp::{self, QBLOCK};
use ferroptim_core::Error;
use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;

use crate::error::PyFerrResult;

/// 8-bit codes and their per-block scales.
type Quantized<'py> = (Bound<'py, PyArray1<u8>>, Bound<'py, PyArray1<f32>>);

/// Records `ml_dtypes.bfloat16`'s NumPy type number, so arrays of it are
/// recognised as bfloat16 params and grads.
#[pyfunction]
pub fn register_bfloat16(num: i32) {
    crate::ndarray::register_bfloat16(num);
}

/// float32 values to 8-bit codes and per-block scales (blocks of 256), as
/// `state_dtype="int8"` stores a slot; rounding stochastically from `seed`.
#[pyfunction]
#[pyo3(signature = (values, signed, seed = 0))]
pub fn quantize_blockwise<'py>(
    py: Python<'py>,
    values: PyReadonlyArray1<'py, f32>,
    signed: bool,
    seed: u64,
) -> PyFerrResult<Quantized<'py>> {
    let values = values
        .as_slice()
        .map_err(|e| Error::State(format!("values: {e}")))?;
    if values.iter().any(|v| !v.is_finite()) || (!signed && values.iter().any(|&v| v < 0.0)) {
        return Err(Error::State(format!(
            "values to quantize must be finite{}",
            if signed {
                ""
            } else {
                " and >= 0 (an unsigned slot)"
            }
        ))
        .into());
    }
    let key = lowp::stream_key(seed, u64::MAX, 0, 0);
    let mut random = [0u32; QBLOCK];
    let mut codes = vec![0u8; values.len()];
    let mut scales = Vec::with_capacity(values.len().div_ceil(QBLOCK));
    let mut buf = [0f32; QBLOCK];
    for (b, (chunk, out)) in values
        .chunks(QBLOCK)
        .zip(codes.chunks_mut(QBLOCK))
        .enumerate()
    {
        let v = &mut buf[..chunk.len()];
        v.copy_from_slice(chunk);
        lowp::randoms(key, b * QBLOCK, &mut random[..chunk.len()]);
        scales.push(lowp::quantize(v, out, signed, &random[..chunk.len()], 0));
    }
    Ok((
        PyArray1::from_vec(py, codes),
        PyArray1::from_vec(py, scales),
    ))
}

/// 8-bit codes and their per-block scales back to float32 values.
#[pyfunction]
pub fn dequantize_blockwise<'py>(
    py: Python<'py>,
    codes: PyReadonlyArray1<'py, u8>,
    scales: PyReadonlyArray1<'py, f32>,
    signed: bool,
) -> PyFerrResult<Bound<'py, PyArray1<f32>>> {
    let codes = codes
        .as_slice()
        .map_err(|e| Error::State(format!("codes: {e}")))?;
    let scales = scales
        .as_slice()
        .map_err(|e| Error::State(format!("scales: {e}")))?;
    if scales.len() != codes.len().div_ceil(QBLOCK) {
        return Err(Error::State(format!(
            "{} codes need {} scales (one per {QBLOCK}), got {}",
            codes.len(),
            codes.len().div_ceil(QBLOCK),
            scales.len()
        ))
        .into());
    }
    let mut out = vec![0f32; codes.len()];
    for ((c, o), &s) in codes.chunks(QBLOCK).zip(out.chunks_mut(QBLOCK)).zip(scales) {
        lowp::dequantize(c, s, signed, o);
    }
    Ok(PyArray1::from_vec(py, out))
}
