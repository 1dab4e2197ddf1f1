//! The classifier objective (the gold reward of the experiments): cross-entropy
//! of a BERT encoder with a `BertForSequenceClassification` head, over
//! right-padded batches with an attention mask. Also the encoder form of the
//! reward model: Bradley-Terry on a one-label sequence classifier (the form of
//! the DeBERTa reward models of OpenAssistant), for reward models that read
//! text with a pretrained encoder rather than a causal guide.

use candle_core::Tensor;
use ivg_models::loader::BertWithHead;

use crate::objective::Objective;
use crate::reward::{bradley_terry, check_pairs};
use crate::TrainError;

/// Token ids (special tokens included) and class labels.
#[derive(Debug, Clone)]
pub struct ClassifierBatch {
    pub ids: Vec<Vec<u32>>,
    pub labels: Vec<u32>,
}

/// `(batch, labels)` logits of `ids` (right-padded with the config's pad id).
pub fn classifier_logits(model: &BertWithHead, ids: &[Vec<u32>]) -> Result<Tensor, TrainError> {
    Ok(model.classify(ids)?)
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Classifier;

impl Objective for Classifier {
    type Model = BertWithHead;
    type Batch = ClassifierBatch;

    fn name(&self) -> &'static str {
        "classifier"
    }

    fn loss(&self, model: &BertWithHead, batch: &ClassifierBatch) -> Result<Tensor, TrainError> {
        let labels = model.encoder.config().num_labels as u32;
        if batch.ids.len() != batch.labels.len() {
            return Err(TrainError::Batch(format!(
                "{} texts and {} labels",
                batch.ids.len(),
                batch.labels.len()
            )));
        }
        if let Some(&bad) = batch.labels.iter().find(|&&l| l >= labels) {
            return Err(TrainError::Batch(format!(
                "label {bad} out of range ({labels} labels)"
            )));
        }
        let logits = classifier_logits(model, &batch.ids)?;
        let target = Tensor::from_vec(batch.labels.clone(), batch.labels.len(), logits.device())?;
        Ok(candle_nn::loss::cross_entropy(&logits, &target)?)
    }
}

/// Chosen and rejected texts (token ids, special tokens included), row `i` of
/// each answering the same prompt.
#[derive(Debug, Clone)]
pub struct TextPairBatch {
    pub chosen: Vec<Vec<u32>>,
    pub rejected: Vec<Vec<u32>>,
}

/// `r(x, y)` of each text: the logit of a one-label classifier, `(batch,)`.
pub fn classifier_rewards(model: &BertWithHead, ids: &[Vec<u32>]) -> Result<Tensor, TrainError> {
    let logits = classifier_logits(model, ids)?;
    let labels = logits.dim(1)?;
    if labels != 1 {
        return Err(TrainError::Config(format!(
            "a classifier reward model has one label, this one has {labels}"
        )));
    }
    Ok(logits.squeeze(1)?)
}

/// `-log sigmoid(r(x, y_w) - r(x, y_l))` with `r` a one-label classifier.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClassifierReward;

impl Objective for ClassifierReward {
    type Model = BertWithHead;
    type Batch = TextPairBatch;

    fn name(&self) -> &'static str {
        "reward"
    }

    fn loss(&self, model: &BertWithHead, batch: &TextPairBatch) -> Result<Tensor, TrainError> {
        check_pairs(batch.chosen.len(), batch.rejected.len())?;
        bradley_terry(
            &classifier_rewards(model, &batch.chosen)?,
            &classifier_rewards(model, &batch.rejected)?,
        )
    }
}
