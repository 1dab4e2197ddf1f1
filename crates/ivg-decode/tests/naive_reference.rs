//! A naive reference decoder (architecture.md, practice 9: "a naive,
//! cache-free decoder in the test tree checks the fast one"), and the engine
//! checked against it for every method of the matrix (method.md).
//!
//! The reference is deliberately simple: one prompt at a time, no KV cache
//! (every forward re-encodes prompt + response from scratch with a fresh
//! `DecodeState`), no batching, logits combined on the host in `Vec<f32>`
//! (`l_base + beta * w (l_tuned - l_ref)` for EFTi, `l_base + beta * Q(s_t, .)`
//! for EFTe), greedy argmax with the lowest id on ties, candidates kept as token
//! lists, values recomputed from method.md's formulas by full re-encoding, and
//! chunk-level beam search written from method.md's four steps. Its method table
//! is derived here from method.md, not from `Method::config`, and the two are
//! compared.
//!
//! Where method.md leaves a choice open, the reference follows the engine's
//! documented conventions: ties in the ranking keep the earlier candidate
//! (pooled finished candidates first, then live rows in row order), and, for the
//! sampled (non-greedy) comparison only, the engine's seed layout (slot 0 uses the
//! prompt's seed, slot `i` `row_seed(seed, i)`; a survivor's first child continues
//! its stream, child `c > 0` of chunk `j` is reseeded with
//! `row_seed(seed, 1 + j * W * K + c)`).

use std::collections::BTreeMap;
use std::sync::Arc;

use ivg_decode::{
    guided_generate, row_seed, BaseModel, ChunkRanking, ChunkTrace, DecodeError, Engine, Event,
    FinishReason, GuidanceConfig, GuideSource, GuidedOutput, Guides, Method, Request, Sampler,
    SamplingConfig, TokenPolicy, TraceCandidate, ValueRole,
};
use ivg_models::{CausalLm, LogitsSpan};
use ivg_testkit::{ids, tiny_model as model, word_tokenizer as tokenizer};
use ivg_value::{Feed, ImplicitPair, ImplicitValue, QValue, ValueFunction};

// ---------------------------------------------------------------- fixtures

/// Prompts of different lengths, decoded as one batch by the engine.
const PROMPTS: [&str; 3] = ["t5 t17 t3", "t40 t41 t42 t43 t44", "t9"];
/// The tuned model's template prepends a token; the reference and the Q model
/// use other templates, so each model must see its own prompt.
const TUNED_TEMPLATE: &str = "t7 {prompt}";
const REF_TEMPLATE: &str = "{prompt}";
const Q_TEMPLATE: &str = "{prompt} t1";
/// Pair weight `w` and value scales `beta_v` different from 1, so that a wrong
/// placement of either shows (guidance uses `w` but not `beta_v`).
const PAIR_WEIGHT: f64 = 1.5;
const BETA_V_IMPLICIT: f64 = 0.7;
const BETA_V_EXPLICIT: f64 = 2.0;
/// Beam shape of the CBS methods (BoN uses N = W * K).
const W: usize = 2;
const K: usize = 2;
const L: usize = 3;
const MAX_NEW: usize = 8;
/// Token-level guidance strength `beta`.
const BETA: f64 = 2.0;
/// Stop ids that greedy EFTi / EFTi+CBSi / IVG reach mid-chunk: one in the
/// first chunk (prompt 0), one after a reorder (prompt 1); checked in the test.
const STOPS: [u32; 2] = [81, 91];

fn texts() -> Vec<String> {
    PROMPTS.iter().map(|s| s.to_string()).collect()
}

fn base_ids() -> Vec<Vec<u32>> {
    PROMPTS.iter().map(|s| ids(s)).collect()
}

// ------------------------------------------------------ the reference's plan

/// Which guide a role uses.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Guide {
    None,
    Implicit,
    Explicit,
}

/// One method as the reference understands it (method.md, "The method matrix").
#[derive(Debug, Clone)]
struct Plan {
    token: Guide,
    beta: f64,
    ranking: Guide,
    width: usize,
    successors: usize,
    chunk_len: Option<usize>,
    max_new_tokens: usize,
}

