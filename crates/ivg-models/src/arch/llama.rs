//! The Llama decoder family: Llama, Mistral, Qwen2, SmolLM2 and Gemma 3, after
//! transformers' `modeling_llama.py`, `modeling_qwen2.py` and
//! `modeling_gemma3.py`. Gemma 3 differs by configuration only: GELU-tanh
//! gating, q/k RMS norms, sandwich norms around attention and MLP, embeddings
//! scaled by `sqrt(hidden)`, local sliding-window layers with rope base 1e4
//! interleaved with global layers (base 1e6). (candle's `quantized_gemma3`
//! uses SiLU and is wrong; architecture.md.)

use candle_core::Tensor;

use crate::arch::Backbone;
use crate::config::{AttentionKind, DecoderConfig};
use crate::error::Result;
use crate::layers::{
    Attention, AttentionInputs, AttentionShape, Embedding, Linear, Mlp, Norm, Rope,
};
use crate::state::DecodeState;
use crate::weights::Weights;

struct DecoderLayer {
    input_norm: Norm,
    attn: Attention,
    /// Gemma: norm of the attention output before the residual add.
    post_attn_norm: Option<Norm>,
    pre_mlp_norm: Norm,
    /// Gemma: norm of the MLP output before the residual add.
    post_mlp_norm: Option<Norm>,
    mlp: Mlp,
    kind: AttentionKind,
}

/// `LlamaModel` / `Gemma3TextModel`: tensors under `model.`.
pub struct DecoderModel {
    embed: Embedding,
    layers: Vec<DecoderLayer>,
    norm: Norm,
    rope_global: Rope,
    rope_local: Rope,
    config: DecoderConfig,
}

impl DecoderModel {
    /// Loads from the root of a weight source (names start with `model.`).
    pub fn load(w: &Weights, config: &DecoderConfig) -> Result<Self> {
        let m = w.pp("model");
        let c = config;
        let embed = Embedding::load(&m, "embed_tokens.weight", c.vocab_size, c.hidden_size)?;
        let layers = (0..c.num_layers)
            .map(|i| load_layer(&m.pp(format!("layers.{i}")), c, i))
            .collect::<Result<Vec<_>>>()?;
        let norm = Norm::rms(&m, "norm", c.hidden_size, c.norm_eps, c.norm_weight_offset)?;
        let trainable = w.is_trainable();
        Ok(Self {
            embed,
            layers,
            norm,
            rope_global: Rope::new(&c.rope_global, c.head_dim, w.device(), trainable)?,
            rope_local: Rope::new(&c.rope_local, c.head_dim, w.device(), trainable)?,
            config: c.clone(),
        })
    }

    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }
}

