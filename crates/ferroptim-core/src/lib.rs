//! ferroptim-core: torch.optim's element-wise optimizers over plain slices,
//! in pure Rust (no Python).
//!
//! - [`kernels`]: one file per optimizer (hyperparameters and their checks,
//!   state slots, per-step scalars, element update), SIMD dispatch, the
//!   thread pool and the multi-tensor pass.
//! - [`engine`]: the multi-tensor engine over plain addresses (param
//!   registry, overlap checks, state arenas, step counts, averaging, state dicts).
//! - [`hyper`]: reading a param group through [`hyper::HyperSource`].
//! - [`options`]: step options (clipping, skipping, averaging).
//! - [`memory`]: fallible allocation (an error instead of an abort).
//! - [`error`]: the one error enum.
//!
//! One Adam step over a `&mut [f32]`:
//!
//! ```
//! use ferroptim_core::kernels::adam::{Adam, AdamHyper};
//! use ferroptim_core::kernels::{step_slices, Algorithm};
//!
//! let mut param = vec![1.0f32, -2.0, 3.0];
//! let grad = vec![0.5f32, -0.5, 1.0];
//! // Adam's state: exp_avg, exp_avg_sq (and max_exp_avg_sq with amsgrad, unused here).
//! let (mut m, mut v) = (vec![0.0f32; 3], vec![0.0f32; 3]);
//! let hyper = AdamHyper { lr: 0.1, ..AdamHyper::default() };
//! for step in 1..=3 {
//!     let scalars = Adam::scalars::<f32>(&hyper, step, [step == 1; 3]);
//!     step_slices::<Adam, f32>(&mut param, &grad, [&mut m, &mut v, &mut []], &scalars);
//! }
//! // Each step moves every param by about lr against its grad's sign.
//! assert!((param[0] - 0.7).abs() < 1e-3);
//! assert!((param[1] + 1.7).abs() < 1e-3);
//! ```

pub mod engine;
pub mod error;
pub mod hyper;
pub mod kernels;
pub mod memory;
pub mod options;

pub use error::{Error, Result};
