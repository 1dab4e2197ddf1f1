//! The search state of one request (method.md, "Chunk-level beam search"):
//! its `W*K` rows, the pool of finished survivors, and the selection at a
//! chunk boundary. Nothing here touches a model: the engine owns the decode
//! states and applies the row orders this module returns.
//!
//! Randomness: the request's first row samples with the request's seed, so
//! `W = K = 1` reproduces base sampling token for token; a survivor's first
//! child continues its parent's stream and other children get seeds derived
//! from the request's seed, the chunk and the slot. No stream depends on other
//! requests, so whatever shares the batch changes nothing.

use crate::engine::{ChunkTrace, GuidedOutput, TraceCandidate};
use crate::generate::{DecodeError, FinishReason};
use crate::guidance::GuidanceConfig;
use crate::sampling::{row_seed, Sampler};

pub(crate) struct Row {
    pub tokens: Vec<u32>,
    pub sampler: Sampler,
    pub finished: bool,
}

#[derive(Clone)]
struct Candidate {
    tokens: Vec<u32>,
    value: f64,
    finished: bool,
}

/// What a boundary decided for one request.
pub(crate) struct Selection {
    /// Row `i` of the next chunk continues former row `order[i]`; empty when
    /// no unfinished candidate survived.
    pub order: Vec<usize>,
    pub trace: ChunkTrace,
}

pub(crate) struct Search {
    pub config: GuidanceConfig,
    /// Label of the request in traces (`ChunkTrace::prompt`).
    pub label: usize,
    seed: u64,
    pub rows: Vec<Row>,
    pool: Vec<Candidate>,
    /// Tokens sampled in the current chunk, and chunks completed.
    pub in_chunk: usize,
    chunk: usize,
    /// Steps taken (tokens sampled per row so far).
    pub steps: usize,
    /// Tokens already reported final.
    pub emitted: usize,
}

impl Search {
    /// `W*K` rows of the prompt, none sampled yet.
    pub fn new(config: GuidanceConfig, seed: u64, label: usize) -> Result<Self, DecodeError> {
        let s = config.rows_per_prompt();
        let rows = (0..s)
            .map(|slot| {
                let seed = if slot == 0 {
                    seed
                } else {
                    row_seed(seed, slot)
                };
                Ok(Row {
                    tokens: Vec::new(),
                    sampler: Sampler::new(config.sampling.clone(), seed)?,
                    finished: false,
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok(Self {
            config,
            label,
            seed,
            rows,
            pool: Vec::new(),
            in_chunk: 0,
            chunk: 0,
            steps: 0,
            emitted: 0,
        })
    }

    /// The seed of the calls a remote base samples this step's chunks with:
    /// derived from the request's seed and the step, so no other request
    /// or chunk shares it.
    pub fn call_seed(&self) -> u64 {
        row_seed(self.seed, usize::MAX - self.steps)
    }

    /// Whether the step just taken ends a chunk (or the request).
    pub fn at_boundary(&self) -> bool {
        self.is_last()
            || self.rows.iter().all(|r| r.finished)
            || self.config.chunk_len == Some(self.in_chunk)
    }

    /// Whether `max_new_tokens` tokens have been sampled.
    pub fn is_last(&self) -> bool {
        self.steps == self.config.max_new_tokens
    }

    /// Ranks the candidates (live rows with `values`, pooled finished ones)
    /// and keeps the global top `W`: finished survivors go to the pool,
    /// unfinished ones get `K` child rows each.
    pub fn select(&mut self, values: &[f64]) -> Selection {
        let last = self.is_last();
        let mut cands: Vec<(Option<usize>, Candidate)> =
            self.pool.drain(..).map(|c| (None, c)).collect();
        for (i, row) in self.rows.iter().enumerate() {
            let c = Candidate {
                tokens: row.tokens.clone(),
                value: values[i],
                finished: row.finished,
            };
            cands.push((Some(i), c));
        }
        // Highest value first; ties keep the earlier candidate (stable sort).
        cands.sort_by(|a, b| {
            b.1.value
                .partial_cmp(&a.1.value)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let mut trace = ChunkTrace {
            prompt: self.label,
            chunk: self.chunk,
            step: self.steps,
            candidates: Vec::with_capacity(cands.len()),
        };
        let s = self.config.rows_per_prompt();
        let mut order = Vec::new();
        let mut next_rows = Vec::new();
        for (rank, (src, cand)) in cands.into_iter().enumerate() {
            let survived = rank < self.config.width;
            trace.candidates.push(TraceCandidate {
                tokens: cand.tokens.clone(),
                value: cand.value,
                finished: cand.finished,
                survived,
            });
            match (survived, src) {
                (true, Some(i)) if !cand.finished && !last => {
                    for k in 0..self.config.successors {
                        let parent = &self.rows[i];
                        let sampler = if k == 0 {
                            parent.sampler.clone()
                        } else {
                            let slot = 1 + self.chunk * s + next_rows.len();
                            parent.sampler.reseeded(row_seed(self.seed, slot))
                        };
                        next_rows.push(Row {
                            tokens: parent.tokens.clone(),
                            sampler,
                            finished: false,
                        });
                        order.push(i);
                    }
                }
                (true, _) => self.pool.push(cand),
                (false, _) => {}
            }
        }
        self.rows = next_rows;
        self.in_chunk = 0;
        self.chunk += 1;
        Selection { order, trace }
    }

    /// Tokens every remaining candidate starts with: no later choice can
    /// change them, so they can be reported.
    pub fn settled(&self) -> &[u32] {
        let mut all = self
            .rows
            .iter()
            .map(|r| r.tokens.as_slice())
            .chain(self.pool.iter().map(|c| c.tokens.as_slice()));
        let Some(first) = all.next() else {
            return &[];
        };
        let common = all.fold(first.len(), |n, t| {
            n.min(first.iter().zip(t).take_while(|(a, b)| a == b).count())
        });
        &first[..common]
    }

    /// The best candidate: the highest value in the pool, where the last
    /// boundary left every survivor.
    pub fn output(&self) -> GuidedOutput {
        let rows = self.rows.iter().map(|r| Candidate {
            tokens: r.tokens.clone(),
            value: 0.0,
            finished: r.finished,
        });
        let best = self
            .pool
            .iter()
            .cloned()
            .chain(rows)
            .reduce(|a, b| if b.value > a.value { b } else { a })
            .unwrap_or(Candidate {
                tokens: Vec::new(),
                value: 0.0,
                finished: false,
            });
        let finish = if best.finished {
            FinishReason::Stop
        } else {
            FinishReason::Length
        };
        GuidedOutput {
            tokens: best.tokens,
            value: best.value,
            finish,
        }
    }
}
