//! Rotary position embeddings in the Hugging Face layout (`rotate_half`, GPT-NeoX
//! style), with per-row positions so left-padded batches get the positions each
//! row would have alone. Frequencies follow transformers' `modeling_rope_utils`
//! (`default`, `linear`, `llama3`).

use candle_core::{DType, Device, Tensor, D};

use crate::config::{RopeConfig, RopeScaling};
use crate::error::Result;

#[derive(Clone, Debug)]
pub struct Rope {
    /// `(head_dim / 2,)` f32.
    inv_freq: Tensor,
    differentiable: bool,
}

impl Rope {
    pub fn new(
        cfg: &RopeConfig,
        head_dim: usize,
        device: &Device,
        differentiable: bool,
    ) -> Result<Self> {
        let freqs = inverse_frequencies(cfg, head_dim);
        let inv_freq = Tensor::from_vec(freqs, head_dim / 2, device)?;
        Ok(Self {
            inv_freq,
            differentiable,
        })
    }

    /// `positions: (batch, seq)` u32 -> `(cos, sin)`, each `(batch, seq, head_dim/2)`.
    pub fn tables(&self, positions: &Tensor) -> Result<(Tensor, Tensor)> {
        let pos = positions.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
        let angles = pos.broadcast_mul(&self.inv_freq.reshape((1, 1, ()))?)?;
        Ok((angles.cos()?.contiguous()?, angles.sin()?.contiguous()?))
    }

    /// `xs: (batch, heads, seq, head_dim)` rotated by the tables of [`Rope::tables`].
    pub fn apply(&self, xs: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        if !self.differentiable {
            return Ok(candle_nn::rotary_emb::rope(&xs.contiguous()?, cos, sin)?);
        }
        let half = xs.dim(D::Minus1)? / 2;
        let cos = Tensor::cat(&[cos, cos], D::Minus1)?.unsqueeze(1)?;
        let sin = Tensor::cat(&[sin, sin], D::Minus1)?.unsqueeze(1)?;
        let x1 = xs.narrow(D::Minus1, 0, half)?;
        let x2 = xs.narrow(D::Minus1, half, half)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        Ok((xs.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?)?)
    }
}

/// `1 / theta^(2i/d)`, computed in f32 as transformers does, then scaled.
fn inverse_frequencies(cfg: &RopeConfig, head_dim: usize) -> Vec<f32> {
    let base = cfg.theta as f32;
    (0..head_dim / 2)
        .map(|i| {
            let f = 1.0 / base.powf((2 * i) as f32 / head_dim as f32);
            scale_frequency(f, &cfg.scaling)
        })
        .collect()
}

fn scale_frequency(freq: f32, scaling: &RopeScaling) -> f32 {
    match *scaling {
        RopeScaling::None => freq,
        RopeScaling::Linear { factor } => freq / factor as f32,
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings: old,
        } => {
            let freq = freq as f64;
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            let scaled = if wavelen < high_wavelen {
                freq
            } else if wavelen > low_wavelen {
                freq / factor
            } else {
                let smooth =
                    (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                (1.0 - smooth) * freq / factor + smooth * freq
            };
            scaled as f32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_and_composed_rope_agree() -> Result<()> {
        let dev = Device::Cpu;
        let cfg = RopeConfig {
            theta: 10_000.0,
            scaling: RopeScaling::None,
        };
        let fused = Rope::new(&cfg, 8, &dev, false)?;
        let slow = Rope::new(&cfg, 8, &dev, true)?;
        let pos = Tensor::new(&[[0u32, 1, 2], [5, 6, 7]], &dev)?;
        let (cos, sin) = fused.tables(&pos)?;
        let xs = Tensor::randn(0f32, 1.0, (2, 3, 3, 8), &dev)?;
        let a = fused.apply(&xs, &cos, &sin)?;
        let b = slow.apply(&xs, &cos, &sin)?;
        let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "diff {diff}");
        Ok(())
    }

    #[test]
    fn position_zero_is_identity() -> Result<()> {
        let dev = Device::Cpu;
        let cfg = RopeConfig {
            theta: 10_000.0,
            scaling: RopeScaling::Linear { factor: 2.0 },
        };
        let rope = Rope::new(&cfg, 4, &dev, false)?;
        let (cos, sin) = rope.tables(&Tensor::new(&[[0u32]], &dev)?)?;
        let xs = Tensor::new(&[[[[1f32, 2., 3., 4.]]]], &dev)?;
        let out = rope.apply(&xs, &cos, &sin)?;
        assert_eq!(out.flatten_all()?.to_vec1::<f32>()?, vec![1., 2., 3., 4.]);
        Ok(())
    }
}
