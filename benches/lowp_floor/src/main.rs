//! How much compute does one AdamW step cost on bfloat16 params and grads
//! with int8 state and stochastic rounding, and what bounds it?
//!
//! Issue #14's target (2.0x torch fused AdamW on float32, 16M params, two
//! threads) needs the step in about 4.25 ms, so each of the two cores may
//! spend at most about 0.5 ns per param even if memory were free. This program
//! measures, on one core with a cache-resident tensor:
//!
//! - `library`: ferroptim-core's own mixed pass (`mixed::run::<Adam>`);
//! - `hand-written`: one AVX-512 kernel for exactly this case, checked to
//!   give the library's bits (params, codes and scales) step after step;
//! - the hand-written kernel with stages removed (wrong results, timing
//!   only): no random hash, no square root or division, no 8-bit encode, and
//!   none of the three. Even without its square root and divisions the pass
//!   costs about the whole budget.
//!
//! It also measures how many of a few AVX-512 instructions one core retires
//! per nanosecond (eight independent chains each), which says what bounds
//! the pass: its count of vector operations, not memory.
//!
//! Run with `cargo run --release` on an AVX-512 machine.

use std::arch::x86_64::*;
use std::time::Instant;

use ferroptim_core::kernels::adam::{Adam, AdamHyper};
use ferroptim_core::kernels::lowp::{self, Storage, QBLOCK};
use ferroptim_core::kernels::mixed::{self, MixedJob, Rounding, SlotPtr};
use ferroptim_core::kernels::{parallel, Algorithm};

const NUMEL: usize = 1 << 16;
const SEED: u64 = 7;
const WEYL: u32 = 0x9e37_79b9;

/// One tensor's buffers: bf16 params and grads, int8 moments and scales.
#[derive(Clone)]
struct Tensor {
    param: Vec<u16>,
    grad: Vec<u16>,
    m_codes: Vec<u8>,
    v_codes: Vec<u8>,
    m_scales: Vec<f32>,
    v_scales: Vec<f32>,
}

impl Tensor {
    fn new() -> Tensor {
        // A small LCG: bf16 params of magnitude 1..2, grads 0.0625..0.125.
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let mut bf16 =
            |exponent: u16| (exponent + (next() % 0x80) as u16) | ((next() & 1) << 15) as u16;
        let param = (0..NUMEL).map(|_| bf16(0x3f80)).collect();
        let grad = (0..NUMEL).map(|_| bf16(0x3d80)).collect();
        let blocks = NUMEL / QBLOCK;
        Tensor {
            param,
            grad,
            m_codes: vec![0; NUMEL],
            v_codes: vec![0; NUMEL],
            m_scales: vec![0.0; blocks],
            v_scales: vec![0.0; blocks],
        }
    }
}

fn hyper() -> AdamHyper {
    AdamHyper {
        lr: 1e-3,
        weight_decay: 1e-2,
        decoupled: true,
        ..AdamHyper::default()
    }
}

/// The library's step: what `fo.AdamW(..., state_dtype="int8",
/// master_weights=False, stochastic_rounding=True)` runs.
fn library_step(t: &mut Tensor, step: u64) {
    let scalars = Adam::scalars::<f32>(&hyper(), step, [step == 1; 3]);
    let rounding = Rounding {
        stochastic: true,
        seed: SEED,
        tensor: 0,
        step,
    };
    let state = [
        SlotPtr::Int8 {
            codes: t.m_codes.as_mut_ptr(),
            scales: t.m_scales.as_mut_ptr(),
            signed: true,
        },
        SlotPtr::Int8 {
            codes: t.v_codes.as_mut_ptr(),
            scales: t.v_scales.as_mut_ptr(),
            signed: false,
        },
        SlotPtr::Unused,
    ];
    // SAFETY: every buffer holds NUMEL elements (scales NUMEL / QBLOCK) and
    // none overlaps another.
    unsafe {
        let job = MixedJob::new(
            (t.param.as_mut_ptr() as *mut u8, Storage::Bf16),
            (t.grad.as_ptr() as *const u8, Storage::Bf16),
            std::ptr::null_mut(),
            state,
            NUMEL,
            scalars,
            None,
            None,
            rounding,
        );
        mixed::run::<Adam>(&mut [job]);
    }
}

/// AdamW's per-step scalars as the library rounds them to float32.
#[derive(Clone, Copy)]
struct Scalars {
    decay: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    neg_step_size: f32,
    bias_correction2_sqrt: f32,
    eps: f32,
}

