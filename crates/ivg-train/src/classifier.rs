//! The classifier objective (the gold reward of the experiments): cross-entropy
//! of a BERT encoder with a `BertForSequenceClassification` head, over
//! right-padded batches with an attention mask.

use candle_core::Tensor;
use ivg_models::loader::BertWithHead;

use crate::objective::Objective;
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
