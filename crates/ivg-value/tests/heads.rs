//! Scalar-head and sequence-classifier values against direct computation.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use common::scalar_model;
use ivg_models::{load_bert, LoadOptions};
use ivg_testkit::word_tokenizer as tokenizer;
use ivg_value::{ClassifierValue, ScalarValue, ValueFunction};

#[test]
fn scalar_values_equal_reencoding() {
    let model = Arc::new(scalar_model());
    let mut v =
        ScalarValue::new("scalar", model.clone(), "t1 {prompt}", tokenizer(), 2.0).expect("value");
    v.begin(&["t5 t6".to_string(), "t7 t8 t9 t10".to_string()])
        .expect("begin");
    v.reorder(&[0, 1, 1]).expect("fork");
    let mut rows: Vec<(Vec<u32>, Vec<u32>)> = vec![
        (vec![1, 5, 6], vec![]),
        (vec![1, 7, 8, 9, 10], vec![]),
        (vec![1, 7, 8, 9, 10], vec![]),
    ];
    for chunk in 0..3u32 {
        for k in 0..3u32 {
            let n = rows.len() as u32;
            let tokens: Vec<u32> = (0..n).map(|r| (chunk * 17 + k * 5 + r * 11) % 96).collect();
            let live: Vec<bool> = (0..n)
                .map(|r| !(n == 3 && r == 1 && chunk == 1 && k > 0))
                .collect();
            for (r, row) in rows.iter_mut().enumerate() {
                if live[r] {
                    row.1.push(tokens[r]);
                }
            }
            v.observe(&tokens, &live).expect("observe");
        }
        let values = v.values().expect("values");
        for (r, (prompt, response)) in rows.iter().enumerate() {
            let full: Vec<u32> = prompt.iter().chain(response).copied().collect();
            let mut s = model.new_state();
            let scores = model
                .prefill(std::slice::from_ref(&full), &mut s)
                .expect("forward")
                .to_vec2::<f32>()
                .expect("v");
            let want = 2.0 * scores[0][full.len() - 1] as f64;
            assert!(
                (values[r] - want).abs() < 1e-4,
                "chunk {chunk} row {r}: {} vs {want}",
                values[r]
            );
        }
        if chunk == 1 {
            // Row 1 ended in this chunk: drop it, keep the others.
            v.reorder(&[0, 2]).expect("reorder");
            rows = vec![rows[0].clone(), rows[2].clone()];
        }
    }
}

#[test]
fn classifier_value_is_the_label_margin_on_the_text() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ivg-models/tests/fixtures/tiny/bert");
    let bert = Arc::new(load_bert(&dir, &LoadOptions::default()).expect("bert"));
    let tok = tokenizer();
    let mut v = ClassifierValue::new("gold", bert.clone(), tok.clone(), tok.clone(), 1, 0.5)
        .expect("value");
    v.begin(&["t5 t17 ".to_string()]).expect("begin");
    for t in [3u32, 9, 44] {
        v.observe(&[t], &[true]).expect("observe");
    }
    assert!(
        v.observe(&[1, 2], &[true, true]).is_err(),
        "row count mismatch must be an error"
    );
    let got = v.values().expect("values")[0];
    let text = format!("t5 t17 {}", tok.decode(&[3, 9, 44], true).expect("decode"));
    let ids = tok.encode(&text, true).expect("encode");
    let n = ids.len();
    let ids = Tensor::from_vec(ids, (1, n), &Device::Cpu).expect("ids");
    let hidden = bert
        .encoder
        .forward(&ids, &ids.ones_like().expect("mask"))
        .expect("forward");
    let logits = bert
        .classifier
        .as_ref()
        .expect("head")
        .forward(&hidden)
        .expect("head")
        .to_vec2::<f32>()
        .expect("v");
    let want = 0.5 * (logits[0][1] - logits[0][0]) as f64;
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    let err = ClassifierValue::new("gold", bert, tok.clone(), tok, 2, 1.0)
        .err()
        .expect("label out of range")
        .to_string();
    assert!(err.contains("label 2"), "{err}");
}
