//! Explicit values from a scalar head: `V(x, y<=t) = beta_v * head(h_t)` read at
//! each row's last token (a prefix value model, or a reward model read at the
//! end). A scalar head cannot score every candidate next token in one pass, so
//! it only ranks chunks: tokens are buffered and scored in one forward per boundary.

use std::sync::Arc;

use candle_core::Tensor;
use ivg_models::{DecodeState, ScalarLm};
use ivg_tokenize::Tokenizer;

use crate::{encode_prompt, pad_chunks, ValueError, ValueFunction};

pub struct ScalarValue {
    name: String,
    model: Arc<ScalarLm>,
    template: String,
    tokenizer: Arc<Tokenizer>,
    beta_v: f64,
    state: DecodeState,
    /// `head(h_t)` at each row's last response token (0 before any).
    last: Vec<f64>,
    buffer: Vec<Vec<u32>>,
}

impl ScalarValue {
    pub fn new(
        name: impl Into<String>,
        model: Arc<ScalarLm>,
        template: impl Into<String>,
        tokenizer: Arc<Tokenizer>,
        beta_v: f64,
    ) -> Result<Self, ValueError> {
        let name = name.into();
        crate::check_beta_v(&name, beta_v)?;
        let state = model.new_state();
        Ok(Self {
            name,
            model,
            template: template.into(),
            tokenizer,
            beta_v,
            state,
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
        let n = padded.first().map_or(0, Vec::len);
        let flat: Vec<u32> = padded.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat, (padded.len(), n), self.model.device())?;
        let scores = self
            .model
            .forward(&ids, &mut self.state)?
            .to_vec2::<f32>()?;
        for (r, &len) in lens.iter().enumerate() {
            if len > 0 {
                self.last[r] = scores[r][len - 1] as f64;
            }
        }
        self.buffer.iter_mut().for_each(Vec::clear);
        Ok(())
    }
}

impl ValueFunction for ScalarValue {
    fn name(&self) -> &str {
        &self.name
    }

    fn begin(&mut self, prompts: &[String]) -> Result<(), ValueError> {
        let ids = self.encode(prompts)?;
        self.state = self.model.new_state();
        self.model.prefill(&ids, &mut self.state)?;
        self.last = vec![0.0; prompts.len()];
        self.buffer = vec![Vec::new(); prompts.len()];
        Ok(())
    }

    fn append(&mut self, prompts: &[String]) -> Result<(), ValueError> {
        if prompts.is_empty() {
            return Ok(());
        }
        let ids = self.encode(prompts)?;
        // Buffers must be empty: a joined row has nothing to pad a chunk with.
        self.flush()?;
        let mut joining = self.model.new_state();
        self.model.prefill(&ids, &mut joining)?;
        // Appending to a state without rows takes `joining` as it is.
        self.state.append_rows(joining)?;
        self.last.extend(std::iter::repeat_n(0.0, prompts.len()));
        self.buffer
            .extend(std::iter::repeat_n(Vec::new(), prompts.len()));
        Ok(())
    }

    fn reorder(&mut self, order: &[usize]) -> Result<(), ValueError> {
        self.flush()?;
        self.state.reorder(order)?;
        // Rows that joined late stop paying for long rows that left.
        self.state.trim_padding()?;
        self.last = order.iter().map(|&r| self.last[r]).collect();
        self.buffer = vec![Vec::new(); order.len()];
        Ok(())
    }

    fn observe(&mut self, tokens: &[u32], live: &[bool]) -> Result<(), ValueError> {
        crate::check_rows(&self.name, self.buffer.len(), tokens, live)?;
        for (r, &t) in tokens.iter().enumerate() {
            if live[r] {
                self.buffer[r].push(t);
            }
        }
        Ok(())
    }

    fn values(&mut self) -> Result<Vec<f64>, ValueError> {
        self.flush()?;
        Ok(self.last.iter().map(|v| self.beta_v * v).collect())
    }

    fn tokenizer(&self) -> Option<&Tokenizer> {
        Some(&self.tokenizer)
    }
}