fn load_layer(w: &Weights, c: &DecoderConfig, index: usize) -> Result<DecoderLayer> {
    let (h, eps, off) = (c.hidden_size, c.norm_eps, c.norm_weight_offset);
    let gemma = c.is_gemma();
    let a = w.pp("self_attn");
    let (qd, kvd) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
    let attn = Attention {
        q: Linear::load(&a, "q_proj", h, qd, c.attention_bias)?,
        k: Linear::load(&a, "k_proj", h, kvd, c.attention_bias)?,
        v: Linear::load(&a, "v_proj", h, kvd, c.attention_bias)?,
        o: Linear::load(&a, "o_proj", qd, h, false)?,
        q_norm: gemma
            .then(|| Norm::rms(&a, "q_norm", c.head_dim, eps, off))
            .transpose()?,
        k_norm: gemma
            .then(|| Norm::rms(&a, "k_norm", c.head_dim, eps, off))
            .transpose()?,
        shape: AttentionShape {
            heads: c.num_heads,
            kv_heads: c.num_kv_heads,
            head_dim: c.head_dim,
            scale: c.attention_scale,
            softcap: c.attn_logit_softcapping,
        },
        differentiable: w.is_trainable(),
    };
    let m = w.pp("mlp");
    let mlp = Mlp::Gated {
        gate: Linear::load(&m, "gate_proj", h, c.intermediate_size, c.mlp_bias)?,
        up: Linear::load(&m, "up_proj", h, c.intermediate_size, c.mlp_bias)?,
        down: Linear::load(&m, "down_proj", c.intermediate_size, h, c.mlp_bias)?,
        act: c.activation,
    };
    // Llama names its pre-MLP norm `post_attention_layernorm`; Gemma uses that
    // name for the norm of the attention output and `pre_feedforward_layernorm`.
    let (post_attn_norm, pre_mlp_norm, post_mlp_norm) = if gemma {
        (
            Some(Norm::rms(w, "post_attention_layernorm", h, eps, off)?),
            Norm::rms(w, "pre_feedforward_layernorm", h, eps, off)?,
            Some(Norm::rms(w, "post_feedforward_layernorm", h, eps, off)?),
        )
    } else {
        (
            None,
            Norm::rms(w, "post_attention_layernorm", h, eps, off)?,
            None,
        )
    };
    Ok(DecoderLayer {
        input_norm: Norm::rms(w, "input_layernorm", h, eps, off)?,
        attn,
        post_attn_norm,
        pre_mlp_norm,
        post_mlp_norm,
        mlp,
        kind: c
            .layer_kinds
            .get(index)
            .copied()
            .unwrap_or(AttentionKind::Global),
    })
}

impl DecoderLayer {
    fn forward(
        &self,
        xs: &Tensor,
        inputs: &AttentionInputs<'_>,
        state: &mut DecodeState,
        index: usize,
    ) -> Result<Tensor> {
        let mut h =
            self.attn
                .forward(&self.input_norm.forward(xs)?, inputs, Some((state, index)))?;
        if let Some(n) = &self.post_attn_norm {
            h = n.forward(&h)?;
        }
        let xs = (xs + h)?;
        let mut h = self.mlp.forward(&self.pre_mlp_norm.forward(&xs)?)?;
        if let Some(n) = &self.post_mlp_norm {
            h = n.forward(&h)?;
        }
        Ok((xs + h)?)
    }
}

impl Backbone for DecoderModel {
    fn forward(&self, ids: &Tensor, state: &mut DecodeState) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let device = ids.device();
        let mut xs = self.embed.forward(ids)?;
        if self.config.is_gemma() {
            xs = (xs * (self.config.hidden_size as f64).sqrt())?;
        }
        let positions = state.positions(b, t, device)?;
        let (gcos, gsin) = self.rope_global.tables(&positions)?;
        let (lcos, lsin) = self.rope_local.tables(&positions)?;
        let global_mask = state.mask(b, t, None, device)?;
        let mut local_masks: Vec<(usize, Option<Tensor>)> = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let inputs = match layer.kind {
                AttentionKind::Global => AttentionInputs {
                    rope: Some((&self.rope_global, &gcos, &gsin)),
                    mask: global_mask.as_ref(),
                },
                AttentionKind::Local { window } => {
                    if !local_masks.iter().any(|(w, _)| *w == window) {
                        local_masks.push((window, state.mask(b, t, Some(window), device)?));
                    }
                    let mask = local_masks
                        .iter()
                        .find(|(w, _)| *w == window)
                        .and_then(|(_, m)| m.as_ref());
                    AttentionInputs {
                        rope: Some((&self.rope_local, &lcos, &lsin)),
                        mask,
                    }
                }
            };
            xs = layer.forward(&xs, &inputs, state, i)?;
        }
        state.advance(b, t);
        self.norm.forward(&xs)
    }

    fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    fn num_layers(&self) -> usize {
        self.config.num_layers
    }

    fn context_length(&self) -> usize {
        self.config.max_position_embeddings
    }

    fn embeddings(&self) -> &Embedding {
        &self.embed
    }
}
