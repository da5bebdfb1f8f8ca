//! The engine over plain Rust buffers: registry, overlap checks, a step
//! equal to the single-tensor kernel, state dicts, hyperparameter checks.

use super::{Buffer, Engine, Kind, NewParam, StagedState, Values};
use crate::error::Error;
use crate::hyper::{Group, Value};
use crate::kernels::adam::{Adam, AdamHyper};
use crate::kernels::lion::Lion;
use crate::kernels::{cuda_scalars, step_slices, Algorithm};
use crate::options::Options;

fn param(label: &str, buf: &mut [f32]) -> NewParam {
    NewParam {
        label: label.into(),
        kind: Kind::F32,
        shape: vec![buf.len()],
        addr: buf.as_mut_ptr() as usize,
    }
}

#[test]
fn overlapping_params_are_refused_and_nothing_is_added() {
    let mut buf = [0.0f32; 8];
    let mut engine = Engine::<Adam>::new();
    let (a, b) = buf.split_at_mut(4);
    engine.add_params(vec![param("a", a)], 0).unwrap();
    let err = engine
        .add_params(vec![param("b", b), param("a2", a)], 1)
        .unwrap_err();
    assert_eq!(
        err,
        Error::Param("params a and a2 are the same array (a param given twice)".into())
    );
    assert_eq!(engine.len(), 1);
    let whole = NewParam {
        shape: vec![8],
        ..param("whole", a)
    };
    let err = engine.add_params(vec![whole], 0).unwrap_err();
    assert_eq!(err, Error::Param("params a and whole share memory".into()));
}

#[test]
fn a_step_equals_the_single_tensor_kernel_bitwise() {
    let hyper = AdamHyper {
        lr: 0.01,
        weight_decay: 0.1,
        ..AdamHyper::default()
    };
    let grad: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut p: Vec<f32> = (0..100).map(|i| (i as f32 * 0.11).cos()).collect();
    let mut expected = p.clone();
    let (mut m, mut v) = (vec![0.0f32; 100], vec![0.0f32; 100]);

    let mut engine = Engine::<Adam>::new();
    engine.add_params(vec![param("p", &mut p)], 0).unwrap();
    engine.begin_step(1.0, 1).unwrap();
    engine
        .check_grad_memory(0, grad.as_ptr() as usize, Kind::F32, || "grad".into())
        .unwrap();
    for step in 1..=3 {
        // SAFETY: `p` and `grad` are live, disjoint and of the registered length.
        let applied =
            unsafe { engine.step(&[hyper], &[Some((grad.as_ptr() as usize, Kind::F32))], 1.0) };
        assert!(applied.unwrap());
        let s = Adam::scalars::<f32>(&hyper, step, [step == 1; 3]);
        step_slices::<Adam, f32>(&mut expected, &grad, [&mut m, &mut v, &mut []], &s);
    }
    assert_eq!(p, expected);
    assert_eq!(engine.steps(), vec![3]);
    let state = engine.state();
    assert_eq!(state[0].slots.len(), 2);
    match state[0].slots[0].1 {
        Values::F32(got) => assert_eq!(got, m.as_slice()),
        _ => panic!("float32 state"),
    }
}

#[test]
fn a_grad_sharing_memory_with_a_param_is_refused() {
    let mut p = vec![0.0f32; 4];
    let mut engine = Engine::<Adam>::new();
    engine.add_params(vec![param("w", &mut p)], 0).unwrap();
    engine.begin_step(1.0, 1).unwrap();
    let err = engine
        .check_grad_memory(0, p.as_ptr() as usize + 4, Kind::F32, || {
            "grad for param w".into()
        })
        .unwrap_err();
    assert_eq!(
        err,
        Error::Grad("grad for param w shares memory with its param; pass a copy".into())
    );
    assert!(engine.begin_step(0.0, 1).is_err());
    assert!(engine.begin_step(1.0, 2).is_err());
}

#[test]
fn loading_state_checks_everything_before_changing_anything() {
    let mut p = vec![1.0f32; 3];
    let mut engine = Engine::<Adam>::new();
    engine.add_params(vec![param("w", &mut p)], 0).unwrap();
    let good = StagedState {
        step: 5,
        slots: [Some(Buffer::F32(vec![1.0; 3])), None, None],
        ..StagedState::default()
    };
    let unpaired = StagedState {
        averaged: 2,
        ..good.clone()
    };
    assert!(matches!(
        engine.load_state(vec![unpaired]),
        Err(Error::State(_))
    ));
    let wrong_len = StagedState {
        slots: [Some(Buffer::F32(vec![1.0; 2])), None, None],
        ..good.clone()
    };
    assert!(engine.load_state(vec![wrong_len]).is_err());
    assert!(engine.load_state(vec![]).is_err());
    assert_eq!(engine.steps(), vec![0]);
    engine.load_state(vec![good]).unwrap();
    assert_eq!(engine.steps(), vec![5]);
    assert_eq!(engine.state()[0].slots.len(), 1);
}

#[test]
fn options_are_checked() {
    assert!(Options::new(Some(1.0), 2.0, None, false, Some(0.9), false).is_ok());
    let err = Options::new(None, 3.0, None, false, None, false).unwrap_err();
    assert_eq!(err.to_string(), "norm_type: must be 2 or inf, got 3");
    assert!(Options::new(None, 2.0, None, false, Some(0.5), true).is_err());
}

fn adam_group() -> Group {
    Group::default()
        .with("lr", Value::Number(1e-3))
        .with("betas", Value::Pair(0.9, 0.999))
        .with("eps", Value::Number(1e-8))
        .with("weight_decay", Value::Number(0.0))
        .with("l1", Value::Number(0.0))
        .with("amsgrad", Value::Flag(false))
        .with("maximize", Value::Flag(false))
        .with("decoupled_weight_decay", Value::Flag(false))
}

#[test]
fn hyperparameters_are_read_and_checked_by_the_optimizer_file() {
    assert_eq!(
        Adam::from_group(&adam_group()).unwrap(),
        AdamHyper::default()
    );
    let bad = adam_group().with("betas", Value::Pair(0.9, 1.0));
    let err = Adam::from_group(&bad).unwrap_err();
    assert_eq!(err.to_string(), "betas: beta2 must be in [0, 1), got 1");
    let mut missing = adam_group();
    missing.0.remove("eps");
    let err = Adam::from_group(&missing).unwrap_err();
    assert_eq!(err.to_string(), "eps: missing from the param group");
    let err = Adam::from_group(&adam_group().with("lr", Value::Number(-1.0))).unwrap_err();
    assert_eq!(err.to_string(), "lr: must be a finite number >= 0, got -1");
}

#[test]
fn cuda_scalars_lead_with_the_prelude_and_the_average_weight() {
    // Lion's decay is always decoupled: no coupled L2, decay 1 − lr·wd.
    let h = crate::kernels::lion::LionHyper {
        lr: 0.5,
        beta1: 0.9,
        beta2: 0.99,
        weight_decay: 0.1,
        l1: 0.0,
        maximize: true,
    };
    let (row, aux) = cuda_scalars::<Lion>(&h, 1, [true; 3], [0.0; 2], 0.25);
    assert_eq!(
        row,
        vec![
            -1.0,
            0.0,
            0.0,
            1.0 - 0.5 * 0.1,
            0.25,
            0.9,
            1.0 - 0.9,
            0.99,
            1.0 - 0.99,
            -0.5
        ]
    );
    assert_eq!(aux, [0.0; 2]);
}
