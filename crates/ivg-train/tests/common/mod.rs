//! Helpers shared by the objective tests.
#![allow(dead_code)]

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use ivg_models::{CausalLm, LogitsSpan, ModelConfig, ScalarLm, Weights};
use ivg_train::Example;

pub fn ex(prompt: &[u32], response: &[u32]) -> Example {
    Example {
        prompt: prompt.to_vec(),
        response: response.to_vec(),
    }
}

pub fn batch() -> (Vec<Example>, Vec<Example>) {
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
pub fn naive_log_prob(m: &CausalLm, e: &Example) -> f64 {
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

/// The tiny Llama's `config.json` (96-token vocabulary, like the fixtures).
pub fn tiny_config_json() -> serde_json::Value {
    serde_json::json!({
        "model_type": "llama", "vocab_size": 96, "hidden_size": 16, "intermediate_size": 32,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 32
    })
}

pub fn tiny_config() -> ModelConfig {
    ModelConfig::from_value(&tiny_config_json(), std::path::Path::new("t.json")).expect("cfg")
}

/// Sets every variable to fixed pseudo-random values ([`deterministic_init`]), so runs repeat.
pub fn randomise(varmap: &VarMap) {
    deterministic_init(varmap);
}

/// The tiny Llama on trainable variables, randomised.
pub fn trainable() -> (CausalLm, VarMap) {
    let varmap = VarMap::new();
    let m = CausalLm::load(
        &Weights::from_varmap(&varmap, &Device::Cpu),
        &tiny_config(),
        "t",
    )
    .expect("model");
    randomise(&varmap);
    (m, varmap)
}

/// Directional derivative along a random direction `u` of every variable:
/// analytic `sum_v <grad_v, u_v>` against `(L(x + h u) - L(x - h u)) / 2h`.
pub fn check_gradients(loss: &dyn Fn() -> Tensor, varmap: &VarMap, what: &str) {
    check_gradients_except(loss, varmap, what, &[]);
}

/// [`check_gradients`] where the variables named in `invariant` must get an
/// exactly zero gradient (the loss does not depend on them, e.g. a bias that
/// cancels in a difference of rewards); all others a non-zero one.
#[allow(dead_code)]
pub fn check_gradients_except(
    loss: &dyn Fn() -> Tensor,
    varmap: &VarMap,
    what: &str,
    invariant: &[&str],
) {
    let vars: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .expect("lock")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let l0 = loss();
    let grads = l0.backward().expect("backward");
    // Direction: the gradient itself plus a fixed pseudo-random part of similar
    // size. Along the gradient the derivative is large, so f32 rounding in the
    // finite difference stays far below the tolerance (a purely random
    // direction can cancel to ~1e-3 and make the check flaky); the random part
    // still exposes a gradient that is wrong but correlated with the truth.
    let dirs: HashMap<String, Tensor> = vars
        .iter()
        .map(|(k, v)| {
            let g = grads.get(v.as_tensor()).expect("gradient").clone();
            let scale = g
                .abs()
                .and_then(|x| x.mean_all())
                .and_then(|x| x.to_scalar::<f32>())
                .expect("scale");
            let noise: Vec<f32> = (0..v.elem_count())
                .map(|j| ((j * 7919 + k.len() * 104_729) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let noise = (Tensor::from_vec(noise, v.shape(), &Device::Cpu).expect("noise")
                * scale as f64)
                .expect("scaled");
            (k.clone(), (g + noise).expect("direction"))
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
        if invariant.contains(&k.as_str()) {
            assert_eq!(norm, 0.0, "{what}: `{k}` should not affect the loss");
        } else {
            assert!(
                norm > 0.0 && norm.is_finite(),
                "{what}: `{k}` gradient norm {norm}"
            );
        }
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

/// The same tiny Llama with a scalar `score` head, on trainable variables.
pub fn trainable_scalar() -> (ScalarLm, VarMap) {
    let varmap = VarMap::new();
    let m = ScalarLm::load(
        &Weights::from_varmap(&varmap, &Device::Cpu),
        &tiny_config(),
        "s",
    )
    .expect("model");
    randomise(&varmap);
    (m, varmap)
}

/// Overwrites every variable with fixed values (sorted by name), so that two
/// models built separately start identical.
pub fn deterministic_init(varmap: &VarMap) {
    let data = varmap.data().lock().expect("lock");
    let mut vars: Vec<(&String, &Var)> = data.iter().collect();
    vars.sort_by(|a, b| a.0.cmp(b.0));
    for (i, (_, v)) in vars.iter().enumerate() {
        let vals: Vec<f32> = (0..v.elem_count())
            .map(|j| (((i * 31 + j * 17) % 97) as f32 / 97.0 - 0.5) * 0.6)
            .collect();
        v.set(&Tensor::from_vec(vals, v.shape(), &Device::Cpu).expect("t"))
            .expect("set");
    }
}
