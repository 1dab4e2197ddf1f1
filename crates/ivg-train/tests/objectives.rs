//! SFT and DPO losses against independent computations, and their gradients
//! against central finite differences.

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use ivg_models::{CausalLm, LogitsSpan, ModelConfig, Weights};
use ivg_testkit::tiny_model;
use ivg_train::{Dpo, DpoBatch, Example, Objective, Sft};

fn ex(prompt: &[u32], response: &[u32]) -> Example {
    Example {
        prompt: prompt.to_vec(),
        response: response.to_vec(),
    }
}

fn batch() -> (Vec<Example>, Vec<Example>) {
    let chosen = vec![
        ex(&[5, 17, 3], &[9, 12, 40]),
        ex(&[40, 41, 42, 43, 44], &[7, 8]),
    ];
    let rejected = vec![
        ex(&[5, 17, 3], &[60, 61]),
        ex(&[40, 41, 42, 43, 44], &[1, 2, 3, 4]),
    ];
    (chosen, rejected)
}

/// Summed response log-probability by a cache-free, unbatched forward, in f64.
fn naive_log_prob(m: &CausalLm, e: &Example) -> f64 {
    let seq = [e.prompt.as_slice(), &e.response].concat();
    let mut s = m.new_state();
    let logits = m
        .prefill(std::slice::from_ref(&seq), &mut s, LogitsSpan::All)
        .expect("forward")
        .squeeze(0)
        .expect("sq");
    let rows = logits.to_vec2::<f32>().expect("host");
    (0..e.response.len())
        .map(|k| {
            let row = &rows[e.prompt.len() + k - 1];
            let max = row.iter().copied().fold(f32::MIN, f32::max) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|&v| (v as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            row[e.response[k] as usize] as f64 - lse
        })
        .sum()
}

#[test]
fn dpo_at_initialisation_is_log_two() {
    let m = tiny_model("llama");
    let (chosen, rejected) = batch();
    let b = DpoBatch::new(&m, chosen, rejected).expect("batch");
    let loss = Dpo::default()
        .loss(&m, &b)
        .expect("loss")
        .to_scalar::<f32>()
        .expect("scalar") as f64;
    assert!((loss - std::f64::consts::LN_2).abs() < 1e-6, "{loss}");
}

#[test]
fn dpo_equals_the_formula() {
    // Policy: the tiny Llama; reference: the tiny Qwen2 (same 96-id vocabulary).
    let (policy, reference) = (tiny_model("llama"), tiny_model("qwen2"));
    let (chosen, rejected) = batch();
    let beta = 0.5;
    let want: f64 = chosen
        .iter()
        .zip(&rejected)
        .map(|(w, l)| {
            let z = beta
                * ((naive_log_prob(&policy, w) - naive_log_prob(&reference, w))
                    - (naive_log_prob(&policy, l) - naive_log_prob(&reference, l)));
            (1.0 + (-z).exp()).ln()
        })
        .sum::<f64>()
        / chosen.len() as f64;
    let b = DpoBatch::new(&reference, chosen, rejected).expect("batch");
    let got = Dpo { beta }
        .loss(&policy, &b)
        .expect("loss")
        .to_scalar::<f32>()
        .expect("scalar") as f64;
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    assert!(Dpo { beta: 0.0 }.loss(&policy, &b).is_err());
}

#[test]
fn sft_is_the_mean_response_nll() {
    let m = tiny_model("gpt2");
    let (chosen, _) = batch();
    let tokens: usize = chosen.iter().map(|e| e.response.len()).sum();
    let want = -chosen.iter().map(|e| naive_log_prob(&m, e)).sum::<f64>() / tokens as f64;
    let got = Sft
        .loss(&m, &chosen)
        .expect("loss")
        .to_scalar::<f32>()
        .expect("scalar") as f64;
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
}

/// A tiny Llama built on trainable variables, randomised.
fn trainable() -> (CausalLm, VarMap) {
    let cfg = serde_json::json!({
        "model_type": "llama", "vocab_size": 96, "hidden_size": 16, "intermediate_size": 32,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 32
    });
    let cfg = ModelConfig::from_value(&cfg, std::path::Path::new("t.json")).expect("cfg");
    let varmap = VarMap::new();
    let m = CausalLm::load(&Weights::from_varmap(&varmap, &Device::Cpu), &cfg, "t").expect("model");
    for v in varmap.all_vars() {
        v.set(&Tensor::randn(0f32, 0.3, v.shape(), &Device::Cpu).expect("r"))
            .expect("set");
    }
    (m, varmap)
}

/// Directional derivative along a random direction `u` of every variable:
/// analytic `sum_v <grad_v, u_v>` against `(L(x + h u) - L(x - h u)) / 2h`.
fn check_gradients(loss: &dyn Fn() -> Tensor, varmap: &VarMap, what: &str) {
    let vars: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .expect("lock")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let l0 = loss();
    let grads = l0.backward().expect("backward");
    let dirs: HashMap<String, Tensor> = vars
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Tensor::randn(0f32, 1.0, v.shape(), &Device::Cpu).expect("u"),
            )
        })
        .collect();
    let mut analytic = 0f64;
    for (k, v) in &vars {
        let g = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("{what}: `{k}` got no gradient"));
        let norm = g
            .sqr()
            .and_then(|x| x.sum_all())
            .and_then(|x| x.to_scalar::<f32>())
            .expect("norm");
        assert!(
            norm > 0.0 && norm.is_finite(),
            "{what}: `{k}` gradient norm {norm}"
        );
        analytic += (g * &dirs[k])
            .and_then(|x| x.sum_all())
            .and_then(|x| x.to_scalar::<f32>())
            .expect("dot") as f64;
    }
    let h = 1e-3;
    let shift = |sign: f64| {
        for (k, v) in &vars {
            let moved = (v.as_tensor() + (&dirs[k] * (sign * h)).expect("step")).expect("add");
            v.set(&moved).expect("set");
        }
    };
    shift(1.0);
    let up = loss().to_scalar::<f32>().expect("up") as f64;
    shift(-2.0);
    let down = loss().to_scalar::<f32>().expect("down") as f64;
    shift(1.0);
    let numeric = (up - down) / (2.0 * h);
    let rel = (analytic - numeric).abs() / analytic.abs().max(numeric.abs());
    assert!(
        rel < 1e-2,
        "{what}: analytic {analytic} vs finite difference {numeric} (relative {rel})"
    );
}

#[test]
fn sft_and_dpo_gradients_match_finite_differences() {
    let (m, varmap) = trainable();
    let (chosen, rejected) = batch();
    check_gradients(&|| Sft.loss(&m, &chosen).expect("sft"), &varmap, "sft");
    let reference = tiny_model("qwen2");
    let b = DpoBatch::new(&reference, chosen.clone(), rejected.clone()).expect("batch");
    check_gradients(
        &|| Dpo { beta: 0.5 }.loss(&m, &b).expect("dpo"),
        &varmap,
        "dpo",
    );
}
