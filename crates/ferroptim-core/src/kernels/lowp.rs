//! Low-precision storage: bfloat16 and float16 params and grads, and
//! optimizer state kept as bfloat16 or as 8-bit block-scaled codes.
//!
//! Every update rule computes in float32; these functions only move values
//! between storage and float32, so a rule is written once.
//!
//! **Rounding.** Round-to-nearest-even (`half`'s conversions), or
//! stochastic: a value between two representable neighbours goes to the
//! upper one with probability equal to its distance from the lower one, so
//! the rounding is unbiased and small updates are not lost. The random bits
//! come from a counter-based hash of (seed, tensor, step, stream, element),
//! never from thread state: the same seed gives the same bits on any number
//! of threads, and a resumed run continues the same bits.
//!
//! **8-bit state** (`state_dtype="int8"`). Each tensor's state slot is cut
//! into blocks of [`QBLOCK`] elements; a block keeps its absolute maximum as
//! a float32 scale and one byte per element, an 8-bit float of `x / absmax`
//! (as in the FP8 and microscaling formats, with a per-block scale):
//! - signed slots (first moments): a sign bit, 4 exponent and 3 mantissa
//!   bits: magnitudes `1.125·2⁻¹⁵ … 1` (codes 1..=120); smaller ones become 0;
//! - non-negative slots (second moments): 4 exponent and 4 mantissa bits:
//!   `1.0625·2⁻¹⁵ … 1` (codes 1..=240), and **no positive value is ever coded as 0**: it
//!   becomes at least the smallest code. A second moment rounded to zero
//!   while the first moment survives would make the step `m / ε` (sparse
//!   inputs do this), which the 4-bit optimizer-state work warns about.
//!
//! Codes are always rounded stochastically: with 3 or 4 mantissa bits, a
//! moving average whose per-step change (`1 − β₂ = 0.1%`) is below half a
//! code would otherwise never move, and round-to-nearest would bias it.

/// Elements per quantization block (one float32 scale each).
pub const QBLOCK: usize = 256;

/// How a tensor's elements are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    F32,
    Bf16,
    F16,
}

#[inline(always)]
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// Round to nearest even, NaN kept quiet: `half::bf16::from_f32`'s result,
/// written branch-free so the block loops vectorize.
#[inline(always)]
pub fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16;
    let nan = (bits >> 16) | 0x40;
    (if bits & 0x7fff_ffff > 0x7f80_0000 {
        nan
    } else {
        rounded
    }) as u16
}

#[inline(always)]
pub fn f16_to_f32(b: u16) -> f32 {
    half::f16::from_bits(b).to_f32()
}

