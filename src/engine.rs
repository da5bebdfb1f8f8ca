//! The multi-tensor engine behind every optimizer class.
//!
//! Params are registered once (checked: float32/float64, C-contiguous,
//! aligned, writeable, no two overlapping). State lives here, in one flat
//! arena per dtype, so a step only has to check the grads, and then makes
//! one call into [`kernels::multi::run`] per dtype with the GIL released.
//!
//! Memory checks use the array header directly instead of rust-numpy's
//! borrow tracker: a step over 10,000 tensors would otherwise pay a
//! hash-map borrow per array. A grad may not overlap any param; params are
//! checked against each other when they are added.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::{Mutex, MutexGuard, TryLockError};

use numpy::npyffi::{flags, NPY_ORDER, NPY_TYPES, PY_ARRAY_API};
use numpy::{
    PyArray1, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use ferroptim_core::kernels::{gradtools, multi, Algorithm, Job, Real, MAX_SLOTS};
use ferroptim_core::memory;
use ferroptim_core::options::Options;
use ferroptim_core::{Error, Result};

use crate::bindings::{option_number, Group};
use crate::error::PyFerrResult;

/// Step options from `configure`'s Python arguments, checked by the core.
pub fn read_options(
    max_grad_norm: Option<Bound<'_, PyAny>>,
    norm_type: Option<Bound<'_, PyAny>>,
    clip_value: Option<Bound<'_, PyAny>>,
    skip_nonfinite: bool,
    ema_decay: Option<Bound<'_, PyAny>>,
    ema_equal: bool,
) -> Result<Options> {
    Options::new(
        option_number("max_grad_norm", max_grad_norm)?,
        option_number("norm_type", norm_type)?.unwrap_or(2.0),
        option_number("clip_value", clip_value)?,
        skip_nonfinite,
        option_number("ema_decay", ema_decay)?,
        ema_equal,
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    F32,
    F64,
}

impl Kind {
    fn of(arr: &Bound<'_, PyUntypedArray>) -> Option<Kind> {
        let dtype = arr.dtype();
        if dtype.is_native_byteorder() == Some(false) {
            return None;
        }
        let num = dtype.num();
        if num == NPY_TYPES::NPY_FLOAT as i32 {
            Some(Kind::F32)
        } else if num == NPY_TYPES::NPY_DOUBLE as i32 {
            Some(Kind::F64)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::F32 => "float32",
            Kind::F64 => "float64",
        }
    }

    fn itemsize(self) -> usize {
        match self {
            Kind::F32 => 4,
            Kind::F64 => 8,
        }
    }
}

struct Param {
    array: Py<PyUntypedArray>,
    label: String,
    kind: Kind,
    shape: Vec<usize>,
    len: usize,
    group: usize,
    /// Where this param's state starts in its dtype's arena.
    offset: usize,
    /// The data pointer when it was added; a change means the array was
    /// reallocated under us (`ndarray.resize(refcheck=False)`).
    addr: usize,
    step: u64,
    /// Slots that hold state (torch creates some lazily).
    live: [bool; MAX_SLOTS],
    /// The algorithm's per-tensor number ([`Algorithm::AUX`]).
    aux: f64,
    /// Frozen params take no step and get no state.
    frozen: bool,
    /// How many steps have been averaged into the averaged weights.
    averaged: u64,
}

/// The state of all params of one dtype, slot by slot, end to end.
struct Arena<T> {
    len: usize,
    /// Empty until a step first needs the slot.
    slots: [Vec<T>; MAX_SLOTS],
    /// Averaged weights (EMA or equal-weight); empty until averaging starts.
    average: Vec<T>,
}

impl<T: Real> Arena<T> {
    fn new() -> Self {
        Arena {
            len: 0,
            slots: [Vec::new(), Vec::new(), Vec::new()],
            average: Vec::new(),
        }
    }

    /// Makes room for `extra` more elements in every allocated buffer, so
    /// that [`Arena::grow`] by up to `extra` cannot fail.
    fn reserve(&mut self, extra: usize) -> Result<()> {
        for slot in self.slots.iter_mut().filter(|s| !s.is_empty()) {
            memory::try_reserve(slot, extra, "optimizer state")?;
        }
        if !self.average.is_empty() {
            memory::try_reserve(&mut self.average, extra, "averaged weights")?;
        }
        Ok(())
    }

    /// Appends `extra` elements; call [`Arena::reserve`] first.
    fn grow(&mut self, extra: usize) -> usize {
        let offset = self.len;
        self.len += extra;
        for slot in self.slots.iter_mut().filter(|s| !s.is_empty()) {
            slot.resize(self.len, T::ZERO);
        }
        if !self.average.is_empty() {
            self.average.resize(self.len, T::ZERO);
        }
        offset
    }

    fn ensure(&mut self, k: usize) -> Result<()> {
        if self.slots[k].len() != self.len {
            self.slots[k] = memory::try_zeroed(self.len, "optimizer state")?;
        }
        Ok(())
    }

    fn ensure_average(&mut self) -> Result<()> {
        if self.average.len() != self.len {
            self.average = memory::try_zeroed(self.len, "averaged weights")?;
        }
        Ok(())
    }

    fn slice(&self, k: usize, p: &Param) -> &[T] {
        &self.slots[k][p.offset..p.offset + p.len]
    }
}

struct Inner {
    params: Vec<Param>,
    num_groups: usize,
    f32: Arena<f32>,
    f64: Arena<f64>,
    /// Byte ranges `(start, end, param index)` of the non-empty params,
    /// sorted, for the grad overlap check of a step; rebuilt from `index`
    /// by the first step after params were added.
    ranges: Vec<(usize, usize, usize)>,
    /// The same ranges keyed by start, so adding a group costs O(k log n)
    /// rather than a re-sort of every range (16k groups were quadratic).
    index: BTreeMap<usize, (usize, usize)>,
    options: Options,
    skipped: u64,
    last_grad_norm: Option<f64>,
}

impl Inner {
    /// The param is still the array it was when added, and writeable.
    fn check_param(&self, py: Python<'_>, p: &Param) -> Result<()> {
        let param = p.array.bind(py);
        let (addr, fl) = header(param);
        if addr != p.addr || param.len() != p.len {
            return Err(Error::Param(format!(
                "param {} was resized or reallocated after it was added",
                p.label
            )));
        }
        if fl & IS_WRITEABLE == 0 {
            return Err(Error::Param(format!("param {} is read-only", p.label)));
        }
        if Kind::of(param) != Some(p.kind) {
            return Err(Error::Param(format!(
                "param {} changed dtype to {} after it was added",
                p.label,
                param.dtype()
            )));
        }
        Ok(())
    }

    /// Checks the grad of param `i` and returns the address to read it
    /// from. Messages are only formatted on failure: this runs per tensor.
    fn check_grad<'py>(
        &self,
        py: Python<'py>,
        i: usize,
        p: &Param,
        g: &Bound<'py, PyAny>,
        copies: &mut Vec<Bound<'py, PyAny>>,
    ) -> Result<usize> {
        self.check_param(py, p)?;
        let what = || format!("grad for param {}", p.label);
        let arr = as_array(g, what)?;
        if Kind::of(arr) != Some(p.kind) {
            return Err(Error::Dtype(format!(
                "{} has dtype {}, the param has {}",
                what(),
                arr.dtype(),
                p.kind.name()
            )));
        }
        if arr.shape() != p.shape.as_slice() {
            return Err(Error::Grad(format!(
                "{} has shape {:?}, the param has shape {:?}",
                what(),
                arr.shape(),
                p.shape
            )));
        }
        let (gaddr, gfl) = header(arr);
        if gfl & IS_C_CONTIGUOUS != 0 && gfl & IS_ALIGNED != 0 {
            let end = gaddr + p.len * p.kind.itemsize();
            if let Some(j) = self.overlapping(gaddr, end) {
                let whose = if j == i {
                    "its param".to_string()
                } else {
                    format!("param {}", self.params[j].label)
                };
                return Err(Error::Grad(format!(
                    "{} shares memory with {whose}; pass a copy",
                    what()
                )));
            }
            Ok(gaddr)
        } else {
            // Strided or Fortran-ordered: read it in index order from a copy.
            let copy = contiguous_copy(arr).map_err(|e| Error::Grad(format!("{}: {e}", what())))?;
            let addr = header(
                copy.cast::<PyUntypedArray>()
                    .map_err(|_| Error::Grad(format!("{}: copy is not an array", what())))?,
            )
            .0;
            copies.push(copy);
            Ok(addr)
        }
    }

    /// The param whose memory overlaps `[start, end)`, if any.
    fn overlapping(&self, start: usize, end: usize) -> Option<usize> {
        if start == end {
            return None;
        }
        let k = self.ranges.partition_point(|r| r.1 <= start);
        self.ranges.get(k).filter(|r| r.0 < end).map(|r| r.2)
    }
}

type MemoKey = (usize, u64, [bool; MAX_SLOTS], u64);

/// The last (group, step, freshness) and the scalars computed for it.
struct Memo<A: Algorithm, T: Real> {
    last: Option<(MemoKey, A::Scalars<T>, f64)>,
}

impl<A: Algorithm, T: Real> Memo<A, T> {
    fn new() -> Self {
        Memo { last: None }
    }

    fn get(&mut self, key: MemoKey, hyper: &A::Hyper) -> (A::Scalars<T>, f64) {
        match &self.last {
            Some((k, s, aux)) if *k == key => (*s, *aux),
            _ => {
                let (s, aux) = A::scalars_aux::<T>(hyper, key.1, key.2, f64::from_bits(key.3));
                self.last = Some((key, s, aux));
                (s, aux)
            }
        }
    }
}

pub struct Engine<A> {
    inner: Mutex<Inner>,
    algorithm: PhantomData<fn() -> A>,
}

fn header(arr: &Bound<'_, PyUntypedArray>) -> (usize, i32) {
    // SAFETY: `arr` is a live ndarray; we only read two header fields.
    unsafe {
        let raw = arr.as_array_ptr();
        ((*raw).data as usize, (*raw).flags)
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    match obj.cast::<PyUntypedArray>() {
        Ok(arr) => format!("a NumPy array of dtype {}", arr.dtype()),
        Err(_) => obj
            .get_type()
            .fully_qualified_name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into()),
    }
}

fn as_array<'a, 'py>(
    obj: &'a Bound<'py, PyAny>,
    what: impl FnOnce() -> String,
) -> Result<&'a Bound<'py, PyUntypedArray>> {
    obj.cast::<PyUntypedArray>().map_err(|_| {
        Error::Dtype(format!(
            "{} must be a NumPy float32 or float64 array, got {}",
            what(),
            type_name(obj)
        ))
    })
}

/// A C-ordered, aligned copy of `arr`.
fn contiguous_copy<'py>(arr: &Bound<'py, PyUntypedArray>) -> PyResult<Bound<'py, PyAny>> {
    let py = arr.py();
    // SAFETY: PyArray_NewCopy returns a new reference or NULL with an exception set.
    unsafe {
        let copy = PY_ARRAY_API.PyArray_NewCopy(py, arr.as_array_ptr(), NPY_ORDER::NPY_CORDER);
        Bound::from_owned_ptr_or_err(py, copy)
    }
}

