//! `_core.Adamax`.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{optimizer_class, Group};
use crate::engine::FromGroup;
use crate::error::Result;
use crate::kernels::adamax::{Adamax, AdamaxHyper};

impl FromGroup for AdamaxHyper {
    fn from_group(group: &Bound<'_, PyDict>) -> Result<Self> {
        let g = Group(group);
        let (beta1, beta2) = g.betas("betas")?;
        Ok(AdamaxHyper {
            lr: g.non_negative("lr")?,
            beta1,
            beta2,
            eps: g.non_negative("eps")?,
            weight_decay: g.non_negative("weight_decay")?,
            l1: g.non_negative("l1")?,
            maximize: g.flag("maximize")?,
        })
    }
}

optimizer_class!(PyAdamax, "Adamax", Adamax);
