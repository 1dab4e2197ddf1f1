//! Shared helpers of the ivg-models integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use ivg_models::{CausalLm, ModelConfig, Weights};

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// Tensors of a checked-in safetensors fixture.
pub fn tensors(rel: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(rel), &Device::Cpu).expect("fixture loads")
}

/// An I64 id tensor as u32 ids.
pub fn ids(t: &Tensor) -> Vec<u32> {
    t.to_dtype(DType::I64)
        .and_then(|t| t.to_vec1::<i64>())
        .expect("ids")
        .into_iter()
        .map(|x| x as u32)
        .collect()
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff")
}

pub fn argmax(row: &Tensor) -> u32 {
    row.argmax(candle_core::D::Minus1)
        .and_then(|t| t.to_scalar::<u32>())
        .expect("argmax")
}

/// Greedy continuation of `prompt` by `n` tokens with the KV cache.
pub fn greedy(model: &CausalLm, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut state = model.new_state();
    let mut logits = model
        .prefill(&[prompt.to_vec()], &mut state, ivg_models::LogitsSpan::Last)
        .expect("prefill");
    let mut out = Vec::new();
    for _ in 0..n {
        let next = argmax(&logits.get(0).expect("row"));
        out.push(next);
        logits = model.step(&[next], &mut state).expect("step");
    }
    out
}

/// A model with random weights (N(0, std) for every parameter) built from a
/// config JSON, through the trainable weight source.
pub fn random_model(config: serde_json::Value, std: f64) -> (CausalLm, VarMap) {
    let (cfg, map, varmap) = random_tensors(config, std);
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("model.safetensors");
    candle_core::safetensors::save(&map, &file).expect("save");
    let w = Weights::from_safetensors(&[file], &Device::Cpu).expect("weights");
    (CausalLm::load(&w, &cfg, "random").expect("reload"), varmap)
}

/// The seeded random weights of a model of `config`, by name.
pub fn random_tensors(
    config: serde_json::Value,
    std: f64,
) -> (ModelConfig, HashMap<String, Tensor>, VarMap) {
    let cfg =
        ModelConfig::from_value(&config, std::path::Path::new("test-config.json")).expect("config");
    let varmap = VarMap::new();
    let w = Weights::from_varmap(&varmap, &Device::Cpu);
    CausalLm::load(&w, &cfg, "random").expect("build");
    randomize(&varmap, std);
    let data = varmap.data().lock().expect("lock");
    let map: HashMap<String, Tensor> = data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    drop(data);
    (cfg, map, varmap)
}

/// Seeded normal weights (every seventh variable, in name order, shifted by
/// 1 so that norm gains sit near 1): the same weights on every run.
pub fn randomize(varmap: &VarMap, std: f64) {
    let data = varmap.data().lock().expect("lock");
    let mut vars: Vec<_> = data.iter().collect();
    vars.sort_by(|a, b| a.0.cmp(b.0));
    for (i, (_, var)) in vars.into_iter().enumerate() {
        let t = ivg_testkit::seeded_normal(var.shape(), std as f32, i as u64);
        let t = if i % 7 == 0 {
            (t + 1.0).expect("shift")
        } else {
            t
        };
        var.set(&t).expect("set");
    }
}

pub fn tiny_llama_config() -> serde_json::Value {
    serde_json::json!({
        "model_type": "llama", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 128, "rms_norm_eps": 1e-6, "tie_word_embeddings": false
    })
}

pub fn tiny_gpt2_config() -> serde_json::Value {
    serde_json::json!({
        "model_type": "gpt2", "vocab_size": 64, "n_positions": 128, "n_embd": 32,
        "n_layer": 2, "n_head": 4
    })
}

pub fn tiny_gemma3_config() -> serde_json::Value {
    serde_json::json!({
        "model_type": "gemma3_text", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
        "max_position_embeddings": 128, "sliding_window": 4, "query_pre_attn_scalar": 16,
        "layer_types": ["sliding_attention", "sliding_attention", "full_attention"]
    })
}
