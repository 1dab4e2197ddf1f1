//! The guided engine against independent computations: EFT's distribution,
//! CBS/BoN invariants, selection by value, finished candidates, batching.

use std::sync::Arc;

use candle_core::Tensor;
use ivg_decode::{
    first_token_logits, generate, guided_generate, guided_generate_seeded, row_seed, BaseModel,
    ChunkRanking, ChunkTrace, FinishReason, GenerateConfig, GuidanceConfig, Guides, Method,
    Sampler, SamplingConfig, TokenPolicy,
};
use ivg_models::{CausalLm, LogitsSpan};
use ivg_testkit::{ids, tiny_model as model, word_tokenizer as tokenizer};
use ivg_tokenize::Tokenizer;
use ivg_value::{Feed, ImplicitPair, ImplicitValue, QValue, ValueError, ValueFunction};

fn implicit(feed: Feed) -> ImplicitValue {
    let pair = ImplicitPair {
        tuned: model("llama"),
        tuned_template: "{prompt}".into(),
        reference: model("qwen2"),
        reference_template: "{prompt}".into(),
        tokenizer: tokenizer(),
        weight: 1.0,
    };
    ImplicitValue::new("implicit", vec![pair], 1.0, feed).expect("value")
}

fn shape(max_new_tokens: usize) -> GuidanceConfig {
    GuidanceConfig {
        token: TokenPolicy::Base,
        chunk: ChunkRanking::None,
        width: 1,
        successors: 1,
        chunk_len: None,
        max_new_tokens,
        sampling: SamplingConfig {
            temperature: 0.7,
            top_k: None,
            top_p: None,
        },
        seed: 11,
        stop_strings: Vec::new(),
    }
}

const PROMPTS: [&str; 3] = ["t5 t17 t3", "t40 t41 t42 t43 t44", "t9"];

fn texts() -> Vec<String> {
    PROMPTS.iter().map(|s| s.to_string()).collect()
}

fn base_ids() -> Vec<Vec<u32>> {
    PROMPTS.iter().map(|s| ids(s)).collect()
}

fn last_logits(m: &CausalLm, prompt: &[u32]) -> Tensor {
    let mut s = m.new_state();
    m.prefill(&[prompt.to_vec()], &mut s, LogitsSpan::Last)
        .expect("forward")
}

#[test]
fn eft_samples_from_the_guided_distribution() {
    let base = model("gpt2");
    let mut value = implicit(Feed::Stepped);
    let config = GuidanceConfig {
        token: TokenPolicy::Implicit { beta: 1.5 },
        ..shape(1)
    };
    let mut guides = Guides {
        base: BaseModel::Local(&base),
        base_tokenizer: None,
        implicit: Some(&mut value),
        explicit: None,
    };
    let got = first_token_logits(&mut guides, &texts(), &base_ids(), &config).expect("logits");
    for (p, prompt) in base_ids().iter().enumerate() {
        let want = (last_logits(&base, prompt)
            + ((last_logits(&model("llama"), prompt) - last_logits(&model("qwen2"), prompt))
                .expect("d")
                * 1.5)
                .expect("b"))
        .expect("sum");
        let d = (got.get(p).expect("row") - want.squeeze(0).expect("sq"))
            .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
            .expect("d");
        assert!(d < 1e-5, "prompt {p}: {d}");
    }
    // beta = 0 is the base logits exactly.
    let zero = GuidanceConfig {
        token: TokenPolicy::Implicit { beta: 0.0 },
        ..shape(1)
    };
    let got0 = first_token_logits(&mut guides, &texts(), &base_ids(), &zero).expect("logits");
    let mut s = base.new_state();
    let base_logits = base
        .prefill(&base_ids(), &mut s, LogitsSpan::Last)
        .expect("base");
    assert_eq!(
        got0.to_vec2::<f32>().expect("v"),
        base_logits.to_vec2::<f32>().expect("v")
    );
}