const IS_C_CONTIGUOUS: i32 = flags::NPY_ARRAY_C_CONTIGUOUS;
const IS_ALIGNED: i32 = flags::NPY_ARRAY_ALIGNED;
const IS_WRITEABLE: i32 = flags::NPY_ARRAY_WRITEABLE;

impl<A> Engine<A>
where
    A: Algorithm,
{
    pub fn new() -> Self {
        Engine {
            inner: Mutex::new(Inner {
                params: Vec::new(),
                num_groups: 0,
                f32: Arena::new(),
                f64: Arena::new(),
                ranges: Vec::new(),
                index: BTreeMap::new(),
                options: Options::default(),
                skipped: 0,
                last_grad_norm: None,
            }),
            algorithm: PhantomData,
        }
    }

    /// Two Python threads stepping one optimizer take turns: the waiting
    /// one releases the GIL so the running step can finish.
    fn lock(&self, py: Python<'_>) -> MutexGuard<'_, Inner> {
        loop {
            match self.inner.try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => py.detach(std::thread::yield_now),
            }
        }
    }

    pub fn steps(&self, py: Python<'_>) -> Vec<u64> {
        self.lock(py).params.iter().map(|p| p.step).collect()
    }

    pub fn configure(&self, py: Python<'_>, options: Options) {
        self.lock(py).options = options;
    }

    /// Freezes (or thaws) params by index; all indices are checked first.
    pub fn set_frozen(&self, py: Python<'_>, indices: &[usize], frozen: bool) -> Result<()> {
        let mut inner = self.lock(py);
        let n = inner.params.len();
        if let Some(bad) = indices.iter().find(|&&i| i >= n) {
            return Err(Error::Param(format!(
                "no param #{bad}: the optimizer has {n}"
            )));
        }
        for &i in indices {
            inner.params[i].frozen = frozen;
        }
        Ok(())
    }

    pub fn frozen(&self, py: Python<'_>) -> Vec<bool> {
        self.lock(py).params.iter().map(|p| p.frozen).collect()
    }

    /// Swaps every param's values with its averaged weights, in place. Params
    /// that have no average yet are left alone. Calling it twice restores.
    pub fn swap_averages(&self, py: Python<'_>) -> Result<usize> {
        let mut inner = self.lock(py);
        let inner = &mut *inner;
        let mut swapped = 0;
        for p in inner.params.iter() {
            if p.averaged == 0 {
                continue;
            }
            inner.check_param(py, p)?;
        }
        for p in inner.params.iter() {
            if p.averaged == 0 || p.len == 0 {
                continue;
            }
            // SAFETY: checked above: the param is live, writeable, `len` long,
            // and does not overlap the arena.
            unsafe {
                match p.kind {
                    Kind::F32 => swap_with(&mut inner.f32.average, p),
                    Kind::F64 => swap_with(&mut inner.f64.average, p),
                }
            }
            swapped += 1;
        }
        Ok(swapped)
    }

    /// Registers params as group `group`; all or nothing.
    pub fn add_params(
        &self,
        py: Python<'_>,
        params: &[Bound<'_, PyAny>],
        group: usize,
        labels: &[String],
    ) -> Result<()> {
        if labels.len() != params.len() {
            return Err(Error::Param(format!(
                "got {} labels for {} params",
                labels.len(),
                params.len()
            )));
        }
        let mut inner = self.lock(py);
        let base = inner.params.len();
        let mut ranges = Vec::new();
        let mut staged = Vec::with_capacity(params.len());
        for (k, (obj, label)) in params.iter().zip(labels).enumerate() {
            let what = format!("param {label}");
            let arr = as_array(obj, || what.clone())?;
            let kind = Kind::of(arr).ok_or_else(|| {
                Error::Dtype(format!(
                    "{what} must have dtype float32 or float64 (native byte order), got {}",
                    arr.dtype()
                ))
            })?;
            let (addr, fl) = header(arr);
            if fl & IS_WRITEABLE == 0 {
                return Err(Error::Param(format!("{what} is read-only")));
            }
            if fl & IS_C_CONTIGUOUS == 0 {
                return Err(Error::Param(format!(
                    "{what} is not C-contiguous: it is updated in place, so pass a contiguous \
                     array (np.ascontiguousarray makes a copy that you would then train)"
                )));
            }
            if fl & IS_ALIGNED == 0 {
                return Err(Error::Param(format!("{what} is not aligned in memory")));
            }
            let len = arr.len();
            if len > 0 {
                ranges.push((addr, addr + len * kind.itemsize(), base + k));
            }
            staged.push(Param {
                array: arr.clone().unbind(),
                label: label.clone(),
                kind,
                shape: arr.shape().to_vec(),
                len,
                group,
                offset: 0,
                addr,
                step: 0,
                live: [false; MAX_SLOTS],
                aux: A::AUX.map_or(0.0, |a| a.1),
                frozen: false,
                averaged: 0,
            });
        }
        // The new ranges against each other, then against the registered ones.
        ranges.sort_unstable();
        let mut clash = ranges
            .windows(2)
            .find(|pair| pair[1].0 < pair[0].1)
            .map(|pair| (pair[0], pair[1]));
        if clash.is_none() {
            clash = ranges.iter().find_map(|&(start, end, i)| {
                let before = inner.index.range(..=start).next_back();
                let after = inner.index.range(start..end).next();
                before
                    .filter(|(_, &(e, _))| e > start)
                    .or(after)
                    .map(|(&s, &(e, j))| ((s, e, j), (start, end, i)))
            });
        }
        if let Some((a, b)) = clash {
            let name = |i: usize| {
                if i < base {
                    inner.params[i].label.clone()
                } else {
                    staged[i - base].label.clone()
                }
            };
            let how = if a.0 == b.0 && a.1 == b.1 {
                "are the same array (a param given twice)"
            } else {
                "share memory"
            };
            return Err(Error::Param(format!(
                "params {} and {} {how}",
                name(a.2.min(b.2)),
                name(a.2.max(b.2))
            )));
        }
        let extra = |kind| {
            staged
                .iter()
                .filter(|p| p.kind == kind)
                .map(|p| p.len)
                .sum()
        };
        inner.f32.reserve(extra(Kind::F32))?;
        inner.f64.reserve(extra(Kind::F64))?;
        // Checked; now commit.
        for mut p in staged {
            p.offset = match p.kind {
                Kind::F32 => inner.f32.grow(p.len),
                Kind::F64 => inner.f64.grow(p.len),
            };
            inner.params.push(p);
        }
        if !ranges.is_empty() {
            inner
                .index
                .extend(ranges.iter().map(|&(start, end, i)| (start, (end, i))));
            inner.ranges.clear();
        }
        inner.num_groups = inner.num_groups.max(group + 1);
        Ok(())
    }

    /// One step over all params whose grad is not None.
    pub fn step(
        &self,
        py: Python<'_>,
        grads: &Bound<'_, PyAny>,
        groups: &Bound<'_, PyList>,
        grad_scale: f64,
    ) -> PyFerrResult<bool> {
        if !(grad_scale.is_finite() && grad_scale > 0.0) {
            return Err(Error::Setting(format!(
                "grad_scale: must be a finite number > 0, got {grad_scale}"
            ))
            .into());
        }
        let mut inner = self.lock(py);
        let inner = &mut *inner;
        if groups.len() != inner.num_groups {
            return Err(Error::Param(format!(
                "got {} param groups, the optimizer has {}",
                groups.len(),
                inner.num_groups
            ))
            .into());
        }
        let hypers = groups
            .iter()
            .map(|g| {
                let dict = g.cast::<PyDict>().map_err(|_| {
                    Error::Dtype(format!(
                        "a param group must be a dict, got {}",
                        type_name(&g)
                    ))
                })?;
                A::from_group(&Group(dict))
            })
            .collect::<Result<Vec<_>>>()?;

        let grads = grads.try_iter().map_err(|_| {
            Error::Dtype(format!(
                "grads must be a list of arrays, got {}",
                type_name(grads)
            ))
        })?;
        let grads = grads.collect::<PyResult<Vec<_>>>()?;
        if grads.len() != inner.params.len() {
            return Err(Error::Grad(format!(
                "got {} grads for {} params",
                grads.len(),
                inner.params.len()
            ))
            .into());
        }

        if inner.ranges.len() != inner.index.len() {
            inner.ranges = inner.index.iter().map(|(&s, &(e, i))| (s, e, i)).collect();
        }
        // Pass 1: check every grad (and that no param changed under us).
        let mut copies = Vec::new();
        let mut ready: Vec<Option<usize>> = Vec::with_capacity(grads.len());
        for (i, (p, g)) in inner.params.iter().zip(&grads).enumerate() {
            ready.push(if g.is_none() || p.frozen {
                None
            } else {
                Some(inner.check_grad(py, i, p, g, &mut copies)?)
            });
        }

        // Global norm and finite check, on the grads as the step will see them.
        let options = inner.options;
        let mut grad_norm = None;
        let mut scale = grad_scale;
        if options.max_grad_norm.is_some() || options.skip_nonfinite {
            let (norm, finite) = py.detach(|| {
                // SAFETY: every address was checked in pass 1.
                unsafe { inner.grad_norm(&ready, options.inf_norm) }
            });
            if options.skip_nonfinite && !finite {
                inner.skipped += 1;
                inner.last_grad_norm = Some(norm * grad_scale);
                drop(copies);
                return Ok(false);
            }
            let norm = norm * grad_scale;
            grad_norm = Some(norm);
            if let Some(max_norm) = options.max_grad_norm {
                // torch.nn.utils.clip_grad_norm_'s coefficient, clamped at 1.
                scale *= gradtools::clip_coefficient(max_norm, norm);
            }
        }
        let transform = (scale != 1.0 || options.clip_value.is_some())
            .then(|| (scale, options.clip_value.unwrap_or(f64::INFINITY)));

        // Pass 2: everything checked. Allocate the state slots this step
        // needs before taking any pointer into them, then build the work lists.
        for (p, grad) in inner.params.iter().zip(&ready) {
            if grad.is_some() {
                let used = A::slots_used(&hypers[p.group]);
                for k in (0..MAX_SLOTS).filter(|&k| used[k]) {
                    match p.kind {
                        Kind::F32 => inner.f32.ensure(k)?,
                        Kind::F64 => inner.f64.ensure(k)?,
                    }
                }
                if options.averaging.is_some() {
                    match p.kind {
                        Kind::F32 => inner.f32.ensure_average()?,
                        Kind::F64 => inner.f64.ensure_average()?,
                    }
                }
            }
        }
        let mut jobs32 = Vec::new();
        let mut jobs64 = Vec::new();
        // Neighbouring tensors usually share group, step and freshness: their
        // scalars (a few powf calls) are computed once.
        let mut memo32 = Memo::<A, f32>::new();
        let mut memo64 = Memo::<A, f64>::new();
        for (p, grad) in inner.params.iter_mut().zip(&ready) {
            let Some(grad) = *grad else { continue };
            let hyper = &hypers[p.group];
            let used = A::slots_used(hyper);
            let fresh = p.live.map(|l| !l);
            p.step += 1;
            let key = (p.group, p.step, fresh, p.aux.to_bits());
            let average = options.averaging.map(|a| {
                let w = a.weight(p.averaged);
                p.averaged += 1;
                w
            });
            match p.kind {
                Kind::F32 => {
                    let (s, aux) = memo32.get(key, hyper);
                    p.aux = aux;
                    let job = job::<A, f32>(&mut inner.f32, p, grad, used, s);
                    jobs32.push(extend::<A, f32>(job, &mut inner.f32, p, transform, average));
                }
                Kind::F64 => {
                    let (s, aux) = memo64.get(key, hyper);
                    p.aux = aux;
                    let job = job::<A, f64>(&mut inner.f64, p, grad, used, s);
                    jobs64.push(extend::<A, f64>(job, &mut inner.f64, p, transform, average));
                }
            }
            for (live, u) in p.live.iter_mut().zip(used) {
                *live |= u;
            }
        }
        py.detach(move || {
            // SAFETY: pass 1 checked every grad (right length, no overlap with
            // any param); params never overlap each other; state slices are
            // disjoint ranges of arenas that are not resized during the run;
            // `copies`, the param arrays and `grads` outlive this call.
            unsafe {
                multi::run::<A, f32>(&mut jobs32);
                multi::run::<A, f64>(&mut jobs64);
            }
        });
        drop(copies);
        inner.last_grad_norm = grad_norm;
        Ok(true)
    }

    /// Steps skipped because their grads were not finite.
    pub fn skipped(&self, py: Python<'_>) -> u64 {
        self.lock(py).skipped
    }

    /// The global grad norm of the last step that computed one.
    pub fn last_grad_norm(&self, py: Python<'_>) -> Option<f64> {
        self.lock(py).last_grad_norm
    }

    /// Each param's state as fresh arrays: `{"step": n, slot: array, ...}`.
    pub fn state<'py>(&self, py: Python<'py>) -> PyFerrResult<Vec<Bound<'py, PyDict>>> {
        let inner = self.lock(py);
        inner
            .params
            .iter()
            .map(|p| {
                let dict = PyDict::new(py);
                dict.set_item("step", p.step)?;
                if let (Some((name, _)), true) = (A::AUX, p.step > 0) {
                    dict.set_item(name, p.aux)?;
                }
                if p.averaged > 0 {
                    dict.set_item(AVERAGED_STEPS, p.averaged)?;
                    let arr = match p.kind {
                        Kind::F32 => {
                            export(py, &inner.f32.average[p.offset..p.offset + p.len], &p.shape)?
                        }
                        Kind::F64 => {
                            export(py, &inner.f64.average[p.offset..p.offset + p.len], &p.shape)?
                        }
                    };
                    dict.set_item(AVERAGED, arr)?;
                }
                for (k, name) in A::SLOTS.iter().enumerate() {
                    if !p.live[k] {
                        continue;
                    }
                    let arr = match p.kind {
                        Kind::F32 => export(py, inner.f32.slice(k, p), &p.shape)?,
                        Kind::F64 => export(py, inner.f64.slice(k, p), &p.shape)?,
                    };
                    dict.set_item(*name, arr)?;
                }
                Ok(dict)
            })
            .collect()
    }

    /// Replaces all state from a list like [`Engine::state`] returns. Checks
    /// everything first: on error the optimizer keeps its old state.
    pub fn load_state(&self, py: Python<'_>, states: &Bound<'_, PyList>) -> PyFerrResult<()> {
        let mut inner = self.lock(py);
        let inner = &mut *inner;
        if states.len() != inner.params.len() {
            return Err(Error::State(format!(
                "the state_dict has state for {} params, the optimizer has {}",
                states.len(),
                inner.params.len()
            ))
            .into());
        }
        let np = py.import("numpy")?;
        let mut staged = Vec::with_capacity(states.len());
        for (p, entry) in inner.params.iter().zip(states.iter()) {
            let dict = entry
                .cast::<PyDict>()
                .map_err(|_| Error::State(format!("state of param {} must be a dict", p.label)))?;
            let mut step = 0u64;
            let mut aux = A::AUX.map_or(0.0, |a| a.1);
            let mut averaged = 0u64;
            let mut average: Option<Staged> = None;
            let mut slots: [Option<Staged>; MAX_SLOTS] = [None, None, None];
            for (key, value) in dict.iter() {
                let key: String = key.extract().map_err(|_| {
                    Error::State(format!("state of param {} has a non-string key", p.label))
                })?;
                let count = || -> Result<u64> {
                    if is_bool(&value) {
                        return Err(Error::State(format!(
                            "{key} of param {} must be a whole number >= 0, got a bool",
                            p.label
                        )));
                    }
                    value
                        .extract::<f64>()
                        .ok()
                        .filter(|s| s.fract() == 0.0 && *s >= 0.0 && *s < 2f64.powi(53))
                        .map(|s| s as u64)
                        .ok_or_else(|| {
                            Error::State(format!(
                                "{key} of param {} must be a whole number >= 0",
                                p.label
                            ))
                        })
                };
                if key == "step" {
                    step = count()?;
                    continue;
                }
                if key == AVERAGED_STEPS {
                    averaged = count()?;
                    continue;
                }
                if A::AUX.is_some_and(|a| a.0 == key) {
                    aux = (!is_bool(&value))
                        .then(|| value.extract::<f64>().ok())
                        .flatten()
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| {
                            Error::State(format!(
                                "{key} of param {} must be a finite number",
                                p.label
                            ))
                        })?;
                    continue;
                }
                let slot = A::SLOTS.iter().position(|s| *s == key);
                if slot.is_none() && key != AVERAGED {
                    let mut known = vec!["step", AVERAGED_STEPS, AVERAGED];
                    known.extend(A::AUX.map(|a| a.0));
                    known.extend(A::SLOTS);
                    return Err(Error::State(format!(
                        "state of param {} has unknown key '{key}' (expected {})",
                        p.label,
                        known.join(", ")
                    ))
                    .into());
                }
                let what = format!("state '{key}' of param {}", p.label);
                let arr = value.cast::<PyUntypedArray>().map_err(|_| {
                    Error::State(format!(
                        "{what} must be a NumPy array, got {}",
                        type_name(&value)
                    ))
                })?;
                if arr.shape() != p.shape.as_slice() {
                    return Err(Error::State(format!(
                        "{what} has shape {:?}, the param has shape {:?}",
                        arr.shape(),
                        p.shape
                    ))
                    .into());
                }
                // Casting would drop an imaginary part or parse strings silently.
                let dtype_kind = arr.dtype().kind();
                if !matches!(dtype_kind, b'f' | b'i' | b'u') {
                    return Err(Error::State(format!(
                        "{what} must hold real numbers, got dtype {}",
                        arr.dtype()
                    ))
                    .into());
                }
                let converted = np
                    .getattr("ascontiguousarray")?
                    .call1((arr, p.kind.name()))
                    .map_err(|e| Error::State(format!("{what} cannot be read as numbers: {e}")))?;
                let values = match p.kind {
                    Kind::F32 => Staged::F32(read_all::<f32>(&converted)?),
                    Kind::F64 => Staged::F64(read_all::<f64>(&converted)?),
                };
                match slot {
                    Some(k) => slots[k] = Some(values),
                    None => average = Some(values),
                }
            }
            if average.is_some() != (averaged > 0) {
                return Err(Error::State(format!(
                    "state of param {}: '{AVERAGED}' and a positive '{AVERAGED_STEPS}' go together",
                    p.label
                ))
                .into());
            }
            staged.push((step, slots, aux, averaged, average));
        }
        // Allocate what the new state needs, so the commit below cannot fail.
        for (p, (_, slots, _, _, average)) in inner.params.iter().zip(&staged) {
            for k in (0..MAX_SLOTS).filter(|&k| slots[k].is_some()) {
                match p.kind {
                    Kind::F32 => inner.f32.ensure(k)?,
                    Kind::F64 => inner.f64.ensure(k)?,
                }
            }
            if average.is_some() {
                match p.kind {
                    Kind::F32 => inner.f32.ensure_average()?,
                    Kind::F64 => inner.f64.ensure_average()?,
                }
            }
        }
        // Checked; now commit.
        for (p, (step, slots, aux, averaged, average)) in inner.params.iter_mut().zip(staged) {
            p.step = step;
            p.aux = aux;
            p.averaged = averaged;
            if let Some(values) = average {
                match values {
                    Staged::F32(v) => store_average(&mut inner.f32, p, &v),
                    Staged::F64(v) => store_average(&mut inner.f64, p, &v),
                }
            }
            for (k, slot) in slots.into_iter().enumerate() {
                p.live[k] = slot.is_some();
                match (p.kind, slot) {
                    (Kind::F32, slot) => store(&mut inner.f32, k, p, slot.map(Staged::f32)),
                    (Kind::F64, slot) => store(&mut inner.f64, k, p, slot.map(Staged::f64)),
                }
            }
        }
        Ok(())
    }
}

