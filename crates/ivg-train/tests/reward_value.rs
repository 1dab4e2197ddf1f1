//! Reward-model and explicit-value objectives against independent computations,
//! and their gradients against central finite differences.

mod common;

use common::{batch, check_gradients, trainable, trainable_scalar};
use ivg_models::{CausalLm, LogitsSpan, ScalarLm};
use ivg_train::{Objective, PairBatch, QValueFit, Reward, ScalarValueFit, ValueBatch, ValueLoss};

/// Scalars of every position of one sequence, unbatched.
fn scalars(m: &ScalarLm, seq: &[u32]) -> Vec<f64> {
    let mut s = m.new_state();
    let out = m
        .prefill(&[seq.to_vec()], &mut s)
        .expect("forward")
        .to_vec2::<f32>()
        .expect("host");
    out[0].iter().map(|&v| v as f64).collect()
}

fn logits(m: &CausalLm, seq: &[u32]) -> Vec<Vec<f32>> {
    let mut s = m.new_state();
    m.prefill(&[seq.to_vec()], &mut s, LogitsSpan::All)
        .expect("forward")
        .squeeze(0)
        .expect("sq")
        .to_vec2()
        .expect("host")
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

#[test]
fn reward_is_bradley_terry_on_the_last_token() {
    let (m, varmap) = trainable_scalar();
    let (chosen, rejected) = batch();
    let want: f64 = chosen
        .iter()
        .zip(&rejected)
        .map(|(w, l)| {
            let rw = *scalars(&m, &[w.prompt.as_slice(), &w.response].concat())
                .last()
                .expect("rw");
            let rl = *scalars(&m, &[l.prompt.as_slice(), &l.response].concat())
                .last()
                .expect("rl");
            softplus(-(rw - rl))
        })
        .sum::<f64>()
        / 2.0;
    let b = PairBatch { chosen, rejected };
    let got = Reward
        .loss(&m, &b)
        .expect("loss")
        .to_scalar::<f32>()
        .expect("s") as f64;
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    check_gradients(&|| Reward.loss(&m, &b).expect("loss"), &varmap, "reward");
}

fn value_batch() -> ValueBatch {
    let (chosen, _) = batch();
    ValueBatch {
        examples: chosen,
        rewards: vec![1.5, -0.7],
    }
}

#[test]
fn q_value_fit_regresses_every_prefix() {
    let (m, varmap) = trainable();
    let b = value_batch();
    for loss in [ValueLoss::Regression, ValueLoss::Fudge] {
        let mut total = 0.0;
        let mut count = 0.0;
        for (e, &r) in b.examples.iter().zip(&b.rewards) {
            let rows = logits(&m, &[e.prompt.as_slice(), &e.response].concat());
            for (k, &y) in e.response.iter().enumerate() {
                let v = rows[e.prompt.len() + k - 1][y as usize] as f64;
                total += match loss {
                    ValueLoss::Regression => (v - r).powi(2),
                    ValueLoss::Fudge => softplus(v) - v / (1.0 + (-r).exp()),
                };
                count += 1.0;
            }
        }
        let fit = QValueFit { loss };
        let got = fit
            .loss(&m, &b)
            .expect("loss")
            .to_scalar::<f32>()
            .expect("s") as f64;
        assert!(
            (got - total / count).abs() < 1e-4 * (1.0 + got.abs()),
            "{loss:?}: {got} vs {}",
            total / count
        );
        check_gradients(&|| fit.loss(&m, &b).expect("loss"), &varmap, "q value");
    }
}

#[test]
fn scalar_value_fit_regresses_every_prefix() {
    let (m, varmap) = trainable_scalar();
    let b = value_batch();
    let mut total = 0.0;
    let mut count = 0.0;
    for (e, &r) in b.examples.iter().zip(&b.rewards) {
        let s = scalars(&m, &[e.prompt.as_slice(), &e.response].concat());
        for k in 0..e.response.len() {
            total += (s[e.prompt.len() + k] - r).powi(2);
            count += 1.0;
        }
    }
    let fit = ScalarValueFit::default();
    let got = fit
        .loss(&m, &b)
        .expect("loss")
        .to_scalar::<f32>()
        .expect("s") as f64;
    assert!(
        (got - total / count).abs() < 1e-4 * (1.0 + got.abs()),
        "{got} vs {}",
        total / count
    );
    check_gradients(&|| fit.loss(&m, &b).expect("loss"), &varmap, "scalar value");
    let bad = ValueBatch {
        rewards: vec![f64::NAN, 0.0],
        ..value_batch()
    };
    assert!(fit.loss(&m, &bad).is_err());
}
