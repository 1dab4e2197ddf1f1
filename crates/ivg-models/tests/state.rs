//! Decode-state semantics: fork, truncate, left-padded batches and rows that
//! join (`append_rows`) or leave (`reorder` + `trim_padding`) a running batch
//! are exact replacements for independent runs (architecture.md, practice 5).

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

/// One sequence of the join test, with its own batch-1 state: the reference
/// its row in the shared batch must reproduce.
struct Alone {
    id: usize,
    state: ivg_models::DecodeState,
    /// `(1, vocab)` logits predicting its next token.
    logits: Tensor,
}

impl Alone {
    fn new(model: &CausalLm, id: usize, prompt: &[u32]) -> Self {
        let mut state = model.new_state();
        let logits = model
            .prefill(&[prompt.to_vec()], &mut state, LogitsSpan::Last)
            .expect("alone prefill");
        Self { id, state, logits }
    }
}

/// A prompt of `len` tokens for sequence `id`.
fn join_prompt(id: usize, len: usize) -> Vec<u32> {
    (0..len)
        .map(|j| ((id * 11 + j * 5) % 60 + 1) as u32)
        .collect()
}

/// The token sequence `id` emits at `step` (not greedy: any ids will do).
fn join_token(id: usize, step: usize) -> u32 {
    ((id * 13 + step * 7) % 60 + 1) as u32
}

/// Largest difference between the batch's logits `(rows, vocab)` and each
/// row's batch-1 reference.
fn diff_to_alone(batch: &Tensor, alone: &[Alone]) -> f32 {
    assert_eq!(batch.dim(0).expect("rows"), alone.len());
    alone
        .iter()
        .enumerate()
        .map(|(row, a)| {
            max_abs_diff(
                &batch.get(row).expect("row"),
                &a.logits.get(0).expect("row"),
            )
        })
        .fold(0.0, f32::max)
}

/// `steps` decoding steps of the batch and of every sequence alone; returns
/// the largest logit difference seen.
fn step_both(
    model: &CausalLm,
    batch: &mut ivg_models::DecodeState,
    alone: &mut [Alone],
    first_step: usize,
    steps: usize,
) -> f32 {
    let mut worst = 0f32;
    for step in first_step..first_step + steps {
        let tokens: Vec<u32> = alone.iter().map(|a| join_token(a.id, step)).collect();
        let logits = model.step(&tokens, batch).expect("batch step");
        for (a, &t) in alone.iter_mut().zip(&tokens) {
            a.logits = model.step(&[t], &mut a.state).expect("alone step");
        }
        worst = worst.max(diff_to_alone(&logits, alone));
    }
    worst
}

/// How the join test prefills a group of prompts that enter the batch together.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Prefill {
    /// One left-padded prefill of the group, then one `append_rows`.
    Together,
    /// A batch-1 prefill per prompt, each appended on its own: no padded
    /// prefill, so any difference to the alone runs is `append_rows`' own.
    OneByOne,
}

/// A group of prompts (sequences `first_id..`) appended to `batch` as
/// `prefill` says; returns the group's prefill logits' largest difference to
/// its alone runs, and the alone runs.
fn join(
    model: &CausalLm,
    batch: &mut ivg_models::DecodeState,
    prompts: &[Vec<u32>],
    first_id: usize,
    prefill: Prefill,
) -> (f32, Vec<Alone>) {
    let alone: Vec<Alone> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| Alone::new(model, first_id + i, p))
        .collect();
    let groups: Vec<&[Vec<u32>]> = match prefill {
        Prefill::Together => vec![prompts],
        Prefill::OneByOne => prompts.chunks(1).collect(),
    };
    let mut logits = Vec::new();
    for group in groups {
        let mut newcomers = model.new_state();
        logits.push(
            model
                .prefill(group, &mut newcomers, LogitsSpan::Last)
                .expect("prefill newcomers"),
        );
        batch.append_rows(newcomers).expect("append rows");
    }
    let logits = Tensor::cat(&logits, 0).expect("cat");
    (diff_to_alone(&logits, &alone), alone)
}

/// Requests join a running batch (`append_rows`, with prompts shorter and
/// longer than the batch's slots), leave it (`reorder` + `trim_padding`), and
/// the batch empties and refills: every row's next-token logits match the
/// sequence decoded alone. Returns the largest difference seen.
fn join_and_leave_equal_alone(model: &CausalLm, prefill: Prefill) -> f32 {
    // Running batch: sequences 0 (3 tokens) and 1 (6 tokens), 2 steps in.
    let mut batch = model.new_state();
    let (mut worst, mut alone) = join(
        model,
        &mut batch,
        &[join_prompt(0, 3), join_prompt(1, 6)],
        0,
        prefill,
    );
    worst = worst.max(step_both(model, &mut batch, &mut alone, 0, 2));
    assert_eq!((batch.len(), batch.pads()), (8, &[3, 0][..]));

    // Join: sequence 2 (2 tokens, shorter than the batch's 8 slots) and
    // sequence 3 (12 tokens, longer).
    let (d, fresh) = join(
        model,
        &mut batch,
        &[join_prompt(2, 2), join_prompt(3, 12)],
        2,
        prefill,
    );
    worst = worst.max(d);
    alone.extend(fresh);
    assert_eq!(batch.len(), 12);
    assert_eq!(batch.pads(), &[7, 4, 10, 0]);
    for (row, a) in alone.iter().enumerate() {
        assert_eq!(batch.row_len(row), a.state.len(), "row {row} tokens");
    }
    worst = worst.max(step_both(model, &mut batch, &mut alone, 2, 3));

    // Sequences 1 and 3 (the longest) leave; the others swap places.
    batch.reorder(&[2, 0]).expect("reorder");
    alone = vec![alone.swap_remove(2), alone.swap_remove(0)];
    assert_eq!((alone[0].id, alone[1].id), (2, 0));
    assert_eq!(batch.pads(), &[10, 7]);
    batch.trim_padding().expect("trim");
    assert_eq!(batch.pads(), &[3, 0]);
    assert_eq!(
        batch.len(),
        8,
        "15 slots less 7 that are padding in every row"
    );
    worst = worst.max(step_both(model, &mut batch, &mut alone, 5, 3));

    // Everyone leaves; a new request starts the batch again.
    batch.reorder(&[]).expect("drop all rows");
    assert_eq!((batch.rows(), batch.len()), (0, 0));
    batch.trim_padding().expect("trim an empty state");
    let (d, mut alone) = join(model, &mut batch, &[join_prompt(4, 5)], 4, prefill);
    worst = worst.max(d);
    worst = worst.max(step_both(model, &mut batch, &mut alone, 0, 2));
    // Appending a state without rows changes nothing.
    batch
        .append_rows(model.new_state())
        .expect("append nothing");
    assert_eq!((batch.rows(), batch.len()), (1, 7));
    worst
}

