//! One batched engine for every method of the matrix (method.md): a token-level
//! policy (base, EFT guided by the implicit or the explicit value) and chunk-level
//! beam search over `W*K` rows per prompt, with best-of-N as `W = 1, K = N,
//! L = infinity`. No method has its own code path.
//!
//! Efficiency by design: the base model and each value function prefill every
//! prompt once and fork their states to `W*K` rows; all rows of all prompts
//! decode as one batch per model per step; at a boundary, survivors' states are
//! reordered, not recomputed, and chunk-only scorers score just the new tokens.
//!
//! Randomness: prompt `p` samples with seed `row_seed(seed, p)` in its first slot,
//! exactly as [`crate::generate`] does, so `W = K = 1` reproduces base sampling
//! token for token; a survivor's first child continues its parent's stream and
//! other children get seeds derived from the prompt's seed, the chunk and the
//! slot. No stream depends on other prompts, so batching prompts changes nothing.

use candle_core::Tensor;
use ivg_models::{CausalLm, DecodeState, LogitsSpan};
use ivg_tokenize::{check_same_vocab, Tokenizer};
use ivg_value::ValueFunction;

use crate::generate::{DecodeError, FinishReason};
use crate::guidance::{ChunkRanking, GuidanceConfig, TokenPolicy};
use crate::sampling::{row_seed, Sampler};

/// The best candidate of one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct GuidedOutput {
    pub tokens: Vec<u32>,
    /// Its chunk-level value (0 without a chunk ranking).
    pub value: f64,
    pub finish: FinishReason,
}

/// One candidate at a chunk boundary, for `--trace`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TraceCandidate {
    pub tokens: Vec<u32>,
    pub value: f64,
    pub finished: bool,
    pub survived: bool,
}

/// Every candidate of one prompt at one chunk boundary.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChunkTrace {
    pub prompt: usize,
    pub chunk: usize,
    pub step: usize,
    pub candidates: Vec<TraceCandidate>,
}

/// The models of a run: the base, and the value functions the config uses.
pub struct Guides<'a> {
    pub base: &'a CausalLm,
    pub base_tokenizer: Option<&'a Tokenizer>,
    pub implicit: Option<&'a mut dyn ValueFunction>,
    pub explicit: Option<&'a mut dyn ValueFunction>,
}

struct Row {
    prompt: usize,
    tokens: Vec<u32>,
    sampler: Sampler,
    finished: bool,
}

#[derive(Clone)]
struct Candidate {
    tokens: Vec<u32>,
    value: f64,
    finished: bool,
}

/// Which value function plays which role.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    Implicit,
    Explicit,
}

fn missing(what: &str) -> DecodeError {
    DecodeError::Config {
        field: "guides",
        problem: format!("this method needs the {what} value function"),
    }
}

impl<'a> Guides<'a> {
    fn get(&mut self, role: Role) -> Result<&mut (dyn ValueFunction + 'a), DecodeError> {
        match role {
            Role::Implicit => self
                .implicit
                .as_deref_mut()
                .ok_or_else(|| missing("implicit")),
            Role::Explicit => self
                .explicit
                .as_deref_mut()
                .ok_or_else(|| missing("explicit")),
        }
    }

    /// Roles the config uses, each once.
    fn roles(config: &GuidanceConfig) -> Vec<Role> {
        let mut roles = Vec::new();
        match config.token {
            TokenPolicy::Implicit { .. } => roles.push(Role::Implicit),
            TokenPolicy::Explicit { .. } => roles.push(Role::Explicit),
            TokenPolicy::Base => {}
        }
        let chunk = match config.chunk {
            ChunkRanking::Implicit => Some(Role::Implicit),
            ChunkRanking::Explicit => Some(Role::Explicit),
            ChunkRanking::None => None,
        };
        if let Some(r) = chunk.filter(|r| !roles.contains(r)) {
            roles.push(r);
        }
        roles
    }

    /// Token-wise guidance needs the guide to share the base's vocabulary.
    fn check_vocab(&mut self, config: &GuidanceConfig) -> Result<(), DecodeError> {
        let role = match config.token {
            TokenPolicy::Implicit { .. } => Role::Implicit,
            TokenPolicy::Explicit { .. } => Role::Explicit,
            TokenPolicy::Base => return Ok(()),
        };
        let base_tok = self.base_tokenizer;
        let base_name = self.base.name().to_string();
        let guide = self.get(role)?;
        if let (Some(b), Some(g)) = (base_tok, guide.tokenizer()) {
            check_same_vocab(&base_name, b, guide.name(), g)?;
        }
        Ok(())
    }

