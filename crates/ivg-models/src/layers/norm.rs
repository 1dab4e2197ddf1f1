//! LayerNorm and RMSNorm. Inference uses candle's fused kernels; a model built
//! for training uses the composed (`*_slow`) forms, since the fused ones have
//! no backward pass and silently cut gradients (architecture.md).

use candle_core::{DType, Tensor, D};
use candle_nn::Init;

use crate::error::Result;
use crate::weights::Weights;

#[derive(Clone, Debug)]
pub enum Norm {
    /// `x / rms(x) * (offset + w)`; Gemma's HF weights use offset 1.
    Rms {
        weight: Tensor,
        eps: f64,
        offset: f64,
        differentiable: bool,
    },
    Layer {
        weight: Tensor,
        bias: Tensor,
        eps: f64,
        differentiable: bool,
    },
}

impl Norm {
    /// Loads `{name}.weight` (dim,). A fresh weight is initialised so that the
    /// effective scale `offset + w` is 1.
    pub fn rms(w: &Weights, name: &str, dim: usize, eps: f64, offset: f64) -> Result<Self> {
        let weight = w
            .pp(name)
            .tensor("weight", &[dim], Init::Const(1.0 - offset))?;
        Ok(Self::Rms {
            weight,
            eps,
            offset,
            differentiable: w.is_trainable(),
        })
    }

    /// Loads `{name}.weight` and `{name}.bias` (dim,).
    pub fn layer(w: &Weights, name: &str, dim: usize, eps: f64) -> Result<Self> {
        let w = w.pp(name);
        Ok(Self::Layer {
            weight: w.tensor("weight", &[dim], Init::Const(1.0))?,
            bias: w.tensor("bias", &[dim], Init::Const(0.0))?,
            eps,
            differentiable: w.is_trainable(),
        })
    }

    /// `xs: (..., dim)` -> same shape.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Self::Rms {
                weight,
                eps,
                offset,
                differentiable,
            } => {
                let scale = if *offset == 0.0 {
                    weight.clone()
                } else {
                    weight.affine(1.0, *offset)?
                };
                if *differentiable {
                    rms_norm_composed(xs, &scale, *eps)
                } else {
                    Ok(candle_nn::ops::rms_norm(
                        &xs.contiguous()?,
                        &scale,
                        *eps as f32,
                    )?)
                }
            }
            Self::Layer {
                weight,
                bias,
                eps,
                differentiable,
            } => {
                if *differentiable {
                    Ok(candle_nn::ops::layer_norm_slow(
                        xs,
                        weight,
                        bias,
                        *eps as f32,
                    )?)
                } else {
                    Ok(candle_nn::ops::layer_norm(
                        &xs.contiguous()?,
                        weight,
                        bias,
                        *eps as f32,
                    )?)
                }
            }
        }
    }
}

/// RMSNorm from differentiable ops, in f32.
fn rms_norm_composed(xs: &Tensor, scale: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = xs.dtype();
    let xs = xs.to_dtype(DType::F32)?;
    let ms = xs.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = xs.broadcast_div(&(ms + eps)?.sqrt()?)?;
    Ok(normed.broadcast_mul(scale)?.to_dtype(dtype)?)
}