fn plan(method: Method) -> Plan {
    use Guide::{Explicit as E, Implicit as I, None as N};
    let (token, ranking) = match method {
        Method::Base => (N, N),
        Method::BoNi => (N, I),
        Method::BoNe => (N, E),
        Method::EftI => (I, N),
        Method::EftE => (E, N),
        Method::CbsI => (N, I),
        Method::CbsE => (N, E),
        Method::EftICbsI => (I, I),
        Method::Ivg => (I, E),
    };
    let (width, successors, chunk_len) = match method {
        // Best-of-N is W = 1, K = N, L = infinity.
        Method::BoNi | Method::BoNe => (1, W * K, None),
        // No chunk ranking: one row, nothing to choose among.
        _ if ranking == N => (1, 1, None),
        _ => (W, K, Some(L)),
    };
    Plan {
        token,
        beta: BETA,
        ranking,
        width,
        successors,
        chunk_len,
        max_new_tokens: MAX_NEW,
    }
}

/// The engine's configuration must be the reference's plan.
fn assert_plan_is_config(method: Method, plan: &Plan, config: &GuidanceConfig) {
    let token = match plan.token {
        Guide::None => TokenPolicy::Base,
        Guide::Implicit => TokenPolicy::Implicit { beta: plan.beta },
        Guide::Explicit => TokenPolicy::Explicit { beta: plan.beta },
    };
    let chunk = match plan.ranking {
        Guide::None => ChunkRanking::None,
        Guide::Implicit => ChunkRanking::Implicit,
        Guide::Explicit => ChunkRanking::Explicit,
    };
    let m = method.name();
    assert_eq!(config.token, token, "{m}: token policy");
    assert_eq!(config.chunk, chunk, "{m}: chunk ranking");
    assert_eq!(config.width, plan.width, "{m}: W");
    assert_eq!(config.successors, plan.successors, "{m}: K");
    assert_eq!(config.chunk_len, plan.chunk_len, "{m}: L");
    assert_eq!(
        config.max_new_tokens, plan.max_new_tokens,
        "{m}: max_new_tokens"
    );
}

// ------------------------------------------------------- the naive decoder

struct Naive {
    base: Arc<CausalLm>,
    tuned: Arc<CausalLm>,
    reference: Arc<CausalLm>,
    q: Arc<CausalLm>,
}

/// What the reference returns for one prompt.
#[derive(Debug)]
struct NaiveOutput {
    tokens: Vec<u32>,
    value: f64,
    finished: bool,
    /// Candidates of every boundary, best first.
    traces: Vec<Vec<TraceCandidate>>,
}

struct NaiveRow {
    tokens: Vec<u32>,
    finished: bool,
    /// Used only when sampling is not greedy.
    sampler: Sampler,
}

/// Logits at every position of `seq`, `(seq, vocab)`, from a fresh state: no cache.
fn all_logits(m: &CausalLm, seq: &[u32]) -> Vec<Vec<f32>> {
    let mut state = m.new_state();
    m.prefill(&[seq.to_vec()], &mut state, LogitsSpan::All)
        .expect("forward")
        .squeeze(0)
        .expect("squeeze")
        .to_vec2::<f32>()
        .expect("host")
}

/// Next-token logits `(vocab,)` after `prompt ++ response`, re-encoded from scratch.
fn next_logits(m: &CausalLm, prompt: &[u32], response: &[u32]) -> Vec<f32> {
    let seq: Vec<u32> = prompt.iter().chain(response).copied().collect();
    all_logits(m, &seq).pop().expect("one position at least")
}

/// `log_softmax(logits)[token]` in f64.
fn log_prob(logits: &[f32], token: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    logits[token as usize] as f64 - max - sum.ln()
}

/// Argmax, lowest id on ties.
fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn template_ids(template: &str, text: &str) -> Vec<u32> {
    ids(&template.replace("{prompt}", text))
}

impl Naive {
    fn new() -> Self {
        Self {
            base: model("gemma3"),
            tuned: model("llama"),
            reference: model("qwen2"),
            q: model("gpt2"),
        }
    }

