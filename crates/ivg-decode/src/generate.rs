//! Batched base generation: prompts of different lengths prefilled once as a
//! left-padded batch, then one forward per step for the rows still running.
//! Finished rows are dropped from the batch (their state rows reordered away),
//! so cost follows the live rows. Each row samples with its own seeded RNG
//! ([`row_seed`]), so a row's output does not depend on its batch-mates.
//! This is the `Base` policy of method.md; guided policies build on it.

use ivg_models::{CausalLm, LogitsSpan, ModelError};

use crate::sampling::{row_seed, Sampler, SamplingConfig, SamplingError};

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
/// chosen (for streaming). Rows are the prompts' indices.
pub fn generate(
    model: &CausalLm,
    prompts: &[Vec<u32>],
    config: &GenerateConfig,
    on_token: &mut dyn FnMut(usize, u32),
) -> Result<Vec<Generation>, DecodeError> {
    config.validate()?;
    let mut samplers = (0..prompts.len())
        .map(|r| Sampler::new(config.sampling.clone(), row_seed(config.seed, r)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out: Vec<Generation> = prompts
        .iter()
        .map(|_| Generation {
            tokens: Vec::new(),
            finish: FinishReason::Length,
        })
        .collect();
    let mut state = model.new_state();
    let mut logits = model.prefill(prompts, &mut state, LogitsSpan::Last)?;
    // `live[i]` is the prompt index of batch row `i`.
    let mut live: Vec<usize> = (0..prompts.len()).collect();
    for step in 0..config.max_new_tokens {
        let rows = logits.to_vec2::<f32>()?;
        let mut keep = Vec::with_capacity(live.len());
        let mut next = Vec::with_capacity(live.len());
        for (i, &p) in live.iter().enumerate() {
            let token = samplers[p].sample(&rows[i])?;
            out[p].tokens.push(token);
            on_token(p, token);
            if config.stop_ids.contains(&token) {
                out[p].finish = FinishReason::Stop;
            } else {
                keep.push(i);
                next.push(token);
            }
        }
        if keep.is_empty() || step + 1 == config.max_new_tokens {
            break;
        }
        if keep.len() < live.len() {
            state.reorder(&keep)?;
            live = keep.iter().map(|&i| live[i]).collect();
        }
        logits = model.step(&next, &mut state)?;
    }
    Ok(out)
}
