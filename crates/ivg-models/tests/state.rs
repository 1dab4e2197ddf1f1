//! Decode-state semantics: fork, truncate and left-padded batches are exact
//! replacements for independent runs (architecture.md, practice 5).

mod common;

use candle_core::Tensor;
use common::{
    argmax, max_abs_diff, random_model, tiny_gemma3_config, tiny_gpt2_config, tiny_llama_config,
};
use ivg_models::{CausalLm, LogitsSpan};

/// Logits of `prompt` followed by `cont`, one token at a time, in a fresh state.
fn run_single(model: &CausalLm, prompt: &[u32], cont: &[u32]) -> Vec<Tensor> {
    let mut state = model.new_state();
    let mut out = vec![model
        .prefill(&[prompt.to_vec()], &mut state, LogitsSpan::Last)
        .expect("prefill")];
    for &t in cont {
        out.push(model.step(&[t], &mut state).expect("step"));
    }
    out
}

/// Fork 1 -> 4, then continue each row differently: exactly equal to four
/// independent runs, both in a batch of the same shape (the prompt prefilled
/// four times, no state shared) and as four batch-1 runs. (Exact equality
/// across batch sizes relies on `LinearWeight::DenseT`.)
fn fork_equals_independent(model: &CausalLm) {
    let prompt = [3u32, 17, 5, 9, 22];
    let conts: [[u32; 3]; 4] = [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]];
    let mut parent = model.new_state();
    model
        .prefill(&[prompt.to_vec()], &mut parent, LogitsSpan::Last)
        .expect("prefill");
    let mut forked = parent.fork(4).expect("fork");
    let snapshot = parent.clone();
    let mut independent = model.new_state();
    model
        .prefill(
            &vec![prompt.to_vec(); 4],
            &mut independent,
            LogitsSpan::Last,
        )
        .expect("prefill x4");
    for step in 0..3 {
        let tokens: Vec<u32> = conts.iter().map(|c| c[step]).collect();
        let logits = model.step(&tokens, &mut forked).expect("step");
        let want = model
            .step(&tokens, &mut independent)
            .expect("independent step");
        assert_eq!(
            max_abs_diff(&logits, &want),
            0.0,
            "fork differs from independent rows at step {step}"
        );
        for (row, c) in conts.iter().enumerate() {
            let single = run_single(model, &prompt, &c[..=step]);
            let d = max_abs_diff(
                &logits.get(row).expect("row"),
                &single[step + 1].get(0).expect("row"),
            );
            assert_eq!(
                d, 0.0,
                "fork row {row} step {step} differs from a batch-1 run by {d}"
            );
        }
    }
    // The parent is untouched by its forks' appends (no aliasing).
    assert_eq!(parent.len(), snapshot.len());
    let k0 = &parent.layer(0).expect("layer").k;
    assert_eq!(max_abs_diff(k0, &snapshot.layer(0).expect("layer").k), 0.0);
    let mut p2 = parent.clone();
    let a = model.step(&[1], &mut p2).expect("step");
    assert_eq!(
        max_abs_diff(
            &a.get(0).expect("row"),
            &run_single(model, &prompt, &[1])[1].get(0).expect("row")
        ),
        0.0
    );
}

fn truncate_then_replay(model: &CausalLm) {
    let prompt = [5u32, 6, 7, 8];
    let mut state = model.new_state();
    model
        .prefill(&[prompt.to_vec()], &mut state, LogitsSpan::Last)
        .expect("prefill");
    let first = model.step(&[9], &mut state).expect("step");
    model.step(&[10], &mut state).expect("step");
    model.step(&[11], &mut state).expect("step");
    state.truncate(prompt.len()).expect("truncate");
    let replay = model.step(&[9], &mut state).expect("replay");
    assert_eq!(
        max_abs_diff(&first, &replay),
        0.0,
        "truncate + replay must be exact"
    );
    assert_eq!(state.len(), prompt.len() + 1);
}