    fn each(
        &mut self,
        roles: &[Role],
        mut f: impl FnMut(&mut dyn ValueFunction) -> Result<(), ivg_value::ValueError>,
    ) -> Result<(), DecodeError> {
        for &r in roles {
            f(self.get(r)?)?;
        }
        Ok(())
    }
}

/// Runs guided decoding for every prompt. `texts` are the prompts as given to
/// the value functions (each applies its own template); `base_prompts` the
/// base model's prompt ids. `on_chunk` sees every boundary's candidates.
pub fn guided_generate(
    guides: &mut Guides<'_>,
    texts: &[String],
    base_prompts: &[Vec<u32>],
    config: &GuidanceConfig,
    stop_ids: &[u32],
    on_chunk: &mut dyn FnMut(&ChunkTrace),
) -> Result<Vec<GuidedOutput>, DecodeError> {
    let seeds: Vec<u64> = (0..texts.len()).map(|p| row_seed(config.seed, p)).collect();
    guided_generate_seeded(
        guides,
        texts,
        base_prompts,
        &seeds,
        config,
        stop_ids,
        on_chunk,
    )
}

/// [`guided_generate`] with an explicit seed per prompt (`config.seed` unused):
/// a prompt's output depends only on its own seed, whatever else is in the batch.
pub fn guided_generate_seeded(
    guides: &mut Guides<'_>,
    texts: &[String],
    base_prompts: &[Vec<u32>],
    prompt_seeds: &[u64],
    config: &GuidanceConfig,
    stop_ids: &[u32],
    on_chunk: &mut dyn FnMut(&ChunkTrace),
) -> Result<Vec<GuidedOutput>, DecodeError> {
    let roles = prepare(guides, texts, base_prompts, prompt_seeds, config)?;
    let mut run = Run::start(guides, &roles, texts, base_prompts, prompt_seeds, config)?;
    for step in 0..config.max_new_tokens {
        let tokens = run.sample_step(guides, &roles, config, stop_ids)?;
        let last = step + 1 == config.max_new_tokens;
        let boundary =
            last || run.rows.iter().all(|r| r.finished) || config.chunk_len == Some(run.in_chunk);
        if !boundary {
            run.logits = guides.base.step(&tokens, &mut run.state)?;
            continue;
        }
        let order = run.select(guides, config, step, last, on_chunk)?;
        if order.is_empty() || last {
            break;
        }
        let next: Vec<u32> = order.iter().map(|&i| tokens[i]).collect();
        run.state.reorder(&order)?;
        guides.each(&roles, |v| v.reorder(&order))?;
        run.logits = guides.base.step(&next, &mut run.state)?;
    }
    Ok(run.outputs())
}

fn prepare(
    guides: &mut Guides<'_>,
    texts: &[String],
    base_prompts: &[Vec<u32>],
    prompt_seeds: &[u64],
    config: &GuidanceConfig,
) -> Result<Vec<Role>, DecodeError> {
    config.validate()?;
    if texts.len() != base_prompts.len() || texts.len() != prompt_seeds.len() {
        let problem = format!(
            "{} texts, {} base prompts, {} seeds",
            texts.len(),
            base_prompts.len(),
            prompt_seeds.len()
        );
        return Err(DecodeError::Config {
            field: "prompts",
            problem,
        });
    }
    guides.check_vocab(config)?;
    Ok(Guides::roles(config))
}

/// The logits the token-level policy samples the first response token from,
/// `(prompts, vocab)`, before temperature: `l_base (+ beta * offsets)`.
pub fn first_token_logits(
    guides: &mut Guides<'_>,
    texts: &[String],
    base_prompts: &[Vec<u32>],
    config: &GuidanceConfig,
) -> Result<Tensor, DecodeError> {
    let one = GuidanceConfig {
        width: 1,
        successors: 1,
        chunk: ChunkRanking::None,
        ..config.clone()
    };
    let seeds = vec![0; texts.len()];
    let roles = prepare(guides, texts, base_prompts, &seeds, &one)?;
    let run = Run::start(guides, &roles, texts, base_prompts, &seeds, &one)?;
    policy_logits(guides, &run.logits, &one.token)
}

/// The mutable state of one call.
struct Run {
    state: DecodeState,
    /// `(rows, vocab)` base logits for each row's next token.
    logits: Tensor,
    rows: Vec<Row>,
    pools: Vec<Vec<Candidate>>,
    prompt_seeds: Vec<u64>,
    in_chunk: usize,
    chunk: usize,
}

