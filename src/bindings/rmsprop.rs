//! `_core.RMSprop`.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{optimizer_class, Group};
use crate::engine::FromGroup;
use crate::error::Result;
use crate::kernels::rmsprop::{Rmsprop, RmspropHyper};

impl FromGroup for RmspropHyper {
    fn from_group(group: &Bound<'_, PyDict>) -> Result<Self> {
        let g = Group(group);
        Ok(RmspropHyper {
            lr: g.non_negative("lr")?,
            alpha: g.non_negative("alpha")?,
            eps: g.non_negative("eps")?,
            weight_decay: g.non_negative("weight_decay")?,
            l1: g.non_negative("l1")?,
            momentum: g.non_negative("momentum")?,
            centered: g.flag("centered")?,
            maximize: g.flag("maximize")?,
        })
    }
}

optimizer_class!(PyRMSprop, "RMSprop", Rmsprop);