impl Scalars {
    fn new(step: u64) -> Scalars {
        let h = hyper();
        let t = step as f64;
        Scalars {
            decay: (1.0 - h.lr * h.weight_decay) as f32,
            one_minus_beta1: (1.0 - h.beta1) as f32,
            beta2: h.beta2 as f32,
            one_minus_beta2: (1.0 - h.beta2) as f32,
            neg_step_size: (-(h.lr / (1.0 - h.beta1.powf(t)))) as f32,
            bias_correction2_sqrt: (1.0 - h.beta2.powf(t)).sqrt() as f32,
            eps: h.eps as f32,
        }
    }
}

/// Stages the hand-written kernel leaves out (timing only).
const NO_HASH: u32 = 1;
const NO_SQRT_DIV: u32 = 2;
const NO_ENCODE: u32 = 4;

fn hand_written_step<const SKIP: u32>(t: &mut Tensor, step: u64) {
    assert!(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw"));
    let key = lowp::stream_key(SEED, 0, step, 0);
    // SAFETY: the features were just checked.
    unsafe { hand_written::<SKIP>(t, key, Scalars::new(step)) }
}

#[inline(always)]
unsafe fn widen_bf16(p: *const u16) -> __m512 {
    let bits = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p as *const __m256i));
    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(bits))
}

