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

/// `(batch, labels)` logits of right-padded `ids` (padding id `pad`).
pub fn classifier_logits(
    model: &BertWithHead,
    ids: &[Vec<u32>],
    pad: u32,
) -> Result<Tensor, TrainError> {
    let head = model
        .classifier
        .as_ref()
        .ok_or_else(|| TrainError::Batch("the model has no classification head".into()))?;
    let n = ids.iter().map(Vec::len).max().unwrap_or(0);
    if n == 0 {
        return Err(TrainError::Batch("empty classifier batch".into()));
    }
    let mut flat = Vec::with_capacity(ids.len() * n);
    let mut mask = Vec::with_capacity(ids.len() * n);
    for row in ids {
        flat.extend(
            row.iter()
                .copied()
                .chain(std::iter::repeat_n(pad, n - row.len())),
        );
        mask.extend((0..n).map(|k| u32::from(k < row.len())));
    }
    let device = candle_core::Device::Cpu;
    let ids_t = Tensor::from_vec(flat, (ids.len(), n), &device)?;
    let mask_t = Tensor::from_vec(mask, (ids.len(), n), &device)?;
    Ok(head.forward(&model.encoder.forward(&ids_t, &mask_t)?)?)
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
        let pad = model.encoder.config().pad_token_id;
        let logits = classifier_logits(model, &batch.ids, pad)?;
        let target = Tensor::from_vec(batch.labels.clone(), batch.labels.len(), logits.device())?;
        Ok(candle_nn::loss::cross_entropy(&logits, &target)?)
    }
}
