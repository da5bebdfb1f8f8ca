//! `_core.NAdam`.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{optimizer_class, Group};
use crate::engine::FromGroup;
use crate::error::Result;
use crate::kernels::nadam::{Nadam, NadamHyper};

impl FromGroup for NadamHyper {
    fn from_group(group: &Bound<'_, PyDict>) -> Result<Self> {
        let g = Group(group);
        let (beta1, beta2) = g.betas("betas")?;
        Ok(NadamHyper {
            lr: g.non_negative("lr")?,
            beta1,
            beta2,
            eps: g.non_negative("eps")?,
            weight_decay: g.non_negative("weight_decay")?,
            l1: g.non_negative("l1")?,
            momentum_decay: g.non_negative("momentum_decay")?,
            decoupled: g.flag("decoupled_weight_decay")?,
            maximize: g.flag("maximize")?,
            mu_product_f32: g.choice("mu_product_dtype", &["float32", "float64"], 0)? == 0,
        })
    }
}

optimizer_class!(PyNAdam, "NAdam", Nadam);