impl Run {
    fn start(
        guides: &mut Guides<'_>,
        roles: &[Role],
        texts: &[String],
        base_prompts: &[Vec<u32>],
        prompt_seeds: &[u64],
        config: &GuidanceConfig,
    ) -> Result<Self, DecodeError> {
        let mut state = guides.base.new_state();
        let logits = guides
            .base
            .prefill(base_prompts, &mut state, LogitsSpan::Last)?;
        guides.each(roles, |v| v.begin(texts))?;
        let s = config.rows_per_prompt();
        let order: Vec<usize> = (0..texts.len())
            .flat_map(|p| std::iter::repeat_n(p, s))
            .collect();
        state.reorder(&order)?;
        guides.each(roles, |v| v.reorder(&order))?;
        let logits = select_rows(&logits, &order)?;
        let prompt_seeds = prompt_seeds.to_vec();
        let rows = order
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let slot = i % s;
                let seed = if slot == 0 {
                    prompt_seeds[p]
                } else {
                    row_seed(prompt_seeds[p], slot)
                };
                Ok(Row {
                    prompt: p,
                    tokens: Vec::new(),
                    sampler: Sampler::new(config.sampling.clone(), seed)?,
                    finished: false,
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok(Self {
            state,
            logits,
            rows,
            pools: vec![Vec::new(); texts.len()],
            prompt_seeds,
            in_chunk: 0,
            chunk: 0,
        })
    }

    /// Samples one token per live row from the token-level policy and feeds it
    /// to the value functions; returns the tokens of all rows.
    fn sample_step(
        &mut self,
        guides: &mut Guides<'_>,
        roles: &[Role],
        config: &GuidanceConfig,
        stop_ids: &[u32],
    ) -> Result<Vec<u32>, DecodeError> {
        let combined = policy_logits(guides, &self.logits, &config.token)?;
        let host = combined.to_vec2::<f32>()?;
        let live: Vec<bool> = self.rows.iter().map(|r| !r.finished).collect();
        let mut tokens = Vec::with_capacity(self.rows.len());
        for (row, logits) in self.rows.iter_mut().zip(&host) {
            let t = if row.finished {
                row.tokens.last().copied().unwrap_or(0)
            } else {
                row.sampler.sample(logits)?
            };
            tokens.push(t);
        }
        guides.each(roles, |v| v.observe(&tokens, &live))?;
        for (row, &t) in self.rows.iter_mut().zip(&tokens) {
            if !row.finished {
                row.tokens.push(t);
                row.finished = stop_ids.contains(&t)
                    || ends_with_stop_string(&row.tokens, config, guides.base_tokenizer)?;
            }
        }
        self.in_chunk += 1;
        Ok(tokens)
    }

    /// Ranks each prompt's candidates (live rows and pooled finished ones) and
    /// keeps the global top `W`; returns the row order of the next chunk.
    fn select(
        &mut self,
        guides: &mut Guides<'_>,
        config: &GuidanceConfig,
        step: usize,
        last: bool,
        on_chunk: &mut dyn FnMut(&ChunkTrace),
    ) -> Result<Vec<usize>, DecodeError> {
        let values = match config.chunk {
            ChunkRanking::None => vec![0.0; self.rows.len()],
            ChunkRanking::Implicit => guides.get(Role::Implicit)?.values()?,
            ChunkRanking::Explicit => guides.get(Role::Explicit)?.values()?,
        };
        let mut order = Vec::new();
        let mut next_rows = Vec::new();
        for p in 0..self.pools.len() {
            let (keep, trace) = self.select_prompt(p, &values, config, last);
            if !trace.candidates.is_empty() {
                on_chunk(&ChunkTrace {
                    step: step + 1,
                    ..trace
                });
            }
            for (i, sampler) in keep {
                let parent = &self.rows[i];
                next_rows.push(Row {
                    prompt: p,
                    tokens: parent.tokens.clone(),
                    sampler,
                    finished: false,
                });
                order.push(i);
            }
        }
        self.rows = next_rows;
        self.in_chunk = 0;
        self.chunk += 1;
        Ok(order)
    }

    /// The survivors of prompt `p`: finished ones go to its pool; unfinished ones
    /// are returned as `K` child rows each `(parent row, sampler)`.
    fn select_prompt(
        &mut self,
        p: usize,
        values: &[f64],
        config: &GuidanceConfig,
        last: bool,
    ) -> (Vec<(usize, Sampler)>, ChunkTrace) {
        let mut cands: Vec<(f64, Option<usize>, Candidate)> = self.pools[p]
            .drain(..)
            .map(|c| (c.value, None, c))
            .collect();
        for (i, row) in self.rows.iter().enumerate().filter(|(_, r)| r.prompt == p) {
            let c = Candidate {
                tokens: row.tokens.clone(),
                value: values[i],
                finished: row.finished,
            };
            cands.push((values[i], Some(i), c));
        }
        // Highest value first; ties keep the earlier candidate (stable sort).
        cands.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
        let mut trace = ChunkTrace {
            prompt: p,
            chunk: self.chunk,
            step: 0,
            candidates: Vec::new(),
        };
        let mut children = Vec::new();
        let s = config.rows_per_prompt();
        for (rank, (_, src, cand)) in cands.into_iter().enumerate() {
            let survived = rank < config.width;
            trace.candidates.push(TraceCandidate {
                tokens: cand.tokens.clone(),
                value: cand.value,
                finished: cand.finished,
                survived,
            });
            match (survived, src) {
                (true, Some(i)) if !cand.finished && !last => {
                    for k in 0..config.successors {
                        let sampler = if k == 0 {
                            self.rows[i].sampler.clone()
                        } else {
                            let slot = 1 + self.chunk * s + children.len();
                            let seed = row_seed(self.prompt_seeds[p], slot);
                            self.rows[i].sampler.reseeded(seed)
                        };
                        children.push((i, sampler));
                    }
                }
                (true, _) => self.pools[p].push(cand),
                (false, _) => {}
            }
        }
        (children, trace)
    }

    fn outputs(self) -> Vec<GuidedOutput> {
        let mut pools = self.pools;
        for row in self.rows {
            pools[row.prompt].push(Candidate {
                tokens: row.tokens,
                value: 0.0,
                finished: row.finished,
            });
        }
        pools
            .into_iter()
            .map(|pool| {
                let best = pool
                    .into_iter()
                    .reduce(|a, b| if b.value > a.value { b } else { a })
                    .unwrap_or(Candidate {
                        tokens: Vec::new(),
                        value: 0.0,
                        finished: false,
                    });
                let finish = if best.finished {
                    FinishReason::Stop
                } else {
                    FinishReason::Length
                };
                GuidedOutput {
                    tokens: best.tokens,
                    value: best.value,
                    finish,
                }
            })
            .collect()
    }
}

/// Whether the text of `tokens` now contains a stop string. Only the tail is
/// decoded: a string of `c` characters spans at most `4c` byte-level tokens.
fn ends_with_stop_string(
    tokens: &[u32],
    config: &GuidanceConfig,
    tokenizer: Option<&Tokenizer>,
) -> Result<bool, DecodeError> {
    if config.stop_strings.is_empty() {
        return Ok(false);
    }
    let tokenizer = tokenizer.ok_or_else(|| DecodeError::Config {
        field: "stop_strings",
        problem: "stop strings need the base tokenizer (Guides::base_tokenizer)".into(),
    })?;
    let longest = config
        .stop_strings
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0);
    let tail = &tokens[tokens.len().saturating_sub(4 * longest + 4)..];
    let text = tokenizer
        .decode(tail, false)
        .map_err(|e| DecodeError::Config {
            field: "stop_strings",
            problem: e.to_string(),
        })?;
    Ok(config
        .stop_strings
        .iter()
        .any(|s| text.contains(s.as_str())))
}

/// `l_base + beta * offsets` (exactly `l_base` when `beta == 0`).
fn policy_logits(
    guides: &mut Guides<'_>,
    base: &Tensor,
    token: &TokenPolicy,
) -> Result<Tensor, DecodeError> {
    let (role, beta) = match *token {
        TokenPolicy::Base => return Ok(base.clone()),
        TokenPolicy::Implicit { beta } => (Role::Implicit, beta),
        TokenPolicy::Explicit { beta } => (Role::Explicit, beta),
    };
    if beta == 0.0 {
        return Ok(base.clone());
    }
    let guide = guides.get(role)?;
    let offsets = guide.guidance()?.ok_or_else(|| DecodeError::Config {
        field: "guides",
        problem: format!(
            "value function `{}` does not guide token-wise (build it with Feed::Stepped)",
            guide.name()
        ),
    })?;
    if offsets.dims() != base.dims() {
        return Err(DecodeError::Vocabulary(format!(
            "guide `{}` gives logits of shape {:?}, the base model {:?}",
            guide.name(),
            offsets.dims(),
            base.dims()
        )));
    }
    Ok((base + (offsets * beta)?)?)
}

fn select_rows(t: &Tensor, order: &[usize]) -> Result<Tensor, DecodeError> {
    let idx = Tensor::from_vec(
        order.iter().map(|&r| r as u32).collect::<Vec<_>>(),
        order.len(),
        t.device(),
    )?;
    Ok(t.contiguous()?.index_select(&idx, 0)?)
}
