//! `*ForCausalLM`: a backbone plus an LM head, and the checked entry points the
//! decoders use (prefill of a left-padded batch, one step per row).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};

use crate::arch::gpt2::Gpt2Model;
use crate::arch::llama::DecoderModel;
use crate::arch::Backbone;
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::heads::{LmHead, ScalarHead};
use crate::state::DecodeState;
use crate::weights::Weights;

/// Which positions to compute logits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsSpan {
    /// `(batch, vocab)` for the last position (with left padding, every row's last token).
    Last,
    /// `(batch, seq, vocab)`.
    All,
}

pub struct CausalLm {
    backbone: Box<dyn Backbone>,
    head: LmHead,
    config: ModelConfig,
    name: String,
    device: Device,
    stats: ForwardStats,
}

/// Time spent in this model's forward passes and the positions they computed,
/// so a decoder can report its own overhead as a ratio to model time.
#[derive(Debug, Default)]
pub struct ForwardStats {
    nanos: AtomicU64,
    positions: AtomicU64,
    calls: AtomicU64,
}

impl ForwardStats {
    fn record(&self, elapsed: Duration, positions: usize) {
        self.nanos
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        self.positions
            .fetch_add(positions as u64, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Total forward time.
    pub fn time(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }

    /// Positions (rows x new tokens) computed.
    pub fn positions(&self) -> u64 {
        self.positions.load(Ordering::Relaxed)
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub fn reset(&self) {
        self.nanos.store(0, Ordering::Relaxed);
        self.positions.store(0, Ordering::Relaxed);
        self.calls.store(0, Ordering::Relaxed);
    }
}

impl CausalLm {
    /// Builds GPT-2 or a decoder-family model from a weight source at its root.
    pub fn load(w: &Weights, config: &ModelConfig, name: impl Into<String>) -> Result<Self> {
        let (backbone, tied, softcap): (Box<dyn Backbone>, bool, Option<f64>) = match config {
            ModelConfig::Gpt2(c) => (Box::new(Gpt2Model::load(w, c)?), true, None),
            ModelConfig::Decoder(c) => (
                Box::new(DecoderModel::load(w, c)?),
                c.tie_word_embeddings,
                c.final_logit_softcapping,
            ),
            ModelConfig::Bert(_) => {
                return Err(ModelError::Unsupported(
                    "BERT is an encoder, not a causal language model".into(),
                ))
            }
        };
        let head = LmHead::load(
            w,
            backbone.embeddings(),
            backbone.hidden_size(),
            config.vocab_size(),
            tied,
        )?
        .with_softcap(softcap);
        Ok(Self {
            backbone,
            head,
            config: config.clone(),
            name: name.into(),
            device: w.device().clone(),
            stats: ForwardStats::default(),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn vocab_size(&self) -> usize {
        self.config.vocab_size()
    }

    pub fn context_length(&self) -> usize {
        self.backbone.context_length()
    }

    pub fn head(&self) -> &LmHead {
        &self.head
    }

    pub fn backbone(&self) -> &dyn Backbone {
        self.backbone.as_ref()
    }

    /// A fresh, empty decoding state for this model.
    pub fn new_state(&self) -> DecodeState {
        DecodeState::new(self.backbone.num_layers())
    }

    /// Final hidden states `(batch, seq, hidden)` for `ids: (batch, seq)`.
    pub fn hidden(&self, ids: &Tensor, state: &mut DecodeState) -> Result<Tensor> {
        let (_, t) = ids.dims2()?;
        let total = state.len() + t;
        if total > self.context_length() {
            return Err(ModelError::ContextOverflow {
                model: self.name.clone(),
                len: total,
                max: self.context_length(),
            });
        }
        self.backbone.forward(ids, state)
    }

    /// Forward-pass time and positions so far.
    pub fn stats(&self) -> &ForwardStats {
        &self.stats
    }

    /// Logits for `ids: (batch, seq)` u32 appended to `state`.
    pub fn forward(
        &self,
        ids: &Tensor,
        state: &mut DecodeState,
        span: LogitsSpan,
    ) -> Result<Tensor> {
        let start = Instant::now();
        let logits = crate::pool::on_pool(|| self.forward_untimed(ids, state, span))?;
        self.stats.record(start.elapsed(), ids.elem_count());
        Ok(logits)
    }

    fn forward_untimed(
        &self,
        ids: &Tensor,
        state: &mut DecodeState,
        span: LogitsSpan,
    ) -> Result<Tensor> {
        let hidden = self.hidden(ids, state)?;
        let hidden = match span {
            LogitsSpan::All => hidden,
            LogitsSpan::Last => {
                let t = hidden.dim(1)?;
                hidden.narrow(1, t - 1, 1)?
            }
        };
        let logits = self.head.forward(&hidden)?;
        match span {
            LogitsSpan::All => Ok(logits),
            LogitsSpan::Last => Ok(logits.squeeze(1)?),
        }
    }

    /// Encodes prompts of different lengths as one left-padded batch into an
    /// empty `state` (pads are masked and excluded from positions).
    pub fn prefill(
        &self,
        prompts: &[Vec<u32>],
        state: &mut DecodeState,
        span: LogitsSpan,
    ) -> Result<Tensor> {
        for p in prompts {
            self.check_ids(p)?;
        }
        let (flat, pads, longest) = left_pad(prompts)?;
        state.begin(pads)?;
        let ids = Tensor::from_vec(flat, (prompts.len(), longest), &self.device)?;
        self.forward(&ids, state, span)
    }

    /// One token per row -> next-token logits `(rows, vocab)`.
    pub fn step(&self, tokens: &[u32], state: &mut DecodeState) -> Result<Tensor> {
        self.check_ids(tokens)?;
        let ids = Tensor::from_vec(tokens.to_vec(), (tokens.len(), 1), &self.device)?;
        self.forward(&ids, state, LogitsSpan::Last)
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        let vocab = self.vocab_size();
        match ids.iter().find(|&&id| id as usize >= vocab) {
            Some(&id) => Err(ModelError::TokenOutOfRange {
                model: self.name.clone(),
                id,
                vocab,
            }),
            None => Ok(()),
        }
    }
}

/// `*ForSequenceClassification` with one label over a causal backbone: a scalar
/// per position (`score`, as in `LlamaForSequenceClassification`). Used for
/// prefix value models `V(x, y<=t) = head(h_t)` and reward models read at the
/// last token.
pub struct ScalarLm {
    backbone: Box<dyn Backbone>,
    head: ScalarHead,
    name: String,
    device: Device,
}

impl ScalarLm {
    pub fn load(w: &Weights, config: &ModelConfig, name: impl Into<String>) -> Result<Self> {
        let backbone: Box<dyn Backbone> = match config {
            ModelConfig::Gpt2(c) => Box::new(Gpt2Model::load(w, c)?),
            ModelConfig::Decoder(c) => Box::new(DecoderModel::load(w, c)?),
            ModelConfig::Bert(_) => {
                return Err(ModelError::Unsupported(
                    "a scalar value head needs a causal backbone, not BERT".into(),
                ))
            }
        };
        let head = ScalarHead::load(w, backbone.hidden_size())?;
        Ok(Self {
            backbone,
            head,
            name: name.into(),
            device: w.device().clone(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Positions the backbone can hold (prompt plus response).
    pub fn context_length(&self) -> usize {
        self.backbone.context_length()
    }

    pub fn new_state(&self) -> DecodeState {
        DecodeState::new(self.backbone.num_layers())
    }

    /// Scalar per position `(batch, seq)` for `ids: (batch, seq)` appended to `state`.
    pub fn forward(&self, ids: &Tensor, state: &mut DecodeState) -> Result<Tensor> {
        let total = state.len() + ids.dim(1)?;
        if total > self.backbone.context_length() {
            return Err(ModelError::ContextOverflow {
                model: self.name.clone(),
                len: total,
                max: self.backbone.context_length(),
            });
        }
        crate::pool::on_pool(|| self.head.forward(&self.backbone.forward(ids, state)?))
    }

    /// Left-padded prefill of several prompts; returns `(batch, seq)` scalars.
    pub fn prefill(&self, prompts: &[Vec<u32>], state: &mut DecodeState) -> Result<Tensor> {
        let (flat, pads, longest) = left_pad(prompts)?;
        state.begin(pads)?;
        self.forward(
            &Tensor::from_vec(flat, (prompts.len(), longest), &self.device)?,
            state,
        )
    }
}

/// Prompts of different lengths as one left-padded batch: the flat ids, each
/// row's padding, and the padded length.
fn left_pad(prompts: &[Vec<u32>]) -> Result<(Vec<u32>, Vec<usize>, usize)> {
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
        return Err(ModelError::State(
            "prefill needs at least one non-empty prompt".into(),
        ));
    }
    let mut flat = Vec::with_capacity(prompts.len() * longest);
    let mut pads = Vec::with_capacity(prompts.len());
    for p in prompts {
        pads.push(longest - p.len());
        flat.extend(std::iter::repeat_n(0u32, longest - p.len()));
        flat.extend_from_slice(p);
    }
    Ok((flat, pads, longest))
}
