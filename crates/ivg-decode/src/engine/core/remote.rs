//! The engine's steps that differ with a remote base (see `engine::base`):
//! fetching what each request's rows need before a step, failing only the
//! requests whose calls failed, and sampling from a top-k or a queued chunk.

use std::collections::HashMap;

use super::{token_role, Engine, Event};
use crate::engine::base::{Need, Plan, TopKCoverage};
use crate::generate::DecodeError;
use crate::topk::combine_topk;

/// A row's dense policy logits (`-inf` outside the base's top-k) and what
/// the restriction to the top-k may cost; `None` for a finished row.
pub(super) type RowPolicy = Option<(Vec<f32>, TopKCoverage)>;

impl Engine<'_> {
    /// Asks a remote base for what every live request needs for this step;
    /// a request whose call failed ends with [`Event::Failed`] and its rows
    /// are released, the others go on.
    pub(super) fn fetch_remote(&mut self, events: &mut Vec<Event>) -> Result<(), DecodeError> {
        if !self.base.is_remote() {
            return Ok(());
        }
        let mut plans = Vec::with_capacity(self.live.len());
        let mut offset = 0;
        for l in &self.live {
            let s = &l.search;
            let c = &s.config;
            let need = if token_role(c).is_some() {
                Need::TopK
            } else {
                let chunk_left = c.chunk_len.map_or(usize::MAX, |len| len - s.in_chunk);
                Need::Chunk {
                    max_tokens: chunk_left.min(c.max_new_tokens - s.steps),
                    temperature: c.sampling.temperature,
                    top_p: c.sampling.top_p.unwrap_or(1.0),
                    seed: s.call_seed(),
                }
            };
            plans.push(Plan {
                offset,
                rows: s.rows.len(),
                need,
                finished: s.rows.iter().map(|r| r.finished).collect(),
            });
            offset += s.rows.len();
        }
        let failures = self.base.prepare(&plans);
        let mut orders = HashMap::new();
        for (l, failure) in self.live.iter().zip(failures) {
            if let Some(error) = failure {
                events.push(Event::Failed {
                    id: l.id,
                    error: error.to_string(),
                });
                orders.insert(l.id, Vec::new());
            }
        }
        if !orders.is_empty() {
            let counts = self.row_counts();
            self.regroup(&orders, &counts, None)?;
        }
        Ok(())
    }

    /// The vocabulary the policy samples over.
    pub(super) fn base_vocab(&self) -> usize {
        self.base_vocab
    }

    /// Live request `i`'s rows under a remote base's top-k: the base's
    /// log-probabilities plus `beta` times the guide's offsets, over the
    /// candidates ([`combine_topk`]).
    pub(super) fn remote_policy(&self, i: usize) -> Result<Vec<RowPolicy>, DecodeError> {
        let vocab = self.base_vocab();
        let offsets = match self.guide_offsets(i)? {
            Some(t) => Some(t.to_vec2::<f32>()?),
            None => None,
        };
        let zeros = vec![0.0f32; vocab];
        let live = &self.live[i];
        let temperature = live.search.config.sampling.temperature;
        let offset = self.offset(i);
        let mut out = Vec::with_capacity(live.search.rows.len());
        for (r, row) in live.search.rows.iter().enumerate() {
            if row.finished {
                out.push(None);
                continue;
            }
            let topk = self
                .base
                .topk(offset + r)
                .ok_or_else(|| DecodeError::Config {
                    field: "engine",
                    problem: "no top-k was fetched for a live row".into(),
                })?;
            let off = offsets.as_ref().map_or(&zeros, |o| &o[r]);
            if off.len() != vocab {
                return Err(DecodeError::Vocabulary(format!(
                    "the guide gives {} logits per token, the remote base `{}` has {vocab} tokens",
                    off.len(),
                    self.base.name()
                )));
            }
            let cand = combine_topk(topk, off, temperature)?;
            let mut dense = vec![f32::NEG_INFINITY; vocab];
            for (&id, &l) in cand.ids.iter().zip(&cand.logits) {
                dense[id as usize] = l;
            }
            let coverage = TopKCoverage {
                base_mass: cand.base_mass,
                tv_bound: cand.tv_bound,
            };
            out.push(Some((dense, coverage)));
        }
        Ok(out)
    }

    /// Live request `i`'s rows take their next token from the chunks the
    /// remote base sampled.
    pub(super) fn take_chunk_tokens(
        &mut self,
        i: usize,
        offset: usize,
        tokens: &mut Vec<u32>,
        ended: &mut [bool],
    ) -> Result<(), DecodeError> {
        for (r, row) in self.live[i].search.rows.iter().enumerate() {
            if row.finished {
                tokens.push(row.tokens.last().copied().unwrap_or(0));
                continue;
            }
            let (t, end) =
                self.base
                    .take_queued(offset + r)
                    .ok_or_else(|| DecodeError::Config {
                        field: "engine",
                        problem: "a live row has no sampled token queued".into(),
                    })?;
            tokens.push(t);
            ended[offset + r] = end;
        }
        Ok(())
    }
}