impl<A> Default for Engine<A>
where
    A: Algorithm,
{
    fn default() -> Self {
        Self::new()
    }
}

enum Staged {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Staged {
    fn f32(self) -> Vec<f32> {
        match self {
            Staged::F32(v) => v,
            Staged::F64(_) => unreachable!("staged with the param's dtype"),
        }
    }
    fn f64(self) -> Vec<f64> {
        match self {
            Staged::F64(v) => v,
            Staged::F32(_) => unreachable!("staged with the param's dtype"),
        }
    }
}

fn read_all<T: Real + numpy::Element>(obj: &Bound<'_, PyAny>) -> PyFerrResult<Vec<T>> {
    let arr = obj.cast::<PyArrayDyn<T>>().map_err(PyErr::from)?;
    let view = arr
        .try_readonly()
        .map_err(|e| Error::State(e.to_string()))?;
    let values = view.as_slice().map_err(|e| Error::State(e.to_string()))?;
    Ok(memory::try_copy(values, "a state_dict")?)
}

/// A Python or NumPy bool: valid as a number to `float()`, never as a count.
fn is_bool(value: &Bound<'_, PyAny>) -> bool {
    value.is_instance_of::<pyo3::types::PyBool>()
        || value
            .cast::<PyUntypedArray>()
            .map(|a| a.dtype().kind() == b'b')
            .unwrap_or(false)
        || value
            .getattr("dtype")
            .and_then(|d| d.getattr("kind"))
            .and_then(|k| k.extract::<String>())
            .is_ok_and(|k| k == "b")
}

fn store<T: Real>(arena: &mut Arena<T>, k: usize, p: &Param, values: Option<Vec<T>>) {
    match values {
        Some(v) => {
            // Allocated by `load_state` before the commit.
            arena.slots[k][p.offset..p.offset + p.len].copy_from_slice(&v);
        }
        None if !arena.slots[k].is_empty() => {
            arena.slots[k][p.offset..p.offset + p.len].fill(T::ZERO);
        }
        None => {}
    }
}

fn export<'py, T: Real + numpy::Element>(
    py: Python<'py>,
    values: &[T],
    shape: &[usize],
) -> PyFerrResult<Bound<'py, PyAny>> {
    Ok(PyArray1::from_slice(py, values).reshape(shape)?.into_any())
}

