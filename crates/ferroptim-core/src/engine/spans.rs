//! The memory of registered params, for the overlap checks: no two params
//! may share memory, and no grad may share memory with a param.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// A byte range `(start, end, param index)`.
pub type Span = (usize, usize, usize);

/// Byte ranges of the non-empty registered params.
#[derive(Default)]
pub struct Spans {
    /// Sorted, for the grad checks of a step; rebuilt from `index` by
    /// [`Spans::refresh`] after params were added.
    ranges: Vec<Span>,
    /// The same ranges keyed by start, so adding a group costs O(k log n)
    /// rather than a re-sort of every range (16k groups were quadratic).
    index: BTreeMap<usize, (usize, usize)>,
}

impl Spans {
    /// Checks that no two of `new` overlap, nor one of them and a
    /// registered range; `label` names param `i` in the error. Drops the
    /// empty ranges of `new` and sorts it, ready for [`Spans::insert`].
    pub fn check_new(&self, new: &mut Vec<Span>, label: impl Fn(usize) -> String) -> Result<()> {
        new.retain(|s| s.0 != s.1);
        // The new ranges against each other, then against the registered ones.
        new.sort_unstable();
        let mut clash = new
            .windows(2)
            .find(|pair| pair[1].0 < pair[0].1)
            .map(|pair| (pair[0], pair[1]));
        if clash.is_none() {
            clash = new.iter().find_map(|&(start, end, i)| {
                let before = self.index.range(..=start).next_back();
                let after = self.index.range(start..end).next();
                before
                    .filter(|(_, &(e, _))| e > start)
                    .or(after)
                    .map(|(&s, &(e, j))| ((s, e, j), (start, end, i)))
            });
        }
        if let Some((a, b)) = clash {
            let how = if a.0 == b.0 && a.1 == b.1 {
                "are the same array (a param given twice)"
            } else {
                "share memory"
            };
            return Err(Error::Param(format!(
                "params {} and {} {how}",
                label(a.2.min(b.2)),
                label(a.2.max(b.2))
            )));
        }
        Ok(())
    }

    /// Registers ranges checked by [`Spans::check_new`].
    pub fn insert(&mut self, new: &[Span]) {
        if !new.is_empty() {
            self.index
                .extend(new.iter().map(|&(start, end, i)| (start, (end, i))));
            self.ranges.clear();
        }
    }

    /// Makes [`Spans::overlapping`] see every added range.
    pub fn refresh(&mut self) {
        if self.ranges.len() != self.index.len() {
            self.ranges = self.index.iter().map(|(&s, &(e, i))| (s, e, i)).collect();
        }
    }

    /// The param whose memory overlaps `[start, end)`, if any (after
    /// [`Spans::refresh`]).
    pub fn overlapping(&self, start: usize, end: usize) -> Option<usize> {
        if start == end {
            return None;
        }
        let k = self.ranges.partition_point(|r| r.1 <= start);
        self.ranges.get(k).filter(|r| r.0 < end).map(|r| r.2)
    }

    /// A grad of param `i` over `[start, end)` may not share memory with
    /// any param (the step writes them); `what` names the grad, `label` a param.
    pub fn check_grad(
        &self,
        i: usize,
        (start, end): (usize, usize),
        what: impl Fn() -> String,
        label: impl Fn(usize) -> String,
    ) -> Result<()> {
        if let Some(j) = self.overlapping(start, end) {
            let whose = if j == i {
                "its param".to_string()
            } else {
                format!("param {}", label(j))
            };
            return Err(Error::Grad(format!(
                "{} shares memory with {whose}; pass a copy",
                what()
            )));
        }
        Ok(())
    }
}
