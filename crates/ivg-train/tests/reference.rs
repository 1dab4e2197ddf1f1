//! Checkpoints written by `ivg train` load in transformers and compute what
//! ivg computes, and the DPO loss of a fixed batch equals a committed value.
//! `fixtures/trained/` holds three tiny checkpoints trained by
//! `scripts/reference/make_trained_fixtures.sh`; `expected.json` is what
//! transformers 5.24 computes from them (`scripts/reference/trained_refs.py`).

mod common;

use std::path::PathBuf;

use common::batch;
use ivg_models::{load_bert, load_causal_lm, LoadOptions, LogitsSpan, ScalarLm};
use ivg_testkit::tiny_model;
use ivg_train::{Dpo, DpoBatch, Objective};
use serde_json::Value;

fn trained(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/trained")
        .join(rel)
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(trained("expected.json")).expect("read"))
        .expect("json")
}

fn floats(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(floats).collect(),
        other => vec![other.as_f64().expect("number")],
    }
}

fn assert_close(ours: &[f64], reference: &[f64], tol: f64, what: &str) {
    assert_eq!(ours.len(), reference.len(), "{what}: lengths");
    let worst = ours
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst < tol, "{what}: max difference {worst}");
}

/// Every value of a tensor, flattened, as f64.
fn host(t: &candle_core::Tensor) -> Vec<f64> {
    let v = t
        .flatten_all()
        .expect("flatten")
        .to_vec1::<f32>()
        .expect("f32");
    v.into_iter().map(f64::from).collect()
}

fn ids(e: &Value) -> Vec<u32> {
    floats(&e["ids"]).into_iter().map(|v| v as u32).collect()
}

#[test]
fn sft_checkpoint_matches_transformers() {
    let e = expected();
    let m = load_causal_lm(&trained("sft"), &LoadOptions::default()).expect("load");
    let mut s = m.new_state();
    let logits = m
        .prefill(&[ids(&e)], &mut s, LogitsSpan::All)
        .expect("forward");
    let ours = host(&logits);
    assert_close(
        &ours,
        &floats(&e["sft_logits"]),
        1e-4,
        "LlamaForCausalLM logits",
    );
}

#[test]
fn reward_checkpoint_matches_transformers_sequence_classification() {
    let e = expected();
    let (cfg, w) = ivg_models::open(&trained("reward"), &LoadOptions::default()).expect("open");
    let m = ScalarLm::load(&w, &cfg, "rm").expect("load");
    let mut s = m.new_state();
    let scores = m.prefill(&[ids(&e)], &mut s).expect("forward");
    let ours = host(&scores);
    assert_close(
        &ours,
        &floats(&e["reward_scores"]),
        1e-4,
        "score head per position",
    );
    let pooled = e["reward_pooled"].as_f64().expect("pooled");
    assert!(
        (ours[ours.len() - 1] - pooled).abs() < 1e-4,
        "Qwen2ForSequenceClassification reads the last token"
    );
}

#[test]
fn classifier_checkpoint_matches_transformers() {
    let e = expected();
    let m = load_bert(&trained("classifier"), &LoadOptions::default()).expect("load");
    let texts: Vec<Vec<u32>> = e["classifier_texts"]
        .as_array()
        .expect("texts")
        .iter()
        .map(|t| floats(t).into_iter().map(|v| v as u32).collect())
        .collect();
    let logits = m.classify(&texts).expect("classify");
    let ours = host(&logits);
    assert_close(
        &ours,
        &floats(&e["classifier_logits"]),
        1e-4,
        "BertForSequenceClassification logits",
    );
}

/// The committed value: policy = tiny Llama, reference = tiny Qwen2, beta 0.5,
/// the batch of `common::batch()`, computed by trained_refs.py in float64 as
/// `mean softplus(-beta * ((pi_w - ref_w) - (pi_l - ref_l)))`.
#[test]
fn dpo_loss_on_the_fixed_batch_equals_the_committed_value() {
    let committed = &expected()["dpo_fixed_batch"];
    assert_eq!(committed["beta"].as_f64(), Some(0.5));
    let want = committed["loss"].as_f64().expect("loss");
    assert!(
        (want - 1.4969152555459608).abs() < 1e-12,
        "expected.json changed: {want}"
    );
    let (policy, reference) = (tiny_model("llama"), tiny_model("qwen2"));
    let (chosen, rejected) = batch();
    let b = DpoBatch::new(&reference, chosen, rejected).expect("batch");
    let loss = Dpo { beta: 0.5 }
        .loss(&policy, &b)
        .expect("loss")
        .to_scalar::<f32>()
        .expect("s") as f64;
    assert!((loss - want).abs() < 1e-5, "ivg {loss} vs committed {want}");
}
