//! Gradient tools over a list of arrays: global norm, clipping, finite check.
//! One call into Rust for all tensors, deterministic for any thread count.

use numpy::{PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyReadwriteArrayDyn};
use pyo3::prelude::*;

use crate::error::{Error, Result};
use crate::kernels::gradtools;

/// Read-only views, split by dtype.
struct Views<'py> {
    f32: Vec<PyReadonlyArrayDyn<'py, f32>>,
    f64: Vec<PyReadonlyArrayDyn<'py, f64>>,
}

/// Writable views, split by dtype, with each one's position in the input.
struct ViewsMut<'py> {
    f32: Vec<(usize, PyReadwriteArrayDyn<'py, f32>)>,
    f64: Vec<(usize, PyReadwriteArrayDyn<'py, f64>)>,
}

fn not_float(i: usize, obj: &Bound<'_, PyAny>) -> Error {
    Error::Dtype(format!(
        "grads[{i}] must be a NumPy float32 or float64 array, got {}",
        obj.get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default()
    ))
}

fn contiguous(i: usize) -> Error {
    Error::Grad(format!("grads[{i}] must be C-contiguous"))
}

fn read<'py>(grads: &[Bound<'py, PyAny>]) -> Result<Views<'py>> {
    let mut v = Views {
        f32: Vec::new(),
        f64: Vec::new(),
    };
    for (i, g) in grads.iter().enumerate() {
        if let Ok(a) = g.cast::<PyArrayDyn<f32>>() {
            let r = a
                .try_readonly()
                .map_err(|e| Error::Grad(format!("grads[{i}]: {e}")))?;
            r.as_slice().map_err(|_| contiguous(i))?;
            v.f32.push(r);
        } else if let Ok(a) = g.cast::<PyArrayDyn<f64>>() {
            let r = a
                .try_readonly()
                .map_err(|e| Error::Grad(format!("grads[{i}]: {e}")))?;
            r.as_slice().map_err(|_| contiguous(i))?;
            v.f64.push(r);
        } else {
            return Err(not_float(i, g));
        }
    }
    Ok(v)
}

fn write<'py>(grads: &[Bound<'py, PyAny>]) -> Result<ViewsMut<'py>> {
    let mut v = ViewsMut {
        f32: Vec::new(),
        f64: Vec::new(),
    };
    for (i, g) in grads.iter().enumerate() {
        let borrow = |e: numpy::BorrowError| {
            Error::Grad(format!("grads[{i}] cannot be written in place: {e}"))
        };
        if let Ok(a) = g.cast::<PyArrayDyn<f32>>() {
            let mut w = a.try_readwrite().map_err(borrow)?;
            w.as_slice_mut().map_err(|_| contiguous(i))?;
            v.f32.push((i, w));
        } else if let Ok(a) = g.cast::<PyArrayDyn<f64>>() {
            let mut w = a.try_readwrite().map_err(borrow)?;
            w.as_slice_mut().map_err(|_| contiguous(i))?;
            v.f64.push((i, w));
        } else {
            return Err(not_float(i, g));
        }
    }
    Ok(v)
}

fn norm_of(py: Python<'_>, v: &Views<'_>, inf: bool) -> f64 {
    let a: Vec<&[f32]> = v.f32.iter().map(|r| r.as_slice().unwrap_or(&[])).collect();
    let b: Vec<&[f64]> = v.f64.iter().map(|r| r.as_slice().unwrap_or(&[])).collect();
    py.detach(|| {
        if inf {
            let (x, y) = (gradtools::max_abs(&a), gradtools::max_abs(&b));
            if x.is_nan() || y.is_nan() {
                f64::NAN
            } else {
                x.max(y)
            }
        } else {
            (gradtools::sum_squares(&a) + gradtools::sum_squares(&b)).sqrt()
        }
    })
}

fn norm_type(norm_type: f64) -> Result<bool> {
    if norm_type == 2.0 {
        Ok(false)
    } else if norm_type == f64::INFINITY {
        Ok(true)
    } else {
        Err(Error::Setting(format!(
            "norm_type: must be 2 or inf, got {norm_type}"
        )))
    }
}

fn positive(name: &str, v: f64) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(Error::Setting(format!(
            "{name}: must be a finite number > 0, got {v}"
        )))
    }
}

/// The norm of all grads together, as if concatenated (2 or inf).
#[pyfunction]
#[pyo3(signature = (grads, norm_type = 2.0))]
pub fn grad_norm(py: Python<'_>, grads: Vec<Bound<'_, PyAny>>, norm_type: f64) -> PyResult<f64> {
    let inf = self::norm_type(norm_type)?;
    Ok(norm_of(py, &read(&grads)?, inf))
}

