//! Issue 3: a chunk-level value model with another tokenizer scores at the text
//! level. Base tokens are SmolLM2's; the scorer is Gemma 3 270M (its LM logits
//! stand in for a Q head, and it plays both halves of an implicit pair under
//! two templates). At every boundary the wrapped value of each row must equal a
//! cache-free forward of Gemma over the Gemma tokenization of the text the
//! row's SmolLM2 tokens spell, through forks, drops and a row that ends early.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use ivg_assets::Asset;
use ivg_models::gguf::GgufFile;
use ivg_models::{load_causal_lm, CausalLm, LoadOptions, LogitsSpan, QuantPolicy};
use ivg_tokenize::Tokenizer;
use ivg_value::{
    wrap_if_needed, Feed, ImplicitPair, ImplicitValue, QValue, TextLevelValue, ValueFunction,
};

fn asset(a: Asset) -> PathBuf {
    ivg_assets::ensure_default(a).expect("asset available (run `ivg assets fetch`)")
}

fn gguf_tokenizer(a: Asset) -> Arc<Tokenizer> {
    let path = asset(a);
    let content = GgufFile::open(&path).expect("gguf").content;
    Arc::new(Tokenizer::from_gguf(&content, &path).expect("tokenizer"))
}

fn smol() -> Arc<Tokenizer> {
    static T: OnceLock<Arc<Tokenizer>> = OnceLock::new();
    T.get_or_init(|| gguf_tokenizer(Asset::SmolLm2Gguf)).clone()
}

fn gemma_tok() -> Arc<Tokenizer> {
    static T: OnceLock<Arc<Tokenizer>> = OnceLock::new();
    T.get_or_init(|| gguf_tokenizer(Asset::Gemma3Gguf)).clone()
}

/// Gemma dequantized to f32: with quantized weights every matmul quantizes its
/// activations to Q8_0, so a 1e-7 difference between a cached and a one-pass
/// forward can flip a quantization step and move a logit by ~1%; in f32 the
/// two agree to ~1e-5, which is what lets the test compare exactly.
fn gemma() -> Arc<CausalLm> {
    static M: OnceLock<Arc<CausalLm>> = OnceLock::new();
    M.get_or_init(|| {
        let path = asset(Asset::Gemma3Gguf);
        let opts = LoadOptions {
            quant: QuantPolicy::Dequantize,
            ..LoadOptions::default()
        };
        Arc::new(load_causal_lm(&path, &opts).expect("load gemma"))
    })
    .clone()
}

const PROMPTS: [&str; 2] = ["Write a dessert menu.", "Greet someone in German."];
const Q_TEMPLATE: &str = "Question: {prompt}\nAnswer:";
const TUNED_TEMPLATE: &str = "You are kind. {prompt}\n";
const REF_TEMPLATE: &str = "{prompt}\n";
/// Responses the rows spell (in SmolLM2 tokens): accents, emoji, German.
const A: &str = "Café crème brûlée 🍰 für Zoë, naïve façade";
const B: &str = " Déjà vu: 🎉 tarte Tatin à la mode, très bien";
const C: &str = "Grüße aus München";
/// What the fork of row A continues with.
const D: &str = " et voilà 🍓 — fin";
const SMOL_EOS: u32 = 2;
const CHUNK: usize = 4;

/// One decoder row in the test: its prompt, the tokens it will emit and the
/// tokens emitted so far.
#[derive(Clone, Debug)]
struct Row {
    prompt: usize,
    script: Vec<u32>,
    tokens: Vec<u32>,
}

impl Row {
    fn live(&self) -> bool {
        self.tokens.last() != Some(&SMOL_EOS)
    }
}

/// The text a row's tokens spell, as the scorer must see it: special tokens
/// dropped and a trailing split character held back, plus whether it ended.
fn row_text(tokens: &[u32]) -> (String, bool) {
    let text = smol().decode(tokens, true).expect("decode");
    let ended = tokens.last() == Some(&SMOL_EOS);
    let text = if ended {
        text
    } else {
        text.trim_end_matches(char::REPLACEMENT_CHARACTER)
            .to_string()
    };
    (text, ended)
}

/// A boundary: each row's (prompt, text, ended, wrapped value).
type Boundary = Vec<(usize, String, bool, f64)>;