fn job<A: Algorithm, T: Real>(
    arena: &mut Arena<T>,
    p: &Param,
    grad: usize,
    used: [bool; MAX_SLOTS],
    scalars: A::Scalars<T>,
) -> Job<T, A::Scalars<T>> {
    let mut state = [std::ptr::null_mut(); MAX_SLOTS];
    for k in (0..MAX_SLOTS).filter(|&k| used[k]) {
        debug_assert_eq!(arena.slots[k].len(), arena.len, "slot allocated in pass 2");
        // SAFETY: `offset + len` lies within the arena.
        state[k] = unsafe { arena.slots[k].as_mut_ptr().add(p.offset) };
    }
    // SAFETY: see `Engine::step`.
    unsafe { Job::from_raw(p.addr as *mut T, grad as *const T, state, p.len, scalars) }
}

/// Adds the grad transform and the averaging pointer to a job.
fn extend<A: Algorithm, T: Real>(
    job: Job<T, A::Scalars<T>>,
    arena: &mut Arena<T>,
    p: &Param,
    transform: Option<(f64, f64)>,
    average: Option<f64>,
) -> Job<T, A::Scalars<T>> {
    let job = match transform {
        Some((scale, clip)) => job.with_grad_transform(T::from_f64(scale), T::from_f64(clip)),
        None => job,
    };
    match average {
        // SAFETY: the average buffer was sized in pass 2 and is disjoint from everything else.
        Some(w) => unsafe {
            job.with_average(arena.average.as_mut_ptr().add(p.offset), T::from_f64(w))
        },
        None => job,
    }
}

