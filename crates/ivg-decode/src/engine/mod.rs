//! One engine for every method of the matrix (method.md): a token-level
//! policy (base, EFT guided by the implicit or the explicit value) and chunk-level
//! beam search over `W*K` rows per prompt, with best-of-N as `W = 1, K = N,
//! L = infinity`. No method has its own code path.
//!
//! The engine is step-wise ([`Engine`]: `admit`, `step`, `cancel`): each request
//! carries its own [`GuidanceConfig`], requests join and leave between steps, and
//! the rows of all live requests decode together, one forward per model per
//! step. [`guided_generate`] and [`crate::generate`] are thin wrappers that admit
//! a fixed batch and step until it is done.
//!
//! Efficiency by design: the base model and each value function prefill every
//! prompt once and fork their states to `W*K` rows; at a boundary, survivors'
//! states are reordered, not recomputed, and chunk-only scorers score just the
//! new tokens.
//!
//! Randomness: see `search`; a request's output depends only on its own seed.

mod base;
mod core;
mod search;
mod slots;

pub use self::base::{BaseModel, ChunkJob, RemoteBase, SampledChunk, TopKCoverage, TopKReply};
pub use self::core::{value_feeds, Engine, Event, GuideSetId, Request};
pub use self::slots::RequestId;

use candle_core::Tensor;
use ivg_tokenize::Tokenizer;
use ivg_value::ValueFunction;

use crate::generate::{DecodeError, FinishReason};
use crate::guidance::{ChunkRanking, GuidanceConfig};
use crate::sampling::row_seed;

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
    pub base: BaseModel<'a>,
    pub base_tokenizer: Option<&'a Tokenizer>,
    pub implicit: Option<&'a mut dyn ValueFunction>,
    pub explicit: Option<&'a mut dyn ValueFunction>,
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
    let run = Batch {
        texts,
        base_prompts,
        prompt_seeds,
        config,
        stop_ids,
    };
    guided_generate_events(guides, &run, &mut |event| {
        if let Event::Chunk { trace, .. } = event {
            on_chunk(trace)
        }
    })
}

/// A fixed batch of prompts for [`guided_generate_events`].
pub struct Batch<'r> {
    /// The prompts as given to the value functions.
    pub texts: &'r [String],
    /// The base model's prompt ids.
    pub base_prompts: &'r [Vec<u32>],
    /// The seed of each prompt.
    pub prompt_seeds: &'r [u64],
    pub config: &'r GuidanceConfig,
    pub stop_ids: &'r [u32],
}

/// Runs a fixed batch and shows `on_event` every event (chunk traces, a
/// remote base's top-k coverage); request ids are the prompt indices. The
/// first failed request fails the run.
pub fn guided_generate_events(
    guides: &mut Guides<'_>,
    run: &Batch<'_>,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Vec<GuidedOutput>, DecodeError> {
    check_lengths(run.texts, run.base_prompts, run.prompt_seeds)?;
    let mut engine = Engine::with_base(
        guides.base.clone(),
        guides.base_tokenizer,
        run.stop_ids.to_vec(),
    )
    .with_traces();
    let set = lend(&mut engine, guides);
    for (p, (text, ids)) in run.texts.iter().zip(run.base_prompts).enumerate() {
        let mut request = Request::new(text.clone(), ids.clone(), run.config.clone(), p, Some(set));
        request.seed = run.prompt_seeds[p];
        engine.admit(request)?;
    }
    let mut outputs: Vec<Option<GuidedOutput>> = vec![None; run.texts.len()];
    while !engine.is_idle() {
        for event in engine.step()? {
            on_event(&event);
            match event {
                // Ids are given in admission order from 0: the prompt index.
                Event::Finished { id, output } => outputs[id as usize] = Some(output),
                Event::Failed { id, error } => {
                    return Err(DecodeError::Remote {
                        engine: engine.base_name().to_string(),
                        problem: format!("prompt {id}: {error}"),
                    })
                }
                Event::Tokens { .. } | Event::TopK { .. } | Event::Chunk { .. } => {}
            }
        }
    }
    outputs
        .into_iter()
        .map(|o| {
            o.ok_or_else(|| DecodeError::Config {
                field: "engine",
                problem: "a request ended without an output".into(),
            })
        })
        .collect()
}

/// Lends the caller's value functions to `engine` (shortening their trait
/// object lifetime to the borrow's, which `Option` does not do by itself).
fn lend<'e>(engine: &mut Engine<'e>, guides: &'e mut Guides<'_>) -> GuideSetId {
    let implicit = guides
        .implicit
        .as_deref_mut()
        .map(|v| v as &mut dyn ValueFunction);
    let explicit = guides
        .explicit
        .as_deref_mut()
        .map(|v| v as &mut dyn ValueFunction);
    engine.lend_guides(implicit, explicit)
}

fn check_lengths(
    texts: &[String],
    base_prompts: &[Vec<u32>],
    seeds: &[u64],
) -> Result<(), DecodeError> {
    if texts.len() != base_prompts.len() || texts.len() != seeds.len() {
        let problem = format!(
            "{} texts, {} base prompts, {} seeds",
            texts.len(),
            base_prompts.len(),
            seeds.len()
        );
        return Err(DecodeError::Config {
            field: "prompts",
            problem,
        });
    }
    Ok(())
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
    check_lengths(texts, base_prompts, &vec![0; texts.len()])?;
    let mut engine = Engine::with_base(guides.base.clone(), guides.base_tokenizer, Vec::new());
    let set = lend(&mut engine, guides);
    for (p, (text, ids)) in texts.iter().zip(base_prompts).enumerate() {
        engine.admit(Request::new(
            text.clone(),
            ids.clone(),
            one.clone(),
            p,
            Some(set),
        ))?;
    }
    engine.policy_logits()
}