#[inline(always)]
pub fn f32_to_f16(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

/// A 32-bit integer hash with good avalanche (Wellons' "lowbias32"): cheap
/// and vectorizable (32-bit multiplies only).
#[inline(always)]
fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// splitmix64's finalizer, for the per-stream key (computed once per tensor).
fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The key of one random stream: a tensor's param (`stream` 0) or one of
/// its state slots (`stream` 1 + slot) at step `step`.
pub fn stream_key(seed: u64, tensor: u64, step: u64, stream: u64) -> u32 {
    let x = mix64(seed ^ mix64(tensor.wrapping_mul(4).wrapping_add(stream) ^ mix64(step)));
    (x ^ (x >> 32)) as u32
}

/// 32 random bits for element `index` of the stream `key`: the hash of a
/// Weyl sequence (one multiply-xorshift round per element, vectorized).
#[inline(always)]
pub fn random(key: u32, index: usize) -> u32 {
    random_in(block_key(key, index), 0)
}

/// The key of the elements from `base` on (up to the next multiple of 2³²),
/// so a block's loop does 32-bit arithmetic only: `random_in(block_key(key,
/// base), i) == random(key, base + i)`.
#[inline(always)]
pub fn block_key(key: u32, base: usize) -> u32 {
    key.wrapping_add((base as u32).wrapping_mul(WEYL)) ^ (base >> 32) as u32
}

#[inline(always)]
pub fn random_in(block_key: u32, i: u32) -> u32 {
    mix32(block_key.wrapping_add(i.wrapping_mul(WEYL)))
}

const WEYL: u32 = 0x9e37_79b9;

/// Fills `out` with the random bits of elements `base..base + out.len()` of
/// stream `key`. One draw serves a param and all its state slots: each
/// reads it rotated by its own amount ([`rotation`]).
#[inline(always)]
pub fn randoms(key: u32, base: usize, out: &mut [u32]) {
    let key = block_key(key, base);
    for (i, r) in out.iter_mut().enumerate() {
        *r = random_in(key, i as u32);
    }
}

/// How far stream `stream` (0: the param, 1 + k: state slot k) rotates the
/// shared random bits, so each reads a different window of them.
pub fn rotation(stream: usize) -> u32 {
    (stream as u32 * 11) % 32
}

/// bfloat16 by stochastic rounding: add 16 random bits below the kept ones
/// and truncate (the magnitude rounds up with probability equal to the
/// dropped fraction). Infinities and NaN round to nearest; a value within
/// one bfloat16 step of the largest finite may round up to infinity.
#[inline(always)]
pub fn f32_to_bf16_stochastic(x: f32, r: u32) -> u16 {
    let bits = x.to_bits();
    let special = bits & 0x7f80_0000 == 0x7f80_0000;
    let stochastic = bits.wrapping_add(r & 0xffff) >> 16;
    // Infinity truncates exactly; NaN truncates to a NaN once kept quiet
    // (`f32_to_bf16`'s results, for fewer operations).
    let quiet = if bits & 0x007f_ffff != 0 { 0x40 } else { 0 };
    (if special {
        (bits >> 16) | quiet
    } else {
        stochastic
    }) as u16
}

/// float16 by stochastic rounding, between the two float16 neighbours of
/// `x` (float16 has its own exponent range, so bits cannot be truncated).
#[inline(always)]
pub fn f32_to_f16_stochastic(x: f32, r: u32) -> u16 {
    let near = f32_to_f16(x);
    let nf = f16_to_f32(near);
    if nf == x || !nf.is_finite() || x.is_nan() {
        return near;
    }
    // Toward zero, then one step away from zero (float16 is sign-magnitude).
    let down = if nf.abs() > x.abs() { near - 1 } else { near };
    let up = down + 1;
    let (lo, hi) = (f16_to_f32(down).abs(), f16_to_f32(up).abs());
    let fraction = (x.abs() - lo) / (hi - lo);
    let u = (r & 0xffff) as f32 * (1.0 / 65536.0);
    if u < fraction {
        up
    } else {
        down
    }
}

/// Reads `out.len()` stored elements starting at element `at` into `out`.
///
/// # Safety
/// `ptr` must point to at least `at + out.len()` elements of `storage`.
#[inline(always)]
pub unsafe fn load(ptr: *const u8, storage: Storage, at: usize, out: &mut [f32]) {
    let n = out.len();
    // SAFETY: upheld by the caller.
    unsafe {
        match storage {
            Storage::F32 => {
                out.copy_from_slice(std::slice::from_raw_parts((ptr as *const f32).add(at), n))
            }
            Storage::Bf16 => {
                let src = std::slice::from_raw_parts((ptr as *const u16).add(at), n);
                for (o, &b) in out.iter_mut().zip(src) {
                    *o = bf16_to_f32(b);
                }
            }
            Storage::F16 => {
                let src = std::slice::from_raw_parts((ptr as *const u16).add(at), n);
                for (o, &b) in out.iter_mut().zip(src) {
                    *o = f16_to_f32(b);
                }
            }
        }
    }
}

/// Writes `values` as 16-bit floats into `out`, rounding to nearest even, or
/// stochastically with `random[i]` (rotated) for `values[i]`.
/// `values` is overwritten with what was stored, read back as float32.
#[inline(always)]
pub fn store_half(
    out: &mut [u16],
    values: &mut [f32],
    half: Storage,
    random: Option<(&[u32], u32)>,
) {
    let written = narrow_half(out, values, half, random);
    let read_back = if half == Storage::Bf16 {
        bf16_to_f32
    } else {
        f16_to_f32
    };
    for (v, &o) in values[..written].iter_mut().zip(out.iter()) {
        *v = read_back(o);
    }
}

/// [`store_half`] without the read-back (where nothing reads the stored
/// values as float32 again); returns how many it wrote.
#[inline(always)]
pub fn narrow_half(
    out: &mut [u16],
    values: &[f32],
    half: Storage,
    random: Option<(&[u32], u32)>,
) -> usize {
    let n = out.len().min(values.len());
    let n = random.map_or(n, |(r, _)| n.min(r.len()));
    let (out, values) = (&mut out[..n], &values[..n]);
    match (half, random) {
        (Storage::Bf16, None) => {
            for (o, &v) in out.iter_mut().zip(values) {
                *o = f32_to_bf16(v);
            }
        }
        (Storage::Bf16, Some((random, rotate))) => {
            for ((o, &v), r) in out.iter_mut().zip(values).zip(random) {
                *o = f32_to_bf16_stochastic(v, r.rotate_left(rotate));
            }
        }
        (Storage::F16, None) => {
            for (o, &v) in out.iter_mut().zip(values) {
                *o = f32_to_f16(v);
            }
        }
        (Storage::F16, Some((random, rotate))) => {
            for ((o, &v), r) in out.iter_mut().zip(values).zip(random) {
                *o = f32_to_f16_stochastic(v, r.rotate_left(rotate));
            }
        }
        (Storage::F32, _) => unreachable!("float32 is stored directly"),
    }
    n
}

// The 8-bit codes are the high bits of the float32 of `x / absmax`: an
// exponent offset moves `1.0` to the top code, so encoding is an add, a
// shift and a subtract, and decoding a shift and an add.
/// Signed: magnitude code = (f32 bits >> 20) − 896, so 1.0 → 120, 2⁻¹⁵ → 0.
const SIGNED_OFFSET: u32 = 112 << 3;
/// Non-negative: code = (f32 bits >> 19) − 1792, so 1.0 → 240, 2⁻¹⁵ → 0.
const UNSIGNED_OFFSET: u32 = 112 << 4;

/// The value of one code, relative to its block's absmax.
#[inline(always)]
pub fn decode(code: u8, signed: bool) -> f32 {
    let code = code as u32;
    // Branch-free (selects), so the block loops vectorize.
    if signed {
        let magnitude = code & 0x7f;
        let bits = ((magnitude + SIGNED_OFFSET) << 20) | ((code & 0x80) << 24);
        f32::from_bits(if magnitude == 0 { 0 } else { bits })
    } else {
        // Code 0 is told by its value (2⁻¹⁵ before the select): a test of
        // the code itself LLVM makes in the byte domain, three operations more.
        let value = f32::from_bits((code + UNSIGNED_OFFSET) << 19);
        if value == f32::from_bits(UNSIGNED_OFFSET << 19) {
            0.0
        } else {
            value
        }
    }
}

/// The code of `y = x / absmax` (|y| <= 1), rounded stochastically with the
/// random bits `r`.
#[inline(always)]
pub fn encode(y: f32, signed: bool, r: u32) -> u8 {
    let bits = y.to_bits();
    let magnitude = bits & 0x7fff_ffff;
    if signed {
        let rounded = (magnitude + (r & 0x000f_ffff)) >> 20;
        let code = rounded.clamp(SIGNED_OFFSET, SIGNED_OFFSET + 120) - SIGNED_OFFSET;
        // Below the range: zero (a zero code carries no sign).
        let sign = (bits >> 24) & 0x80;
        (code | if code == 0 { 0 } else { sign }) as u8
    } else {
        let rounded = (magnitude + (r & 0x0007_ffff)) >> 19;
        // A positive value never becomes 0 (see the module doc): its code is
        // at least 1 (a clamp bound, not a max with a widened bool).
        let lowest = if y > 0.0 {
            UNSIGNED_OFFSET + 1
        } else {
            UNSIGNED_OFFSET
        };
        (rounded.clamp(lowest, UNSIGNED_OFFSET + 240) - UNSIGNED_OFFSET) as u8
    }
}

/// One block of an 8-bit state slot: its codes and its scale.
pub struct Int8Slot<'a> {
    pub codes: &'a mut [u8],
    pub scale: &'a mut f32,
    /// The stream rotation of this slot's random bits ([`rotation`]).
    pub rotate: u32,
    /// Room for the block's new values until they are encoded, at least
    /// `codes.len()` long (the caller's, so it is not zeroed for every block).
    pub values: &'a mut [f32],
}

