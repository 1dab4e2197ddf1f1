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

/// A random tiny BERT with a `labels`-way classification head.
fn tiny_bert(labels: usize) -> (ivg_models::loader::BertWithHead, candle_nn::VarMap) {
    use candle_core::Device;
    use candle_nn::VarMap;
    use ivg_models::arch::bert::BertModel;
    use ivg_models::heads::ClassifierHead;
    use ivg_models::loader::BertWithHead;
    use ivg_models::{ModelConfig, Weights};

    let cfg = serde_json::json!({
        "model_type": "bert", "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2,
        "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 16,
        "num_labels": labels
    });
    let ModelConfig::Bert(c) =
        ModelConfig::from_value(&cfg, std::path::Path::new("b.json")).expect("cfg")
    else {
        panic!("bert config")
    };
    let varmap = VarMap::new();
    let w = Weights::from_varmap(&varmap, &Device::Cpu);
    let model = BertWithHead {
        encoder: BertModel::load(&w.pp("bert"), &c).expect("encoder"),
        classifier: Some(
            ClassifierHead::load(&w, "bert", c.hidden_size, c.num_labels).expect("head"),
        ),
    };
    // Deterministic weights: a random draw could leave the check ill-conditioned.
    common::deterministic_init(&varmap);
    (model, varmap)
}

#[test]
fn classifier_reward_is_bradley_terry_on_the_one_label_logit() {
    use ivg_train::classifier::{ClassifierReward, TextPairBatch};
    let (model, varmap) = tiny_bert(1);
    // A strong head spreads the rewards, so the loss is far from ln 2 and its
    // f32 finite difference well above rounding.
    for (name, v) in varmap.data().lock().expect("lock").iter() {
        if name == "classifier.weight" {
            v.set(&(v.as_tensor() * 10.0).expect("scale")).expect("set");
        }
    }
    let batch = TextPairBatch {
        chosen: vec![vec![2, 7, 9, 4], vec![3, 8]],
        rejected: vec![vec![2, 11], vec![3, 12, 13, 14, 4]],
    };
    // Each text alone (no padding), then the formula in f64.
    let r = |ids: &Vec<u32>| {
        let l = model
            .label_scores(std::slice::from_ref(ids), 0)
            .expect("score");
        l[0]
    };
    let want: f64 = batch
        .chosen
        .iter()
        .zip(&batch.rejected)
        .map(|(w, l)| softplus(-(r(w) - r(l))))
        .sum::<f64>()
        / 2.0;
    let got = ClassifierReward
        .loss(&model, &batch)
        .expect("loss")
        .to_scalar::<f32>()
        .expect("s") as f64;
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    // The head's bias adds the same constant to every reward: it cancels in
    // the Bradley-Terry margin, so its gradient is exactly zero.
    common::check_gradients_except(
        &|| ClassifierReward.loss(&model, &batch).expect("loss"),
        &varmap,
        "classifier reward",
        &["classifier.bias"],
    );
    let (two, _) = tiny_bert(2);
    assert!(ClassifierReward
        .loss(&two, &batch)
        .expect_err("two labels")
        .to_string()
        .contains("one label"));
}

#[test]
fn classifier_is_cross_entropy() {
    use ivg_train::{classifier_logits, Classifier, ClassifierBatch};

    let (model, varmap) = tiny_bert(3);
    let batch = ClassifierBatch {
        ids: vec![vec![2, 7, 9, 4], vec![3, 8]],
        labels: vec![2, 0],
    };
    let mut want = 0.0;
    for (ids, &label) in batch.ids.iter().zip(&batch.labels) {
        let row = classifier_logits(&model, std::slice::from_ref(ids))
            .expect("logits")
            .to_vec2::<f32>()
            .expect("host");
        let l: Vec<f64> = row[0].iter().map(|&x| x as f64).collect();
        let max = l.iter().copied().fold(f64::MIN, f64::max);
        let lse = max + l.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
        want += (lse - l[label as usize]) / 2.0;
    }
    let got = Classifier
        .loss(&model, &batch)
        .expect("loss")
        .to_scalar::<f32>()
        .expect("s") as f64;
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    common::check_gradients(
        &|| Classifier.loss(&model, &batch).expect("loss"),
        &varmap,
        "classifier",
    );
    let bad = ClassifierBatch {
        labels: vec![3, 0],
        ..batch
    };
    assert!(Classifier
        .loss(&model, &bad)
        .expect_err("label")
        .to_string()
        .contains("label 3"));
}
