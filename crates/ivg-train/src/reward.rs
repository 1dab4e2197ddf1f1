//! The reward model and the explicit value function (method.md, "Training the guides").
//!
//! - [`Reward`]: Bradley-Terry, `-log sigmoid(r(x, y_w) - r(x, y_l))`, with `r`
//!   the scalar head at the last token.
//! - [`QValueFit`] / [`ScalarValueFit`]: every response prefix regressed to the
//!   final reward, `mean_t (V(x, y<=t) - r(x, y))^2`, or (FUDGE) the binary
//!   cross-entropy of `sigmoid(V)` against `sigmoid(r)`. The Q form reads
//!   `V = Q(s_t, y_t)` (the LM-head output before token `t` at that token), the
//!   scalar form `V = head(h_t)` at token `t`.

use candle_core::Tensor;
use ivg_models::{CausalLm, ScalarLm};

use crate::objective::{
    check_examples, forward_all, gather_predictions, sequences, softplus, Example, Objective,
};
use crate::TrainError;

/// Chosen and rejected responses to the same prompts.
#[derive(Debug, Clone)]
pub struct PairBatch {
    pub chosen: Vec<Example>,
    pub rejected: Vec<Example>,
}

/// `r(x, y)` of every example: the scalar head at its last token, `(batch,)`.
pub fn sequence_rewards(model: &ScalarLm, batch: &[Example]) -> Result<Tensor, TrainError> {
    check_examples(batch)?;
    let mut state = model.new_state();
    let scores = model.prefill(&sequences(batch), &mut state)?;
    let t = scores.dim(1)?;
    Ok(scores.narrow(1, t - 1, 1)?.squeeze(1)?)
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Reward;

impl Objective for Reward {
    type Model = ScalarLm;
    type Batch = PairBatch;

    fn name(&self) -> &'static str {
        "reward"
    }

    fn loss(&self, model: &ScalarLm, batch: &PairBatch) -> Result<Tensor, TrainError> {
        check_pairs(batch.chosen.len(), batch.rejected.len())?;
        bradley_terry(
            &sequence_rewards(model, &batch.chosen)?,
            &sequence_rewards(model, &batch.rejected)?,
        )
    }
}

/// `mean -log sigmoid(r_w - r_l)` of rewards `(pairs,)` of chosen and rejected.
pub(crate) fn bradley_terry(chosen: &Tensor, rejected: &Tensor) -> Result<Tensor, TrainError> {
    Ok(softplus(&(chosen - rejected)?.neg()?)?.mean_all()?)
}

/// As many chosen as rejected responses.
pub(crate) fn check_pairs(chosen: usize, rejected: usize) -> Result<(), TrainError> {
    if chosen != rejected {
        return Err(TrainError::Batch(format!(
            "{chosen} chosen and {rejected} rejected"
        )));
    }
    Ok(())
}

/// Responses with their final rewards `r(x, y)`.
#[derive(Debug, Clone)]
pub struct ValueBatch {
    pub examples: Vec<Example>,
    pub rewards: Vec<f64>,
}

/// How prefix values are fitted to the final reward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValueLoss {
    /// `(V - r)^2` (CD-FUDGE regression).
    #[default]
    Regression,
    /// `BCE(sigmoid(V), sigmoid(r)) = softplus(V) - sigmoid(r) V` (FUDGE).
    Fudge,
}

/// Mean over masked positions of the chosen loss; `values, mask: (batch, n)`.
fn fit(
    values: &Tensor,
    mask: &Tensor,
    rewards: &[f64],
    loss: ValueLoss,
) -> Result<Tensor, TrainError> {
    let (b, _) = values.dims2()?;
    if rewards.len() != b || rewards.iter().any(|r| !r.is_finite()) {
        return Err(TrainError::Batch(format!(
            "{} finite rewards needed for {b} examples",
            b
        )));
    }
    let target: Vec<f32> = rewards
        .iter()
        .map(|&r| match loss {
            ValueLoss::Regression => r as f32,
            ValueLoss::Fudge => (1.0 / (1.0 + (-r).exp())) as f32,
        })
        .collect();
    let target = Tensor::from_vec(target, (b, 1), values.device())?;
    let per_position = match loss {
        ValueLoss::Regression => values.broadcast_sub(&target)?.sqr()?,
        ValueLoss::Fudge => (softplus(values)? - values.broadcast_mul(&target)?)?,
    };
    let count = mask.sum_all()?.to_scalar::<f32>()? as f64;
    Ok(((per_position * mask)?.sum_all()? / count)?)
}

/// Fits a vocabulary-sized Q head (the `lm_head` of a causal LM).
#[derive(Debug, Clone, Copy, Default)]
pub struct QValueFit {
    pub loss: ValueLoss,
}

impl Objective for QValueFit {
    type Model = CausalLm;
    type Batch = ValueBatch;

    fn name(&self) -> &'static str {
        "value-q"
    }

    fn loss(&self, model: &CausalLm, batch: &ValueBatch) -> Result<Tensor, TrainError> {
        let logits = forward_all(model, &batch.examples)?;
        let (q, mask) = gather_predictions(&logits, &batch.examples)?;
        fit(&q, &mask, &batch.rewards, self.loss)
    }
}

/// Fits a scalar value head read at every response token.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScalarValueFit {
    pub loss: ValueLoss,
}

impl Objective for ScalarValueFit {
    type Model = ScalarLm;
    type Batch = ValueBatch;

    fn name(&self) -> &'static str {
        "value-scalar"
    }

    fn loss(&self, model: &ScalarLm, batch: &ValueBatch) -> Result<Tensor, TrainError> {
        check_examples(&batch.examples)?;
        let mut state = model.new_state();
        let scores = model.prefill(&sequences(&batch.examples), &mut state)?;
        let (b, t) = scores.dims2()?;
        let mut mask = vec![0f32; b * t];
        for (r, e) in batch.examples.iter().enumerate() {
            let start = t - e.response.len();
            mask[r * t + start..(r + 1) * t]
                .iter_mut()
                .for_each(|m| *m = 1.0);
        }
        let mask = Tensor::from_vec(mask, (b, t), scores.device())?;
        fit(&scores, &mask, &batch.rewards, self.loss)
    }
}

/// The value of every response prefix, per example: `V(x, y<=k)` for
/// `k = 1..=|y|`, from a Q head (`Q(s_{k-1}, y_k)`) or a scalar head (at token
/// `k`). Evaluation only; the result leaves the autograd graph.
pub fn prefix_values(
    model: &ValueModel<'_>,
    batch: &[Example],
) -> Result<Vec<Vec<f64>>, TrainError> {
    check_examples(batch)?;
    let (values, offset) = match model {
        ValueModel::Q(m) => {
            let logits = forward_all(m, batch)?;
            (gather_predictions(&logits, batch)?.0, 1)
        }
        ValueModel::Scalar(m) => {
            let mut state = m.new_state();
            (m.prefill(&sequences(batch), &mut state)?, 0)
        }
    };
    let rows = values
        .detach()
        .to_dtype(candle_core::DType::F64)?
        .to_vec2::<f64>()?;
    let width = rows.first().map_or(0, Vec::len) + offset;
    Ok(batch
        .iter()
        .zip(rows)
        .map(|(e, row)| {
            let first = width - e.response.len() - offset;
            row[first..first + e.response.len()].to_vec()
        })
        .collect())
}

/// The two forms of explicit value model.
pub enum ValueModel<'a> {
    Q(&'a CausalLm),
    Scalar(&'a ScalarLm),
}
