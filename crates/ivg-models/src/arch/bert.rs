//! BERT encoder (`BertModel`, e.g. sentence-transformers all-MiniLM-L6-v2) with
//! mean pooling and the `BertForSequenceClassification` head (pooler on
//! `[CLS]` + classifier), after transformers' `modeling_bert.py`. Post-norm
//! blocks over the shared attention, bidirectional, no cache.

use candle_core::{DType, Tensor};

use crate::config::BertConfig;
use crate::error::Result;
use crate::layers::{Attention, AttentionInputs, AttentionShape, Embedding, Linear, Mlp, Norm};
use crate::state::DecodeState;
use crate::weights::Weights;

struct Layer {
    attn: Attention,
    attn_norm: Norm,
    mlp: Mlp,
    out_norm: Norm,
}

pub struct BertModel {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    emb_norm: Norm,
    layers: Vec<Layer>,
    config: BertConfig,
    /// Where the weights live: inputs built by callers go there too.
    device: candle_core::Device,
}

fn load_layer(w: &Weights, c: &BertConfig) -> Result<Layer> {
    let (d, eps) = (c.hidden_size, c.layer_norm_eps);
    let s = w.pp("attention.self");
    let head_dim = d / c.num_heads;
    let attn = Attention {
        q: Linear::load(&s, "query", d, d, true)?,
        k: Linear::load(&s, "key", d, d, true)?,
        v: Linear::load(&s, "value", d, d, true)?,
        o: Linear::load(w, "attention.output.dense", d, d, true)?,
        q_norm: None,
        k_norm: None,
        shape: AttentionShape {
            heads: c.num_heads,
            kv_heads: c.num_heads,
            head_dim,
            scale: 1.0 / (head_dim as f64).sqrt(),
            softcap: None,
        },
        differentiable: w.is_trainable(),
    };
    Ok(Layer {
        attn,
        attn_norm: Norm::layer(w, "attention.output.LayerNorm", d, eps)?,
        mlp: Mlp::Plain {
            fc: Linear::load(w, "intermediate.dense", d, c.intermediate_size, true)?,
            proj: Linear::load(w, "output.dense", c.intermediate_size, d, true)?,
            act: c.activation,
        },
        out_norm: Norm::layer(w, "output.LayerNorm", d, eps)?,
    })
}

impl BertModel {
    /// `w` is positioned at the encoder's root (`bert.` inside a classifier checkpoint).
    pub fn load(w: &Weights, config: &BertConfig) -> Result<Self> {
        let c = config;
        let e = w.pp("embeddings");
        let layers = (0..c.num_layers)
            .map(|i| load_layer(&w.pp(format!("encoder.layer.{i}")), c))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            word: Embedding::load(&e, "word_embeddings.weight", c.vocab_size, c.hidden_size)?,
            position: Embedding::load(
                &e,
                "position_embeddings.weight",
                c.max_position_embeddings,
                c.hidden_size,
            )?,
            token_type: Embedding::load(
                &e,
                "token_type_embeddings.weight",
                c.type_vocab_size,
                c.hidden_size,
            )?,
            emb_norm: Norm::layer(&e, "LayerNorm", c.hidden_size, c.layer_norm_eps)?,
            layers,
            config: c.clone(),
            device: w.device().clone(),
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    pub fn device(&self) -> &candle_core::Device {
        &self.device
    }

    /// `ids, attention_mask: (batch, seq)` u32 (mask 1 = token, 0 = padding;
    /// token type 0) -> last hidden states `(batch, seq, hidden)`.
    pub fn forward(&self, ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let dev = ids.device();
        let positions = Tensor::arange(0u32, t as u32, dev)?
            .unsqueeze(0)?
            .repeat((b, 1))?;
        let types = Tensor::zeros((b, t), DType::U32, dev)?;
        let xs = ((self.word.forward(ids)? + self.position.forward(&positions)?)?
            + self.token_type.forward(&types)?)?;
        let mut xs = self.emb_norm.forward(&xs)?;
        // 0 for tokens, a large negative for padding keys (transformers uses the dtype minimum).
        let keep = attention_mask.to_dtype(DType::F32)?;
        let mask = ((keep - 1.0)? * 1e30)?.reshape((b, 1, 1, t))?;
        let inputs = AttentionInputs {
            rope: None,
            mask: Some(&mask),
        };
        for layer in &self.layers {
            let h = layer
                .attn
                .forward(&xs, &inputs, None::<(&mut DecodeState, usize)>)?;
            xs = layer.attn_norm.forward(&(xs + h)?)?;
            let h = layer.mlp.forward(&xs)?;
            xs = layer.out_norm.forward(&(xs + h)?)?;
        }
        Ok(xs)
    }
}

/// Mean of the hidden states over non-padding positions:
/// `hidden: (batch, seq, d)`, `attention_mask: (batch, seq)` -> `(batch, d)`.
pub fn mean_pool(hidden: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
    let m = attention_mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&m)?.sum(1)?;
    let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?;
    Ok(summed.broadcast_div(&counts)?)
}
