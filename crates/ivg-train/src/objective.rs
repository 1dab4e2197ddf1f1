//! Training objectives over a causal LM (method.md, "Training the guides").
//! An [`Objective`] turns a batch into a scalar loss built from differentiable
//! ops only, so `loss.backward()` reaches every parameter of a model built
//! from a `VarMap` (ivg-models switches its layers to composed ops there).
//!
//! - [`Sft`]: next-token NLL on response tokens only, averaged over them.
//! - [`Dpo`]: `-log sigmoid(b * [(log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))])`,
//!   sequence log-probabilities summed over response tokens, the reference's
//!   computed once ahead of training.

use candle_core::{DType, Tensor, D};
use ivg_models::{CausalLm, LogitsSpan};

use crate::TrainError;

/// One tokenized example: the prompt ids, then the response ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub prompt: Vec<u32>,
    pub response: Vec<u32>,
}

/// A loss over batches of one kind, for one kind of model.
pub trait Objective {
    type Model;
    type Batch;
    fn name(&self) -> &'static str;
    /// Scalar loss; differentiable with respect to the model's variables.
    fn loss(&self, model: &Self::Model, batch: &Self::Batch) -> Result<Tensor, TrainError>;
}

/// Per example, the summed log-probability of its response tokens and their count.
/// Returns `(batch,)` sums (differentiable) and the token counts.
pub fn response_log_probs(
    model: &CausalLm,
    batch: &[Example],
) -> Result<(Tensor, Vec<usize>), TrainError> {
    let logits = forward_all(model, batch)?;
    let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let (picked, mask) = gather_predictions(&lp, batch)?;
    let sums = (picked * mask)?.sum(1)?;
    Ok((sums, batch.iter().map(|e| e.response.len()).collect()))
}

/// Prompt + response of every example as one left-padded batch:
/// `(batch, seq, vocab)` logits of every position.
pub(crate) fn forward_all(model: &CausalLm, batch: &[Example]) -> Result<Tensor, TrainError> {
    check_examples(batch)?;
    let mut state = model.new_state();
    Ok(model.prefill(&sequences(batch), &mut state, LogitsSpan::All)?)
}

/// Prompt followed by response, per example.
pub(crate) fn sequences(batch: &[Example]) -> Vec<Vec<u32>> {
    batch
        .iter()
        .map(|e| [e.prompt.as_slice(), &e.response].concat())
        .collect()
}

pub(crate) fn check_examples(batch: &[Example]) -> Result<(), TrainError> {
    if batch.is_empty()
        || batch
            .iter()
            .any(|e| e.prompt.is_empty() || e.response.is_empty())
    {
        return Err(TrainError::Batch(
            "every example needs a non-empty prompt and response".into(),
        ));
    }
    Ok(())
}

/// `values[r, j, y]` at the position `j` that predicts each response token `y`
/// (`pad_r + |prompt_r| + k - 1` for token `k`), with the mask of those
/// positions: `values (batch, seq, vocab)` -> two `(batch, seq - 1)` tensors.
pub(crate) fn gather_predictions(
    values: &Tensor,
    batch: &[Example],
) -> Result<(Tensor, Tensor), TrainError> {
    let (b, t, _) = values.dims3()?;
    let mut next = vec![0u32; b * (t - 1)];
    let mut mask = vec![0f32; b * (t - 1)];
    for (r, e) in batch.iter().enumerate() {
        let pad = t - e.prompt.len() - e.response.len();
        for (k, &tok) in e.response.iter().enumerate() {
            let j = pad + e.prompt.len() + k - 1;
            next[r * (t - 1) + j] = tok;
            mask[r * (t - 1) + j] = 1.0;
        }
    }
    let device = values.device();
    let next = Tensor::from_vec(next, (b, t - 1, 1), device)?;
    let mask = Tensor::from_vec(mask, (b, t - 1), device)?;
    let picked = values
        .narrow(1, 0, t - 1)?
        .contiguous()?
        .gather(&next, D::Minus1)?
        .squeeze(D::Minus1)?;
    Ok((picked, mask))
}

/// Supervised fine-tuning: mean NLL of the response tokens.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sft;

impl Objective for Sft {
    type Model = CausalLm;
    type Batch = Vec<Example>;

    fn name(&self) -> &'static str {
        "sft"
    }

    fn loss(&self, model: &CausalLm, batch: &Self::Batch) -> Result<Tensor, TrainError> {
        let (sums, counts) = response_log_probs(model, batch)?;
        let tokens: usize = counts.iter().sum();
        Ok((sums.sum_all()? * (-1.0 / tokens as f64))?)
    }
}

/// A DPO batch: chosen and rejected responses to the same prompts, with the
/// frozen reference's summed log-probabilities of each.
#[derive(Debug, Clone)]
pub struct DpoBatch {
    pub chosen: Vec<Example>,
    pub rejected: Vec<Example>,
    pub ref_chosen: Vec<f64>,
    pub ref_rejected: Vec<f64>,
}

impl DpoBatch {
    /// Computes the reference log-probabilities once (no gradient needed).
    pub fn new(
        reference: &CausalLm,
        chosen: Vec<Example>,
        rejected: Vec<Example>,
    ) -> Result<Self, TrainError> {
        if chosen.len() != rejected.len() || chosen.is_empty() {
            return Err(TrainError::Batch(format!(
                "{} chosen and {} rejected examples",
                chosen.len(),
                rejected.len()
            )));
        }
        let host = |t: Tensor| -> Result<Vec<f64>, TrainError> {
            Ok(t.to_dtype(DType::F64)?.to_vec1::<f64>()?)
        };
        let ref_chosen = host(response_log_probs(reference, &chosen)?.0.detach())?;
        let ref_rejected = host(response_log_probs(reference, &rejected)?.0.detach())?;
        Ok(Self {
            chosen,
            rejected,
            ref_chosen,
            ref_rejected,
        })
    }
}

/// Direct preference optimisation with strength `beta` (0.1 by default).
#[derive(Debug, Clone, Copy)]
pub struct Dpo {
    pub beta: f64,
}

impl Default for Dpo {
    fn default() -> Self {
        Self { beta: 0.1 }
    }
}

impl Objective for Dpo {
    type Model = CausalLm;
    type Batch = DpoBatch;

    fn name(&self) -> &'static str {
        "dpo"
    }

    fn loss(&self, model: &CausalLm, batch: &DpoBatch) -> Result<Tensor, TrainError> {
        if !self.beta.is_finite() || self.beta <= 0.0 {
            return Err(TrainError::Batch(format!(
                "dpo beta must be positive and finite, got {}",
                self.beta
            )));
        }
        let (pi_w, _) = response_log_probs(model, &batch.chosen)?;
        let (pi_l, _) = response_log_probs(model, &batch.rejected)?;
        let device = pi_w.device();
        let refs: Vec<f32> = batch
            .ref_chosen
            .iter()
            .zip(&batch.ref_rejected)
            .map(|(w, l)| (w - l) as f32)
            .collect();
        let ref_margin = Tensor::from_vec(refs, batch.chosen.len(), device)?;
        let z = (((pi_w - pi_l)? - ref_margin)? * self.beta)?;
        Ok(softplus(&z.neg()?)?.mean_all()?)
    }
}

/// `log(1 + e^x)` computed as `max(x, 0) + log(1 + e^{-|x|})`, stable for large `|x|`.
pub(crate) fn softplus(x: &Tensor) -> Result<Tensor, TrainError> {
    Ok((x.relu()? + ((x.abs()?.neg()?.exp()? + 1.0)?.log())?)?)
}