#[test]
fn eft_draws_pass_a_chi_square_test() {
    // 20,000 copies of one prompt, one token each: each copy is a prompt with its
    // own seed, so the draws are independent samples of the guided distribution.
    let base = model("gpt2");
    let mut value = implicit(Feed::Stepped);
    let config = GuidanceConfig {
        token: TokenPolicy::Implicit { beta: 1.0 },
        sampling: SamplingConfig {
            temperature: 2.0,
            top_k: Some(5),
            top_p: None,
        },
        ..shape(1)
    };
    let n = 20_000;
    let texts = vec!["t5 t17 t3".to_string(); n];
    let prompts = vec![ids("t5 t17 t3"); n];
    let mut guides = Guides {
        base: BaseModel::Local(&base),
        base_tokenizer: None,
        implicit: Some(&mut value),
        explicit: None,
    };
    let logits =
        first_token_logits(&mut guides, &texts[..1], &prompts[..1], &config).expect("logits");
    let probs = Sampler::new(config.sampling.clone(), 0)
        .expect("s")
        .distribution(&logits.get(0).expect("r").to_vec1::<f32>().expect("v"))
        .expect("p");
    let out =
        guided_generate(&mut guides, &texts, &prompts, &config, &[], &mut |_| {}).expect("run");
    let mut counts = vec![0usize; 96];
    for o in &out {
        counts[o.tokens[0] as usize] += 1;
    }
    let support: Vec<usize> = (0..96).filter(|&i| probs[i] > 0.0).collect();
    assert_eq!(support.len(), 5);
    assert!(
        counts
            .iter()
            .enumerate()
            .all(|(i, &c)| c == 0 || probs[i] > 0.0),
        "drew outside top-k"
    );
    let chi2: f64 = support
        .iter()
        .map(|&i| {
            let e = probs[i] * n as f64;
            (counts[i] as f64 - e).powi(2) / e
        })
        .sum();
    // Critical value of chi-square with 4 degrees of freedom at 1% (NIST table 1.3.6.7.4).
    assert!(chi2 < 13.277, "chi2 {chi2}, counts {counts:?}");
}

#[test]
fn cbs_with_one_beam_reproduces_base_sampling() {
    let base = model("llama");
    let mut value = implicit(Feed::Chunked);
    let config = GuidanceConfig {
        chunk: ChunkRanking::Implicit,
        chunk_len: Some(3),
        ..shape(12)
    };
    let mut guides = Guides {
        base: BaseModel::Local(&base),
        base_tokenizer: None,
        implicit: Some(&mut value),
        explicit: None,
    };
    let cbs = guided_generate(
        &mut guides,
        &texts(),
        &base_ids(),
        &config,
        &[],
        &mut |_| {},
    )
    .expect("cbs");
    let gen = GenerateConfig {
        max_new_tokens: 12,
        sampling: config.sampling.clone(),
        seed: config.seed,
        stop_ids: vec![],
    };
    let plain = generate(&base, &base_ids(), &gen, &mut |_, _| {}).expect("base");
    for (c, b) in cbs.iter().zip(&plain) {
        assert_eq!(c.tokens, b.tokens);
    }
}

#[test]
fn bon_is_cbs_with_one_survivor_and_infinite_chunks() {
    let base = model("llama");
    let beam = GuidanceConfig {
        width: 2,
        successors: 2,
        chunk_len: Some(4),
        ..shape(8)
    };
    let bon = Method::BoNi.config(&beam, 1.0);
    let cbs = GuidanceConfig {
        token: TokenPolicy::Base,
        chunk: ChunkRanking::Implicit,
        width: 1,
        successors: 4,
        chunk_len: None,
        ..shape(8)
    };
    assert_eq!(bon, cbs);
    let mut value = implicit(Feed::Chunked);
    let mut guides = Guides {
        base: BaseModel::Local(&base),
        base_tokenizer: None,
        implicit: Some(&mut value),
        explicit: None,
    };
    let mut traces: Vec<ChunkTrace> = Vec::new();
    let out = guided_generate(&mut guides, &texts(), &base_ids(), &bon, &[], &mut |t| {
        traces.push(t.clone())
    })
    .expect("bon");
    // One ranking per prompt, over N = 4 candidates, and the best one is returned.
    assert_eq!(traces.len(), 3);
    for t in &traces {
        assert_eq!(t.candidates.len(), 4);
        let best = t
            .candidates
            .iter()
            .map(|c| c.value)
            .fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(out[t.prompt].value, best);
        assert!(t
            .candidates
            .iter()
            .any(|c| c.survived && c.tokens == out[t.prompt].tokens));
    }
}

