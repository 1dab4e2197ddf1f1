//! The explicit value of a vocabulary-sized Q head (method.md):
//! `V_e(x, y<=t) = beta_v * Q(s_t, y_t)`, the score-head output at position
//! `t-1` gathered at the token emitted at `t`. A Q model is a causal-LM
//! checkpoint whose `lm_head` is the Q head, so one forward scores every
//! candidate next token; as a token-level guide it offers `Q(s_t, .)` (EFTe).

use std::sync::Arc;

use candle_core::Tensor;
use ivg_models::CausalLm;
use ivg_tokenize::Tokenizer;

use crate::runner::{gather, GuideRunner};
use crate::{encode_prompt, pad_chunks, Feed, ValueError, ValueFunction};

pub struct QValue {
    name: String,
    runner: GuideRunner,
    template: String,
    tokenizer: Arc<Tokenizer>,
    beta_v: f64,
    feed: Feed,
    /// `Q(s_t, y_t)` of each row's last token (0 before any token).
    last: Vec<f64>,
    buffer: Vec<Vec<u32>>,
}

impl QValue {
    pub fn new(
        name: impl Into<String>,
        model: Arc<CausalLm>,
        template: impl Into<String>,
        tokenizer: Arc<Tokenizer>,
        beta_v: f64,
        feed: Feed,
    ) -> Result<Self, ValueError> {
        let name = name.into();
        crate::check_beta_v(&name, beta_v)?;
        Ok(Self {
            name,
            runner: GuideRunner::new(model),
            template: template.into(),
            tokenizer,
            beta_v,
            feed,
            last: Vec::new(),
            buffer: Vec::new(),
        })
    }

    fn encode(&self, prompts: &[String]) -> Result<Vec<Vec<u32>>, ValueError> {
        prompts
            .iter()
            .map(|t| encode_prompt(&self.tokenizer, &self.template, t))
            .collect()
    }

    fn flush(&mut self) -> Result<(), ValueError> {
        if self.buffer.iter().all(Vec::is_empty) {
            return Ok(());
        }
        let (padded, lens) = pad_chunks(&self.buffer);
        let predicted = self.runner.extend(&padded)?;
        for (r, &len) in lens.iter().enumerate() {
            if len == 0 {
                continue;
            }
            let row: Tensor = predicted.at(r, len - 1)?;
            self.last[r] = row.get(padded[r][len - 1] as usize)?.to_scalar::<f32>()? as f64;
        }
        self.buffer.iter_mut().for_each(Vec::clear);
        Ok(())
    }
}

impl ValueFunction for QValue {
    fn name(&self) -> &str {
        &self.name
    }

    fn begin(&mut self, prompts: &[String]) -> Result<(), ValueError> {
        let ids = self.encode(prompts)?;
        self.runner.prefill(&ids)?;
        self.last = vec![0.0; prompts.len()];
        self.buffer = vec![Vec::new(); prompts.len()];
        Ok(())
    }

    fn append(&mut self, prompts: &[String]) -> Result<(), ValueError> {
        let ids = self.encode(prompts)?;
        // Buffers must be empty: a joined row has nothing to pad a chunk with.
        self.flush()?;
        self.runner.append(&ids)?;
        self.last.extend(std::iter::repeat_n(0.0, prompts.len()));
        self.buffer
            .extend(std::iter::repeat_n(Vec::new(), prompts.len()));
        Ok(())
    }

    fn reorder(&mut self, order: &[usize]) -> Result<(), ValueError> {
        if self.feed == Feed::Chunked {
            self.flush()?;
        }
        self.runner.reorder(order)?;
        self.last = order.iter().map(|&r| self.last[r]).collect();
        self.buffer = vec![Vec::new(); order.len()];
        Ok(())
    }

    fn observe(&mut self, tokens: &[u32], live: &[bool]) -> Result<(), ValueError> {
        crate::check_rows(&self.name, self.last.len(), tokens, live)?;
        if tokens.is_empty() {
            return Ok(());
        }
        match self.feed {
            Feed::Chunked => {
                for (r, &t) in tokens.iter().enumerate() {
                    if live[r] {
                        self.buffer[r].push(t);
                    }
                }
            }
            Feed::Stepped => {
                let q = gather(self.runner.pending()?, tokens)?;
                for (r, &v) in q.iter().enumerate() {
                    if live[r] {
                        self.last[r] = v as f64;
                    }
                }
                self.runner.step(tokens)?;
            }
        }
        Ok(())
    }

    fn values(&mut self) -> Result<Vec<f64>, ValueError> {
        self.flush()?;
        Ok(self.last.iter().map(|q| self.beta_v * q).collect())
    }

    fn guidance(&self) -> Result<Option<Tensor>, ValueError> {
        match self.feed {
            Feed::Stepped => Ok(Some(self.runner.pending()?.clone())),
            Feed::Chunked => Ok(None),
        }
    }

    fn tokenizer(&self) -> Option<&Tokenizer> {
        Some(&self.tokenizer)
    }
}