/// Decodes one block.
#[inline(always)]
pub fn dequantize(codes: &[u8], scale: f32, signed: bool, out: &mut [f32]) {
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = decode(c, signed) * scale;
    }
}

/// Encodes one block (at most [`QBLOCK`] values) rounding with `random[i]`
/// (rotated) for `values[i]`, and returns its scale (its largest magnitude). A block
/// holding NaN or infinity gets that as its scale and zero codes, so the
/// next step reads NaN there rather than a silently finite value.
#[inline(always)]
pub fn quantize(
    values: &[f32],
    codes: &mut [u8],
    signed: bool,
    random: &[u32],
    rotate: u32,
) -> f32 {
    let mut top = 0u32;
    for &v in values {
        top = top.max(magnitude_bits(v));
    }
    encode_block(values, top, codes, signed, random, rotate)
}

/// The largest magnitude is taken by its bits: for floats that are not NaN
/// the integer order is the numeric order, and an integer max vectorizes.
#[inline(always)]
pub fn magnitude_bits(v: f32) -> u32 {
    v.to_bits() & 0x7fff_ffff
}

/// [`quantize`] with the block's largest [`magnitude_bits`] already known
/// (`top`): a fused rule tracks it while it computes the values.
#[inline(always)]
pub fn encode_block(
    values: &[f32],
    top: u32,
    codes: &mut [u8],
    signed: bool,
    random: &[u32],
    rotate: u32,
) -> f32 {
    let absmax = f32::from_bits(top);
    if top == 0 || top >= 0x7f80_0000 {
        codes.fill(0);
        // NaN or infinity (a NaN's bits are above infinity's), or all zeros.
        return absmax;
    }
    let inverse = 1.0 / absmax;
    for ((c, &v), r) in codes.iter_mut().zip(values).zip(random) {
        // `v · (1/absmax)` can land a hair above 1: the codes saturate.
        *c = encode(v * inverse, signed, r.rotate_left(rotate));
    }
    absmax
}
