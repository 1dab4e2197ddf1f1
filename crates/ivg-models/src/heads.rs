//! Heads over a backbone's hidden states, with HF state-dict names:
//! - [`LmHead`]: `lm_head` (tied to the input embeddings or not) -> next-token
//!   logits; it is also the Q head of an explicit value model, `Q(s, a)` for
//!   every next token `a` in one pass (method.md), so a Q model is an ordinary
//!   `*ForCausalLM` checkpoint;
//! - [`ScalarHead`]: `score` (hidden -> 1), as in `LlamaForSequenceClassification`
//!   with one label (reward models, prefix value heads);
//! - [`ClassifierHead`]: BERT's pooler on `[CLS]` + `classifier`
//!   (`BertForSequenceClassification`).

use candle_core::{Tensor, D};

use crate::error::Result;
use crate::layers::{Embedding, Linear};
use crate::weights::Weights;

/// Next-token logits, optionally soft-capped (`cap * tanh(x / cap)`).
#[derive(Clone, Debug)]
pub struct LmHead {
    proj: Linear,
    softcap: Option<f64>,
}

impl LmHead {
    /// Untied `lm_head.weight` `(vocab, hidden)`, or the input embeddings when
    /// `tied` (or when the checkpoint omits `lm_head`).
    pub fn load(
        w: &Weights,
        embed: &Embedding,
        hidden: usize,
        vocab: usize,
        tied: bool,
    ) -> Result<Self> {
        let proj = if tied || !w.contains("lm_head.weight") {
            embed.as_linear(w.is_trainable())?
        } else {
            Linear::load(w, "lm_head", hidden, vocab, false)?
        };
        Ok(Self {
            proj,
            softcap: None,
        })
    }

    /// The output projection (for inspecting how its weight is stored).
    pub fn proj(&self) -> &Linear {
        &self.proj
    }

    pub fn with_softcap(mut self, softcap: Option<f64>) -> Self {
        self.softcap = softcap;
        self
    }

    /// `hidden: (batch, seq, d)` -> `(batch, seq, vocab)`.
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let logits = self.proj.forward(hidden)?;
        match self.softcap {
            Some(cap) => Ok(((logits / cap)?.tanh()? * cap)?),
            None => Ok(logits),
        }
    }
}

/// A scalar per position: `score.weight` `(1, hidden)`.
#[derive(Clone, Debug)]
pub struct ScalarHead {
    proj: Linear,
}

impl ScalarHead {
    pub fn load(w: &Weights, hidden: usize) -> Result<Self> {
        Ok(Self {
            proj: Linear::load(w, "score", hidden, 1, false)?,
        })
    }

    /// `hidden: (batch, seq, d)` -> `(batch, seq)`.
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.proj.forward(hidden)?.squeeze(D::Minus1)?)
    }
}

/// `BertForSequenceClassification`: `classifier(tanh(pooler(h[:, 0])))`.
#[derive(Clone, Debug)]
pub struct ClassifierHead {
    pooler: Linear,
    classifier: Linear,
}

impl ClassifierHead {
    /// `w` at the checkpoint root: `bert.pooler.dense` and `classifier`.
    pub fn load(w: &Weights, encoder_prefix: &str, hidden: usize, labels: usize) -> Result<Self> {
        let pooler_name = if encoder_prefix.is_empty() {
            "pooler.dense".to_string()
        } else {
            format!("{encoder_prefix}.pooler.dense")
        };
        Ok(Self {
            pooler: Linear::load(w, &pooler_name, hidden, hidden, true)?,
            classifier: Linear::load(w, "classifier", hidden, labels, true)?,
        })
    }

    /// `hidden: (batch, seq, d)` -> `(batch, labels)`.
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let cls = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        let pooled = self.pooler.forward(&cls)?.tanh()?;
        self.classifier.forward(&pooled)
    }
}