/// Two prompts forked to 3 rows, 3 chunks of 4 tokens: after chunk 1 the rows
/// are reordered `[1, 0, 2, 0]` (the second copy of row 0 continues with `D`);
/// row 2 emits EOS early in chunk 2 and is kept, not live, through the reorder
/// `[3, 1, 2]` after chunk 2, which drops a row.
fn drive(v: &mut dyn ValueFunction) -> Vec<Boundary> {
    let enc = |t: &str| smol().encode(t, false).expect("encode");
    v.begin(&PROMPTS.map(String::from)).expect("begin");
    v.reorder(&[0, 0, 1]).expect("fork");
    let mut c = enc(C)[..5].to_vec();
    c.push(SMOL_EOS);
    let mut rows = vec![
        Row {
            prompt: 0,
            script: enc(A),
            tokens: vec![],
        },
        Row {
            prompt: 0,
            script: enc(B),
            tokens: vec![],
        },
        Row {
            prompt: 1,
            script: c,
            tokens: vec![],
        },
    ];
    let mut out = Vec::new();
    for chunk in 0..3 {
        for _ in 0..CHUNK {
            let live: Vec<bool> = rows.iter().map(Row::live).collect();
            let tokens: Vec<u32> = rows
                .iter()
                .map(|r| match r.live() {
                    true => r.script[r.tokens.len()],
                    false => SMOL_EOS,
                })
                .collect();
            for (r, &t) in rows.iter_mut().zip(&tokens) {
                if r.live() {
                    r.tokens.push(t);
                }
            }
            v.observe(&tokens, &live).expect("observe");
        }
        let values = v.values().expect("values");
        assert_eq!(values.len(), rows.len());
        out.push(
            rows.iter()
                .zip(&values)
                .map(|(r, &val)| {
                    let (text, ended) = row_text(&r.tokens);
                    (r.prompt, text, ended, val)
                })
                .collect(),
        );
        if chunk == 2 {
            break;
        }
        let order: &[usize] = if chunk == 0 {
            &[1, 0, 2, 0]
        } else {
            &[3, 1, 2]
        };
        v.reorder(order).expect("reorder");
        rows = order.iter().map(|&i| rows[i].clone()).collect();
        if chunk == 0 {
            let prefix = rows[3].tokens.clone();
            rows[3].script = prefix.iter().copied().chain(enc(D)).collect();
        }
    }
    out
}

/// Gemma ids of a row's response: its text, plus Gemma's EOS when it ended.
fn gemma_response(text: &str, ended: bool) -> Vec<u32> {
    let mut ids = gemma_tok().encode(text, false).expect("encode");
    if ended {
        ids.push(gemma_tok().eos_ids()[0]);
    }
    ids
}

/// `(len, vocab)` logits of a cache-free forward over `template(prompt) + response`.
fn forward(template: &str, prompt: &str, response: &[u32]) -> (candle_core::Tensor, usize) {
    let p = gemma_tok()
        .encode(&template.replace("{prompt}", prompt), true)
        .expect("prompt");
    let full: Vec<u32> = p.iter().chain(response).copied().collect();
    let mut state = gemma().new_state();
    let logits = gemma()
        .prefill(&[full], &mut state, LogitsSpan::All)
        .expect("forward")
        .squeeze(0)
        .expect("squeeze");
    (logits, p.len())
}

fn at(t: &candle_core::Tensor, pos: usize, id: u32) -> f64 {
    t.get(pos)
        .and_then(|r| r.get(id as usize))
        .and_then(|v| v.to_scalar::<f32>())
        .expect("scalar") as f64
}

/// `Q(s_t, y_t)` of the last response token, by re-encoding: the logits after
/// `prompt + response[..n-1]` (one cache-free forward), at the last token.
fn naive_q(prompt: &str, response: &[u32]) -> f64 {
    let Some((&last, before)) = response.split_last() else {
        return 0.0;
    };
    let p = gemma_tok()
        .encode(&Q_TEMPLATE.replace("{prompt}", prompt), true)
        .expect("prompt");
    let full: Vec<u32> = p.iter().chain(before).copied().collect();
    let mut state = gemma().new_state();
    let logits = gemma()
        .prefill(&[full], &mut state, LogitsSpan::Last)
        .expect("forward");
    at(&logits, 0, last)
}

/// `sum_k log pi(y_k | s_k)` of the response under one template, by re-encoding.
fn naive_log_prob(template: &str, prompt: &str, response: &[u32]) -> f64 {
    if response.is_empty() {
        return 0.0;
    }
    let (logits, plen) = forward(template, prompt, response);
    let lp = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1).expect("lsm");
    response
        .iter()
        .enumerate()
        .map(|(k, &t)| at(&lp, plen + k - 1, t))
        .sum()
}

fn q_value(feed: Feed) -> Box<dyn ValueFunction> {
    Box::new(QValue::new("gemma-q", gemma(), Q_TEMPLATE, gemma_tok(), 0.5, feed).expect("q"))
}

