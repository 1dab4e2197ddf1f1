//! The base model the engine decodes, in process or behind an inference
//! engine (llama.cpp's server, vLLM, SGLang; issue "remote base"), and the
//! engine's rows of it.
//!
//! In process, the engine holds a [`DecodeState`] and the `(rows, vocab)`
//! logits of every row's next token, one forward per step. A remote engine
//! holds no state ivg can see: a row is its token ids, and before each step
//! the engine asks for what the row's method needs:
//! - a token-level guided row (EFT) asks for the base's top-k next tokens
//!   (one call per row per token) and samples locally, with ivg's seeded
//!   sampler, from the top-k combined with the guides' offsets
//!   ([`crate::combine_topk`]);
//! - a row that samples from the base alone (Base, BoN, CBS) asks for its
//!   whole chunk at once: rows of one request with the same ids (the `K`
//!   children of a survivor) share one call with `n = K`, so CBS makes `W`
//!   calls per chunk. The chunk's tokens are then replayed one per step, so
//!   the guides, stop strings and boundaries see exactly what they see in
//!   process.

use std::collections::VecDeque;
use std::sync::Arc;

use candle_core::Tensor;
use ivg_models::{CausalLm, DecodeState, LogitsSpan};

use crate::engine::core::select_rows;
use crate::generate::DecodeError;

/// The base's most likely next tokens after a prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct TopKReply {
    /// `(id, log-probability)` under the base's full softmax.
    pub tokens: Vec<(u32, f32)>,
}

/// What sampling among a remote base's top-k may cost at one row and step.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TopKCoverage {
    /// Base probability mass of the candidates.
    pub base_mass: f64,
    /// Bound on the total-variation distance to sampling from the whole
    /// vocabulary ([`crate::CandidateLogits::tv_bound`]).
    pub tv_bound: f64,
}

/// A call for `n` continuations of one prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkJob {
    pub prefix: Vec<u32>,
    pub n: usize,
    pub max_tokens: usize,
    /// 0 = greedy.
    pub temperature: f64,
    pub top_p: f64,
    /// Continuation `i` is sampled with `seed + i` (llama.cpp's `n_cmpl`).
    pub seed: u32,
}

/// One sampled continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledChunk {
    pub tokens: Vec<u32>,
    /// The base ended it with an end-of-generation token (the last token).
    pub eos: bool,
}

/// A base model served by an inference engine. Calls of one batch are
/// independent; an implementation runs them in parallel (within its
/// concurrency limit) and returns one result per call, so that a failed call
/// fails only the request it belongs to.
pub trait RemoteBase: Send + Sync {
    /// The engine as errors name it (its URL and protocol).
    fn name(&self) -> &str;

    fn vocab_size(&self) -> usize;

    /// Top-k next tokens after each prefix.
    fn topk(&self, prefixes: &[&[u32]], k: usize) -> Vec<Result<TopKReply, DecodeError>>;

    /// Continuations for each job.
    fn sample(&self, jobs: &[ChunkJob]) -> Vec<Result<Vec<SampledChunk>, DecodeError>>;
}

/// The base model of an [`crate::Engine`].
#[derive(Clone)]
pub enum BaseModel<'a> {
    Local(&'a CausalLm),
    /// A remote engine, with the `k` of its top-k calls.
    Remote {
        engine: Arc<dyn RemoteBase>,
        k: usize,
    },
}

impl BaseModel<'_> {
    pub fn name(&self) -> &str {
        match self {
            Self::Local(m) => m.name(),
            Self::Remote { engine, .. } => engine.name(),
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Local(m) => m.vocab_size(),
            Self::Remote { engine, .. } => engine.vocab_size(),
        }
    }
}

/// What one request's rows need from a remote base before a step.
pub(crate) enum Need {
    /// Top-k for each unfinished row.
    TopK,
    /// A chunk of at most `max_tokens` for each unfinished row without
    /// queued tokens.
    Chunk {
        max_tokens: usize,
        temperature: f64,
        top_p: f64,
        seed: u64,
    },
}

/// One request's rows as [`BaseRows::prepare`] sees them.
pub(crate) struct Plan {
    /// First row in the batch and row count.
    pub offset: usize,
    pub rows: usize,
    pub need: Need,
    pub finished: Vec<bool>,
}

