//! Parity of the real assets (assets.md) with transformers' GGUF loaders:
//! SmolLM2-135M-Instruct and Gemma 3 270M, dequantized to f32. References are
//! ids and a few logit rows from `scripts/reference/make_model_fixtures.py`.
//! The assets are fetched into the cache on first use (CI fetches them first).

mod common;

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use common::{greedy, max_abs_diff, tensors};
use ivg_assets::Asset;
use ivg_models::{load_causal_lm, LoadOptions, LogitsSpan, QuantPolicy};
use serde_json::Value;

fn asset(a: Asset) -> PathBuf {
    ivg_assets::ensure_default(a).expect("asset available (run `ivg assets fetch`)")
}

fn reference(name: &str) -> Value {
    let text = std::fs::read_to_string(common::fixture(&format!("reference/{name}")))
        .expect("reference json");
    serde_json::from_str(&text).expect("json")
}

fn id_list(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn f32_options() -> LoadOptions {
    LoadOptions {
        device: Device::Cpu,
        quant: QuantPolicy::Dequantize,
    }
}

#[test]
fn smollm2_f32_matches_transformers() {
    let model = load_causal_lm(&asset(Asset::SmolLm2Gguf), &f32_options()).expect("load");
    let refs = reference("smollm2.json");
    let rows = tensors("reference/smollm2_logits.safetensors");
    for (i, p) in refs["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .enumerate()
    {
        let ids = id_list(&p["input_ids"]);
        let mut state = model.new_state();
        let all = model
            .prefill(std::slice::from_ref(&ids), &mut state, LogitsSpan::All)
            .expect("forward");
        let all = all.squeeze(0).expect("squeeze");
        let first = all.get(0).expect("first");
        let last = all.get(ids.len() - 1).expect("last");
        let d_first = max_abs_diff(&first, &rows[&format!("first_logits_{i}")]);
        let d_last = max_abs_diff(&last, &rows[&format!("last_logits_{i}")]);
        assert!(
            d_first < 1e-3 && d_last < 1e-3,
            "prompt {i}: first {d_first}, last {d_last}"
        );
        assert_eq!(
            greedy(&model, &ids, 32),
            id_list(&p["greedy_32"]),
            "prompt {i} greedy"
        );
    }
}

#[test]
fn gemma3_greedy_matches_transformers() {
    let model = load_causal_lm(&asset(Asset::Gemma3Gguf), &f32_options()).expect("load");
    let refs = reference("gemma3.json");
    let rows = tensors("reference/gemma3_logits.safetensors");
    let prompt = &refs["prompts"][0];
    let ids = id_list(&prompt["input_ids"]);
    let mut state = model.new_state();
    let last = model
        .prefill(std::slice::from_ref(&ids), &mut state, LogitsSpan::Last)
        .expect("forward");
    let d = max_abs_diff(&last.squeeze(0).expect("sq"), &rows["last_logits_0"]);
    assert!(d < 1e-3, "gemma3 last logits differ by {d}");
    let want = id_list(&prompt["greedy_16"]);
    assert_eq!(greedy(&model, &ids, want.len()), want);
}

#[test]
fn smollm2_quantized_q8_tracks_f32() {
    // Q4_1 is re-quantized to Q8_0 at load, and candle's quantized matmul also
    // quantizes the activations, so logits move by up to ~1.2 (measured); the
    // top token must still agree and the typical logit must barely move.
    let path = asset(Asset::SmolLm2Gguf);
    let q8 = load_causal_lm(&path, &LoadOptions::default()).expect("load q8");
    let refs = reference("smollm2.json");
    let rows = tensors("reference/smollm2_logits.safetensors");
    let ids = id_list(&refs["prompts"][0]["input_ids"]);
    let mut state = q8.new_state();
    let last = q8
        .prefill(&[ids], &mut state, LogitsSpan::Last)
        .expect("forward")
        .squeeze(0)
        .expect("sq");
    let want: &Tensor = &rows["last_logits_0"];
    assert_eq!(common::argmax(&last), common::argmax(want));
    let d = max_abs_diff(&last, want);
    assert!(d < 2.0, "q8 drifts by {d}");
    let mean = (&last - want)
        .and_then(|x| x.abs())
        .and_then(|x| x.mean_all())
        .and_then(|x| x.to_scalar::<f32>())
        .expect("mean");
    assert!(mean < 0.3, "q8 mean drift {mean}");
}
