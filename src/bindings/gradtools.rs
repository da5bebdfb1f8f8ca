//! Gradient tools over a list of arrays: global norm, clipping, finite check.
//! One call into Rust for all tensors, deterministic for any thread count.

use numpy::{PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyReadwriteArrayDyn};
use pyo3::prelude::*;

use crate::error::PyFerrResult;

use ferroptim_core::kernels::{gradtools, Real};
use ferroptim_core::{Error, Result};

/// Read-only views of the grads, split by dtype.
struct Views<'py> {
    f32: Vec<PyReadonlyArrayDyn<'py, f32>>,
    f64: Vec<PyReadonlyArrayDyn<'py, f64>>,
}

impl Views<'_> {
    fn slices(&self) -> (Vec<&[f32]>, Vec<&[f64]>) {
        (
            self.f32
                .iter()
                .map(|r| r.as_slice().unwrap_or(&[]))
                .collect(),
            self.f64
                .iter()
                .map(|r| r.as_slice().unwrap_or(&[]))
                .collect(),
        )
    }
}

/// Writable views, split by dtype, each with its position in the input.
struct ViewsMut<'py> {
    f32: Vec<(usize, PyReadwriteArrayDyn<'py, f32>)>,
    f64: Vec<(usize, PyReadwriteArrayDyn<'py, f64>)>,
}

type Indexed<'a, T> = Vec<(usize, &'a mut [T])>;

impl ViewsMut<'_> {
    fn slices(&mut self) -> (Indexed<'_, f32>, Indexed<'_, f64>) {
        (
            self.f32
                .iter_mut()
                .map(|(i, w)| (*i, w.as_slice_mut().unwrap_or(&mut [])))
                .collect(),
            self.f64
                .iter_mut()
                .map(|(i, w)| (*i, w.as_slice_mut().unwrap_or(&mut [])))
                .collect(),
        )
    }
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
        let borrow = |e: numpy::BorrowError| Error::Grad(format!("grads[{i}]: {e}"));
        if let Ok(a) = g.cast::<PyArrayDyn<f32>>() {
            let r = a.try_readonly().map_err(borrow)?;
            r.as_slice().map_err(|_| contiguous(i))?;
            v.f32.push(r);
        } else if let Ok(a) = g.cast::<PyArrayDyn<f64>>() {
            let r = a.try_readonly().map_err(borrow)?;
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
pub fn grad_norm(
    py: Python<'_>,
    grads: Vec<Bound<'_, PyAny>>,
    norm_type: f64,
) -> PyFerrResult<f64> {
    let inf = self::norm_type(norm_type)?;
    let views = read(&grads)?;
    let (a, b) = views.slices();
    Ok(py.detach(|| gradtools::global_norm(&a, &b, inf)))
}

/// True when every element of every grad is finite.
#[pyfunction]
pub fn all_finite(py: Python<'_>, grads: Vec<Bound<'_, PyAny>>) -> PyFerrResult<bool> {
    let views = read(&grads)?;
    let (a, b) = views.slices();
    Ok(py.detach(|| gradtools::all_finite(&a) && gradtools::all_finite(&b)))
}

fn tensor_norm<T: Real>(s: &[T], inf: bool) -> f64 {
    if inf {
        gradtools::max_abs(&[s])
    } else {
        gradtools::sum_squares(&[s]).sqrt()
    }
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
) -> PyFerrResult<Py<PyAny>> {
    let max_norm = positive("max_norm", max_norm)?;
    let inf = self::norm_type(norm_type)?;
    let mut views = write(&grads)?;
    let coef = |norm: f64| gradtools::clip_coefficient(max_norm, norm);
    let (a, b) = views.slices();
    if per_tensor {
        let mut norms = vec![0.0; grads.len()];
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
    let mut a: Vec<&mut [f32]> = a.into_iter().map(|(_, s)| s).collect();
    let mut b: Vec<&mut [f64]> = b.into_iter().map(|(_, s)| s).collect();
    let norm = py.detach(|| {
        let norm = {
            let ra: Vec<&[f32]> = a.iter().map(|s| &**s).collect();
            let rb: Vec<&[f64]> = b.iter().map(|s| &**s).collect();
            gradtools::global_norm(&ra, &rb, inf)
        };
        let c = coef(norm);
        gradtools::scale(&mut a, c as f32);
        gradtools::scale(&mut b, c);
        norm
    });
    Ok(norm
        .into_pyobject(py)
        .map_err(PyErr::from)?
        .into_any()
        .unbind())
}

/// Clamps every grad element to `[-clip_value, clip_value]` in place.
#[pyfunction]
pub fn clip_grad_value(
    py: Python<'_>,
    grads: Vec<Bound<'_, PyAny>>,
    clip_value: f64,
) -> PyFerrResult<()> {
    let clip = positive("clip_value", clip_value)?;
    let mut views = write(&grads)?;
    let (a, b) = views.slices();
    let mut a: Vec<&mut [f32]> = a.into_iter().map(|(_, s)| s).collect();
    let mut b: Vec<&mut [f64]> = b.into_iter().map(|(_, s)| s).collect();
    py.detach(|| {
        gradtools::clamp(&mut a, clip as f32);
        gradtools::clamp(&mut b, clip);
    });
    Ok(())
}
