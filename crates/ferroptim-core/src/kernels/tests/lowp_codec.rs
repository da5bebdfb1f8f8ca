//! The low-precision conversions and the 8-bit codec ([`super::super::lowp`]).

use super::super::lowp::*;

#[test]
fn codes_decode_in_order_and_one_is_exact() {
    for signed in [true, false] {
        let top = if signed { 120 } else { 240 };
        assert_eq!(decode(top, signed), 1.0);
        assert_eq!(encode(1.0, signed, 0), top);
        let mut last = 0.0;
        for c in 1..=top {
            let v = decode(c, signed);
            assert!(v > last, "code {c}");
            // Round trip without noise.
            assert_eq!(encode(v, signed, 0), c);
            last = v;
        }
    }
    assert_eq!(decode(120 | 0x80, true), -1.0);
}

#[test]
fn a_tiny_positive_second_moment_is_never_zero() {
    assert_eq!(encode(1e-30, false, 0), 1);
    assert_eq!(encode(0.0, false, 0), 0);
    assert_eq!(encode(1e-30, true, 0), 0);
}

#[test]
fn stochastic_codes_are_unbiased() {
    let y = 0.3f32;
    for signed in [true, false] {
        let n = 200_000;
        let mean: f64 = (0..n)
            .map(|i| decode(encode(y, signed, random(7, i)), signed) as f64)
            .sum::<f64>()
            / n as f64;
        assert!((mean - y as f64).abs() < 2e-4, "{signed}: {mean}");
    }
}

#[test]
fn stochastic_halves_are_unbiased_and_bracket_the_value() {
    let x = 1.0f32 + 1.0 / 1000.0;
    for half in [Storage::Bf16, Storage::F16] {
        let n = 200_000;
        let mut sum = 0.0f64;
        for i in 0..n {
            let mut v = [x];
            let mut out = [0u16];
            store_half(&mut out, &mut v, half, Some((&[random(3, i)], 0)));
            sum += v[0] as f64;
        }
        let mean = sum / n as f64;
        assert!((mean - x as f64).abs() < 2e-5, "{half:?}: {mean}");
    }
    // Negative numbers and exact values.
    let mut v = [-2.5f32, 0.0, -0.0];
    let mut out = [0u16; 3];
    store_half(&mut out, &mut v, Storage::F16, Some((&[7, 8, 9], 5)));
    assert_eq!(v, [-2.5, 0.0, -0.0]);
}

#[test]
fn bf16_rounding_matches_half_on_every_kind_of_value() {
    let mut x = 0x0000_0001u32;
    while x < 0xffff_ff00 {
        let v = f32::from_bits(x);
        let ours = f32_to_bf16(v);
        let theirs = half::bf16::from_f32(v).to_bits();
        assert!(
            ours == theirs || (v.is_nan() && ours & 0x7fc0 == 0x7fc0),
            "{x:#x}"
        );
        x = x.wrapping_mul(3).wrapping_add(0x9e37) | 1;
        x = x.wrapping_add(0x1234_5677);
        if x < 0x100 {
            break;
        }
    }
    for v in [
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -0.0,
        f32::MAX,
        f32::MIN_POSITIVE,
    ] {
        assert_eq!(f32_to_bf16(v), half::bf16::from_f32(v).to_bits(), "{v}");
    }
}

#[test]
fn stochastic_bf16_keeps_infinities_and_nans_as_nearest_does() {
    let specials = [
        0x7f80_0000u32,
        0xff80_0000,
        0x7fc0_0000,
        0x7f80_0001,
        0xff80_0001,
    ];
    for bits in specials
        .into_iter()
        .chain([0x7fff_ffff, 0xffff_ffff, 0x7f81_0000])
    {
        let x = f32::from_bits(bits);
        for r in [0, 1, 0xffff, 0x1234_5678, u32::MAX] {
            assert_eq!(
                f32_to_bf16_stochastic(x, r),
                f32_to_bf16(x),
                "{bits:#x} {r:#x}"
            );
        }
    }
}

#[test]
fn nearest_matches_half() {
    for x in [1.0f32 + 3e-3, -7.77, 1e-6, 65504.0, 1e30] {
        let mut v = [x];
        let mut out = [0u16];
        store_half(&mut out, &mut v, Storage::Bf16, None);
        assert_eq!(v[0], half::bf16::from_f32(x).to_f32());
        let mut v = [x];
        store_half(&mut out, &mut v, Storage::F16, None);
        assert_eq!(v[0], half::f16::from_f32(x).to_f32());
    }
}
