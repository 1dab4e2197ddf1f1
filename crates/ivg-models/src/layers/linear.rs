//! Linear maps and embeddings over dense or quantized weights: one type each,
//! whatever the weight source (architecture.md: a weight format is a source,
//! not a second model).

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Module, Tensor};
use candle_nn::Init;

use super::q8::Q8Matrix;
use crate::error::Result;
use crate::weights::{Stored, Weights};

/// Default initialisation of fresh trainable matrices (GPT-2 / Llama use N(0, 0.02)).
pub const INIT_STD: f64 = 0.02;

pub(crate) fn normal_init() -> Init {
    Init::Randn {
        mean: 0.0,
        stdev: INIT_STD,
    }
}

/// The weight of a [`Linear`].
#[derive(Clone, Debug)]
pub enum LinearWeight {
    /// `(out, in)`, used as stored: a trainable weight stays tied to its variable.
    Dense(Tensor),
    /// `(in, out)`, contiguous: transposed once at load. gemm over a contiguous
    /// right-hand side is row-invariant (a row's result does not depend on how
    /// many rows share the batch, measured on candle 0.11); over a transposed
    /// view it is not, which would make a batch of beams differ from single runs.
    DenseT(Tensor),
    /// A CPU `Q8_0` weight run by our own batched kernel ([`Q8Matrix`]): it
    /// reads the weight once per call rather than once per activation row, and
    /// a row's result does not depend on the batch.
    Q8(Q8Matrix),
    /// Any other quantized weight, or one off the CPU: candle's kernels.
    Quantized(QMatMul),
}

impl LinearWeight {
    /// An `(out, in)` matrix in the form used for inference or for training.
    pub fn dense(weight: Tensor, trainable: bool) -> Result<Self> {
        if trainable {
            Ok(Self::Dense(weight))
        } else {
            Ok(Self::DenseT(weight.t()?.contiguous()?))
        }
    }

    /// A quantized `(out, in)` matrix: [`LinearWeight::Q8`] for a `Q8_0` one
    /// on the CPU, candle's [`QMatMul`] otherwise.
    pub fn quantized(weight: Arc<QTensor>) -> Result<Self> {
        if weight.dtype() == GgmlDType::Q8_0 && weight.device().is_cpu() {
            Ok(Self::Q8(Q8Matrix::from_qtensor(&weight)?))
        } else {
            Ok(Self::Quantized(QMatMul::from_arc(weight)?))
        }
    }
}

/// `y = x W^T + b`, `W: (out, in)`.
#[derive(Clone, Debug)]
pub struct Linear {
    weight: LinearWeight,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn from_parts(weight: LinearWeight, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// Loads `{name}.weight` of shape `(out, in)` and, if asked, `{name}.bias`.
    pub fn load(
        w: &Weights,
        name: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<Self> {
        let w = w.pp(name);
        let weight = match w.matrix("weight", &[out_dim, in_dim], normal_init())? {
            Stored::Dense(t) => LinearWeight::dense(t, w.is_trainable())?,
            Stored::Quantized(q) => LinearWeight::quantized(q)?,
        };
        let bias = if bias {
            Some(w.tensor("bias", &[out_dim], Init::Const(0.0))?)
        } else {
            None
        };
        Ok(Self { weight, bias })
    }

    /// `xs: (..., in)` -> `(..., out)`.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let ys = match &self.weight {
            LinearWeight::Dense(w) => matmul_2d(xs, &w.t()?)?,
            LinearWeight::DenseT(wt) => matmul_2d(xs, wt)?,
            LinearWeight::Q8(q) => q.forward(xs)?,
            LinearWeight::Quantized(q) => q.forward(&xs.contiguous()?)?,
        };
        match &self.bias {
            Some(b) => Ok(ys.broadcast_add(b)?),
            None => Ok(ys),
        }
    }

    pub fn weight(&self) -> &LinearWeight {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

/// `xs: (..., in)` times `rhs: (in, out)`, as one 2-D matmul.
fn matmul_2d(xs: &Tensor, rhs: &Tensor) -> Result<Tensor> {
    let dims = xs.dims();
    let in_dim = dims[dims.len() - 1];
    let rows = xs.elem_count() / in_dim.max(1);
    let out = xs.reshape((rows, in_dim))?.matmul(rhs)?;
    let mut shape = dims.to_vec();
    let last = shape.len() - 1;
    shape[last] = rhs.dim(1)?;
    Ok(out.reshape(shape)?)
}

/// Token (or position) embeddings: dense rows, or quantized rows dequantized on lookup.
#[derive(Clone, Debug)]
pub enum Embedding {
    Dense(Tensor),
    Quantized(Arc<QTensor>),
}

impl Embedding {
    pub fn load(w: &Weights, name: &str, rows: usize, dim: usize) -> Result<Self> {
        match w.matrix(name, &[rows, dim], normal_init())? {
            Stored::Dense(t) => Ok(Self::Dense(t)),
            Stored::Quantized(q) => Ok(Self::Quantized(q)),
        }
    }

    /// `ids: (batch, seq)` u32 -> `(batch, seq, dim)`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let flat = ids.flatten_all()?;
        let rows = match self {
            Self::Dense(table) => table.index_select(&flat, 0)?,
            Self::Quantized(q) => q.embedding(&flat)?,
        };
        let dim = rows.dim(1)?;
        Ok(rows.reshape((b, t, dim))?)
    }

    /// The same table used as an output projection (tied LM head).
    pub fn as_linear(&self, trainable: bool) -> Result<Linear> {
        let weight = match self {
            Self::Dense(t) => LinearWeight::dense(t.clone(), trainable)?,
            Self::Quantized(q) => LinearWeight::quantized(q.clone())?,
        };
        Ok(Linear::from_parts(weight, None))
    }

    pub fn rows(&self) -> Result<usize> {
        Ok(match self {
            Self::Dense(t) => t.dim(0)?,
            Self::Quantized(q) => q.shape().dims()[0],
        })
    }
}