/// Swaps a param's values with its slice of `average`.
///
/// # Safety
/// The param must be live, writeable and `p.len` elements long.
unsafe fn swap_with<T: Real>(average: &mut [T], p: &Param) {
    // SAFETY: upheld by the caller; the arena never overlaps a NumPy array.
    let values = unsafe { std::slice::from_raw_parts_mut(p.addr as *mut T, p.len) };
    values.swap_with_slice(&mut average[p.offset..p.offset + p.len]);
}

impl Inner {
    /// The global norm of the grads that will step (2-norm, or the
    /// infinity norm), and whether every element is finite.
    ///
    /// # Safety
    /// Every `Some` address must have been checked by `check_grad`.
    unsafe fn grad_norm(&self, ready: &[Option<usize>], inf_norm: bool) -> (f64, bool) {
        let mut t32: Vec<&[f32]> = Vec::new();
        let mut t64: Vec<&[f64]> = Vec::new();
        for (p, addr) in self.params.iter().zip(ready) {
            let Some(addr) = *addr else { continue };
            // SAFETY: upheld by the caller.
            unsafe {
                match p.kind {
                    Kind::F32 => t32.push(std::slice::from_raw_parts(addr as *const f32, p.len)),
                    Kind::F64 => t64.push(std::slice::from_raw_parts(addr as *const f64, p.len)),
                }
            }
        }
        let norm = gradtools::global_norm(&t32, &t64, inf_norm);
        // A huge but finite grad can overflow the sum of squares: only then
        // is the slower exact check needed.
        let finite = norm.is_finite()
            || (!norm.is_nan() && gradtools::all_finite(&t32) && gradtools::all_finite(&t64));
        (norm, finite)
    }
}

/// State-dict keys of the averaged weights and of how many steps they hold.
const AVERAGED: &str = "averaged_param";
const AVERAGED_STEPS: &str = "n_averaged";

fn store_average<T: Real>(arena: &mut Arena<T>, p: &Param, values: &[T]) {
    // Allocated by `load_state` before the commit.
    arena.average[p.offset..p.offset + p.len].copy_from_slice(values);
}