/// `append_rows` and `trim_padding` are exact: rows prefilled alone and joined
/// give bitwise the logits of their alone runs, and so do rows prefilled
/// together, left-padded (the CPU attention skips masked slots rather than
/// summing their zeros; with candle's softmax a padded prefill differed in the
/// last bits, up to 5.7e-6 on Gemma 3).
#[test]
fn joined_rows_equal_alone_runs() {
    for (name, config) in [
        ("llama", tiny_llama_config()),
        ("gpt2", tiny_gpt2_config()),
        // Window 4: joined rows' masks must follow their own tokens.
        ("gemma3", tiny_gemma3_config()),
    ] {
        let (model, _) = random_model(config, 0.3);
        let exact = join_and_leave_equal_alone(&model, Prefill::OneByOne);
        assert_eq!(exact, 0.0, "{name}: joined rows differ from alone runs");
        let together = join_and_leave_equal_alone(&model, Prefill::Together);
        assert_eq!(
            together, 0.0,
            "{name}: rows prefilled together differ from alone runs"
        );
    }
}

#[test]
fn append_rows_refuses_states_of_other_models() {
    let (llama, _) = random_model(tiny_llama_config(), 0.3);
    let (gpt2, _) = random_model(tiny_gpt2_config(), 0.3);
    let (gemma3, _) = random_model(tiny_gemma3_config(), 0.3);
    let prefilled = |m: &CausalLm| {
        let mut s = m.new_state();
        m.prefill(&[vec![1u32, 2, 3]], &mut s, LogitsSpan::Last)
            .expect("prefill");
        s
    };
    let mut state = prefilled(&llama);
    let err = state
        .append_rows(prefilled(&gemma3))
        .expect_err("3 layers onto 2")
        .to_string();
    assert!(err.contains("3-layer") && err.contains("2-layer"), "{err}");
    // Same layer count, other kv heads: GPT-2 has 4, the tiny llama 2.
    let err = state
        .append_rows(prefilled(&gpt2))
        .expect_err("kv shape")
        .to_string();
    assert!(
        err.contains("[1, 4, 3, 8]") && err.contains("[1, 2, 3, 8]"),
        "{err}"
    );
    assert_eq!(
        state.rows(),
        1,
        "a refused append leaves the state as it was"
    );
}

/// The cache appends in place while it can (spare slots, no clone sharing
/// the buffers); no state and no view handed out before ever sees it: a clone
/// appending its own token, a view taken before a truncation, and the state
/// itself all read what independent runs read.
#[test]
fn in_place_appends_stay_private() {
    let (model, _) = random_model(tiny_llama_config(), 0.3);
    let prompt = [3u32, 17, 5, 9, 22];
    let values = |t: &Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
    let mut state = model.new_state();
    model
        .prefill(&[prompt.to_vec()], &mut state, LogitsSpan::Last)
        .expect("prefill");
    model.step(&[7], &mut state).expect("grow the buffers");
    let before = state.layer(0).expect("layer").k;
    let seen = values(&before);
    // A clone and its parent append different tokens at the same slot.
    let mut other = state.clone();
    let mine = model.step(&[11], &mut state).expect("step");
    let theirs = model.step(&[12], &mut other).expect("clone step");
    let want = |t: u32| run_single(&model, &prompt, &[7, t])[2].clone();
    assert_eq!(max_abs_diff(&mine, &want(11)), 0.0);
    assert_eq!(max_abs_diff(&theirs, &want(12)), 0.0);
    assert_eq!(values(&before), seen, "an earlier view changed");
    // Two more in-place steps, a view, then truncation and a different token
    // in the truncated slot: the view keeps what it saw.
    model.step(&[13], &mut state).expect("step");
    let view = state.layer(0).expect("layer").k;
    let seen = values(&view);
    state.truncate(prompt.len() + 2).expect("truncate");
    let again = model.step(&[14], &mut state).expect("step after truncate");
    assert_eq!(values(&view), seen, "a view taken before truncate changed");
    assert_eq!(
        max_abs_diff(&again, &run_single(&model, &prompt, &[7, 11, 14])[3]),
        0.0
    );
}