    /// The token-level policy's logits for the next token of `response`.
    fn policy_logits(&self, p: usize, response: &[u32], plan: &Plan) -> Vec<f32> {
        let text = PROMPTS[p];
        let mut logits = next_logits(&self.base, &ids(text), response);
        let offsets: Vec<f32> = match plan.token {
            Guide::None => return logits,
            Guide::Implicit => {
                let t = next_logits(&self.tuned, &template_ids(TUNED_TEMPLATE, text), response);
                let r = next_logits(&self.reference, &template_ids(REF_TEMPLATE, text), response);
                t.iter()
                    .zip(&r)
                    .map(|(t, r)| (t - r) * PAIR_WEIGHT as f32)
                    .collect()
            }
            Guide::Explicit => next_logits(&self.q, &template_ids(Q_TEMPLATE, text), response),
        };
        for (l, o) in logits.iter_mut().zip(&offsets) {
            *l += plan.beta as f32 * o;
        }
        logits
    }

    /// `V_i = beta_v * w * sum_k [log pi_tuned(y_k|s_k) - log pi_ref(y_k|s_k)]`,
    /// each model re-encoding its own prompt plus the whole response.
    fn implicit_value(&self, p: usize, response: &[u32]) -> f64 {
        let tp = template_ids(TUNED_TEMPLATE, PROMPTS[p]);
        let rp = template_ids(REF_TEMPLATE, PROMPTS[p]);
        let t_seq: Vec<u32> = tp.iter().chain(response).copied().collect();
        let r_seq: Vec<u32> = rp.iter().chain(response).copied().collect();
        let t_all = all_logits(&self.tuned, &t_seq);
        let r_all = all_logits(&self.reference, &r_seq);
        let sum: f64 = response
            .iter()
            .enumerate()
            .map(|(k, &y)| {
                log_prob(&t_all[tp.len() - 1 + k], y) - log_prob(&r_all[rp.len() - 1 + k], y)
            })
            .sum();
        BETA_V_IMPLICIT * PAIR_WEIGHT * sum
    }

    /// `V_e = beta_v * Q(s_t, y_t)`: the Q head at position `t - 1` of the
    /// response, gathered at the last emitted token.
    fn explicit_value(&self, p: usize, response: &[u32]) -> f64 {
        let qp = template_ids(Q_TEMPLATE, PROMPTS[p]);
        let seq: Vec<u32> = qp.iter().chain(response).copied().collect();
        let all = all_logits(&self.q, &seq);
        let t = response.len();
        let y = *response.last().expect("a response token");
        BETA_V_EXPLICIT * all[qp.len() - 1 + (t - 1)][y as usize] as f64
    }

    fn value(&self, ranking: Guide, p: usize, response: &[u32]) -> f64 {
        match ranking {
            Guide::None => 0.0,
            Guide::Implicit => self.implicit_value(p, response),
            Guide::Explicit => self.explicit_value(p, response),
        }
    }

    fn pick(&self, p: usize, row: &mut NaiveRow, plan: &Plan, sampling: &SamplingConfig) -> u32 {
        let logits = self.policy_logits(p, &row.tokens, plan);
        if sampling.is_greedy() {
            argmax(&logits)
        } else {
            row.sampler.sample(&logits).expect("sample")
        }
    }

    /// Chunk-level beam search for prompt `p` (method.md steps 1-4).
    fn decode(
        &self,
        p: usize,
        plan: &Plan,
        sampling: &SamplingConfig,
        seed: u64,
        stop: &[u32],
    ) -> NaiveOutput {
        // 1. The prompt replicated into W*K rows.
        let mut rows: Vec<NaiveRow> = (0..plan.width * plan.successors)
            .map(|slot| NaiveRow {
                tokens: Vec::new(),
                finished: false,
                sampler: Sampler::new(
                    sampling.clone(),
                    if slot == 0 {
                        seed
                    } else {
                        row_seed(seed, slot)
                    },
                )
                .expect("sampler"),
            })
            .collect();
        let mut beam = Beam {
            pool: Vec::new(),
            traces: Vec::new(),
            step: 0,
            chunk: 0,
        };
        while !rows.is_empty() {
            self.sample_chunk(p, &mut rows, plan, sampling, stop, &mut beam.step);
            rows = self.select(p, rows, plan, seed, &mut beam);
        }
        // The pool is in rank order: the first is the best survivor.
        let best = beam.pool.first().expect("a survivor");
        NaiveOutput {
            tokens: best.tokens.clone(),
            value: best.value,
            finished: best.finished,
            traces: beam.traces,
        }
    }

