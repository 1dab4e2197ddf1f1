//! Batched generation against transformers' greedy continuations of the tiny
//! fixtures, and stop handling in a batch.

use std::path::PathBuf;

use candle_core::Device;
use ivg_decode::{generate, FinishReason, GenerateConfig, SamplingConfig};
use ivg_models::{load_causal_lm, CausalLm, LoadOptions};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../ivg-models/tests/fixtures/tiny")
        .join(name)
}

fn load(name: &str) -> (CausalLm, Vec<Vec<u32>>, Vec<Vec<u32>>) {
    let dir = fixture(name);
    let model = load_causal_lm(&dir, &LoadOptions::default()).expect("load");
    let t = candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu)
        .expect("expected");
    let ids = |k: String| -> Vec<u32> {
        t[&k]
            .to_vec1::<i64>()
            .expect("ids")
            .into_iter()
            .map(|x| x as u32)
            .collect()
    };
    let prompts = (0..3).map(|i| ids(format!("input_ids_{i}"))).collect();
    let greedy = (0..3).map(|i| ids(format!("greedy_{i}"))).collect();
    (model, prompts, greedy)
}

fn greedy_config(n: usize, stop_ids: Vec<u32>) -> GenerateConfig {
    GenerateConfig {
        max_new_tokens: n,
        sampling: SamplingConfig::greedy(),
        seed: 0,
        stop_ids,
    }
}

#[test]
fn batched_greedy_matches_reference_for_every_architecture() {
    for name in ["gpt2", "llama", "qwen2", "gemma3"] {
        let (model, prompts, greedy) = load(name);
        let out = generate(&model, &prompts, &greedy_config(8, vec![]), &mut |_, _| {})
            .expect("generate");
        for (i, g) in out.iter().enumerate() {
            assert_eq!(g.tokens, greedy[i], "{name} prompt {i}");
            assert_eq!(g.finish, FinishReason::Length);
        }
    }
}

#[test]
fn a_stopped_row_leaves_the_batch_and_others_continue() {
    let (model, prompts, greedy) = load("llama");
    // Stop on the third token of prompt 1's continuation (if it occurs earlier
    // in another row, that row stops there too: compute the expectation).
    let stop = greedy[1][2];
    let out = generate(
        &model,
        &prompts,
        &greedy_config(8, vec![stop]),
        &mut |_, _| {},
    )
    .expect("generate");
    for (i, g) in out.iter().enumerate() {
        match greedy[i].iter().position(|&t| t == stop) {
            Some(p) => {
                assert_eq!(g.tokens, greedy[i][..=p].to_vec(), "row {i}");
                assert_eq!(g.finish, FinishReason::Stop);
            }
            None => assert_eq!(g.tokens, greedy[i], "row {i}"),
        }
    }
}

#[test]
fn sampled_rows_do_not_depend_on_batch_mates() {
    let (model, prompts, _) = load("llama");
    let config = GenerateConfig {
        max_new_tokens: 10,
        sampling: SamplingConfig {
            temperature: 1.0,
            top_k: None,
            top_p: Some(0.9),
        },
        seed: 7,
        stop_ids: vec![],
    };
    let batch = generate(&model, &prompts, &config, &mut |_, _| {}).expect("batch");
    let again = generate(&model, &prompts, &config, &mut |_, _| {}).expect("again");
    assert_eq!(batch, again, "same seed, same output");
    // Row 0 alone (row index 0, same seed) gives the same tokens as in the batch.
    let alone = generate(&model, &prompts[..1], &config, &mut |_, _| {}).expect("alone");
    assert_eq!(alone[0], batch[0]);
    let mut streamed = vec![Vec::new(); 3];
    generate(&model, &prompts, &config, &mut |r, t| streamed[r].push(t)).expect("stream");
    for (s, g) in streamed.iter().zip(&batch) {
        assert_eq!(s, &g.tokens);
    }
}

#[test]
fn zero_new_tokens_is_refused() {
    let (model, prompts, _) = load("llama");
    let err =
        generate(&model, &prompts, &greedy_config(0, vec![]), &mut |_, _| {}).expect_err("error");
    assert!(err.to_string().contains("max_new_tokens"), "{err}");
}
