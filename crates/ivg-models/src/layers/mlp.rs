//! Feed-forward blocks: gated (SwiGLU / GeGLU, Llama and Gemma) and plain
//! (GPT-2, BERT), over the shared [`Linear`].

use candle_core::Tensor;

use crate::config::Activation;
use crate::error::Result;
use crate::layers::Linear;

/// Applies an activation with ops that all have a backward pass.
pub fn activate(xs: &Tensor, act: Activation) -> Result<Tensor> {
    Ok(match act {
        Activation::Silu => candle_nn::ops::silu(xs)?,
        Activation::GeluTanh => xs.gelu()?,
        Activation::Gelu => xs.gelu_erf()?,
        Activation::Relu => xs.relu()?,
    })
}

#[derive(Clone, Debug)]
pub enum Mlp {
    /// `down(act(gate(x)) * up(x))`.
    Gated {
        gate: Linear,
        up: Linear,
        down: Linear,
        act: Activation,
    },
    /// `proj(act(fc(x)))`.
    Plain {
        fc: Linear,
        proj: Linear,
        act: Activation,
    },
}

impl Mlp {
    /// `xs: (batch, seq, hidden)` -> same shape.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Self::Gated {
                gate,
                up,
                down,
                act,
            } => {
                let g = activate(&gate.forward(xs)?, *act)?;
                down.forward(&(g * up.forward(xs)?)?)
            }
            Self::Plain { fc, proj, act } => proj.forward(&activate(&fc.forward(xs)?, *act)?),
        }
    }
}
