//! Incremental scoring equals re-encoding: values kept by the value functions
//! (stepped per token, or buffered and scored per chunk, through forks and
//! reorders) agree with a cache-free re-encode of prompt + response.

use ivg_models::{CausalLm, LogitsSpan};
use ivg_testkit::{ids, tiny_model as model, word_tokenizer as tokenizer};
use ivg_value::{Feed, ImplicitPair, ImplicitValue, QValue, ValueFunction};

/// Cache-free log-probabilities of `response` after `prompt`.
fn naive_log_probs(m: &CausalLm, prompt: &[u32], response: &[u32]) -> Vec<f64> {
    let full: Vec<u32> = prompt.iter().chain(response).copied().collect();
    let mut state = m.new_state();
    let logits = m
        .prefill(&[full], &mut state, LogitsSpan::All)
        .expect("forward")
        .squeeze(0)
        .expect("sq");
    let lp = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1).expect("lsm");
    response
        .iter()
        .enumerate()
        .map(|(k, &t)| {
            lp.get(prompt.len() + k - 1)
                .and_then(|r| r.get(t as usize))
                .and_then(|v| v.to_scalar::<f32>())
                .expect("lp") as f64
        })
        .collect()
}

fn naive_q(m: &CausalLm, prompt: &[u32], response: &[u32]) -> f64 {
    let full: Vec<u32> = prompt.iter().chain(response).copied().collect();
    let mut state = m.new_state();
    let logits = m
        .prefill(std::slice::from_ref(&full), &mut state, LogitsSpan::All)
        .expect("forward")
        .squeeze(0)
        .expect("sq");
    let last = *response.last().expect("token");
    logits
        .get(full.len() - 2)
        .and_then(|r| r.get(last as usize))
        .and_then(|v| v.to_scalar::<f32>())
        .expect("q") as f64
}

const PROMPTS: [&str; 2] = ["t5 t17 t3", "t40 t41 t42 t43 t44"];
/// Rows after the fork, as indices of the prompts.
const FORK: [usize; 4] = [0, 0, 1, 1];

/// Drives a value function through 2 prompts forked to 4 rows, 3 chunks of 4
/// tokens (row 3 ends after 2 tokens of chunk 2), with a reorder between chunks,
/// returning the values at each boundary and the rows' (prompt, response).
/// Values at one boundary and each row's (prompt index, response).
type Boundary = (Vec<f64>, Vec<(usize, Vec<u32>)>);

fn drive(v: &mut dyn ValueFunction) -> Vec<Boundary> {
    v.begin(&PROMPTS.map(String::from)).expect("begin");
    v.reorder(&FORK).expect("fork");
    let mut rows: Vec<(usize, Vec<u32>)> = FORK.iter().map(|&p| (p, Vec::new())).collect();
    let mut live = vec![true; 4];
    let mut out = Vec::new();
    for chunk in 0..3 {
        for k in 0..4 {
            let tokens: Vec<u32> = (0..4)
                .map(|r| ((chunk * 31 + k * 7 + r * 13) % 96) as u32)
                .collect();
            for (r, row) in rows.iter_mut().enumerate() {
                if live[r] {
                    row.1.push(tokens[r]);
                }
            }
            v.observe(&tokens, &live).expect("observe");
            if chunk == 1 && k == 1 {
                live[3] = false;
            }
        }
        out.push((v.values().expect("values"), rows.clone()));
        // Keep row 3 (ended), duplicate row 0, drop row 1: [3, 0, 0, 2].
        let order = [3usize, 0, 0, 2];
        v.reorder(&order).expect("reorder");
        rows = order.iter().map(|&r| rows[r].clone()).collect();
        live = order.iter().map(|&r| live[r]).collect();
    }
    out
}

fn implicit(feed: Feed) -> ImplicitValue {
    let pair = ImplicitPair {
        tuned: model("llama"),
        tuned_template: "t1 t2 {prompt}".into(),
        reference: model("qwen2"),
        reference_template: "{prompt}".into(),
        tokenizer: tokenizer(),
        weight: 0.5,
    };
    ImplicitValue::new("implicit", vec![pair], 2.0, feed).expect("value")
}

#[test]
fn implicit_values_equal_reencoding() {
    let (tuned, reference) = (model("llama"), model("qwen2"));
    for feed in [Feed::Stepped, Feed::Chunked] {
        let mut v = implicit(feed);
        for (values, rows) in drive(&mut v) {
            for (r, (p, response)) in rows.iter().enumerate() {
                let prompt = ids(PROMPTS[*p]);
                let tuned_prompt: Vec<u32> =
                    [1, 2].into_iter().chain(prompt.iter().copied()).collect();
                let lt = naive_log_probs(&tuned, &tuned_prompt, response);
                let lr = naive_log_probs(&reference, &prompt, response);
                let want = 2.0 * 0.5 * lt.iter().zip(&lr).map(|(a, b)| a - b).sum::<f64>();
                assert!(
                    (values[r] - want).abs() < 1e-4,
                    "{feed:?} row {r}: {} vs {want}",
                    values[r]
                );
            }
        }
    }
}

#[test]
fn q_values_equal_reencoding() {
    let q = model("gpt2");
    for feed in [Feed::Stepped, Feed::Chunked] {
        let mut v = QValue::new("q", q.clone(), "{prompt}", tokenizer(), 0.5, feed).expect("q");
        for (values, rows) in drive(&mut v) {
            for (r, (p, response)) in rows.iter().enumerate() {
                let want = 0.5 * naive_q(&q, &ids(PROMPTS[*p]), response);
                assert!(
                    (values[r] - want).abs() < 1e-4,
                    "{feed:?} row {r}: {} vs {want}",
                    values[r]
                );
            }
        }
    }
}

#[test]
fn guidance_is_the_weighted_logit_difference() {
    let mut v = implicit(Feed::Stepped);
    v.begin(&PROMPTS.map(String::from)).expect("begin");
    let g = v.guidance().expect("guidance").expect("stepped guides");
    let (tuned, reference) = (model("llama"), model("qwen2"));
    let mut st = tuned.new_state();
    let lt = tuned
        .prefill(&[ids("t1 t2 t5 t17 t3")], &mut st, LogitsSpan::Last)
        .expect("t");
    let mut sr = reference.new_state();
    let lr = reference
        .prefill(&[ids("t5 t17 t3")], &mut sr, LogitsSpan::Last)
        .expect("r");
    let want = ((lt - lr).expect("diff") * 0.5).expect("w");
    let got = g.get(0).expect("row").unsqueeze(0).expect("u");
    let d = (got - want)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f32>())
        .expect("d");
    assert!(d < 1e-5, "{d}");
    assert!(implicit(Feed::Chunked).guidance().expect("ok").is_none());
}

#[test]
fn invalid_settings_are_refused() {
    let err = ImplicitValue::new("x", vec![], 1.0, Feed::Chunked)
        .err()
        .expect("error")
        .to_string();
    assert!(err.contains("pair"), "{err}");
    let err = QValue::new(
        "q",
        model("gpt2"),
        "{prompt}",
        tokenizer(),
        f64::NAN,
        Feed::Chunked,
    )
    .err()
    .expect("error")
    .to_string();
    assert!(err.contains("beta_v"), "{err}");
}
