//! Batched base generation: prompts of different lengths prefilled once as a
//! left-padded batch, then one forward per step for the rows still running.
//! Finished rows are dropped from the batch (their state rows reordered away),
//! so cost follows the live rows. Each row samples with its own seeded RNG
//! ([`crate::row_seed`]), so a row's output does not depend on its batch-mates.
//! This is the `Base` policy of method.md, run by the step-wise engine; the
//! decoding error type lives here.

use ivg_models::{CausalLm, ModelError};

use crate::engine::{Engine, Event, Request};
use crate::guidance::{ChunkRanking, GuidanceConfig, TokenPolicy};
use crate::sampling::{SamplingConfig, SamplingError};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Sampling(#[from] SamplingError),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Value(#[from] ivg_value::ValueError),
    /// Token-wise guidance with a guide whose vocabulary differs from the base's.
    #[error("token-wise guidance needs one vocabulary: {0}")]
    VocabMismatch(#[from] ivg_tokenize::VocabMismatch),
    #[error("vocabularies differ: {0}")]
    Vocabulary(String),
    /// A call to a remote base failed (the problem names the call and URL).
    #[error("remote base `{engine}`: {problem}")]
    Remote { engine: String, problem: String },
    #[error("invalid generation setting `{field}`: {problem}")]
    Config {
        field: &'static str,
        problem: String,
    },
}

/// Typed generation settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GenerateConfig {
    pub max_new_tokens: usize,
    pub sampling: SamplingConfig,
    pub seed: u64,
    /// Token ids that end a row (emitted, then the row stops).
    pub stop_ids: Vec<u32>,
}

impl GenerateConfig {
    pub fn validate(&self) -> Result<(), DecodeError> {
        if self.max_new_tokens == 0 {
            return Err(DecodeError::Config {
                field: "max_new_tokens",
                problem: "must be at least 1".into(),
            });
        }
        Ok(self.sampling.validate()?)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum FinishReason {
    /// A stop id was emitted (it is the last token).
    Stop,
    /// `max_new_tokens` reached.
    Length,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub finish: FinishReason,
}

/// Generates for every prompt; `on_token(row, token)` is called as tokens are
/// chosen (for streaming). Rows are the prompts' indices. This is the Base
/// configuration of the step-wise [`Engine`]: a row's tokens do not depend on
/// the other prompts of the batch.
pub fn generate(
    model: &CausalLm,
    prompts: &[Vec<u32>],
    config: &GenerateConfig,
    on_token: &mut dyn FnMut(usize, u32),
) -> Result<Vec<Generation>, DecodeError> {
    config.validate()?;
    let guidance = GuidanceConfig {
        token: TokenPolicy::Base,
        chunk: ChunkRanking::None,
        width: 1,
        successors: 1,
        chunk_len: None,
        max_new_tokens: config.max_new_tokens,
        sampling: config.sampling.clone(),
        seed: config.seed,
        stop_strings: Vec::new(),
    };
    let mut engine = Engine::new(model, None, config.stop_ids.clone());
    for (p, ids) in prompts.iter().enumerate() {
        engine.admit(Request::new(
            String::new(),
            ids.clone(),
            guidance.clone(),
            p,
            None,
        ))?;
    }
    let mut out: Vec<Generation> = prompts
        .iter()
        .map(|_| Generation {
            tokens: Vec::new(),
            finish: FinishReason::Length,
        })
        .collect();
    while !engine.is_idle() {
        for event in engine.step()? {
            // Ids are given in admission order from 0: the prompt index.
            match event {
                Event::Tokens { id, tokens } => {
                    tokens.iter().for_each(|&t| on_token(id as usize, t))
                }
                Event::Finished { id, output } => {
                    out[id as usize] = Generation {
                        tokens: output.tokens,
                        finish: output.finish,
                    }
                }
                Event::Failed { error, .. } => {
                    return Err(DecodeError::Remote {
                        engine: model.name().to_string(),
                        problem: error,
                    })
                }
                Event::Chunk { .. } | Event::TopK { .. } => {}
            }
        }
    }
    Ok(out)
}