    /// Step 2: every row samples up to `L` tokens (fewer at `max_new_tokens`);
    /// a row that emits a stop id is finished and stops.
    fn sample_chunk(
        &self,
        p: usize,
        rows: &mut [NaiveRow],
        plan: &Plan,
        sampling: &SamplingConfig,
        stop: &[u32],
        step: &mut usize,
    ) {
        let mut in_chunk = 0;
        loop {
            for row in rows.iter_mut().filter(|r| !r.finished) {
                let t = self.pick(p, row, plan, sampling);
                row.tokens.push(t);
                row.finished = stop.contains(&t);
            }
            *step += 1;
            in_chunk += 1;
            if *step == plan.max_new_tokens
                || plan.chunk_len == Some(in_chunk)
                || rows.iter().all(|r| r.finished)
            {
                return;
            }
        }
    }

    /// Steps 3-4: scores every candidate (pooled finished ones first, then rows in
    /// order) by the value of its whole response, keeps the global top `W`
    /// (stable: earlier candidate first on ties), and returns the next rows:
    /// `K` children per unfinished survivor. Finished survivors (and, at
    /// `max_new_tokens`, all survivors) go to the pool.
    fn select(
        &self,
        p: usize,
        rows: Vec<NaiveRow>,
        plan: &Plan,
        seed: u64,
        beam: &mut Beam,
    ) -> Vec<NaiveRow> {
        let last = beam.step == plan.max_new_tokens;
        let mut cands: Vec<(TraceCandidate, Option<NaiveRow>)> =
            beam.pool.drain(..).map(|c| (c, None)).collect();
        for row in rows {
            let cand = TraceCandidate {
                tokens: row.tokens.clone(),
                value: self.value(plan.ranking, p, &row.tokens),
                finished: row.finished,
                survived: false,
            };
            cands.push((cand, Some(row)));
        }
        cands.sort_by(|a, b| b.0.value.partial_cmp(&a.0.value).expect("finite value"));
        let s = plan.width * plan.successors;
        let mut children = Vec::new();
        let mut trace = Vec::new();
        for (rank, (mut cand, row)) in cands.into_iter().enumerate() {
            cand.survived = rank < plan.width;
            trace.push(cand.clone());
            match row {
                _ if !cand.survived => {}
                Some(row) if !cand.finished && !last => {
                    for c in 0..plan.successors {
                        let sampler = if c == 0 {
                            row.sampler.clone()
                        } else {
                            let slot = 1 + beam.chunk * s + children.len();
                            row.sampler.reseeded(row_seed(seed, slot))
                        };
                        children.push(NaiveRow {
                            tokens: row.tokens.clone(),
                            finished: false,
                            sampler,
                        });
                    }
                }
                _ => beam.pool.push(cand),
            }
        }
        beam.traces.push(trace);
        beam.chunk += 1;
        children
    }
}

/// The state of one prompt's beam search between chunks.
struct Beam {
    /// Finished survivors, in rank order.
    pool: Vec<TraceCandidate>,
    traces: Vec<Vec<TraceCandidate>>,
    /// Tokens generated per row so far.
    step: usize,
    /// Boundaries passed.
    chunk: usize,
}

// ------------------------------------------------------------- the engine

/// Which feed each value function uses in an engine run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Feeds {
    /// Stepped only for the value that guides token-wise, Chunked otherwise.
    Minimal,
    /// Both Stepped (always allowed): the other scoring path.
    AllStepped,
}

