//! `_core.MemorySpans`: the core's overlap checks for the CUDA engine, whose
//! params and grads are device addresses the CPU engine never sees.

use ferroptim_core::engine::Spans;
use pyo3::prelude::*;

use crate::error::PyFerrResult;

/// The memory of a set of params, checked as the CPU engine checks its own.
#[pyclass(name = "MemorySpans", module = "ferroptim._core")]
#[derive(Default)]
pub struct MemorySpans {
    spans: Spans,
    labels: Vec<String>,
}

#[pymethods]
impl MemorySpans {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Registers params given as `(address, bytes, label)`; raises ParamError
    /// naming two that share memory (changing nothing).
    fn add(&mut self, params: Vec<(usize, usize, String)>) -> PyFerrResult<()> {
        let base = self.labels.len();
        let mut new: Vec<_> = params
            .iter()
            .enumerate()
            .map(|(k, (addr, bytes, _))| (*addr, addr + bytes, base + k))
            .collect();
        let label = |i: usize| match i.checked_sub(base) {
            Some(k) => params[k].2.clone(),
            None => self.labels[i].clone(),
        };
        self.spans.check_new(&mut new, label)?;
        self.spans.insert(&new);
        self.labels.extend(params.into_iter().map(|p| p.2));
        Ok(())
    }

    /// Raises GradError for the first grad, given as `(param index, address,
    /// bytes)`, that shares memory with a param.
    fn check_grads(&mut self, grads: Vec<(usize, usize, usize)>) -> PyFerrResult<()> {
        self.spans.refresh();
        let label = |i: usize| self.labels[i].clone();
        for (i, addr, bytes) in grads {
            let what = || format!("grad for param {}", self.labels[i]);
            self.spans
                .check_grad(i, (addr, addr + bytes), what, label)?;
        }
        Ok(())
    }
}
