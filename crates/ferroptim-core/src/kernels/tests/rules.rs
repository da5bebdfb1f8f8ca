//! Each update rule against an independent element-by-element f64
//! reference written from the equations in its module doc.

use super::*;
// ---------------------------------------------------------------------------
// SGD reference
// ---------------------------------------------------------------------------

/// One SGD step, element by element in f64. `buf` is `None` until the first
/// step with momentum, which copies the (regularized) grad into it.
fn ref_sgd(h: &SgdHyper, p: &mut [f64], grad: &[f64], buf: &mut Option<Vec<f64>>) {
    let n = p.len();
    let mut g = vec![0.0; n];
    for i in 0..n {
        g[i] = if h.maximize { -grad[i] } else { grad[i] };
        g[i] += h.weight_decay * p[i];
        g[i] += h.l1 * sgn(p[i]);
    }
    let d = if h.momentum != 0.0 {
        if let Some(b) = buf.as_mut() {
            for i in 0..n {
                b[i] = h.momentum * b[i] + (1.0 - h.dampening) * g[i];
            }
        } else {
            *buf = Some(g.clone());
        }
        let b = buf.as_ref().expect("set above");
        if h.nesterov {
            (0..n).map(|i| g[i] + h.momentum * b[i]).collect()
        } else {
            b.clone()
        }
    } else {
        g
    };
    for i in 0..n {
        p[i] -= h.lr * d[i];
    }
}

fn check_sgd<T: Real>(seed: u64, hyper_at: impl Fn(u64) -> SgdHyper, n: usize, steps: usize) {
    let (p0, grads) = problem::<T>(seed, n, steps);
    let got = run_kernel::<Sgd, T>(&hyper_at, &p0, &grads);
    let mut p = p0.clone();
    let mut buf = None;
    for (i, g) in grads.iter().enumerate() {
        ref_sgd(&hyper_at(i as u64 + 1), &mut p, g, &mut buf);
    }
    let what = format!(
        "{:?} {}",
        hyper_at(steps as u64),
        std::any::type_name::<T>()
    );
    let tol = rtol::<T>();
    assert_close(&format!("sgd param, {what}"), &got.param, &p, tol);
    match &buf {
        Some(b) => {
            assert!(got.written[0], "{what}: momentum_buffer never used");
            assert_close(
                &format!("sgd momentum_buffer, {what}"),
                &got.state[0],
                b,
                tol,
            );
        }
        None => assert!(!got.written[0], "{what}: momentum_buffer used"),
    }
}

fn sgd_all_combinations<T: Real>() {
    for (c, o) in combos(6).enumerate() {
        let h = SgdHyper {
            lr: 0.05,
            momentum: if o[0] { 0.9 } else { 0.0 },
            dampening: if o[1] { 0.25 } else { 0.0 },
            weight_decay: if o[2] { 0.03 } else { 0.0 },
            l1: if o[3] { 0.02 } else { 0.0 },
            nesterov: o[4],
            maximize: o[5],
        };
        check_sgd::<T>(100 + c as u64, |_| h, 1031, 50);
    }
}

#[test]
fn sgd_matches_reference_f64() {
    let _g = lock_globals();
    sgd_all_combinations::<f64>();
}

#[test]
fn sgd_matches_reference_f32() {
    let _g = lock_globals();
    sgd_all_combinations::<f32>();
}

/// Momentum switched on at step 11: the buffer starts as a copy of that
/// step's grad, not as a zero buffer fed one update.
#[test]
fn sgd_momentum_switched_on_later_starts_from_the_grad() {
    let _g = lock_globals();
    for (c, o) in combos(3).enumerate() {
        let hyper_at = move |step: u64| SgdHyper {
            lr: 0.05,
            momentum: if step > 10 { 0.8 } else { 0.0 },
            dampening: 0.3,
            weight_decay: if o[0] { 0.01 } else { 0.0 },
            l1: 0.0,
            nesterov: o[1],
            maximize: o[2],
        };
        check_sgd::<f64>(200 + c as u64, &hyper_at, 517, 30);
        check_sgd::<f32>(200 + c as u64, &hyper_at, 517, 30);
    }
}