/// True when every element of every grad is finite.
#[pyfunction]
pub fn all_finite(py: Python<'_>, grads: Vec<Bound<'_, PyAny>>) -> PyResult<bool> {
    let v = read(&grads)?;
    let a: Vec<&[f32]> = v.f32.iter().map(|r| r.as_slice().unwrap_or(&[])).collect();
    let b: Vec<&[f64]> = v.f64.iter().map(|r| r.as_slice().unwrap_or(&[])).collect();
    Ok(py.detach(|| gradtools::all_finite(&a) && gradtools::all_finite(&b)))
}

/// Scales grads in place so that their global norm is at most `max_norm`
/// (torch.nn.utils.clip_grad_norm_); with `per_tensor`, each tensor is
/// clipped to its own norm. Returns the norm(s) before clipping.
#[pyfunction]
#[pyo3(signature = (grads, max_norm, norm_type = 2.0, per_tensor = false))]
pub fn clip_grad_norm(
    py: Python<'_>,
    grads: Vec<Bound<'_, PyAny>>,
    max_norm: f64,
    norm_type: f64,
    per_tensor: bool,
) -> PyResult<Py<PyAny>> {
    let max_norm = positive("max_norm", max_norm)?;
    let inf = self::norm_type(norm_type)?;
    let mut views = write(&grads)?;
    let coef = |norm: f64| (max_norm / (norm + 1e-6)).min(1.0);
    if per_tensor {
        let mut norms = vec![0.0; grads.len()];
        let a: Vec<(usize, &mut [f32])> = views
            .f32
            .iter_mut()
            .map(|(i, w)| (*i, w.as_slice_mut().unwrap_or(&mut [])))
            .collect();
        let b: Vec<(usize, &mut [f64])> = views
            .f64
            .iter_mut()
            .map(|(i, w)| (*i, w.as_slice_mut().unwrap_or(&mut [])))
            .collect();
        py.detach(|| {
            for (i, s) in a {
                norms[i] = tensor_norm(s, inf);
                gradtools::scale(&mut [s], coef(norms[i]) as f32);
            }
            for (i, s) in b {
                norms[i] = tensor_norm(s, inf);
                gradtools::scale(&mut [s], coef(norms[i]));
            }
        });
        return Ok(norms.into_pyobject(py)?.into_any().unbind());
    }
    let norm = {
        let a: Vec<&[f32]> = views
            .f32
            .iter()
            .map(|(_, r)| r.as_slice().unwrap_or(&[]))
            .collect();
        let b: Vec<&[f64]> = views
            .f64
            .iter()
            .map(|(_, r)| r.as_slice().unwrap_or(&[]))
            .collect();
        py.detach(|| {
            if inf {
                let (x, y) = (gradtools::max_abs(&a), gradtools::max_abs(&b));
                if x.is_nan() || y.is_nan() {
                    f64::NAN
                } else {
                    x.max(y)
                }
            } else {
                (gradtools::sum_squares(&a) + gradtools::sum_squares(&b)).sqrt()
            }
        })
    };
    let c = coef(norm);
    let mut a: Vec<&mut [f32]> = views
        .f32
        .iter_mut()
        .map(|(_, w)| w.as_slice_mut().unwrap_or(&mut []))
        .collect();
    let mut b: Vec<&mut [f64]> = views
        .f64
        .iter_mut()
        .map(|(_, w)| w.as_slice_mut().unwrap_or(&mut []))
        .collect();
    py.detach(|| {
        gradtools::scale(&mut a, c as f32);
        gradtools::scale(&mut b, c);
    });
    Ok(norm.into_pyobject(py)?.into_any().unbind())
}

fn tensor_norm<T: crate::kernels::Real>(s: &[T], inf: bool) -> f64 {
    if inf {
        gradtools::max_abs(&[s])
    } else {
        gradtools::sum_squares(&[s]).sqrt()
    }
}

/// Clamps every grad element to `[-clip_value, clip_value]` in place.
#[pyfunction]
pub fn clip_grad_value(
    py: Python<'_>,
    grads: Vec<Bound<'_, PyAny>>,
    clip_value: f64,
) -> PyResult<()> {
    let clip = positive("clip_value", clip_value)?;
    let mut views = write(&grads)?;
    let mut a: Vec<&mut [f32]> = views
        .f32
        .iter_mut()
        .map(|(_, w)| w.as_slice_mut().unwrap_or(&mut []))
        .collect();
    let mut b: Vec<&mut [f64]> = views
        .f64
        .iter_mut()
        .map(|(_, w)| w.as_slice_mut().unwrap_or(&mut []))
        .collect();
    py.detach(|| {
        gradtools::clamp(&mut a, clip as f32);
        gradtools::clamp(&mut b, clip);
    });
    Ok(())
}
