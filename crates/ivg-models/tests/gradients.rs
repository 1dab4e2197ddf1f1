//! Every parameter of a model built for training receives a gradient. candle's
//! fused norm, softmax and rope kernels have no backward pass and would cut
//! them silently (architecture.md); the trainable weight source switches the
//! layers to composed ops, and this test fails if any parameter is left out.

mod common;

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use common::{randomize, tiny_gemma3_config, tiny_gpt2_config, tiny_llama_config};
use ivg_models::arch::bert::{mean_pool, BertModel};
use ivg_models::heads::ClassifierHead;
use ivg_models::{CausalLm, LogitsSpan, ModelConfig, Weights};

fn config(v: serde_json::Value) -> ModelConfig {
    ModelConfig::from_value(&v, std::path::Path::new("test.json")).expect("config")
}

/// Asserts every variable has a finite, non-zero gradient.
fn assert_all_learn(varmap: &VarMap, loss: &Tensor, what: &str) {
    let grads = loss.backward().expect("backward");
    let data = varmap.data().lock().expect("lock");
    assert!(!data.is_empty(), "{what}: no parameters");
    let mut missing = Vec::new();
    for (name, var) in data.iter() {
        let var: &Var = var;
        match grads.get(var.as_tensor()) {
            None => missing.push(format!("{name} (no gradient)")),
            Some(g) => {
                let norm = g
                    .sqr()
                    .and_then(|x| x.sum_all())
                    .and_then(|x| x.to_scalar::<f32>())
                    .expect("norm");
                if norm == 0.0 || !norm.is_finite() {
                    missing.push(format!("{name} (gradient norm {norm})"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{what}: parameters that do not learn: {missing:?}"
    );
}

/// Next-token cross-entropy over a left-padded batch of two sequences.
fn lm_loss(model: &CausalLm) -> Tensor {
    let mut state = model.new_state();
    let prompts = vec![vec![1u32, 5, 9, 13, 2, 7], vec![3u32, 4, 8]];
    let logits = model
        .prefill(&prompts, &mut state, LogitsSpan::All)
        .expect("forward");
    let logits = logits.narrow(1, 0, 5).expect("narrow");
    let targets =
        Tensor::new(&[[5u32, 9, 13, 2, 7], [0, 0, 0, 4, 8]], &Device::Cpu).expect("targets");
    let v = logits.dim(2).expect("vocab");
    candle_nn::loss::cross_entropy(
        &logits.reshape(((), v)).expect("flat"),
        &targets.flatten_all().expect("flat"),
    )
    .expect("loss")
}

fn check_causal(cfg: serde_json::Value, what: &str) {
    let varmap = VarMap::new();
    let w = Weights::from_varmap(&varmap, &Device::Cpu);
    let model = CausalLm::load(&w, &config(cfg), what).expect("build");
    randomize(&varmap, 0.3);
    assert_all_learn(&varmap, &lm_loss(&model), what);
}

#[test]
fn llama_parameters_all_learn() {
    check_causal(tiny_llama_config(), "llama");
}

#[test]
fn gpt2_parameters_all_learn() {
    check_causal(tiny_gpt2_config(), "gpt2");
}

#[test]
fn gemma3_parameters_all_learn() {
    check_causal(tiny_gemma3_config(), "gemma3");
}

#[test]
fn bert_classifier_parameters_all_learn() {
    let cfg = serde_json::json!({
        "model_type": "bert", "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2,
        "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 16,
        "type_vocab_size": 2, "num_labels": 2
    });
    let ModelConfig::Bert(c) = config(cfg) else {
        panic!("bert config")
    };
    let varmap = VarMap::new();
    let w = Weights::from_varmap(&varmap, &Device::Cpu);
    let encoder = BertModel::load(&w.pp("bert"), &c).expect("encoder");
    let head = ClassifierHead::load(&w, "bert", c.hidden_size, c.num_labels).expect("head");
    // Small weights: a saturated tanh in the pooler has an exactly zero f32 derivative.
    randomize(&varmap, 0.05);
    let ids = Tensor::new(&[[2u32, 7, 9, 4], [3, 8, 0, 0]], &Device::Cpu).expect("ids");
    let mask = Tensor::new(&[[1u32, 1, 1, 1], [1, 1, 0, 0]], &Device::Cpu).expect("mask");
    let hidden = encoder.forward(&ids, &mask).expect("forward");
    let logits = head.forward(&hidden).expect("head");
    let labels = Tensor::new(&[1u32, 0], &Device::Cpu).expect("labels");
    let ce = candle_nn::loss::cross_entropy(&logits, &labels).expect("ce");
    // The pooled embedding is part of the objective too, so that token type and
    // position tables of every used row receive gradient from both paths.
    let pooled = mean_pool(&hidden, &mask)
        .expect("pool")
        .sqr()
        .expect("sq")
        .mean_all()
        .expect("mean");
    assert_all_learn(&varmap, &(ce + pooled).expect("loss"), "bert");
}