fn run_engine(
    config: &GuidanceConfig,
    feeds: Feeds,
    stop: &[u32],
) -> (Vec<GuidedOutput>, Vec<ChunkTrace>) {
    let feed = |guides: bool| match (feeds, guides) {
        (Feeds::AllStepped, _) | (_, true) => Feed::Stepped,
        _ => Feed::Chunked,
    };
    let base = model("gemma3");
    let tok = tokenizer();
    let pair = ImplicitPair {
        tuned: model("llama"),
        tuned_template: TUNED_TEMPLATE.into(),
        reference: model("qwen2"),
        reference_template: REF_TEMPLATE.into(),
        tokenizer: tok.clone(),
        weight: PAIR_WEIGHT,
    };
    let implicit_feed = feed(matches!(config.token, TokenPolicy::Implicit { .. }));
    let mut imp = ImplicitValue::new("implicit", vec![pair], BETA_V_IMPLICIT, implicit_feed)
        .expect("implicit");
    let explicit_feed = feed(matches!(config.token, TokenPolicy::Explicit { .. }));
    let mut q = QValue::new(
        "q",
        model("gpt2"),
        Q_TEMPLATE,
        tok.clone(),
        BETA_V_EXPLICIT,
        explicit_feed,
    )
    .expect("q");
    let mut guides = Guides {
        base: BaseModel::Local(&base),
        base_tokenizer: Some(&tok),
        implicit: Some(&mut imp),
        explicit: Some(&mut q),
    };
    let mut traces = Vec::new();
    let out = guided_generate(&mut guides, &texts(), &base_ids(), config, stop, &mut |t| {
        traces.push(t.clone())
    })
    .expect("engine");
    (out, traces)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-4
}

fn assert_candidates_match(label: &str, got: &[TraceCandidate], want: &[TraceCandidate]) {
    assert_eq!(got.len(), want.len(), "{label}: number of candidates");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.tokens, w.tokens, "{label}: candidate {i} tokens");
        assert_eq!(g.finished, w.finished, "{label}: candidate {i} finished");
        assert_eq!(g.survived, w.survived, "{label}: candidate {i} survived");
        assert!(
            close(g.value, w.value),
            "{label}: candidate {i} value {} vs reference {}",
            g.value,
            w.value
        );
    }
}

/// Outputs and every boundary's ranking of the engine equal the reference's.
fn assert_engine_matches(
    label: &str,
    got: &[GuidedOutput],
    traces: &[ChunkTrace],
    want: &[NaiveOutput],
) {
    assert_eq!(got.len(), want.len(), "{label}: outputs");
    for (p, (g, w)) in got.iter().zip(want).enumerate() {
        let lp = format!("{label} prompt {p}");
        assert_eq!(g.tokens, w.tokens, "{lp}: tokens");
        let finish = if w.finished {
            FinishReason::Stop
        } else {
            FinishReason::Length
        };
        assert_eq!(g.finish, finish, "{lp}: finish");
        assert!(
            close(g.value, w.value),
            "{lp}: value {} vs reference {}",
            g.value,
            w.value
        );
        let mine: Vec<&ChunkTrace> = traces.iter().filter(|t| t.prompt == p).collect();
        assert!(mine.len() >= w.traces.len(), "{lp}: boundaries");
        for (c, (t, wt)) in mine.iter().zip(&w.traces).enumerate() {
            assert_eq!(t.chunk, c, "{lp}: chunk index");
            assert_candidates_match(&format!("{lp} chunk {c}"), &t.candidates, wt);
        }
        // Later boundaries (other prompts still running) only re-rank the pool
        // of this prompt's finished survivors, which must not change.
        let pool: Vec<TraceCandidate> = w
            .traces
            .last()
            .expect("a boundary")
            .iter()
            .filter(|c| c.survived)
            .cloned()
            .collect();
        for t in &mine[w.traces.len()..] {
            assert!(pool.iter().all(|c| c.finished), "{lp}: pool re-ranked live");
            assert_candidates_match(
                &format!("{lp} chunk {} (pool)", t.chunk),
                &t.candidates,
                &pool,
            );
        }
    }
}

fn shape(sampling: SamplingConfig, seed: u64) -> GuidanceConfig {
    GuidanceConfig {
        token: TokenPolicy::Base,
        chunk: ChunkRanking::None,
        width: W,
        successors: K,
        chunk_len: Some(L),
        max_new_tokens: MAX_NEW,
        sampling,
        seed,
        stop_strings: Vec::new(),
    }
}

