//! Optimizer state: one flat arena per dtype, slot by slot, end to end.
//!
//! The float32 arena also serves bfloat16 and float16 params (their state
//! computes in float32) and keeps, when asked, the state as bfloat16 or as
//! 8-bit codes with one scale per block, and float32 master weights.

use crate::error::Result;
use crate::kernels::lowp::QBLOCK;
use crate::kernels::{Real, MAX_SLOTS};
use crate::memory::{self, Zeroable};
use crate::options::StateDtype;

use super::Kind;

/// The state of all params of one dtype.
pub(crate) struct Arena<T> {
    pub(crate) len: usize,
    /// How the slots are stored (float32 arena only; float64 keeps float64).
    pub(crate) state: StateDtype,
    /// Empty until a step first needs the slot.
    pub(crate) slots: [Vec<T>; MAX_SLOTS],
    /// `state_dtype="bfloat16"`: the slots' bits.
    pub(crate) half: [Vec<u16>; MAX_SLOTS],
    /// `state_dtype="int8"`: the slots' codes and per-block scales.
    pub(crate) codes: [Vec<u8>; MAX_SLOTS],
    pub(crate) scales: [Vec<f32>; MAX_SLOTS],
    pub(crate) average: Vec<T>,
    /// Float32 master weights of 16-bit params.
    pub(crate) master: Vec<f32>,
}

fn reserve_if_used<U>(buf: &mut Vec<U>, extra: usize, what: &str) -> Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    memory::try_reserve(buf, extra, what)
}

fn grow_if_used<U: Zeroable>(buf: &mut Vec<U>, len: usize, zero: U) {
    if !buf.is_empty() {
        buf.resize(len, zero);
    }
}

fn ensure_len<U: Zeroable>(buf: &mut Vec<U>, len: usize, what: &str) -> Result<()> {
    if buf.len() != len {
        *buf = memory::try_zeroed(len, what)?;
    }
    Ok(())
}

impl<T: Real> Arena<T> {
    fn new() -> Self {
        Arena {
            len: 0,
            state: StateDtype::Float32,
            slots: Default::default(),
            half: Default::default(),
            codes: Default::default(),
            scales: Default::default(),
            average: Vec::new(),
            master: Vec::new(),
        }
    }

    fn reserve(&mut self, extra: usize) -> Result<()> {
        for k in 0..MAX_SLOTS {
            reserve_if_used(&mut self.slots[k], extra, "optimizer state")?;
            reserve_if_used(&mut self.half[k], extra, "optimizer state")?;
            reserve_if_used(&mut self.codes[k], extra, "optimizer state")?;
            reserve_if_used(&mut self.scales[k], extra / QBLOCK + 1, "optimizer state")?;
        }
        reserve_if_used(&mut self.average, extra, "averaged weights")?;
        reserve_if_used(&mut self.master, extra, "master weights")
    }

    fn grow(&mut self, extra: usize) -> usize {
        // 8-bit state: every param starts on a block boundary, so its
        // blocks (and their scales) are its own.
        let offset = match self.state {
            StateDtype::Int8 => self.len.next_multiple_of(QBLOCK),
            _ => self.len,
        };
        self.len = offset + extra;
        let blocks = self.blocks();
        for k in 0..MAX_SLOTS {
            grow_if_used(&mut self.slots[k], self.len, T::ZERO);
            grow_if_used(&mut self.half[k], self.len, 0);
            grow_if_used(&mut self.codes[k], self.len, 0);
            grow_if_used(&mut self.scales[k], blocks, 0.0);
        }
        grow_if_used(&mut self.average, self.len, T::ZERO);
        grow_if_used(&mut self.master, self.len, 0.0);
        offset
    }

    fn blocks(&self) -> usize {
        self.len.div_ceil(QBLOCK)
    }

    /// Whether slot `k` has its memory.
    pub(crate) fn has(&self, k: usize) -> bool {
        self.len > 0
            && match self.state {
                StateDtype::Float32 => self.slots[k].len() == self.len,
                StateDtype::Bfloat16 => self.half[k].len() == self.len,
                StateDtype::Int8 => self.codes[k].len() == self.len,
            }
    }

    fn ensure(&mut self, k: usize) -> Result<()> {
        let what = "optimizer state";
        match self.state {
            StateDtype::Float32 => ensure_len(&mut self.slots[k], self.len, what),
            StateDtype::Bfloat16 => ensure_len(&mut self.half[k], self.len, what),
            StateDtype::Int8 => {
                ensure_len(&mut self.codes[k], self.len, what)?;
                let blocks = self.blocks();
                ensure_len(&mut self.scales[k], blocks, what)
            }
        }
    }

    fn ensure_average(&mut self) -> Result<()> {
        ensure_len(&mut self.average, self.len, "averaged weights")
    }

    pub(crate) fn ensure_master(&mut self) -> Result<()> {
        ensure_len(&mut self.master, self.len, "master weights")
    }
}

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
        match kind.compute() {
            Kind::F64 => self.f64.reserve(extra),
            _ => self.f32.reserve(extra),
        }
    }

    pub(crate) fn grow(&mut self, kind: Kind, extra: usize) -> usize {
        match kind.compute() {
            Kind::F64 => self.f64.grow(extra),
            _ => self.f32.grow(extra),
        }
    }

    pub(crate) fn ensure(&mut self, kind: Kind, k: usize) -> Result<()> {
        match kind.compute() {
            Kind::F64 => self.f64.ensure(k),
            _ => self.f32.ensure(k),
        }
    }

    pub(crate) fn ensure_average(&mut self, kind: Kind) -> Result<()> {
        match kind.compute() {
            Kind::F64 => self.f64.ensure_average(),
            _ => self.f32.ensure_average(),
        }
    }
}