fn padded_batch_equals_single(model: &CausalLm) {
    let prompts: Vec<Vec<u32>> = (0..8)
        .map(|i| {
            (0..(2 + i * 2))
                .map(|j| ((i * 7 + j * 3) % 60 + 1) as u32)
                .collect()
        })
        .collect();
    let mut state = model.new_state();
    let mut logits = model
        .prefill(&prompts, &mut state, LogitsSpan::Last)
        .expect("prefill");
    let mut singles: Vec<(ivg_models::DecodeState, Tensor)> = prompts
        .iter()
        .map(|p| {
            let mut s = model.new_state();
            let l = model
                .prefill(std::slice::from_ref(p), &mut s, LogitsSpan::Last)
                .expect("single");
            (s, l)
        })
        .collect();
    for step in 0..6 {
        let mut next = Vec::new();
        for (row, (s, l)) in singles.iter_mut().enumerate() {
            let b = logits.get(row).expect("row");
            let d = max_abs_diff(&b, &l.get(0).expect("row"));
            assert!(d < 1e-3, "row {row} step {step}: batched differs by {d}");
            let tok = argmax(&l.get(0).expect("row"));
            assert_eq!(
                argmax(&b),
                tok,
                "row {row} step {step}: greedy token differs"
            );
            *l = model.step(&[tok], s).expect("single step");
            next.push(tok);
        }
        logits = model.step(&next, &mut state).expect("batched step");
    }
}

#[test]
fn llama_state_semantics() {
    let (model, _) = random_model(tiny_llama_config(), 0.3);
    fork_equals_independent(&model);
    truncate_then_replay(&model);
    padded_batch_equals_single(&model);
}

#[test]
fn gpt2_state_semantics() {
    let (model, _) = random_model(tiny_gpt2_config(), 0.3);
    fork_equals_independent(&model);
    truncate_then_replay(&model);
    padded_batch_equals_single(&model);
}

#[test]
fn gemma3_sliding_window_padded_batch() {
    // Window 4 is shorter than most prompts: the local mask must follow each
    // row's real tokens, not the padded slots.
    let (model, _) = random_model(tiny_gemma3_config(), 0.3);
    padded_batch_equals_single(&model);
    fork_equals_independent(&model);
}

#[test]
fn reorder_selects_rows() {
    let (model, _) = random_model(tiny_llama_config(), 0.3);
    let prompts = vec![vec![1u32, 2, 3], vec![4u32, 5, 6], vec![7u32, 8, 9]];
    let mut state = model.new_state();
    model
        .prefill(&prompts, &mut state, LogitsSpan::Last)
        .expect("prefill");
    state.reorder(&[2, 0, 2]).expect("reorder");
    let got = model.step(&[1, 1, 1], &mut state).expect("step");
    for (row, src) in [2usize, 0, 2].into_iter().enumerate() {
        let want = run_single(&model, &prompts[src], &[1]);
        assert!(max_abs_diff(&got.get(row).expect("row"), &want[1].get(0).expect("row")) < 1e-5);
    }
    assert!(
        state.reorder(&[3]).is_err(),
        "out-of-range row must be refused"
    );
}

#[test]
fn truncated_state_can_be_reordered() {
    // `truncate` leaves narrowed (non-contiguous) caches; `reorder` must accept them.
    let (model, _) = random_model(tiny_llama_config(), 0.3);
    let mut state = model.new_state();
    model
        .prefill(
            &[vec![1u32, 2, 3], vec![4, 5, 6]],
            &mut state,
            LogitsSpan::Last,
        )
        .expect("prefill");
    model.step(&[7, 8], &mut state).expect("step");
    state.truncate(3).expect("truncate");
    state.reorder(&[1, 0]).expect("reorder after truncate");
    let got = model.step(&[9, 9], &mut state).expect("step");
    let want = run_single(&model, &[1, 2, 3], &[9]);
    assert_eq!(
        max_abs_diff(&got.get(1).expect("row"), &want[1].get(0).expect("row")),
        0.0
    );
}
