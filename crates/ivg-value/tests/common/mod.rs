//! Shared helpers of the ivg-value integration tests.
#![allow(dead_code)]

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use ivg_models::{ModelConfig, ScalarLm, Weights};

/// A tiny llama backbone with a scalar head and seeded weights (vocabulary 96,
/// the word tokenizer's), built in memory: no checked-in fixture has a score head.
pub fn scalar_model() -> ScalarLm {
    let cfg = serde_json::json!({
        "model_type": "llama", "vocab_size": 96, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64
    });
    let cfg = ModelConfig::from_value(&cfg, std::path::Path::new("scalar.json")).expect("cfg");
    let varmap = VarMap::new();
    ScalarLm::load(&Weights::from_varmap(&varmap, &Device::Cpu), &cfg, "scalar").expect("build");
    let data = varmap.data().lock().expect("lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for (i, name) in names.into_iter().enumerate() {
        let var = &data[name];
        var.set(&ivg_testkit::seeded_normal(var.shape(), 0.3, i as u64))
            .expect("set");
    }
    let map: HashMap<String, Tensor> = data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    ScalarLm::load(
        &Weights::from_tensors(map, "scalar", &Device::Cpu),
        &cfg,
        "scalar",
    )
    .expect("model")
}
