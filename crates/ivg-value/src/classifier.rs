//! A sequence reward model: a BERT classifier reads the whole text (prompt and
//! response so far, decoded with the base tokenizer and re-tokenized with its
//! own) at every boundary. With two labels the value is the margin
//! `beta_v * (logit[label] - logit[other])` (e.g. positive minus negative
//! sentiment); with more, `beta_v * log_softmax(logits)[label]`.

use std::sync::Arc;

use ivg_models::loader::BertWithHead;
use ivg_tokenize::Tokenizer;

use crate::{check_beta_v, ValueError, ValueFunction};

pub struct ClassifierValue {
    name: String,
    model: Arc<BertWithHead>,
    tokenizer: Arc<Tokenizer>,
    base_tokenizer: Arc<Tokenizer>,
    label: usize,
    beta_v: f64,
    max_len: usize,
    prompts: Vec<String>,
    responses: Vec<Vec<u32>>,
}

impl ClassifierValue {
    /// `max_len` caps the classifier's input (its position table), keeping the
    /// text's start, as transformers' truncation does.
    pub fn new(
        name: impl Into<String>,
        model: Arc<BertWithHead>,
        tokenizer: Arc<Tokenizer>,
        base_tokenizer: Arc<Tokenizer>,
        label: usize,
        beta_v: f64,
    ) -> Result<Self, ValueError> {
        let name = name.into();
        let labels = model.encoder.config().num_labels;
        let problem = if model.classifier.is_none() {
            Some("the checkpoint has no classification head (classifier.weight)".to_string())
        } else if label >= labels {
            Some(format!("label {label} out of range ({labels} labels)"))
        } else {
            None
        };
        check_beta_v(&name, beta_v)?;
        if let Some(problem) = problem {
            return Err(ValueError::Invalid { name, problem });
        }
        let max_len = model.encoder.config().max_position_embeddings;
        Ok(Self {
            name,
            model,
            tokenizer,
            base_tokenizer,
            label,
            beta_v,
            max_len,
            prompts: Vec::new(),
            responses: Vec::new(),
        })
    }

    /// Scores whole texts: `(rows,)` values.
    pub fn score_texts(&self, texts: &[String]) -> Result<Vec<f64>, ValueError> {
        let mut ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.tokenizer.encode(t, true))
            .collect::<Result<_, _>>()?;
        ids.iter_mut().for_each(|i| i.truncate(self.max_len));
        let rows = self.model.label_scores(&ids, self.label)?;
        Ok(rows.into_iter().map(|v| self.beta_v * v).collect())
    }
}

impl ValueFunction for ClassifierValue {
    fn name(&self) -> &str {
        &self.name
    }

    fn begin(&mut self, prompts: &[String]) -> Result<(), ValueError> {
        self.prompts = prompts.to_vec();
        self.responses = vec![Vec::new(); prompts.len()];
        Ok(())
    }

    fn append(&mut self, prompts: &[String]) -> Result<(), ValueError> {
        self.prompts.extend_from_slice(prompts);
        self.responses
            .extend(std::iter::repeat_n(Vec::new(), prompts.len()));
        Ok(())
    }

    fn reorder(&mut self, order: &[usize]) -> Result<(), ValueError> {
        if let Some(&bad) = order.iter().find(|&&r| r >= self.prompts.len()) {
            return Err(ValueError::Invalid {
                name: self.name.clone(),
                problem: format!(
                    "reorder names row {bad}, but there are {} rows",
                    self.prompts.len()
                ),
            });
        }
        self.prompts = order.iter().map(|&r| self.prompts[r].clone()).collect();
        self.responses = order.iter().map(|&r| self.responses[r].clone()).collect();
        Ok(())
    }

    fn observe(&mut self, tokens: &[u32], live: &[bool]) -> Result<(), ValueError> {
        crate::check_rows(&self.name, self.responses.len(), tokens, live)?;
        for (r, &t) in tokens.iter().enumerate() {
            if live[r] {
                self.responses[r].push(t);
            }
        }
        Ok(())
    }

    fn values(&mut self) -> Result<Vec<f64>, ValueError> {
        if self.prompts.is_empty() {
            return Ok(Vec::new());
        }
        let texts = self
            .prompts
            .iter()
            .zip(&self.responses)
            .map(|(p, r)| Ok(format!("{p}{}", self.base_tokenizer.decode(r, true)?)))
            .collect::<Result<Vec<_>, ValueError>>()?;
        self.score_texts(&texts)
    }
}