/// Runs every method on the engine (both feed variants) and the reference, and
/// asserts they agree; returns the reference outputs by method name.
fn check_every_method(
    naive: &Naive,
    shape: &GuidanceConfig,
    stop: &[u32],
) -> BTreeMap<&'static str, Vec<NaiveOutput>> {
    let mut all = BTreeMap::new();
    for method in Method::ALL {
        let config = method.config(shape, BETA);
        let plan = plan(method);
        assert_plan_is_config(method, &plan, &config);
        let want: Vec<NaiveOutput> = (0..PROMPTS.len())
            .map(|p| naive.decode(p, &plan, &config.sampling, row_seed(config.seed, p), stop))
            .collect();
        for feeds in [Feeds::Minimal, Feeds::AllStepped] {
            let (got, traces) = run_engine(&config, feeds, stop);
            let label = format!("{} ({feeds:?}, seed {})", method.name(), config.seed);
            assert_engine_matches(&label, &got, &traces, &want);
        }
        all.insert(method.name(), want);
    }
    all
}

fn tokens_of(outs: &[NaiveOutput]) -> Vec<Vec<u32>> {
    outs.iter().map(|o| o.tokens.clone()).collect()
}

// ------------------------------------------------------------------- tests

#[test]
fn engine_matches_the_naive_reference_under_greedy_for_every_method() {
    let naive = Naive::new();
    let shape = shape(SamplingConfig::greedy(), 0);
    let all = check_every_method(&naive, &shape, &STOPS);

    // The check discriminates: guidance changes the greedy path, so a decoder
    // that ignored it (or used the wrong guide) would disagree with the reference.
    let base = tokens_of(&all["base"]);
    for m in ["efti", "efte", "efti+cbsi", "ivg"] {
        assert_ne!(tokens_of(&all[m]), base, "{m} follows base greedily");
    }
    assert_ne!(tokens_of(&all["efti"]), tokens_of(&all["efte"]));
    // Under greedy the ranking cannot choose (all rows agree), so CBS/BoN follow
    // their token policy's greedy path, and their values are those of the path.
    assert_eq!(tokens_of(&all["cbsi"]), base);
    assert_eq!(tokens_of(&all["bone"]), base);
    assert_eq!(tokens_of(&all["efti+cbsi"]), tokens_of(&all["efti"]));
    for m in ["boni", "bone", "cbsi", "cbse", "efti+cbsi", "ivg"] {
        assert!(all[m].iter().all(|o| o.value != 0.0), "{m}: zero value");
    }
    for m in ["base", "efti", "efte"] {
        assert!(all[m].iter().all(|o| o.value == 0.0), "{m}: ranked");
    }
    // Stop ids are reached mid-chunk under a chunk ranking, in the first chunk
    // and after a reorder, while other prompts of the batch go on: a finished
    // candidate waits out its chunk, enters the pool and is returned.
    for m in ["efti+cbsi", "ivg"] {
        let stops: Vec<usize> = all[m]
            .iter()
            .filter(|o| o.finished)
            .map(|o| o.tokens.len())
            .collect();
        assert!(
            stops.iter().all(|&n| n < MAX_NEW && n % L != 0),
            "{m}: {stops:?}"
        );
        assert!(
            stops.iter().any(|&n| n < L),
            "{m}: no stop in the first chunk"
        );
        assert!(stops.iter().any(|&n| n > L), "{m}: no stop after a reorder");
        assert!(
            all[m].iter().any(|o| !o.finished),
            "{m}: every prompt stopped"
        );
    }
}

