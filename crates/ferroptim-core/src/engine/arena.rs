//! Optimizer state: one flat arena per dtype, slot by slot, end to end.

use crate::error::Result;
use crate::kernels::{Real, MAX_SLOTS};
use crate::memory;

use super::Kind;

/// The state of all params of one dtype.
pub(crate) struct Arena<T> {
    pub(crate) len: usize,
    /// Empty until a step first needs the slot.
    pub(crate) slots: [Vec<T>; MAX_SLOTS],
    /// Averaged weights (EMA or equal-weight); empty until averaging starts.
    pub(crate) average: Vec<T>,
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
}

/// The float32 and float64 arenas, addressed by [`Kind`].
pub(crate) struct Arenas {
    pub(crate) f32: Arena<f32>,
    pub(crate) f64: Arena<f64>,
}

impl Arenas {
    pub(crate) fn new() -> Self {
        Arenas {
            f32: Arena::new(),
            f64: Arena::new(),
        }
    }

    pub(crate) fn reserve(&mut self, kind: Kind, extra: usize) -> Result<()> {
        match kind {
            Kind::F32 => self.f32.reserve(extra),
            Kind::F64 => self.f64.reserve(extra),
        }
    }

    pub(crate) fn grow(&mut self, kind: Kind, extra: usize) -> usize {
        match kind {
            Kind::F32 => self.f32.grow(extra),
            Kind::F64 => self.f64.grow(extra),
        }
    }

    /// Allocates slot `k` (zeros) if it is not yet.
    pub(crate) fn ensure(&mut self, kind: Kind, k: usize) -> Result<()> {
        match kind {
            Kind::F32 => self.f32.ensure(k),
            Kind::F64 => self.f64.ensure(k),
        }
    }

    /// Allocates the averaged weights (zeros) if they are not yet.
    pub(crate) fn ensure_average(&mut self, kind: Kind) -> Result<()> {
        match kind {
            Kind::F32 => self.f32.ensure_average(),
            Kind::F64 => self.f64.ensure_average(),
        }
    }
}
