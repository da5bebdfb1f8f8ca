//! `_core.SGD`.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{hyper, optimizer_class, Group};
use crate::engine::FromGroup;
use crate::error::Result;
use crate::kernels::sgd::{Sgd, SgdHyper};

impl FromGroup for SgdHyper {
    fn from_group(group: &Bound<'_, PyDict>) -> Result<Self> {
        let g = Group(group);
        let h = SgdHyper {
            lr: g.non_negative("lr")?,
            momentum: g.non_negative("momentum")?,
            dampening: g.finite("dampening")?,
            weight_decay: g.non_negative("weight_decay")?,
            l1: g.non_negative("l1")?,
            nesterov: g.flag("nesterov")?,
            maximize: g.flag("maximize")?,
        };
        if h.nesterov && (h.momentum <= 0.0 || h.dampening != 0.0) {
            return Err(hyper(
                "nesterov",
                "Nesterov momentum requires a momentum > 0 and zero dampening",
            ));
        }
        Ok(h)
    }
}

optimizer_class!(PySGD, "SGD", Sgd);
