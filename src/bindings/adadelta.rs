//! `_core.Adadelta`.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{optimizer_class, Group};
use crate::engine::FromGroup;
use crate::error::Result;
use crate::kernels::adadelta::{Adadelta, AdadeltaHyper};

impl FromGroup for AdadeltaHyper {
    fn from_group(group: &Bound<'_, PyDict>) -> Result<Self> {
        let g = Group(group);
        Ok(AdadeltaHyper {
            lr: g.non_negative("lr")?,
            rho: g.unit("rho")?,
            eps: g.non_negative("eps")?,
            weight_decay: g.non_negative("weight_decay")?,
            l1: g.non_negative("l1")?,
            maximize: g.flag("maximize")?,
        })
    }
}

optimizer_class!(PyAdadelta, "Adadelta", Adadelta);
