//! `_core.RAdam`.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{optimizer_class, Group};
use crate::engine::FromGroup;
use crate::error::Result;
use crate::kernels::radam::{Radam, RadamHyper};

impl FromGroup for RadamHyper {
    fn from_group(group: &Bound<'_, PyDict>) -> Result<Self> {
        let g = Group(group);
        let (beta1, beta2) = g.betas("betas")?;
        Ok(RadamHyper {
            lr: g.non_negative("lr")?,
            beta1,
            beta2,
            eps: g.non_negative("eps")?,
            weight_decay: g.non_negative("weight_decay")?,
            l1: g.non_negative("l1")?,
            decoupled: g.flag("decoupled_weight_decay")?,
            maximize: g.flag("maximize")?,
        })
    }
}

optimizer_class!(PyRAdam, "RAdam", Radam);