#[derive(Clone, Default)]
pub(crate) struct RemoteRow {
    /// Prompt and tokens so far.
    ids: Vec<u32>,
    topk: Option<Vec<(u32, f32)>>,
    queued: VecDeque<u32>,
    /// The queued chunk ends with the base's end of generation.
    ends: bool,
}

/// The engine's rows of its base model, in batch order.
pub(crate) enum BaseRows<'a> {
    Local {
        model: &'a CausalLm,
        state: DecodeState,
        /// `(rows, vocab)` base logits for each row's next token.
        logits: Option<Tensor>,
    },
    Remote {
        engine: Arc<dyn RemoteBase>,
        k: usize,
        rows: Vec<RemoteRow>,
    },
}

impl<'a> BaseRows<'a> {
    pub fn new(base: BaseModel<'a>) -> Self {
        match base {
            BaseModel::Local(model) => Self::Local {
                model,
                state: model.new_state(),
                logits: None,
            },
            BaseModel::Remote { engine, k } => Self::Remote {
                engine,
                k,
                rows: Vec::new(),
            },
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Self::Local { model, .. } => model.name(),
            Self::Remote { engine, .. } => engine.name(),
        }
    }

    pub fn is_remote(&self) -> bool {
        matches!(self, Self::Remote { .. })
    }

    /// Appends the rows of new prompts: row `i` of the appended block starts
    /// from `prompts[order[i]]` (in process, each prompt is prefilled once).
    pub fn add(&mut self, prompts: &[Vec<u32>], order: &[usize]) -> Result<(), DecodeError> {
        match self {
            Self::Local {
                model,
                state,
                logits,
            } => {
                let mut fresh = model.new_state();
                let first = model.prefill(prompts, &mut fresh, LogitsSpan::Last)?;
                fresh.reorder(order)?;
                let first = select_rows(&first, order)?;
                match logits.take() {
                    Some(old) => {
                        state.append_rows(fresh)?;
                        *logits = Some(Tensor::cat(&[&old, &first], 0)?);
                    }
                    None => {
                        *state = fresh;
                        *logits = Some(first);
                    }
                }
            }
            Self::Remote { rows, .. } => rows.extend(order.iter().map(|&p| RemoteRow {
                ids: prompts[p].clone(),
                ..RemoteRow::default()
            })),
        }
        Ok(())
    }

    /// Drops every row.
    pub fn clear(&mut self) {
        match self {
            Self::Local {
                model,
                state,
                logits,
            } => {
                *state = model.new_state();
                *logits = None;
            }
            Self::Remote { rows, .. } => rows.clear(),
        }
    }

    /// Row `i` continues former row `order[i]`.
    pub fn reorder(&mut self, order: &[usize]) -> Result<(), DecodeError> {
        match self {
            Self::Local { state, logits, .. } => {
                state.reorder(order)?;
                state.trim_padding()?;
                if let Some(l) = logits {
                    *logits = Some(select_rows(l, order)?);
                }
            }
            Self::Remote { rows, .. } => {
                *rows = order.iter().map(|&r| rows[r].clone()).collect();
            }
        }
        Ok(())
    }

    /// Every row takes its next token (`next`, in batch order).
    pub fn advance(&mut self, next: &[u32]) -> Result<(), DecodeError> {
        match self {
            Self::Local {
                model,
                state,
                logits,
            } => *logits = Some(model.step(next, state)?),
            Self::Remote { rows, .. } => {
                for (row, &t) in rows.iter_mut().zip(next) {
                    row.ids.push(t);
                    row.topk = None;
                }
            }
        }
        Ok(())
    }

    /// In process: the `(n, vocab)` base logits of rows `offset..offset+n`.
    pub fn local_logits(&self, offset: usize, n: usize) -> Result<Option<Tensor>, DecodeError> {
        match self {
            Self::Local { logits, .. } => {
                let logits = logits.as_ref().ok_or_else(|| DecodeError::Config {
                    field: "engine",
                    problem: "no logits for live rows".into(),
                })?;
                Ok(Some(logits.narrow(0, offset, n)?))
            }
            Self::Remote { .. } => Ok(None),
        }
    }

    /// Remote: the top-k fetched for `row` this step.
    pub fn topk(&self, row: usize) -> Option<&[(u32, f32)]> {
        match self {
            Self::Remote { rows, .. } => rows.get(row)?.topk.as_deref(),
            Self::Local { .. } => None,
        }
    }

