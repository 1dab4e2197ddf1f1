//! GPT-2 (`GPT2LMHeadModel` checkpoints), after transformers' `modeling_gpt2.py`.
//! HF stores its projections as `Conv1D` with `(in, out)` weights; we view them
//! as `(out, in)` linears and split the fused `c_attn` into q, k, v, so the
//! shared attention serves GPT-2 too. Learned absolute positions are taken per
//! row, so left-padded batches see the positions each row would have alone.

use candle_core::Tensor;
use candle_nn::Init;

use crate::arch::Backbone;
use crate::config::Gpt2Config;
use crate::error::Result;
use crate::layers::{
    normal_init, Attention, AttentionInputs, AttentionShape, Embedding, Linear, LinearWeight, Mlp,
    Norm,
};
use crate::state::DecodeState;
use crate::weights::Weights;

struct Block {
    ln_1: Norm,
    attn: Attention,
    ln_2: Norm,
    mlp: Mlp,
}

/// `GPT2Model`: tensors under `transformer.`.
pub struct Gpt2Model {
    wte: Embedding,
    wpe: Embedding,
    blocks: Vec<Block>,
    ln_f: Norm,
    config: Gpt2Config,
}

/// Loads a `Conv1D` `(in, out)` weight as `out_parts` linears of `(out/parts, in)`.
fn conv1d(
    w: &Weights,
    name: &str,
    in_dim: usize,
    out_dim: usize,
    parts: usize,
) -> Result<Vec<Linear>> {
    let w = w.pp(name);
    let weight = w.tensor("weight", &[in_dim, out_dim], normal_init())?;
    let bias = w.tensor("bias", &[out_dim], Init::Const(0.0))?;
    let trainable = w.is_trainable();
    let part = out_dim / parts;
    (0..parts)
        .map(|p| {
            // Conv1D already stores `(in, out)`: a loaded weight is used as is
            // (contiguous); a trainable one as an `(out, in)` view tied to its variable.
            let wp = weight.narrow(1, p * part, part)?;
            let bp = bias.narrow(0, p * part, part)?;
            let lw = if trainable {
                LinearWeight::Dense(wp.t()?)
            } else {
                LinearWeight::DenseT(wp.contiguous()?)
            };
            Ok(Linear::from_parts(lw, Some(bp.contiguous()?)))
        })
        .collect()
}

fn load_block(w: &Weights, c: &Gpt2Config) -> Result<Block> {
    let d = c.n_embd;
    let eps = c.layer_norm_epsilon;
    let mut qkv = conv1d(&w.pp("attn"), "c_attn", d, 3 * d, 3)?.into_iter();
    let (q, k, v) = match (qkv.next(), qkv.next(), qkv.next()) {
        (Some(q), Some(k), Some(v)) => (q, k, v),
        _ => return Err(crate::error::ModelError::State("c_attn split".into())),
    };
    let o = conv1d(&w.pp("attn"), "c_proj", d, d, 1)?.remove(0);
    let fc = conv1d(&w.pp("mlp"), "c_fc", d, c.n_inner, 1)?.remove(0);
    let proj = conv1d(&w.pp("mlp"), "c_proj", c.n_inner, d, 1)?.remove(0);
    let head_dim = d / c.n_head;
    Ok(Block {
        ln_1: Norm::layer(w, "ln_1", d, eps)?,
        attn: Attention {
            q,
            k,
            v,
            o,
            q_norm: None,
            k_norm: None,
            shape: AttentionShape {
                heads: c.n_head,
                kv_heads: c.n_head,
                head_dim,
                scale: 1.0 / (head_dim as f64).sqrt(),
                softcap: None,
            },
            differentiable: w.is_trainable(),
        },
        ln_2: Norm::layer(w, "ln_2", d, eps)?,
        mlp: Mlp::Plain {
            fc,
            proj,
            act: c.activation,
        },
    })
}

impl Gpt2Model {
    pub fn load(w: &Weights, config: &Gpt2Config) -> Result<Self> {
        let t = w.pp("transformer");
        let c = config;
        let blocks = (0..c.n_layer)
            .map(|i| load_block(&t.pp(format!("h.{i}")), c))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            wte: Embedding::load(&t, "wte.weight", c.vocab_size, c.n_embd)?,
            wpe: Embedding::load(&t, "wpe.weight", c.n_positions, c.n_embd)?,
            blocks,
            ln_f: Norm::layer(&t, "ln_f", c.n_embd, c.layer_norm_epsilon)?,
            config: c.clone(),
        })
    }

    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }
}

impl Backbone for Gpt2Model {
    fn forward(&self, ids: &Tensor, state: &mut DecodeState) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let positions = state.positions(b, t, ids.device())?;
        let mut xs = (self.wte.forward(ids)? + self.wpe.forward(&positions)?)?;
        let mask = state.mask(b, t, None, ids.device())?;
        let inputs = AttentionInputs {
            rope: None,
            mask: mask.as_ref(),
        };
        for (i, block) in self.blocks.iter().enumerate() {
            let h =
                block
                    .attn
                    .forward(&block.ln_1.forward(&xs)?, &inputs, Some((&mut *state, i)))?;
            xs = (xs + h)?;
            let h = block.mlp.forward(&block.ln_2.forward(&xs)?)?;
            xs = (xs + h)?;
        }
        state.advance(b, t);
        self.ln_f.forward(&xs)
    }

    fn hidden_size(&self) -> usize {
        self.config.n_embd
    }

    fn num_layers(&self) -> usize {
        self.config.n_layer
    }

    fn context_length(&self) -> usize {
        self.config.n_positions
    }

    fn embeddings(&self) -> &Embedding {
        &self.wte
    }
}
