//! Multi-head attention with grouped key/value heads, optional q/k norms
//! (Gemma 3), rotary positions, an additive mask from [`crate::state::DecodeState`]
//! and an optional KV cache. One implementation serves GPT-2, the Llama family,
//! Gemma 3 and BERT (bidirectional, no cache).

use candle_core::{Tensor, D};

use crate::error::Result;
use crate::layers::{sdpa, Linear, Norm, Rope};
use crate::state::DecodeState;

/// Head layout and scaling of an attention block.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Multiplies `q k^T`.
    pub scale: f64,
    /// Gemma 2 style `tanh` soft cap of the scores, if any.
    pub softcap: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct Attention {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub q_norm: Option<Norm>,
    pub k_norm: Option<Norm>,
    pub shape: AttentionShape,
    pub differentiable: bool,
}

/// Per-forward inputs shared by all layers of one kind.
pub struct AttentionInputs<'a> {
    /// `(cos, sin)` of `(batch, seq, head_dim/2)`, when the model uses rope.
    pub rope: Option<(&'a Rope, &'a Tensor, &'a Tensor)>,
    /// `(batch, 1, seq, kv_len)` additive mask.
    pub mask: Option<&'a Tensor>,
}

impl Attention {
    /// `xs: (batch, seq, hidden)` -> `(batch, seq, hidden)`; with a cache, the new
    /// keys and values are appended to `layer` of `cache`.
    pub fn forward(
        &self,
        xs: &Tensor,
        inputs: &AttentionInputs<'_>,
        cache: Option<(&mut DecodeState, usize)>,
    ) -> Result<Tensor> {
        let (b, t, _) = xs.dims3()?;
        let s = self.shape;
        let split = |x: Tensor, heads: usize| -> Result<Tensor> {
            Ok(x.reshape((b, t, heads, s.head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let mut q = split(self.q.forward(xs)?, s.heads)?;
        let mut k = split(self.k.forward(xs)?, s.kv_heads)?;
        let v = split(self.v.forward(xs)?, s.kv_heads)?;
        if let Some(n) = &self.q_norm {
            q = n.forward(&q)?;
        }
        if let Some(n) = &self.k_norm {
            k = n.forward(&k)?;
        }
        if let Some((rope, cos, sin)) = inputs.rope {
            q = rope.apply(&q, cos, sin)?;
            k = rope.apply(&k, cos, sin)?;
        }
        let (k, v) = match cache {
            Some((state, layer)) => state.append(layer, &k, &v)?,
            None => (k, v),
        };
        let out = if !self.differentiable && sdpa::supports(&q) {
            let heads = sdpa::Heads {
                heads: s.heads,
                kv_heads: s.kv_heads,
                scale: s.scale as f32,
                softcap: s.softcap.map(|c| c as f32),
            };
            sdpa::attend(&q, &k, &v, inputs.mask, heads)?
        } else {
            let out = self.attend(&q, &k, &v, inputs.mask)?;
            out.transpose(1, 2)?.reshape((b, t, s.heads * s.head_dim))?
        };
        self.o.forward(&out)
    }

    /// `q: (b, heads, t, d)`, `k, v: (b, kv_heads, s, d)` -> `(b, heads, t, d)`,
    /// by candle's ops: differentiable, and on any device. CPU inference runs
    /// [`sdpa::attend`] instead, whose rows do not depend on the batch.
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let s = self.shape;
        let k = repeat_kv(k, s.heads / s.kv_heads)?;
        let v = repeat_kv(v, s.heads / s.kv_heads)?;
        let mut scores = (q.matmul(&k.t()?)? * s.scale)?;
        if let Some(cap) = s.softcap {
            scores = ((scores / cap)?.tanh()? * cap)?;
        }
        if let Some(m) = mask {
            scores = scores.broadcast_add(m)?;
        }
        let probs = if self.differentiable {
            candle_nn::ops::softmax(&scores, D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores)?
        };
        Ok(probs.matmul(&v.contiguous()?)?)
    }
}

/// `(b, kv_heads, s, d)` -> `(b, kv_heads * rep, s, d)`; head `h` reads kv head `h / rep`.
fn repeat_kv(x: &Tensor, rep: usize) -> Result<Tensor> {
    if rep == 1 {
        return Ok(x.clone());
    }
    let (b, kvh, s, d) = x.dims4()?;
    Ok(x.unsqueeze(2)?
        .expand((b, kvh, rep, s, d))?
        .reshape((b, kvh * rep, s, d))?)
}