/// The first momentum step stores the grad itself; a later one with a zero
/// buffer stores (1 − dampening)·grad.
#[test]
fn sgd_first_momentum_step_copies_the_grad() {
    let _g = lock_globals();
    let h = SgdHyper {
        lr: 0.1,
        momentum: 0.9,
        dampening: 0.5,
        ..SgdHyper::default()
    };
    let (p0, grads) = problem::<f64>(7, 100, 1);
    let run = |fresh: bool| {
        let mut p = p0.clone();
        let mut buf = vec![0.0; p.len()];
        let s = Sgd::scalars::<f64>(&h, 1, [fresh; MAX_SLOTS]);
        step_slices::<Sgd, f64>(&mut p, &grads[0], [&mut buf[..], &mut [], &mut []], &s);
        (p, buf)
    };
    let (p, buf) = run(true);
    assert_bits_eq("first step buffer", &buf, &grads[0]);
    let want: Vec<f64> = (0..p.len()).map(|i| p0[i] - 0.1 * grads[0][i]).collect();
    assert_close("first step param", &p, &want, RTOL_F64);
    let (_, buf) = run(false);
    let want: Vec<f64> = grads[0].iter().map(|g| 0.5 * g).collect();
    assert_bits_eq("later step buffer", &buf, &want);
}

// ---------------------------------------------------------------------------
// Adam reference
// ---------------------------------------------------------------------------

struct AdamRef {
    m: Vec<f64>,
    v: Vec<f64>,
    vmax: Vec<f64>,
}

/// One Adam/AdamW step number `t`, element by element in f64.
fn ref_adam(h: &AdamHyper, t: u64, p: &mut [f64], grad: &[f64], st: &mut AdamRef) {
    let bc1 = 1.0 - h.beta1.powi(t as i32);
    let bc2 = 1.0 - h.beta2.powi(t as i32);
    for i in 0..p.len() {
        let mut g = if h.maximize { -grad[i] } else { grad[i] };
        if !h.decoupled {
            g += h.weight_decay * p[i];
        }
        g += h.l1 * sgn(p[i]);
        if h.decoupled {
            p[i] *= 1.0 - h.lr * h.weight_decay;
        }
        st.m[i] = h.beta1 * st.m[i] + (1.0 - h.beta1) * g;
        st.v[i] = h.beta2 * st.v[i] + (1.0 - h.beta2) * g * g;
        let second = if h.amsgrad {
            st.vmax[i] = st.vmax[i].max(st.v[i]);
            st.vmax[i]
        } else {
            st.v[i]
        };
        let m_hat = st.m[i] / bc1;
        let v_hat = second / bc2;
        p[i] -= h.lr * m_hat / (v_hat.sqrt() + h.eps);
    }
}

fn check_adam<T: Real>(seed: u64, h: AdamHyper, n: usize, steps: usize) {
    let (p0, grads) = problem::<T>(seed, n, steps);
    let got = run_kernel::<Adam, T>(|_| h, &p0, &grads);
    let mut p = p0.clone();
    let mut st = AdamRef {
        m: vec![0.0; n],
        v: vec![0.0; n],
        vmax: vec![0.0; n],
    };
    for (i, g) in grads.iter().enumerate() {
        ref_adam(&h, i as u64 + 1, &mut p, g, &mut st);
    }
    let what = format!("{h:?} {}", std::any::type_name::<T>());
    let tol = rtol::<T>();
    assert_eq!(got.written, [true, true, h.amsgrad], "{what}: slots used");
    assert_close(&format!("adam param, {what}"), &got.param, &p, tol);
    assert_close(&format!("adam exp_avg, {what}"), &got.state[0], &st.m, tol);
    assert_close(
        &format!("adam exp_avg_sq, {what}"),
        &got.state[1],
        &st.v,
        tol,
    );
    if h.amsgrad {
        assert_close(
            &format!("adam max_exp_avg_sq, {what}"),
            &got.state[2],
            &st.vmax,
            tol,
        );
    }
}