    /// Remote: the next presampled token of `row`, and whether the base
    /// ended its chunk with it.
    pub fn take_queued(&mut self, row: usize) -> Option<(u32, bool)> {
        let Self::Remote { rows, .. } = self else {
            return None;
        };
        let row = rows.get_mut(row)?;
        let t = row.queued.pop_front()?;
        Some((t, row.queued.is_empty() && row.ends))
    }

    /// Remote: fetches what each plan's rows need for the next step, all
    /// calls at once; returns, per plan, the error that fails its request.
    pub fn prepare(&mut self, plans: &[Plan]) -> Vec<Option<DecodeError>> {
        let mut failed: Vec<Option<DecodeError>> = plans.iter().map(|_| None).collect();
        let Self::Remote { engine, k, rows } = self else {
            return failed;
        };
        // Top-k calls: one per unfinished row of a token-level request.
        let mut topk_rows = Vec::new();
        // Chunk calls: one per group of identical unfinished rows.
        let mut jobs: Vec<(usize, Vec<usize>, ChunkJob)> = Vec::new();
        for (p, plan) in plans.iter().enumerate() {
            let live = (0..plan.rows).filter(|&r| !plan.finished[r]);
            match plan.need {
                Need::TopK => topk_rows.extend(live.map(|r| (p, plan.offset + r))),
                Need::Chunk {
                    max_tokens,
                    temperature,
                    top_p,
                    seed,
                } => {
                    let mut groups: Vec<Vec<usize>> = Vec::new();
                    for r in live.map(|r| plan.offset + r) {
                        if !rows[r].queued.is_empty() {
                            continue;
                        }
                        match groups.iter_mut().find(|g| rows[g[0]].ids == rows[r].ids) {
                            Some(g) => g.push(r),
                            None => groups.push(vec![r]),
                        }
                    }
                    for (g, group) in groups.into_iter().enumerate() {
                        let job = ChunkJob {
                            prefix: rows[group[0]].ids.clone(),
                            n: group.len(),
                            max_tokens,
                            temperature,
                            top_p,
                            seed: chunk_seed(seed, g),
                        };
                        jobs.push((p, group, job));
                    }
                }
            }
        }
        let (topk, chunks) = std::thread::scope(|s| {
            let prefixes: Vec<&[u32]> = topk_rows.iter().map(|&(_, r)| &rows[r].ids[..]).collect();
            let specs: Vec<ChunkJob> = jobs.iter().map(|j| j.2.clone()).collect();
            let engine = &**engine;
            let chunks = s.spawn(move || engine.sample(&specs));
            let topk = engine.topk(&prefixes, *k);
            (topk, chunks.join())
        });
        let chunks = chunks.unwrap_or_else(|_| {
            jobs.iter()
                .map(|_| Err(remote_panic(engine.name())))
                .collect()
        });
        for ((p, r), reply) in topk_rows.into_iter().zip(topk) {
            match reply {
                Ok(reply) => rows[r].topk = Some(reply.tokens),
                Err(e) => failed[p] = Some(e),
            }
        }
        for ((p, group, _), reply) in jobs.into_iter().zip(chunks) {
            match reply.and_then(|c| check_chunks(engine.name(), c, group.len())) {
                Ok(chunks) => {
                    for (r, chunk) in group.into_iter().zip(chunks) {
                        rows[r].queued = chunk.tokens.into();
                        rows[r].ends = chunk.eos;
                    }
                }
                Err(e) => failed[p] = Some(e),
            }
        }
        failed
    }
}

/// The seed of a request's `g`-th chunk call at one step: distinct calls get
/// unrelated 32-bit seeds (the engine gives continuation `i` `seed + i`).
fn chunk_seed(seed: u64, g: usize) -> u32 {
    (crate::sampling::row_seed(seed, g) >> 32) as u32
}

fn check_chunks(
    engine: &str,
    chunks: Vec<SampledChunk>,
    n: usize,
) -> Result<Vec<SampledChunk>, DecodeError> {
    if chunks.len() != n || chunks.iter().any(|c| c.tokens.is_empty()) {
        return Err(DecodeError::Remote {
            engine: engine.to_string(),
            problem: format!(
                "asked for {n} continuations, got {} (some may be empty)",
                chunks.len()
            ),
        });
    }
    Ok(chunks)
}

fn remote_panic(engine: &str) -> DecodeError {
    DecodeError::Remote {
        engine: engine.to_string(),
        problem: "the thread calling the engine panicked".into(),
    }
}
