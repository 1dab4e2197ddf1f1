//! The implicit value of a DPO-style tuned/reference pair (method.md):
//! `V_i = beta_v * sum_k sum_i w_i [log pi_tuned_i(y_k | s_k) - log pi_ref(y_k | s_k)]`
//! over response tokens only, with log-softmax over the full vocabulary. Each
//! model has its own prompt template (a training-free pair is one model under
//! two templates). As a token-level guide it offers `sum_i w_i (l_tuned_i - l_ref_i)`.

use std::sync::Arc;

use candle_core::Tensor;
use ivg_models::CausalLm;
use ivg_tokenize::Tokenizer;

use crate::runner::{token_log_probs, GuideRunner};
use crate::{encode_prompt, pad_chunks, Feed, ValueError, ValueFunction};

/// One tuned/reference pair, each with its prompt template (`{prompt}` marks
/// where the prompt text goes) and the tokenizer both share.
pub struct ImplicitPair {
    pub tuned: Arc<CausalLm>,
    pub tuned_template: String,
    pub reference: Arc<CausalLm>,
    pub reference_template: String,
    pub tokenizer: Arc<Tokenizer>,
    pub weight: f64,
}

/// A pair's prompt ids, one per prompt: (tuned template, reference template).
type PairIds = (Vec<Vec<u32>>, Vec<Vec<u32>>);

struct PairState {
    pair: ImplicitPair,
    tuned: GuideRunner,
    reference: GuideRunner,
}

pub struct ImplicitValue {
    name: String,
    pairs: Vec<PairState>,
    beta_v: f64,
    feed: Feed,
    /// Running `sum_k sum_i w_i * log-ratio` per row (unscaled).
    sums: Vec<f64>,
    /// Chunked feed: tokens observed since the last `values()`.
    buffer: Vec<Vec<u32>>,
}

impl ImplicitValue {
    pub fn new(
        name: impl Into<String>,
        pairs: Vec<ImplicitPair>,
        beta_v: f64,
        feed: Feed,
    ) -> Result<Self, ValueError> {
        let name = name.into();
        if pairs.is_empty() {
            return Err(ValueError::Invalid {
                name,
                problem: "needs at least one tuned/reference pair".into(),
            });
        }
        crate::check_beta_v(&name, beta_v)?;
        let pairs = pairs
            .into_iter()
            .map(|pair| PairState {
                tuned: GuideRunner::new(pair.tuned.clone()),
                reference: GuideRunner::new(pair.reference.clone()),
                pair,
            })
            .collect();
        Ok(Self {
            name,
            pairs,
            beta_v,
            feed,
            sums: Vec::new(),
            buffer: Vec::new(),
        })
    }

    /// Adds `sum_i w_i * log-ratio` of `tokens` predicted by the given logits.
    fn accumulate(
        &mut self,
        per_pair: &[(Tensor, Tensor)],
        tokens: &[u32],
        live: &[bool],
    ) -> Result<(), ValueError> {
        for ((tuned, reference), ps) in per_pair.iter().zip(&self.pairs) {
            let lt = token_log_probs(tuned, tokens)?;
            let lr = token_log_probs(reference, tokens)?;
            for r in 0..tokens.len() {
                if live[r] {
                    self.sums[r] += ps.pair.weight * (lt[r] as f64 - lr[r] as f64);
                }
            }
        }
        Ok(())
    }

    /// Each pair's prompt ids, one per prompt, all encoded before any state
    /// changes (a tokenizer error leaves the rows as they were).
    fn encode(&self, prompts: &[String]) -> Result<Vec<PairIds>, ValueError> {
        self.pairs
            .iter()
            .map(|ps| {
                let p = &ps.pair;
                let encode_all = |template: &str| {
                    prompts
                        .iter()
                        .map(|t| encode_prompt(&p.tokenizer, template, t))
                        .collect::<Result<Vec<_>, _>>()
                };
                Ok((
                    encode_all(&p.tuned_template)?,
                    encode_all(&p.reference_template)?,
                ))
            })
            .collect()
    }