fn adam_all_combinations<T: Real>() {
    for (c, o) in combos(5).enumerate() {
        let h = AdamHyper {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: if o[0] { 0.05 } else { 0.0 },
            l1: if o[1] { 0.01 } else { 0.0 },
            amsgrad: o[2],
            maximize: o[3],
            decoupled: o[4],
        };
        check_adam::<T>(300 + c as u64, h, 1031, 50);
    }
    // torch's defaults, and a large weight decay where coupled and
    // decoupled differ a lot.
    check_adam::<T>(399, AdamHyper::default(), 777, 50);
    for decoupled in [false, true] {
        let h = AdamHyper {
            lr: 0.02,
            weight_decay: 2.0,
            amsgrad: true,
            decoupled,
            ..AdamHyper::default()
        };
        check_adam::<T>(398, h, 777, 50);
    }
}

#[test]
fn adam_matches_reference_f64() {
    let _g = lock_globals();
    adam_all_combinations::<f64>();
}

#[test]
fn adam_matches_reference_f32() {
    let _g = lock_globals();
    adam_all_combinations::<f32>();
}

// ---------------------------------------------------------------------------
// RMSprop reference
// ---------------------------------------------------------------------------

struct RmspropRef {
    sq: Vec<f64>,
    buf: Vec<f64>,
    gavg: Vec<f64>,
}

/// One RMSprop step, element by element in f64.
fn ref_rmsprop(h: &RmspropHyper, p: &mut [f64], grad: &[f64], st: &mut RmspropRef) {
    for i in 0..p.len() {
        let mut g = if h.maximize { -grad[i] } else { grad[i] };
        g += h.weight_decay * p[i] + h.l1 * sgn(p[i]);
        st.sq[i] = h.alpha * st.sq[i] + (1.0 - h.alpha) * g * g;
        let d = if h.centered {
            st.gavg[i] = h.alpha * st.gavg[i] + (1.0 - h.alpha) * g;
            (st.sq[i] - st.gavg[i] * st.gavg[i]).sqrt() + h.eps
        } else {
            st.sq[i].sqrt() + h.eps
        };
        if h.momentum > 0.0 {
            st.buf[i] = h.momentum * st.buf[i] + g / d;
            p[i] -= h.lr * st.buf[i];
        } else {
            p[i] -= h.lr * g / d;
        }
    }
}

fn check_rmsprop<T: Real>(seed: u64, h: RmspropHyper, n: usize, steps: usize) {
    let (p0, grads) = problem::<T>(seed, n, steps);
    let got = run_kernel::<Rmsprop, T>(|_| h, &p0, &grads);
    let mut p = p0.clone();
    let mut st = RmspropRef {
        sq: vec![0.0; n],
        buf: vec![0.0; n],
        gavg: vec![0.0; n],
    };
    for g in &grads {
        ref_rmsprop(&h, &mut p, g, &mut st);
    }
    let what = format!("{h:?} {}", std::any::type_name::<T>());
    let tol = rtol::<T>();
    assert_eq!(
        got.written,
        [true, h.momentum > 0.0, h.centered],
        "{what}: slots used"
    );
    assert_close(&format!("rmsprop param, {what}"), &got.param, &p, tol);
    assert_close(
        &format!("rmsprop square_avg, {what}"),
        &got.state[0],
        &st.sq,
        tol,
    );
    if h.momentum > 0.0 {
        assert_close(
            &format!("rmsprop momentum_buffer, {what}"),
            &got.state[1],
            &st.buf,
            tol,
        );
    }
    if h.centered {
        assert_close(
            &format!("rmsprop grad_avg, {what}"),
            &got.state[2],
            &st.gavg,
            tol,
        );
    }
}

fn rmsprop_all_combinations<T: Real>() {
    for (c, o) in combos(5).enumerate() {
        let h = RmspropHyper {
            lr: 0.01,
            alpha: 0.9,
            eps: 1e-8,
            weight_decay: if o[0] { 0.05 } else { 0.0 },
            l1: if o[1] { 0.01 } else { 0.0 },
            momentum: if o[2] { 0.9 } else { 0.0 },
            centered: o[3],
            maximize: o[4],
        };
        check_rmsprop::<T>(500 + c as u64, h, 1031, 50);
    }
    check_rmsprop::<T>(599, RmspropHyper::default(), 777, 50);
}

#[test]
fn rmsprop_matches_reference_f64() {
    let _g = lock_globals();
    rmsprop_all_combinations::<f64>();
}

#[test]
fn rmsprop_matches_reference_f32() {
    let _g = lock_globals();
    rmsprop_all_combinations::<f32>();
}