#[test]
fn engine_matches_the_naive_reference_when_sampling() {
    // With temperature the W*K rows differ, so the ranking, the pool of
    // finished candidates and the survivor bookkeeping all matter.
    let naive = Naive::new();
    let sampling = SamplingConfig {
        temperature: 1.0,
        top_k: None,
        top_p: None,
    };
    let mut ranked_distinct = false;
    let mut finished_competes = false;
    for seed in [3, 4] {
        let all = check_every_method(&naive, &shape(sampling.clone(), seed), &STOPS);
        for outs in all.values() {
            for t in outs.iter().flat_map(|o| &o.traces) {
                let first = &t[0].tokens;
                ranked_distinct |= t.iter().any(|c| &c.tokens != first);
                finished_competes |= t.iter().any(|c| c.finished) && t.iter().any(|c| !c.finished);
            }
        }
    }
    assert!(ranked_distinct, "no boundary ranked distinct candidates");
    assert!(
        finished_competes,
        "no finished candidate competed with a live one"
    );
}

// ------------------------------------- continuous batching against the reference

/// The reference's guides as a guide set the step-wise engine builds its
/// value functions from (one per role and feed, shared by the requests).
struct ReferenceGuides;

impl GuideSource for ReferenceGuides {
    fn name(&self) -> &str {
        "reference"
    }

    fn has(&self, _role: ValueRole) -> bool {
        true
    }

    fn build(&self, role: ValueRole, feed: Feed) -> Result<Box<dyn ValueFunction>, DecodeError> {
        let tok = tokenizer();
        Ok(match role {
            ValueRole::Implicit => {
                let pair = ImplicitPair {
                    tuned: model("llama"),
                    tuned_template: TUNED_TEMPLATE.into(),
                    reference: model("qwen2"),
                    reference_template: REF_TEMPLATE.into(),
                    tokenizer: tok,
                    weight: PAIR_WEIGHT,
                };
                Box::new(ImplicitValue::new(
                    "implicit",
                    vec![pair],
                    BETA_V_IMPLICIT,
                    feed,
                )?)
            }
            ValueRole::Explicit => Box::new(QValue::new(
                "q",
                model("gpt2"),
                Q_TEMPLATE,
                tok,
                BETA_V_EXPLICIT,
                feed,
            )?),
        })
    }
}

#[test]
fn staggered_mixed_requests_match_the_naive_reference() {
    // Every method for every prompt, 27 requests in one engine: request `i`
    // joins before step `i % 7`, so requests join at first steps, mid-chunk
    // and at chunk boundaries of those already running, and methods mix.
    let naive = Naive::new();
    let sampling = SamplingConfig {
        temperature: 1.0,
        top_k: None,
        top_p: None,
    };
    let shape = shape(sampling.clone(), 9);
    let base = model("gemma3");
    let tok = tokenizer();
    let mut engine = Engine::new(&base, Some(&tok), STOPS.to_vec());
    let guides = engine.add_guides(Arc::new(ReferenceGuides));
    let plan_of: Vec<(Method, usize)> = Method::ALL
        .into_iter()
        .flat_map(|m| (0..PROMPTS.len()).map(move |p| (m, p)))
        .collect();
    let mut outputs: BTreeMap<usize, GuidedOutput> = BTreeMap::new();
    let mut index_of = BTreeMap::new();
    let mut max_rows = 0;
    for step in 0.. {
        for (i, &(m, p)) in plan_of.iter().enumerate().filter(|(i, _)| i % 7 == step) {
            let request = Request::new(
                PROMPTS[p],
                ids(PROMPTS[p]),
                m.config(&shape, BETA),
                p,
                Some(guides),
            );
            index_of.insert(engine.admit(request).expect("admit"), i);
        }
        for event in engine.step().expect("step") {
            if let Event::Finished { id, output } = event {
                outputs.insert(index_of[&id], output);
            }
        }
        max_rows = max_rows.max(engine.rows());
        if step >= 7 && engine.is_idle() {
            break;
        }
    }
    assert!(
        max_rows > 20,
        "the requests barely overlapped: {max_rows} rows at most"
    );
    for (i, &(m, p)) in plan_of.iter().enumerate() {
        let want = naive.decode(p, &plan(m), &sampling, row_seed(shape.seed, p), &STOPS);
        let got = &outputs[&i];
        let label = format!("{} prompt {p}", m.name());
        assert_eq!(got.tokens, want.tokens, "{label}: tokens");
        assert!(
            close(got.value, want.value),
            "{label}: value {} vs {}",
            got.value,
            want.value
        );
    }
}
