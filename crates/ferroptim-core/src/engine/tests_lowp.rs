//! The engine with 16-bit params and compressed state: master weights equal
//! a float32 run, 8-bit state keeps its blocks per param and round-trips.

use super::{Engine, Kind, NewParam, Values};
use crate::error::Error;
use crate::kernels::adam::{Adam, AdamHyper};
use crate::kernels::lowp::{bf16_to_f32, f32_to_bf16, QBLOCK};
use crate::kernels::rprop::Rprop;
use crate::options::{Precision, StateDtype};

fn new_param<T>(label: &str, kind: Kind, buf: &mut [T]) -> NewParam {
    NewParam {
        label: label.into(),
        kind,
        shape: vec![buf.len()],
        addr: buf.as_mut_ptr() as usize,
    }
}

fn step<T>(engine: &mut Engine<Adam>, hyper: AdamHyper, grads: &[(&[T], Kind)]) {
    engine.begin_step(1.0, 1).unwrap();
    let ready: Vec<_> = grads
        .iter()
        .map(|(g, k)| Some((g.as_ptr() as usize, *k)))
        .collect();
    // SAFETY: params and grads are live, disjoint buffers of the right length.
    assert!(unsafe { engine.step(&[hyper], &ready, 1.0) }.unwrap());
}

#[test]
fn bfloat16_params_with_master_weights_are_the_float32_run_rounded() {
    let hyper = AdamHyper {
        lr: 0.01,
        weight_decay: 0.1,
        decoupled: true,
        ..AdamHyper::default()
    };
    let n = 1000;
    let start: Vec<u16> = (0..n)
        .map(|i| f32_to_bf16((i as f32 * 0.11).cos()))
        .collect();
    let mut low = start.clone();
    let mut full: Vec<f32> = start.iter().map(|&b| bf16_to_f32(b)).collect();
    let mut e16 = Engine::<Adam>::new();
    e16.add_params(vec![new_param("p", Kind::Bf16, &mut low)], 0)
        .unwrap();
    let mut e32 = Engine::<Adam>::new();
    e32.add_params(vec![new_param("p", Kind::F32, &mut full)], 0)
        .unwrap();
    for t in 0..5 {
        let grad: Vec<f32> = (0..n).map(|i| ((i + t) as f32 * 0.37).sin()).collect();
        step(&mut e16, hyper, &[(&grad, Kind::F32)]);
        step(&mut e32, hyper, &[(&grad, Kind::F32)]);
    }
    let state = e16.state();
    let Some(Values::F32(master)) = state[0].master else {
        panic!("no master weights")
    };
    assert_eq!(master, full.as_slice());
    let rounded: Vec<u16> = full.iter().map(|&x| f32_to_bf16(x)).collect();
    assert_eq!(low, rounded);
    assert_ne!(low, start);
}

#[test]
fn int8_state_starts_each_param_on_a_block_and_round_trips() {
    let hyper = AdamHyper::default();
    let mut a = vec![0.5f32; 300];
    let mut b = vec![-0.25f32; 7];
    let mut engine = Engine::<Adam>::new();
    let precision = Precision {
        state: StateDtype::Int8,
        ..Precision::default()
    };
    engine.set_precision(precision).unwrap();
    engine
        .add_params(
            vec![
                new_param("a", Kind::F32, &mut a),
                new_param("b", Kind::F32, &mut b),
            ],
            0,
        )
        .unwrap();
    let ga: Vec<f32> = (0..300).map(|i| (i as f32 * 0.3).sin()).collect();
    let gb = vec![1.0f32; 7];
    step(&mut engine, hyper, &[(&ga, Kind::F32), (&gb, Kind::F32)]);
    let staged: Vec<_> = engine
        .state()
        .iter()
        .map(|s| {
            let mut staged = super::StagedState {
                step: s.step,
                ..Default::default()
            };
            for (k, (_, v)) in s.slots.iter().enumerate() {
                let Values::Int8 { codes, scales, .. } = v else {
                    panic!("int8 state")
                };
                assert_eq!(scales.len(), codes.len().div_ceil(QBLOCK));
                staged.slots[k] = Some(super::Buffer::Int8 {
                    codes: codes.to_vec(),
                    scales: scales.to_vec(),
                });
            }
            staged
        })
        .collect();
    // b's one block is its own: its scale is its own largest moment.
    let state = engine.state();
    let Values::Int8 { scales, .. } = state[1].slots[0].1 else {
        panic!()
    };
    assert!((scales[0] - 0.1).abs() < 1e-6, "{scales:?}");
    let before: Vec<_> = state.iter().map(|s| format!("{:?}", s.slots)).collect();
    engine.load_state(staged.clone()).unwrap();
    let again: Vec<_> = engine
        .state()
        .iter()
        .map(|s| format!("{:?}", s.slots))
        .collect();
    assert_eq!(again, before);
    // A float32 state is refused by name.
    let mut wrong = staged;
    wrong[0].slots[0] = Some(super::Buffer::F32(vec![0.0; 300]));
    let err = engine.load_state(wrong).unwrap_err();
    assert!(matches!(&err, Error::State(m) if m.contains("float32") && m.contains("int8")));
}

#[test]
fn compressed_state_is_refused_where_it_cannot_hold() {
    let int8 = Precision {
        state: StateDtype::Int8,
        ..Precision::default()
    };
    let err = Engine::<Rprop>::new().set_precision(int8).unwrap_err();
    assert!(matches!(err, Error::Hyper { name, .. } if name == "state_dtype"));
    let mut engine = Engine::<Adam>::new();
    engine.set_precision(int8).unwrap();
    let mut p = vec![0.0f64; 3];
    let err = engine
        .add_params(vec![new_param("w", Kind::F64, &mut p)], 0)
        .unwrap_err();
    assert!(matches!(err, Error::Dtype(m) if m.contains("float64")));
    assert!(engine.is_empty());
}
