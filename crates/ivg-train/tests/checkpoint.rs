//! A checkpoint of a trained model is a Hugging Face directory that ivg loads
//! back with the same outputs.

mod common;

use std::collections::HashMap;

use candle_core::Tensor;
use common::{batch, tiny_config_json, trainable};
use ivg_models::{load_causal_lm, LoadOptions, LogitsSpan};
use ivg_train::{latest_checkpoint, load_checkpoint, save_checkpoint, Checkpoint, LossRecord};

#[test]
fn saved_weights_load_back_as_an_hf_model() {
    let (m, varmap) = trainable();
    let weights: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .expect("lock")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let dir = tempfile::tempdir().expect("tmp");
    let config = tiny_config_json();
    let losses = [LossRecord {
        step: 0,
        loss: 3.0,
        lr: 1e-3,
        grad_norm: 0.5,
    }];
    let train = serde_json::json!({"objective": "sft", "lr": 1e-3});
    let ckpt = Checkpoint {
        model_config: &config,
        weights,
        optimizer: HashMap::new(),
        step: 7,
        train_config: &train,
        losses: &losses,
        tokenizer: None,
    };
    let saved = save_checkpoint(dir.path(), &ckpt).expect("save");
    assert_eq!(
        latest_checkpoint(dir.path()).expect("latest"),
        Some(saved.clone())
    );
    assert_eq!(load_checkpoint(&saved).expect("resume").step, 7);
    let loaded = load_causal_lm(&saved, &LoadOptions::default()).expect("ivg loads the checkpoint");
    let (chosen, _) = batch();
    let seq = [chosen[0].prompt.as_slice(), &chosen[0].response].concat();
    let run = |model: &ivg_models::CausalLm| {
        let mut s = model.new_state();
        model
            .prefill(std::slice::from_ref(&seq), &mut s, LogitsSpan::All)
            .expect("forward")
    };
    let d = (run(&m) - run(&loaded))
        .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
        .expect("diff");
    assert!(d < 1e-5, "{d}");
}