/// One pass per 256-element block: decode, AdamW, random bits and the
/// stochastically rounded param in one loop (moments and random bits kept
/// in L1 scratch), then both moments encoded. The operations, and their
/// order, are the library's, so the bits are too.
#[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq")]
unsafe fn hand_written<const SKIP: u32>(t: &mut Tensor, key: u32, s: Scalars) {
    #[repr(align(64))]
    struct Scratch([f32; QBLOCK], [f32; QBLOCK], [u32; QBLOCK]);
    let mut scratch = Scratch([0.0; QBLOCK], [0.0; QBLOCK], [0; QBLOCK]);
    let abs = _mm512_set1_epi32(0x7fff_ffff);
    let lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    let lane_offsets = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(WEYL as i32));
    let next16 = _mm512_set1_epi32(16u32.wrapping_mul(WEYL) as i32);
    let decay = _mm512_set1_ps(s.decay);
    let one_minus_beta1 = _mm512_set1_ps(s.one_minus_beta1);
    let beta2 = _mm512_set1_ps(s.beta2);
    let one_minus_beta2 = _mm512_set1_ps(s.one_minus_beta2);
    let neg_step_size = _mm512_set1_ps(s.neg_step_size);
    let bias_correction2_sqrt = _mm512_set1_ps(s.bias_correction2_sqrt);
    let eps = _mm512_set1_ps(s.eps);
    let unsigned_code0 = _mm512_set1_ps(f32::from_bits(1792 << 19));
    for block in 0..NUMEL / QBLOCK {
        let a = block * QBLOCK;
        let block_key = key.wrapping_add((a as u32).wrapping_mul(WEYL));
        let mut counter = _mm512_add_epi32(_mm512_set1_epi32(block_key as i32), lane_offsets);
        let m_scale = _mm512_set1_ps(t.m_scales[block]);
        let v_scale = _mm512_set1_ps(t.v_scales[block]);
        let (mut m_top, mut v_top) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        let param = t.param.as_mut_ptr().add(a);
        let grad = t.grad.as_ptr().add(a);
        let m_codes = t.m_codes.as_mut_ptr().add(a);
        let v_codes = t.v_codes.as_mut_ptr().add(a);
        for i in (0..QBLOCK).step_by(16) {
            let g = widen_bf16(grad.add(i));
            let p = _mm512_mul_ps(widen_bf16(param.add(i)), decay);
            // Decode: sign, 4 exponent and 3 mantissa bits; 0 is zero.
            let m8 = _mm512_cvtepu8_epi32(_mm_loadu_si128(m_codes.add(i) as *const __m128i));
            let magnitude = _mm512_and_si512(m8, _mm512_set1_epi32(0x7f));
            let bits = _mm512_or_si512(
                _mm512_slli_epi32::<20>(_mm512_add_epi32(magnitude, _mm512_set1_epi32(896))),
                _mm512_slli_epi32::<24>(_mm512_and_si512(m8, _mm512_set1_epi32(0x80))),
            );
            let nonzero = _mm512_test_epi32_mask(magnitude, magnitude);
            let m_old = _mm512_mul_ps(
                _mm512_castsi512_ps(_mm512_maskz_mov_epi32(nonzero, bits)),
                m_scale,
            );
            // Decode: 4 exponent and 4 mantissa bits; code 0 is zero.
            let v8 = _mm512_cvtepu8_epi32(_mm_loadu_si128(v_codes.add(i) as *const __m128i));
            let v_value = _mm512_castsi512_ps(_mm512_slli_epi32::<19>(_mm512_add_epi32(
                v8,
                _mm512_set1_epi32(1792),
            )));
            let not_code0 = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(v_value, unsigned_code0);
            let v_old = _mm512_mul_ps(_mm512_maskz_mov_ps(not_code0, v_value), v_scale);
            // The moments, in the library's operation order (no FMA).
            let m = _mm512_add_ps(
                m_old,
                _mm512_mul_ps(one_minus_beta1, _mm512_sub_ps(g, m_old)),
            );
            let g2 = _mm512_mul_ps(_mm512_mul_ps(one_minus_beta2, g), g);
            let v = _mm512_add_ps(_mm512_mul_ps(v_old, beta2), g2);
            _mm512_store_ps(scratch.0.as_mut_ptr().add(i), m);
            _mm512_store_ps(scratch.1.as_mut_ptr().add(i), v);
            m_top = _mm512_max_epu32(m_top, _mm512_and_si512(_mm512_castps_si512(m), abs));
            v_top = _mm512_max_epu32(v_top, _mm512_and_si512(_mm512_castps_si512(v), abs));
            let p = if SKIP & NO_SQRT_DIV == 0 {
                let denom =
                    _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(v), bias_correction2_sqrt), eps);
                _mm512_add_ps(p, _mm512_div_ps(_mm512_mul_ps(neg_step_size, m), denom))
            } else {
                let denom = _mm512_add_ps(_mm512_mul_ps(v, bias_correction2_sqrt), eps);
                _mm512_add_ps(p, _mm512_mul_ps(_mm512_mul_ps(neg_step_size, m), denom))
            };
            // The random bits: lowbias32 of a Weyl sequence.
            let mut r = counter;
            counter = _mm512_add_epi32(counter, next16);
            if SKIP & NO_HASH == 0 {
                r = _mm512_xor_si512(r, _mm512_srli_epi32::<16>(r));
                r = _mm512_mullo_epi32(r, _mm512_set1_epi32(0x7feb_352d));
                r = _mm512_xor_si512(r, _mm512_srli_epi32::<15>(r));
                r = _mm512_mullo_epi32(r, _mm512_set1_epi32(0x846c_a68bu32 as i32));
                r = _mm512_xor_si512(r, _mm512_srli_epi32::<16>(r));
            }
            _mm512_store_si512(scratch.2.as_mut_ptr().add(i) as *mut __m512i, r);
            // Stochastic bf16: add 16 random bits and truncate; NaN kept quiet.
            let pb = _mm512_castps_si512(p);
            let low = _mm512_and_si512(r, _mm512_set1_epi32(0xffff));
            let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(pb, low));
            let nan =
                _mm512_cmpgt_epu32_mask(_mm512_and_si512(pb, abs), _mm512_set1_epi32(0x7f80_0000));
            let out = _mm512_mask_or_epi32(
                rounded,
                nan,
                _mm512_srli_epi32::<16>(pb),
                _mm512_set1_epi32(0x40),
            );
            _mm256_storeu_si256(param.add(i) as *mut __m256i, _mm512_cvtepi32_epi16(out));
        }
        let (m_top, v_top) = (
            _mm512_reduce_max_epu32(m_top),
            _mm512_reduce_max_epu32(v_top),
        );
        if SKIP & NO_ENCODE == 0 {
            let codes = std::slice::from_raw_parts_mut(m_codes, QBLOCK);
            t.m_scales[block] = encode::<true>(&scratch.0, m_top, codes, &scratch.2);
            let codes = std::slice::from_raw_parts_mut(v_codes, QBLOCK);
            t.v_scales[block] = encode::<false>(&scratch.1, v_top, codes, &scratch.2);
        } else {
            std::hint::black_box((&scratch, m_top, v_top));
        }
    }
}

/// Packs two vectors of 16 u32 below 2^16 into 32 u16, in element order.
#[inline(always)]
unsafe fn pack_u16(a: __m512i, b: __m512i) -> __m512i {
    // packus works within 128-bit lanes: put the 64-bit pieces back in order.
    let order = _mm512_set_epi64(7, 5, 3, 1, 6, 4, 2, 0);
    _mm512_permutexvar_epi64(order, _mm512_packus_epi32(a, b))
}

