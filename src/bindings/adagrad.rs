//! `_core.Adagrad`.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{optimizer_class, Group};
use crate::engine::FromGroup;
use crate::error::Result;
use crate::kernels::adagrad::{Adagrad, AdagradHyper};

impl FromGroup for AdagradHyper {
    fn from_group(group: &Bound<'_, PyDict>) -> Result<Self> {
        let g = Group(group);
        Ok(AdagradHyper {
            lr: g.non_negative("lr")?,
            lr_decay: g.non_negative("lr_decay")?,
            weight_decay: g.non_negative("weight_decay")?,
            l1: g.non_negative("l1")?,
            initial_accumulator_value: g.non_negative("initial_accumulator_value")?,
            eps: g.non_negative("eps")?,
            maximize: g.flag("maximize")?,
        })
    }
}

optimizer_class!(PyAdagrad, "Adagrad", Adagrad);
