//! Every raw read of a NumPy array header, in one place.
//!
//! Safety contract, once for the whole module: each function takes a
//! `Bound` array, so the object is a live ndarray held by the GIL for the
//! call; the functions read header fields (`data`, `flags`) or call the
//! NumPy C API, and never write through the header. An address read here
//! stays valid only while the array is neither freed nor resized: callers
//! keep a reference to the array and re-read the header before each use
//! (a param's address is checked against the one it was added with).
//!
//! Reading the header directly instead of through rust-numpy's borrow
//! tracker keeps a step over 10,000 tensors from paying a hash-map borrow
//! per array; overlaps are checked by the core instead.

use ferroptim_core::engine::Kind;
use ferroptim_core::Error;
use numpy::npyffi::{flags, NPY_ORDER, NPY_TYPES, PY_ARRAY_API};
use numpy::{PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use std::sync::atomic::{AtomicI32, Ordering};

pub const IS_C_CONTIGUOUS: i32 = flags::NPY_ARRAY_C_CONTIGUOUS;
pub const IS_ALIGNED: i32 = flags::NPY_ARRAY_ALIGNED;
pub const IS_WRITEABLE: i32 = flags::NPY_ARRAY_WRITEABLE;

/// The array's data address and flags.
pub fn header(arr: &Bound<'_, PyUntypedArray>) -> (usize, i32) {
    // SAFETY: see the module's contract; two plain field reads.
    unsafe {
        let raw = arr.as_array_ptr();
        ((*raw).data as usize, (*raw).flags)
    }
}

/// The engine's dtype of `arr`: float32 or float64 in native byte order.
pub fn kind_of(arr: &Bound<'_, PyUntypedArray>) -> Option<Kind> {
    let dtype = arr.dtype();
    if dtype.is_native_byteorder() == Some(false) {
        return None;
    }
    let num = dtype.num();
    if num == NPY_TYPES::NPY_FLOAT as i32 {
        Some(Kind::F32)
    } else if num == NPY_TYPES::NPY_DOUBLE as i32 {
        Some(Kind::F64)
    } else if num == NPY_TYPES::NPY_HALF as i32 {
        Some(Kind::F16)
    } else if num == BFLOAT16.load(Ordering::Relaxed) && num >= 0 {
        Some(Kind::Bf16)
    } else {
        None
    }
}

/// NumPy's type number of `ml_dtypes.bfloat16` (a user-defined dtype, so
/// its number is assigned when ml_dtypes is imported); -1 until registered.
static BFLOAT16: AtomicI32 = AtomicI32::new(-1);

/// Records bfloat16's type number (the package does this at import).
pub fn register_bfloat16(num: i32) {
    BFLOAT16.store(num, Ordering::Relaxed);
}

/// A C-ordered, aligned copy of `arr`.
pub fn contiguous_copy<'py>(arr: &Bound<'py, PyUntypedArray>) -> PyResult<Bound<'py, PyAny>> {
    let py = arr.py();
    // SAFETY: PyArray_NewCopy returns a new reference or NULL with an exception set.
    unsafe {
        let copy = PY_ARRAY_API.PyArray_NewCopy(py, arr.as_array_ptr(), NPY_ORDER::NPY_CORDER);
        Bound::from_owned_ptr_or_err(py, copy)
    }
}

/// How an object is named in errors: its dtype if it is an array, else its type.
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    match obj.cast::<PyUntypedArray>() {
        Ok(arr) => format!("a NumPy array of dtype {}", arr.dtype()),
        Err(_) => obj
            .get_type()
            .fully_qualified_name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into()),
    }
}

/// `obj` as an array, or a DtypeError naming `what`.
pub fn as_array<'a, 'py>(
    obj: &'a Bound<'py, PyAny>,
    what: impl FnOnce() -> String,
) -> Result<&'a Bound<'py, PyUntypedArray>, Error> {
    obj.cast::<PyUntypedArray>().map_err(|_| {
        Error::Dtype(format!(
            "{} must be a NumPy float32, float64, float16 or bfloat16 array, got {}",
            what(),
            type_name(obj)
        ))
    })
}