/// `lowp::encode_block` for one block, 32 codes at a time in 16-bit lanes.
#[inline(always)]
unsafe fn encode<const SIGNED: bool>(
    values: &[f32; QBLOCK],
    top: u32,
    codes: &mut [u8],
    random: &[u32; QBLOCK],
) -> f32 {
    let absmax = f32::from_bits(top);
    if top == 0 || top >= 0x7f80_0000 {
        codes.fill(0);
        return absmax;
    }
    let inverse = _mm512_set1_ps(1.0 / absmax);
    let abs = _mm512_set1_epi32(0x7fff_ffff);
    for i in (0..QBLOCK).step_by(32) {
        let half = |k: usize| {
            let y = _mm512_mul_ps(_mm512_load_ps(values.as_ptr().add(k)), inverse);
            let r = _mm512_load_si512(random.as_ptr().add(k) as *const __m512i);
            let magnitude = _mm512_and_si512(_mm512_castps_si512(y), abs);
            if SIGNED {
                let r = _mm512_and_si512(_mm512_rol_epi32::<11>(r), _mm512_set1_epi32(0xfffff));
                let rounded = _mm512_srli_epi32::<20>(_mm512_add_epi32(magnitude, r));
                (rounded, _mm512_srai_epi32::<16>(_mm512_castps_si512(y)))
            } else {
                let r = _mm512_and_si512(_mm512_rol_epi32::<22>(r), _mm512_set1_epi32(0x7ffff));
                let rounded = _mm512_srli_epi32::<19>(_mm512_add_epi32(magnitude, r));
                let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(y, _mm512_setzero_ps());
                (
                    rounded,
                    _mm512_maskz_mov_epi32(positive, _mm512_set1_epi32(1)),
                )
            }
        };
        let ((rounded0, extra0), (rounded1, extra1)) = (half(i), half(i + 16));
        let rounded = pack_u16(rounded0, rounded1);
        let code = if SIGNED {
            let code = _mm512_min_epu16(
                _mm512_subs_epu16(rounded, _mm512_set1_epi16(896)),
                _mm512_set1_epi16(120),
            );
            // The sign joins every code but 0 (a zero code carries no sign).
            let high = _mm512_permutexvar_epi64(
                _mm512_set_epi64(7, 5, 3, 1, 6, 4, 2, 0),
                _mm512_packs_epi32(extra0, extra1),
            );
            let negative = _mm512_mask_cmplt_epi16_mask(
                _mm512_test_epi16_mask(code, code),
                high,
                _mm512_setzero_si512(),
            );
            _mm512_mask_blend_epi16(
                negative,
                code,
                _mm512_or_si512(code, _mm512_set1_epi16(0x80)),
            )
        } else {
            // A positive value never becomes code 0.
            let code = _mm512_min_epu16(
                _mm512_subs_epu16(rounded, _mm512_set1_epi16(1792)),
                _mm512_set1_epi16(240),
            );
            _mm512_max_epu16(code, pack_u16(extra0, extra1))
        };
        _mm256_storeu_si256(
            codes.as_mut_ptr().add(i) as *mut __m256i,
            _mm512_cvtepi16_epi8(code),
        );
    }
    absmax
}

/// Instructions of one kind retired per nanosecond: eight independent
/// chains of `$op` on zmm registers (`unary` for one source).
macro_rules! throughput {
    (unary $op:literal) => {
        throughput!(@run $op, "", "", "", "", "", "", "", "")
    };
    ($op:literal) => {
        throughput!(@run $op, ", zmm1", ", zmm2", ", zmm3", ", zmm4", ", zmm5", ", zmm6", ", zmm7", ", zmm8")
    };
    (@run $op:literal, $t1:literal, $t2:literal, $t3:literal, $t4:literal,
     $t5:literal, $t6:literal, $t7:literal, $t8:literal) => {{
        const REPS: u64 = 50_000_000;
        let start = Instant::now();
        // SAFETY: register arithmetic only (AVX-512F, checked by the caller).
        unsafe {
            std::arch::asm!(
                // Normal operands throughout (1 + 2^-23 and 1.3): a divider
                // or square root may finish early on zeros or NaNs.
                "vpbroadcastd zmm0, {one:e}",
                "vpbroadcastd zmm1, {start:e}",
                "vmovaps zmm2, zmm1",
                "vmovaps zmm3, zmm1",
                "vmovaps zmm4, zmm1",
                "vmovaps zmm5, zmm1",
                "vmovaps zmm6, zmm1",
                "vmovaps zmm7, zmm1",
                "vmovaps zmm8, zmm1",
                "2:",
                concat!($op, " zmm1, zmm0", $t1),
                concat!($op, " zmm2, zmm0", $t2),
                concat!($op, " zmm3, zmm0", $t3),
                concat!($op, " zmm4, zmm0", $t4),
                concat!($op, " zmm5, zmm0", $t5),
                concat!($op, " zmm6, zmm0", $t6),
                concat!($op, " zmm7, zmm0", $t7),
                concat!($op, " zmm8, zmm0", $t8),
                "dec {n}",
                "jnz 2b",
                n = inout(reg) REPS => _,
                one = in(reg) 1.000_000_1f32.to_bits(),
                start = in(reg) 1.3f32.to_bits(),
                out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _,
                out("zmm4") _, out("zmm5") _, out("zmm6") _, out("zmm7") _, out("zmm8") _,
                options(nomem, nostack),
            );
        }
        (8 * REPS) as f64 / start.elapsed().as_secs_f64() / 1e9
    }};
}