/// The texts each boundary must show, row by row (independent of decoding
/// code): "Café cr" splits a word; " Déjà vu: " and "Café crème brûlée " hold
/// back an emoji split across SmolLM2 tokens; "Grüße a" ended with EOS.
const EXPECTED_TEXTS: [&[(&str, bool)]; 3] = [
    &[("Café cr", false), (" Déjà", false), ("Grüße", false)],
    &[
        (" Déjà vu: ", false),
        ("Café crème brû", false),
        ("Grüße a", true),
        ("Café cr et voilà", false),
    ],
    &[
        ("Café cr et voilà 🍓 —", false),
        ("Café crème brûlée ", false),
        ("Grüße a", true),
    ],
];

fn check_texts(boundaries: &[Boundary]) {
    assert_eq!(boundaries.len(), EXPECTED_TEXTS.len());
    for (b, (rows, want)) in boundaries.iter().zip(EXPECTED_TEXTS).enumerate() {
        let got: Vec<(&str, bool)> = rows.iter().map(|r| (r.1.as_str(), r.2)).collect();
        assert_eq!(got, want.to_vec(), "boundary {b}");
    }
}

/// Compares every boundary's wrapped values with `want(prompt, response ids)`.
fn check_values(boundaries: &[Boundary], label: &str, want: &mut dyn FnMut(&str, &[u32]) -> f64) {
    for (b, rows) in boundaries.iter().enumerate() {
        for (r, (p, text, ended, got)) in rows.iter().enumerate() {
            let expected = want(PROMPTS[*p], &gemma_response(text, *ended));
            assert!(
                (got - expected).abs() < 1e-4,
                "{label}: boundary {b} row {r} ({text:?}): wrapped {got} vs direct {expected}"
            );
        }
    }
}

/// Caches `f` by (prompt, response): the same texts recur across feeds.
fn memo(f: impl Fn(&str, &[u32]) -> f64) -> impl FnMut(&str, &[u32]) -> f64 {
    let mut seen = std::collections::HashMap::<(String, Vec<u32>), f64>::new();
    move |p, r| {
        *seen
            .entry((p.to_string(), r.to_vec()))
            .or_insert_with(|| f(p, r))
    }
}

#[test]
fn wraps_only_across_vocabularies() {
    let wrapped = wrap_if_needed(q_value(Feed::Stepped), smol());
    assert_eq!(wrapped.name(), "gemma-q (text level)");
    // It reports the scorer's vocabulary, so the engine refuses token-wise
    // guidance with it, and it offers none.
    assert_eq!(wrapped.tokenizer().expect("tokenizer").vocab_size(), 262144);
    let mut wrapped = wrapped;
    wrapped.begin(&PROMPTS.map(String::from)).expect("begin");
    assert!(wrapped.guidance().expect("guidance").is_none());
    let same = QValue::new("smol-q", gemma(), Q_TEMPLATE, smol(), 0.5, Feed::Chunked).expect("q");
    let kept = wrap_if_needed(Box::new(same), smol());
    assert_eq!(kept.name(), "smol-q");
    assert_eq!(kept.tokenizer().expect("tokenizer").vocab_size(), 49152);
}

#[test]
fn explicit_value_equals_direct_scoring_of_the_text() {
    // Re-tokenizing the longer text changes an earlier Gemma token, so
    // appending only the new tokens at each boundary would score wrong ids.
    let (early, late) = (
        gemma_response("Café cr", false),
        gemma_response("Café crème brû", false),
    );
    assert!(!late.starts_with(&early), "{early:?} {late:?}");
    let mut want = memo(|p, r| 0.5 * naive_q(p, r));
    for feed in [Feed::Chunked, Feed::Stepped] {
        let mut v = TextLevelValue::new(q_value(feed), smol()).expect("wrap");
        let boundaries = drive(&mut v);
        check_texts(&boundaries);
        check_values(&boundaries, &format!("Q {feed:?}"), &mut want);
    }
}

#[test]
fn implicit_pair_works_through_the_wrapper() {
    let pair = ImplicitPair {
        tuned: gemma(),
        tuned_template: TUNED_TEMPLATE.into(),
        reference: gemma(),
        reference_template: REF_TEMPLATE.into(),
        tokenizer: gemma_tok(),
        weight: 2.0,
    };
    let inner = ImplicitValue::new("gemma-pair", vec![pair], 0.5, Feed::Chunked).expect("pair");
    let mut v = wrap_if_needed(Box::new(inner), smol());
    assert_eq!(v.name(), "gemma-pair (text level)");
    let boundaries = drive(v.as_mut());
    check_texts(&boundaries);
    let mut want = memo(|p, r| {
        0.5 * 2.0 * (naive_log_prob(TUNED_TEMPLATE, p, r) - naive_log_prob(REF_TEMPLATE, p, r))
    });
    check_values(&boundaries, "implicit", &mut want);
    // The values are not all equal (the check above is not vacuous).
    let first = &boundaries[1];
    assert!(first.iter().any(|r| (r.3 - first[0].3).abs() > 1e-3));
}