    fn flush(&mut self) -> Result<(), ValueError> {
        if self.buffer.iter().all(Vec::is_empty) {
            return Ok(());
        }
        let (padded, lens) = pad_chunks(&self.buffer);
        for ps in &mut self.pairs {
            let tuned = ps.tuned.extend(&padded)?.log_probs(&padded)?;
            let reference = ps.reference.extend(&padded)?.log_probs(&padded)?;
            for (r, &len) in lens.iter().enumerate() {
                let ratio: f64 = (0..len)
                    .map(|k| tuned[r][k] as f64 - reference[r][k] as f64)
                    .sum();
                self.sums[r] += ps.pair.weight * ratio;
            }
        }
        self.buffer.iter_mut().for_each(Vec::clear);
        Ok(())
    }
}

impl ValueFunction for ImplicitValue {
    fn name(&self) -> &str {
        &self.name
    }

    fn begin(&mut self, prompts: &[String]) -> Result<(), ValueError> {
        let ids = self.encode(prompts)?;
        for (ps, (tuned, reference)) in self.pairs.iter_mut().zip(&ids) {
            ps.tuned.prefill(tuned)?;
            ps.reference.prefill(reference)?;
        }
        self.sums = vec![0.0; prompts.len()];
        self.buffer = vec![Vec::new(); prompts.len()];
        Ok(())
    }

    fn append(&mut self, prompts: &[String]) -> Result<(), ValueError> {
        let ids = self.encode(prompts)?;
        // Buffers must be empty: a joined row has nothing to pad a chunk with.
        self.flush()?;
        for (ps, (tuned, reference)) in self.pairs.iter_mut().zip(&ids) {
            ps.tuned.append(tuned)?;
            ps.reference.append(reference)?;
        }
        self.sums.extend(std::iter::repeat_n(0.0, prompts.len()));
        self.buffer
            .extend(std::iter::repeat_n(Vec::new(), prompts.len()));
        Ok(())
    }

    fn reorder(&mut self, order: &[usize]) -> Result<(), ValueError> {
        if self.feed == Feed::Chunked {
            self.flush()?;
        }
        for ps in &mut self.pairs {
            ps.tuned.reorder(order)?;
            ps.reference.reorder(order)?;
        }
        self.sums = order.iter().map(|&r| self.sums[r]).collect();
        self.buffer = vec![Vec::new(); order.len()];
        Ok(())
    }

    fn observe(&mut self, tokens: &[u32], live: &[bool]) -> Result<(), ValueError> {
        crate::check_rows(&self.name, self.sums.len(), tokens, live)?;
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
                Ok(())
            }
            Feed::Stepped => {
                let pending = self
                    .pairs
                    .iter()
                    .map(|ps| Ok((ps.tuned.pending()?.clone(), ps.reference.pending()?.clone())))
                    .collect::<Result<Vec<_>, ValueError>>()?;
                self.accumulate(&pending, tokens, live)?;
                for ps in &mut self.pairs {
                    ps.tuned.step(tokens)?;
                    ps.reference.step(tokens)?;
                }
                Ok(())
            }
        }
    }

    fn values(&mut self) -> Result<Vec<f64>, ValueError> {
        self.flush()?;
        Ok(self.sums.iter().map(|s| self.beta_v * s).collect())
    }

    fn guidance(&self) -> Result<Option<Tensor>, ValueError> {
        if self.feed != Feed::Stepped {
            return Ok(None);
        }
        let mut total: Option<Tensor> = None;
        for ps in &self.pairs {
            let diff = ((ps.tuned.pending()? - ps.reference.pending()?)? * ps.pair.weight)?;
            total = Some(match total {
                None => diff,
                Some(t) => (t + diff)?,
            });
        }
        Ok(total)
    }

    fn tokenizer(&self) -> Option<&Tokenizer> {
        self.pairs.first().map(|p| p.pair.tokenizer.as_ref())
    }
}