fn main() {
    parallel::set_num_threads(1).expect("one thread");
    assert!(
        is_x86_feature_detected!("avx512f"),
        "this measurement needs AVX-512"
    );
    println!("| zmm instruction (16 float32 lanes) | per ns, one core |\n|---|---:|");
    let rows = [
        ("vpaddd (integer add)", throughput!("vpaddd")),
        ("vpmulld (integer multiply)", throughput!("vpmulld")),
        ("vmulps (float multiply)", throughput!("vmulps")),
        ("vaddps (float add)", throughput!("vaddps")),
        ("vdivps (float divide)", throughput!("vdivps")),
        ("vsqrtps (float square root)", throughput!(unary "vsqrtps")),
    ];
    for (name, per_ns) in rows {
        println!("| {name} | {per_ns:.2} |");
    }
    println!();

    // Same bits: 30 steps from the same start, checked after each.
    let (mut lib, mut hand) = (Tensor::new(), Tensor::new());
    for step in 1..=30 {
        library_step(&mut lib, step);
        hand_written_step::<0>(&mut hand, step);
        assert_eq!(lib.param, hand.param, "params differ at step {step}");
        assert_eq!(
            lib.m_codes, hand.m_codes,
            "first-moment codes differ at step {step}"
        );
        assert_eq!(
            lib.v_codes, hand.v_codes,
            "second-moment codes differ at step {step}"
        );
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&lib.m_scales),
            bits(&hand.m_scales),
            "scales differ at step {step}"
        );
        assert_eq!(
            bits(&lib.v_scales),
            bits(&hand.v_scales),
            "scales differ at step {step}"
        );
    }
    let moved = lib.m_codes.iter().filter(|&&c| c != 0).count();
    println!("hand-written kernel == library, bit for bit, over 30 steps ({moved} of {NUMEL} first-moment codes nonzero)");

    type Step = fn(&mut Tensor, u64);
    let cases: [(&str, Step); 6] = [
        ("library (mixed::run::<Adam>)", library_step),
        ("hand-written, same bits", hand_written_step::<0>),
        ("  without the random hash", hand_written_step::<NO_HASH>),
        (
            "  without sqrt and division",
            hand_written_step::<NO_SQRT_DIV>,
        ),
        ("  without the 8-bit encode", hand_written_step::<NO_ENCODE>),
        (
            "  without all three",
            hand_written_step::<{ NO_HASH | NO_SQRT_DIV | NO_ENCODE }>,
        ),
    ];
    let mut times = vec![Vec::new(); cases.len()];
    let steps = 200u64;
    for _round in 0..15 {
        // The cases take turns, so a slow spell of the machine hits them all.
        for (k, (_, step_fn)) in cases.iter().enumerate() {
            let mut t = lib.clone();
            let start = Instant::now();
            for step in 31..31 + steps {
                step_fn(&mut t, step);
            }
            times[k].push(start.elapsed().as_secs_f64() * 1e9 / (steps as f64 * NUMEL as f64));
        }
    }
    println!("{NUMEL} params (in L2), one thread, median of 15 rounds of {steps} steps:");
    println!("| case | ns/param |\n|---|---:|");
    for ((name, _), t) in cases.iter().zip(times.iter_mut()) {
        t.sort_by(f64::total_cmp);
        println!("| {name} | {:.3} |", t[t.len() / 2]);
    }
}