/// A value that counts the tokens of a response divisible by 4 (or rewards an
/// ended response), to check that ranking selects what the value rewards.
struct Rule {
    tokens: Vec<Vec<u32>>,
    ended: Vec<bool>,
    stop: Vec<u32>,
}

impl ValueFunction for Rule {
    fn name(&self) -> &str {
        "rule"
    }
    fn begin(&mut self, prompts: &[String]) -> Result<(), ValueError> {
        self.tokens = vec![Vec::new(); prompts.len()];
        self.ended = vec![false; prompts.len()];
        Ok(())
    }
    fn append(&mut self, prompts: &[String]) -> Result<(), ValueError> {
        self.tokens
            .extend(std::iter::repeat_n(Vec::new(), prompts.len()));
        self.ended.extend(std::iter::repeat_n(false, prompts.len()));
        Ok(())
    }
    fn reorder(&mut self, order: &[usize]) -> Result<(), ValueError> {
        self.tokens = order.iter().map(|&r| self.tokens[r].clone()).collect();
        self.ended = order.iter().map(|&r| self.ended[r]).collect();
        Ok(())
    }
    fn observe(&mut self, tokens: &[u32], live: &[bool]) -> Result<(), ValueError> {
        for (r, &t) in tokens.iter().enumerate() {
            if live[r] {
                self.tokens[r].push(t);
                self.ended[r] = self.stop.contains(&t);
            }
        }
        Ok(())
    }
    fn values(&mut self) -> Result<Vec<f64>, ValueError> {
        Ok(match self.stop.is_empty() {
            false => self
                .ended
                .iter()
                .map(|&e| if e { 10.0 } else { 0.0 })
                .collect(),
            true => self
                .tokens
                .iter()
                .map(|t| t.iter().filter(|&&x| x % 4 == 0).count() as f64)
                .collect(),
        })
    }
}

#[test]
fn cbs_selects_what_the_value_rewards() {
    let base = model("llama");
    let mut rule = Rule {
        tokens: vec![],
        ended: vec![],
        stop: vec![],
    };
    let config = GuidanceConfig {
        chunk: ChunkRanking::Explicit,
        width: 1,
        successors: 16,
        chunk_len: Some(1),
        sampling: SamplingConfig {
            temperature: 3.0,
            top_k: None,
            top_p: None,
        },
        ..shape(10)
    };
    let mut guides = Guides {
        base: BaseModel::Local(&base),
        base_tokenizer: None,
        implicit: None,
        explicit: Some(&mut rule),
    };
    let mut traces = Vec::new();
    let out = guided_generate(&mut guides, &texts(), &base_ids(), &config, &[], &mut |t| {
        traces.push(t.clone())
    })
    .expect("cbs");
    for o in &out {
        let hits = o.tokens.iter().filter(|&&t| t % 4 == 0).count();
        assert!(hits >= 9, "{:?}", o.tokens);
    }
    for t in &traces {
        let kept = t
            .candidates
            .iter()
            .filter(|c| c.survived)
            .map(|c| c.value)
            .fold(f64::INFINITY, f64::min);
        let dropped = t
            .candidates
            .iter()
            .filter(|c| !c.survived)
            .map(|c| c.value)
            .fold(f64::NEG_INFINITY, f64::max);
        assert!(
            kept >= dropped,
            "global top-W violated at chunk {}",
            t.chunk
        );
    }
}

#[test]
fn finished_candidates_survive_and_win() {
    let base = model("llama");
    let stops: Vec<u32> = (0..96).step_by(8).collect();
    let mut rule = Rule {
        tokens: vec![],
        ended: vec![],
        stop: stops.clone(),
    };
    let config = GuidanceConfig {
        chunk: ChunkRanking::Explicit,
        width: 2,
        successors: 4,
        chunk_len: Some(2),
        sampling: SamplingConfig {
            temperature: 5.0,
            top_k: None,
            top_p: None,
        },
        ..shape(40)
    };
    let mut guides = Guides {
        base: BaseModel::Local(&base),
        base_tokenizer: None,
        implicit: None,
        explicit: Some(&mut rule),
    };
    let out = guided_generate(
        &mut guides,
        &texts(),
        &base_ids(),
        &config,
        &stops,
        &mut |_| {},
    )
    .expect("cbs");
    for o in &out {
        assert_eq!(o.finish, FinishReason::Stop, "{:?}", o.tokens);
        assert!(stops.contains(o.tokens.last().expect("token")));
        assert_eq!(o.value, 10.0);
    }
}

