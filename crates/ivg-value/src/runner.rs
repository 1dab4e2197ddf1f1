//! One guide model with its own decode state and its own prompt, kept row-aligned
//! with the engine's rows. It holds the logits that predict each row's next token
//! (`pending`), so a token can be scored when it is emitted without a second
//! forward, and a chunk of `n` tokens costs one forward over `n` new positions.

use std::sync::Arc;

use candle_core::Tensor;
use ivg_models::{CausalLm, DecodeState, LogitsSpan};

use crate::ValueError;

pub struct GuideRunner {
    model: Arc<CausalLm>,
    state: DecodeState,
    /// `(rows, vocab)`: logits predicting each row's next token.
    pending: Option<Tensor>,
}

impl GuideRunner {
    pub fn new(model: Arc<CausalLm>) -> Self {
        let state = model.new_state();
        Self {
            model,
            state,
            pending: None,
        }
    }

    pub fn model(&self) -> &CausalLm {
        &self.model
    }

    pub fn rows(&self) -> usize {
        self.state.rows()
    }

    /// Encodes one prompt per row (left-padded batch) into a fresh state.
    pub fn prefill(&mut self, prompts: &[Vec<u32>]) -> Result<(), ValueError> {
        self.state = self.model.new_state();
        self.pending = Some(
            self.model
                .prefill(prompts, &mut self.state, LogitsSpan::Last)?,
        );
        Ok(())
    }

    /// Adds one row per prompt after the existing rows (a request joining a
    /// batch mid-generation): the prompts are prefilled as their own batch and
    /// their state appended ([`DecodeState::append_rows`]), so the existing
    /// rows are not recomputed. Without rows it is [`GuideRunner::prefill`].
    pub fn append(&mut self, prompts: &[Vec<u32>]) -> Result<(), ValueError> {
        if prompts.is_empty() {
            return Ok(());
        }
        if self.rows() == 0 || self.pending.is_none() {
            return self.prefill(prompts);
        }
        let mut joining = self.model.new_state();
        let logits = self
            .model
            .prefill(prompts, &mut joining, LogitsSpan::Last)?;
        // (rows + new, vocab); built before the state changes, so a failure
        // leaves the runner as it was.
        let pending = Tensor::cat(&[self.pending()?, &logits], 0)?;
        self.state.append_rows(joining)?;
        self.pending = Some(pending);
        Ok(())
    }

    /// `(rows, vocab)` logits for each row's next token.
    pub fn pending(&self) -> Result<&Tensor, ValueError> {
        self.pending
            .as_ref()
            .ok_or_else(|| ValueError::NotStarted(self.model.name().to_string()))
    }

    /// Appends one token per row.
    pub fn step(&mut self, tokens: &[u32]) -> Result<(), ValueError> {
        self.pending = Some(self.model.step(tokens, &mut self.state)?);
        Ok(())
    }

    /// Appends `chunks` (one equal-length run per row) and returns the logits that
    /// predicted each appended token; `pending` moves past them.
    pub fn extend(&mut self, chunks: &[Vec<u32>]) -> Result<ChunkLogits, ValueError> {
        let n = chunks.first().map_or(0, Vec::len);
        let rows = chunks.len();
        let before = self.pending()?.clone();
        let flat: Vec<u32> = chunks.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat, (rows, n), self.model.device())?;
        let after = self.model.forward(&ids, &mut self.state, LogitsSpan::All)?;
        self.pending = Some(after.narrow(1, n - 1, 1)?.squeeze(1)?.contiguous()?);
        Ok(ChunkLogits { before, after })
    }

    /// Row `i` becomes former row `order[i]` (state and pending logits). Slots
    /// that every remaining row holds as padding are dropped, so rows that
    /// joined late do not keep paying for long rows that left. An empty
    /// `order` leaves no rows; [`GuideRunner::append`] starts afresh then.
    pub fn reorder(&mut self, order: &[usize]) -> Result<(), ValueError> {
        self.state.reorder(order)?;
        self.state.trim_padding()?;
        if order.is_empty() {
            self.pending = None;
        } else if let Some(p) = &self.pending {
            let idx = Tensor::from_vec(
                order.iter().map(|&r| r as u32).collect::<Vec<_>>(),
                order.len(),
                p.device(),
            )?;
            self.pending = Some(p.contiguous()?.index_select(&idx, 0)?);
        }
        Ok(())
    }
}

/// The logits that predicted the `n` tokens of a chunk: position 0 by the
/// logits pending before it, position `k > 0` by the chunk's own position
/// `k - 1`. Kept as the two tensors the forward produced (no concatenated copy
/// of `(rows, n, vocab)` floats).
pub struct ChunkLogits {
    /// `(rows, vocab)`.
    before: Tensor,
    /// `(rows, n, vocab)`.
    after: Tensor,
}

impl ChunkLogits {
    /// `(vocab,)` logits that predicted token `k` of row `r`.
    pub fn at(&self, r: usize, k: usize) -> Result<Tensor, ValueError> {
        if k == 0 {
            Ok(self.before.get(r)?)
        } else {
            Ok(self.after.get(r)?.get(k - 1)?)
        }
    }

    /// `log_softmax(logits)[token]` of every position of every row:
    /// `chunks[r][k]` -> `out[r][k]`.
    pub fn log_probs(&self, chunks: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ValueError> {
        chunks
            .iter()
            .enumerate()
            .map(|(r, chunk)| {
                let before = self.before.get(r)?.to_vec1::<f32>()?;
                let after = self.after.get(r)?.to_vec2::<f32>()?;
                chunk
                    .iter()
                    .enumerate()
                    .map(|(k, &t)| {
                        let row = if k == 0 { &before } else { &after[k - 1] };
                        log_prob(row, t)
                    })
                    .collect()
            })
            .collect()
    }
}

fn log_prob(row: &[f32], token: u32) -> Result<f32, ValueError> {
    let l = row
        .get(token as usize)
        .copied()
        .ok_or_else(|| ValueError::Invalid {
            name: "log-probabilities".into(),
            problem: format!("token {token} outside a vocabulary of {}", row.len()),
        })?;
    Ok(l - ivg_models::numerics::log_sum_exp(row))
}

/// `log_softmax(logits)[token]` per row: `logits (rows, vocab)` -> `rows` values.
/// Computed on the host as `l[token] - logsumexp(l)` in one pass per row with a
/// vectorised exponential: full-vocabulary log-softmax tensors were the largest
/// cost of implicit values outside the model forwards.
pub fn token_log_probs(logits: &Tensor, tokens: &[u32]) -> Result<Vec<f32>, ValueError> {
    let rows = logits.to_vec2::<f32>()?;
    if rows.len() != tokens.len() {
        return Err(ValueError::Invalid {
            name: "log-probabilities".into(),
            problem: format!("{} logit rows for {} tokens", rows.len(), tokens.len()),
        });
    }
    rows.iter()
        .zip(tokens)
        .map(|(row, &t)| log_prob(row, t))
        .collect()
}

/// `values[r, tokens[r]]` per row of `values (rows, vocab)`.
pub fn gather(values: &Tensor, tokens: &[u32]) -> Result<Vec<f32>, ValueError> {
    let idx = Tensor::from_vec(tokens.to_vec(), (tokens.len(), 1), values.device())?;
    Ok(values.gather(&idx, 1)?.squeeze(1)?.to_vec1::<f32>()?)
}
