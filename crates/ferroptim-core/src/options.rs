//! Per-optimizer step options (set with `configure`): clipping, skipping
//! non-finite steps, weight averaging.

use crate::error::{Error, Result};

/// Options applied to every step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Options {
    /// Clip the global grad norm to this (torch.nn.utils.clip_grad_norm_).
    pub max_grad_norm: Option<f64>,
    /// Use the infinity norm instead of the 2-norm for `max_grad_norm`.
    pub inf_norm: bool,
    /// Clamp every grad element to `[-clip_value, clip_value]`.
    pub clip_value: Option<f64>,
    /// A step whose grads hold NaN or Inf changes nothing and is counted.
    pub skip_nonfinite: bool,
    /// Weight averaging after every step (EMA or equal weights), or None.
    pub averaging: Option<Averaging>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Averaging {
    /// a = a + (1 − decay)(p − a), starting from a copy of the params.
    Ema(f64),
    /// The plain mean of the params after every step (SWA).
    Equal,
}

impl Averaging {
    /// The weight of the new params after `done` earlier averaging steps.
    pub fn weight(self, done: u64) -> f64 {
        match (self, done) {
            (_, 0) => 1.0,
            (Averaging::Ema(decay), _) => 1.0 - decay,
            (Averaging::Equal, n) => 1.0 / (n as f64 + 1.0),
        }
    }
}

impl Options {
    /// Checks the options as the user gives them (`norm_type` 2 or inf).
    pub fn new(
        max_grad_norm: Option<f64>,
        norm_type: f64,
        clip_value: Option<f64>,
        skip_nonfinite: bool,
        ema_decay: Option<f64>,
        ema_equal: bool,
    ) -> Result<Options> {
        let positive = |name: &str, v: Option<f64>| match v {
            Some(x) if !(x.is_finite() && x > 0.0) => Err(Error::hyper(
                name,
                &format!("must be a finite number > 0, got {x}"),
            )),
            _ => Ok(v),
        };
        let inf_norm = if norm_type == 2.0 {
            false
        } else if norm_type == f64::INFINITY {
            true
        } else {
            return Err(Error::hyper(
                "norm_type",
                &format!("must be 2 or inf, got {norm_type}"),
            ));
        };
        let averaging = match (ema_decay, ema_equal) {
            (Some(_), true) => {
                return Err(Error::hyper(
                    "ema_decay",
                    "give ema_decay or ema_equal_weights, not both",
                ))
            }
            (Some(d), false) if !(0.0..1.0).contains(&d) => {
                return Err(Error::hyper(
                    "ema_decay",
                    &format!("must be in [0, 1), got {d}"),
                ))
            }
            (Some(d), false) => Some(Averaging::Ema(d)),
            (None, true) => Some(Averaging::Equal),
            (None, false) => None,
        };
        Ok(Options {
            max_grad_norm: positive("max_grad_norm", max_grad_norm)?,
            inf_norm,
            clip_value: positive("clip_value", clip_value)?,
            skip_nonfinite,
            averaging,
        })
    }
}

/// How optimizer state is stored (for float32, bfloat16 and float16
/// params; float64 params keep float64 state).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StateDtype {
    #[default]
    Float32,
    Bfloat16,
    /// 8-bit block-scaled codes ([`crate::kernels::lowp`]).
    Int8,
}

impl StateDtype {
    pub fn parse(name: &str) -> Result<StateDtype> {
        match name {
            "float32" => Ok(StateDtype::Float32),
            "bfloat16" => Ok(StateDtype::Bfloat16),
            "int8" => Ok(StateDtype::Int8),
            _ => Err(Error::hyper(
                "state_dtype",
                &format!("must be 'float32', 'bfloat16' or 'int8', got '{name}'"),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StateDtype::Float32 => "float32",
            StateDtype::Bfloat16 => "bfloat16",
            StateDtype::Int8 => "int8",
        }
    }
}

/// How params and state are stored and rounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Precision {
    pub state: StateDtype,
    /// 16-bit params keep a float32 master copy in the state.
    pub master_weights: bool,
    /// Round params (without master weights) and bfloat16 state stochastically.
    pub stochastic_rounding: bool,
    pub seed: u64,
}

impl Default for Precision {
    fn default() -> Self {
        Precision {
            state: StateDtype::Float32,
            master_weights: true,
            stochastic_rounding: false,
            seed: 0,
        }
    }
}