#[test]
fn batching_prompts_changes_nothing() {
    let base = model("llama");
    let config = GuidanceConfig {
        token: TokenPolicy::Implicit { beta: 0.5 },
        chunk: ChunkRanking::Explicit,
        width: 2,
        successors: 2,
        chunk_len: Some(3),
        ..shape(9)
    };
    let seeds: Vec<u64> = (0..3).map(|p| row_seed(99, p)).collect();
    let run = |texts: &[String], prompts: &[Vec<u32>], seeds: &[u64]| {
        let mut imp = implicit(Feed::Stepped);
        let mut q = QValue::new(
            "q",
            model("gpt2"),
            "{prompt}",
            tokenizer(),
            1.0,
            Feed::Chunked,
        )
        .expect("q");
        let mut guides = Guides {
            base: BaseModel::Local(&base),
            base_tokenizer: None,
            implicit: Some(&mut imp),
            explicit: Some(&mut q),
        };
        guided_generate_seeded(
            &mut guides,
            texts,
            prompts,
            seeds,
            &config,
            &[],
            &mut |_| {},
        )
        .expect("run")
    };
    let batch = run(&texts(), &base_ids(), &seeds);
    for p in 0..3 {
        let alone = run(&texts()[p..=p], &base_ids()[p..=p], &seeds[p..=p]);
        assert_eq!(alone[0].tokens, batch[p].tokens, "prompt {p}");
        assert!((alone[0].value - batch[p].value).abs() < 1e-9);
    }
}

