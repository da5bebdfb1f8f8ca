//! Reductions and rescaling over many grads: global norms, clipping, finite checks.
//!
//! Sums are deterministic: every tensor is cut into fixed blocks whatever
//! the thread count, each block is summed pairwise in f64, and the block
//! sums are combined pairwise in a fixed order. One thread or many, the
//! bits of the result are the same.

use rayon::prelude::*;

use super::{parallel, simd, Real};

/// Elements per block; blocks are the unit of parallel work and of determinism.
pub const BLOCK: usize = 1 << 15;
/// Below this a block is summed with independent lanes.
const LEAF: usize = 256;

#[inline(always)]
fn leaf_sum_squares<T: Real>(x: &[T]) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for j in 0..8 {
            let v = c[j].to_f64();
            lanes[j] += v * v;
        }
    }
    for (j, v) in rest.iter().enumerate() {
        let v = v.to_f64();
        lanes[j] += v * v;
    }
    ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
        + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
}

#[inline(always)]
fn pairwise_sum_squares<T: Real>(x: &[T]) -> f64 {
    if x.len() <= LEAF {
        leaf_sum_squares(x)
    } else {
        let mid = (x.len() / 2).next_multiple_of(8);
        pairwise_sum_squares(&x[..mid]) + pairwise_sum_squares(&x[mid..])
    }
}

fn pairwise_total(values: &[f64]) -> f64 {
    match values.len() {
        0 => 0.0,
        1 => values[0],
        n => pairwise_total(&values[..n / 2]) + pairwise_total(&values[n / 2..]),
    }
}

/// `(tensor, block)` pairs in a fixed order.
fn blocks<'a, T>(tensors: &'a [&'a [T]]) -> Vec<&'a [T]> {
    tensors.iter().flat_map(|t| t.chunks(BLOCK)).collect()
}

fn map_blocks<T: Real>(tensors: &[&[T]], f: impl Fn(&[T]) -> f64 + Sync + Send) -> Vec<f64> {
    let blocks = blocks(tensors);
    let total: usize = tensors.iter().map(|t| t.len()).sum();
    let pool = parallel::pool();
    if total < parallel::PARALLEL_MIN_ELEMS || pool.current_num_threads() == 1 {
        blocks.iter().map(|b| f(b)).collect()
    } else {
        pool.install(|| blocks.par_iter().map(|b| f(b)).collect())
    }
}

/// Σ x² over all tensors, in f64.
pub fn sum_squares<T: Real>(tensors: &[&[T]]) -> f64 {
    let partial = map_blocks(tensors, |b| {
        simd::dispatch(
            #[inline(always)]
            || pairwise_sum_squares(b),
        )
    });
    pairwise_total(&partial)
}

/// max |x| over all tensors (NaN if any element is NaN; 0 when empty).
pub fn max_abs<T: Real>(tensors: &[&[T]]) -> f64 {
    let partial = map_blocks(tensors, |b| {
        simd::dispatch(
            #[inline(always)]
            || {
                let mut m = 0f64;
                let mut nan = false;
                for &v in b {
                    let a = v.abs().to_f64();
                    nan |= a.is_nan();
                    m = if a > m { a } else { m };
                }
                if nan {
                    f64::NAN
                } else {
                    m
                }
            },
        )
    });
    partial.into_iter().fold(0.0, |m, v| {
        if v.is_nan() || m.is_nan() {
            f64::NAN
        } else {
            m.max(v)
        }
    })
}

/// Per-tensor Σ x², each deterministic as in [`sum_squares`].
pub fn sum_squares_each<T: Real>(tensors: &[&[T]]) -> Vec<f64> {
    tensors
        .iter()
        .map(|t| sum_squares(std::slice::from_ref(t)))
        .collect()
}

/// True when every element is finite.
#[allow(clippy::eq_op)] // x − x is the point: 0 for finite x, NaN otherwise.
pub fn all_finite<T: Real>(tensors: &[&[T]]) -> bool {
    let partial = map_blocks(tensors, |b| {
        simd::dispatch(
            #[inline(always)]
            || {
                // x − x is 0 for finite x and NaN for ±inf and NaN; eight
                // independent lanes so the loop vectorizes.
                let mut lanes = [T::ZERO; 8];
                let chunks = b.chunks_exact(8);
                let rest = chunks.remainder();
                for c in chunks {
                    for j in 0..8 {
                        lanes[j] = lanes[j] + (c[j] - c[j]);
                    }
                }
                for (j, &v) in rest.iter().enumerate() {
                    lanes[j] = lanes[j] + (v - v);
                }
                if lanes.iter().all(|&l| l == T::ZERO) {
                    1.0
                } else {
                    0.0
                }
            },
        )
    });
    partial.iter().all(|&v| v == 1.0)
}

/// Multiplies every element by `factor` (in the tensor's dtype), in place.
pub fn scale<T: Real>(tensors: &mut [&mut [T]], factor: T) {
    for_each_block_mut(tensors, |b| {
        simd::dispatch(
            #[inline(always)]
            || {
                for v in b.iter_mut() {
                    *v = *v * factor;
                }
            },
        )
    });
}

/// Clamps every element to `[-clip, clip]`, in place (NaN stays NaN).
pub fn clamp<T: Real>(tensors: &mut [&mut [T]], clip: T) {
    for_each_block_mut(tensors, |b| {
        simd::dispatch(
            #[inline(always)]
            || {
                for v in b.iter_mut() {
                    let x = *v;
                    *v = if x > clip {
                        clip
                    } else if x < -clip {
                        -clip
                    } else {
                        x
                    };
                }
            },
        )
    });
}

fn for_each_block_mut<T: Real>(tensors: &mut [&mut [T]], f: impl Fn(&mut [T]) + Sync + Send) {
    let total: usize = tensors.iter().map(|t| t.len()).sum();
    let mut blocks: Vec<&mut [T]> = tensors
        .iter_mut()
        .flat_map(|t| t.chunks_mut(BLOCK))
        .collect();
    let pool = parallel::pool();
    if total < parallel::PARALLEL_MIN_ELEMS || pool.current_num_threads() == 1 {
        blocks.iter_mut().for_each(|b| f(b));
    } else {
        pool.install(|| blocks.par_iter_mut().for_each(|b| f(b)));
    }
}

/// The norm of float32 and float64 tensors taken together: the 2-norm, or
/// the infinity norm (NaN if any element is NaN).
pub fn global_norm(a: &[&[f32]], b: &[&[f64]], inf_norm: bool) -> f64 {
    if inf_norm {
        let (x, y) = (max_abs(a), max_abs(b));
        if x.is_nan() || y.is_nan() {
            f64::NAN
        } else {
            x.max(y)
        }
    } else {
        (sum_squares(a) + sum_squares(b)).sqrt()
    }
}

/// torch.nn.utils.clip_grad_norm_'s factor: `max_norm / (norm + 1e-6)`,
/// clamped at 1, and NaN when the norm is NaN (so NaN grads stay NaN
/// everywhere, as in torch, instead of passing through unclipped).
pub fn clip_coefficient(max_norm: f64, norm: f64) -> f64 {
    let c = max_norm / (norm + 1e-6);
    if c.is_nan() {
        c
    } else {
        c.min(1.0)
    }
}