#[test]
fn bad_settings_are_refused() {
    let base = model("llama");
    let mut value = implicit(Feed::Chunked);
    let cases: Vec<(GuidanceConfig, &str)> = vec![
        (
            GuidanceConfig {
                width: 0,
                chunk: ChunkRanking::Implicit,
                ..shape(4)
            },
            "width",
        ),
        (
            GuidanceConfig {
                successors: 0,
                chunk: ChunkRanking::Implicit,
                ..shape(4)
            },
            "successors",
        ),
        (
            GuidanceConfig {
                chunk_len: Some(0),
                chunk: ChunkRanking::Implicit,
                ..shape(4)
            },
            "chunk_len",
        ),
        (
            GuidanceConfig {
                token: TokenPolicy::Implicit { beta: f64::NAN },
                ..shape(4)
            },
            "beta",
        ),
        (
            GuidanceConfig {
                token: TokenPolicy::Explicit {
                    beta: f64::INFINITY,
                },
                ..shape(4)
            },
            "beta",
        ),
        (
            GuidanceConfig {
                width: 2,
                ..shape(4)
            },
            "chunk",
        ),
    ];
    for (config, field) in cases {
        let mut guides = Guides {
            base: BaseModel::Local(&base),
            base_tokenizer: None,
            implicit: Some(&mut value),
            explicit: None,
        };
        let err = guided_generate(
            &mut guides,
            &texts(),
            &base_ids(),
            &config,
            &[],
            &mut |_| {},
        )
        .expect_err("invalid");
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
    // A chunked implicit value cannot guide token-wise; a missing explicit value is named.
    let mut guides = Guides {
        base: BaseModel::Local(&base),
        base_tokenizer: None,
        implicit: Some(&mut value),
        explicit: None,
    };
    let eft = GuidanceConfig {
        token: TokenPolicy::Implicit { beta: 1.0 },
        ..shape(2)
    };
    let err = guided_generate(&mut guides, &texts(), &base_ids(), &eft, &[], &mut |_| {})
        .expect_err("chunked guide");
    assert!(err.to_string().contains("Stepped"), "{err}");
    let cbse = GuidanceConfig {
        chunk: ChunkRanking::Explicit,
        ..shape(2)
    };
    let err = guided_generate(&mut guides, &texts(), &base_ids(), &cbse, &[], &mut |_| {})
        .expect_err("missing");
    assert!(err.to_string().contains("explicit"), "{err}");
    assert!(Method::from_name("dexperts")
        .expect_err("unknown")
        .to_string()
        .contains("unknown method"));
}

#[test]
fn token_guidance_refuses_a_different_vocabulary() {
    let base = model("llama");
    let base_tok = tokenizer();
    // The guide's vocabulary differs in one token string (id 42).
    let vocab: serde_json::Map<String, serde_json::Value> = (0..96)
        .map(|i| {
            (
                if i == 42 {
                    "other".to_string()
                } else {
                    format!("t{i}")
                },
                i.into(),
            )
        })
        .collect();
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "WhitespaceSplit"}, "post_processor": null,
        "decoder": null, "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "t0"}
    });
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, json.to_string()).expect("write");
    let other = Arc::new(Tokenizer::from_file(&path).expect("tokenizer"));
    let pair = ImplicitPair {
        tuned: model("llama"),
        tuned_template: "{prompt}".into(),
        reference: model("qwen2"),
        reference_template: "{prompt}".into(),
        tokenizer: other,
        weight: 1.0,
    };
    let mut value = ImplicitValue::new("odd-guide", vec![pair], 1.0, Feed::Stepped).expect("value");
    let mut guides = Guides {
        base: BaseModel::Local(&base),
        base_tokenizer: Some(&base_tok),
        implicit: Some(&mut value),
        explicit: None,
    };
    let eft = GuidanceConfig {
        token: TokenPolicy::Implicit { beta: 1.0 },
        ..shape(2)
    };
    let err = guided_generate(&mut guides, &texts(), &base_ids(), &eft, &[], &mut |_| {})
        .expect_err("mismatch");
    match &err {
        ivg_decode::DecodeError::VocabMismatch(ivg_tokenize::VocabMismatch::Token {
            id,
            b_name,
            ..
        }) => {
            assert_eq!((*id, b_name.as_str()), (42, "odd-guide"));
        }
        other => panic!("expected a typed vocabulary mismatch, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("odd-guide") && msg.contains("42"), "{msg}");
}

#[test]
fn stop_strings_end_rows_on_their_text() {
    let base = model("llama");
    let tok = tokenizer();
    let greedy = GuidanceConfig {
        sampling: SamplingConfig::greedy(),
        ..shape(8)
    };
    let mut guides = Guides {
        base: BaseModel::Local(&base),
        base_tokenizer: Some(&tok),
        implicit: None,
        explicit: None,
    };
    let free = guided_generate(
        &mut guides,
        &texts(),
        &base_ids(),
        &greedy,
        &[],
        &mut |_| {},
    )
    .expect("free");
    // Stop on the text of prompt 0's fourth token; every row ends where its text first contains it.
    let stop = tok.decode(&free[0].tokens[3..4], false).expect("decode");
    let config = GuidanceConfig {
        stop_strings: vec![stop.clone()],
        ..greedy.clone()
    };
    let out = guided_generate(
        &mut guides,
        &texts(),
        &base_ids(),
        &config,
        &[],
        &mut |_| {},
    )
    .expect("stopped");
    for (f, o) in free.iter().zip(&out) {
        let end = (0..f.tokens.len()).find(|&i| {
            tok.decode(&f.tokens[..=i], false)
                .expect("d")
                .contains(&stop)
        });
        match end {
            Some(i) => {
                assert_eq!(o.tokens, f.tokens[..=i].to_vec());
                assert_eq!(o.finish, FinishReason::Stop);
            }
            None => assert_eq!(o.tokens, f.tokens),
        }
    }
    assert!(out[0].tokens.len() <= 4);
    let mut no_tok = Guides {
        base: BaseModel::Local(&base),
        base_tokenizer: None,
        implicit: None,
        explicit: None,
    };
    let err = guided_generate(
        &mut no_tok,
        &texts(),
        &base_ids(),
        &config,
        &[],
        &mut |_| {},
    )
    .expect_err("needs tokenizer");
    assert!(err.to_string().contains("stop_strings"), "{err}");
    let empty = GuidanceConfig {
        stop_strings: vec![String::new()],
        ..greedy
    };
    assert!(guided_generate(&mut guides, &texts(), &base_ids(), &empty, &[], &mut |_| {}).is_err());
}
