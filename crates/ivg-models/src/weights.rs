//! Where a model's parameters come from: safetensors (one file or sharded),
//! GGUF (quantized matrices kept quantized, or dequantized to f32), or a
//! `VarMap` of trainable variables. The model code asks for tensors by their
//! Hugging Face state-dict names whatever the source, so GGUF is a weight
//! source and not a second model (architecture.md).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder, VarMap};

use crate::error::{ModelError, Result};
use crate::gguf::GgufNames;

/// What to do with quantized GGUF matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantPolicy {
    /// Keep them quantized; Q4_0/Q4_1 are re-quantized to Q8_0 at load because
    /// candle has no SIMD kernel for them (about 6x slower, architecture.md).
    Keep,
    /// Dequantize everything to f32 (parity checks, training from a GGUF).
    Dequantize,
    /// Inference only: also quantize dense matrices (safetensors, GGUF F32 or
    /// F16) to Q8_0 by the activations' rule, so small guides run on the same
    /// Q8_0 kernel as the base; quantized GGUF matrices are kept as `Keep`
    /// keeps them. Matrices whose input size is not a multiple of 32, or off
    /// the CPU, stay dense; trainable sources ignore it.
    Q8_0,
}

/// A matrix as stored: dense f32, or quantized blocks.
pub enum Stored {
    Dense(Tensor),
    Quantized(Arc<QTensor>),
}

enum Backing {
    Safetensors {
        st: MmapedSafetensors,
    },
    Gguf {
        content: gguf_file::Content,
        file: Mutex<File>,
        names: GgufNames,
    },
    Vars {
        varmap: VarMap,
        seed: Option<Seed>,
    },
    Tensors {
        map: HashMap<String, Tensor>,
    },
}

/// Where new trainable variables take their initial values: another source
/// (a pretrained checkpoint, dequantized), read under the variable's name with
/// `strip` removed from its front when the source lacks the full name (e.g. a
/// `BertModel` checkpoint seeding `bert.`-prefixed classifier variables).
struct Seed {
    weights: Weights,
    strip: String,
}

/// A view of a weight source under a name prefix (like candle's `VarBuilder`).
#[derive(Clone)]
pub struct Weights {
    backing: Arc<Backing>,
    source_name: Arc<str>,
    prefix: String,
    device: Device,
    quant: QuantPolicy,
}

impl Weights {
    /// Memory-maps one or several safetensors files (shards of one model).
    pub fn from_safetensors(files: &[PathBuf], device: &Device) -> Result<Self> {
        for f in files {
            if !f.is_file() {
                return Err(ModelError::Io {
                    path: f.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
                });
            }
        }
        // SAFETY: the files are mapped read-only; like every mmap user we rely on
        // them not being truncated while the model is alive.
        let st =
            unsafe { MmapedSafetensors::multi(files) }.map_err(|e| ModelError::Safetensors {
                path: files.first().cloned().unwrap_or_default(),
                reason: e.to_string(),
            })?;
        let name = match files {
            [one] => one.display().to_string(),
            many => format!("{} (+{} shards)", many[0].display(), many.len() - 1),
        };
        Ok(Self::new(
            Backing::Safetensors { st },
            name,
            device,
            QuantPolicy::Dequantize,
        ))
    }

    /// This source under another quantization policy (see [`QuantPolicy`]).
    pub fn with_quant(mut self, quant: QuantPolicy) -> Self {
        self.quant = quant;
        self
    }

    /// Reads a GGUF file's tensors lazily by their llama.cpp names.
    pub(crate) fn from_gguf(
        content: gguf_file::Content,
        file: File,
        path: &Path,
        names: GgufNames,
        device: &Device,
        quant: QuantPolicy,
    ) -> Self {
        let backing = Backing::Gguf {
            content,
            file: Mutex::new(file),
            names,
        };
        Self::new(backing, path.display().to_string(), device, quant)
    }

    /// Trainable variables: a tensor missing from `varmap` is created with the
    /// initialisation the layer asks for.
    pub fn from_varmap(varmap: &VarMap, device: &Device) -> Self {
        let backing = Backing::Vars {
            varmap: varmap.clone(),
            seed: None,
        };
        Self::new(
            backing,
            "trainable variables".into(),
            device,
            QuantPolicy::Dequantize,
        )
    }

    /// Trainable variables initialised from `seed` where it holds the tensor
    /// (looked up under the full name, then with `strip` removed from its
    /// front), and from the layer's own initialisation otherwise: fine-tuning
    /// a checkpoint, or adding a fresh head to a pretrained backbone.
    pub fn from_varmap_seeded(
        varmap: &VarMap,
        seed: Weights,
        strip: impl Into<String>,
        device: &Device,
    ) -> Self {
        let backing = Backing::Vars {
            varmap: varmap.clone(),
            seed: Some(Seed {
                weights: seed,
                strip: strip.into(),
            }),
        };
        Self::new(
            backing,
            "trainable variables".into(),
            device,
            QuantPolicy::Dequantize,
        )
    }

    /// Inference weights held in memory (e.g. freshly initialised or converted).
    pub fn from_tensors(
        map: HashMap<String, Tensor>,
        name: impl Into<String>,
        device: &Device,
    ) -> Self {
        Self::new(
            Backing::Tensors { map },
            name.into(),
            device,
            QuantPolicy::Dequantize,
        )
    }

    fn new(backing: Backing, name: String, device: &Device, quant: QuantPolicy) -> Self {
        Self {
            backing: Arc::new(backing),
            source_name: name.into(),
            prefix: String::new(),
            device: device.clone(),
            quant,
        }
    }

    /// The same source under `prefix.sub`.
    pub fn pp(&self, sub: impl std::fmt::Display) -> Self {
        let mut w = self.clone();
        w.prefix = self.full_name(&sub.to_string());
        w
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether this source trains (gradients must flow through every op).
    pub fn is_trainable(&self) -> bool {
        matches!(*self.backing, Backing::Vars { .. })
    }

    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// Whether the source holds `name` (a trainable source holds everything).
    pub fn contains(&self, name: &str) -> bool {
        let full = self.full_name(name);
        match &*self.backing {
            Backing::Safetensors { st } => st.get(&full).is_ok(),
            Backing::Gguf { content, names, .. } => names
                .map(&full)
                .is_some_and(|g| content.tensor_infos.contains_key(&g)),
            Backing::Vars { .. } => true,
            Backing::Tensors { map } => map.contains_key(&full),
        }
    }

    /// A dense f32 tensor of the given shape; `init` is used only by a trainable source.
    pub fn tensor(&self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        match self.stored(name, shape, init, false)? {
            Stored::Dense(t) => Ok(t),
            Stored::Quantized(q) => Ok(q.dequantize(&self.device)?),
        }
    }

    /// A matrix, kept quantized where the source and policy allow.
    pub fn matrix(&self, name: &str, shape: &[usize], init: Init) -> Result<Stored> {
        self.stored(name, shape, init, true)
    }

    fn stored(&self, name: &str, shape: &[usize], init: Init, allow_quant: bool) -> Result<Stored> {
        let full = self.full_name(name);
        let stored = match &*self.backing {
            Backing::Safetensors { st } => {
                let t = st
                    .load(&full, &self.device)
                    .map_err(|_| self.missing(&full))?;
                Stored::Dense(t.to_dtype(DType::F32)?)
            }
            Backing::Tensors { map } => {
                let t = map.get(&full).ok_or_else(|| self.missing(&full))?;
                Stored::Dense(t.to_device(&self.device)?.to_dtype(DType::F32)?)
            }
            Backing::Vars { varmap, seed } => {
                if let Some(seed) = seed {
                    seed.plant(varmap, &full, shape)?;
                }
                let vb = VarBuilder::from_varmap(varmap, DType::F32, &self.device);
                Stored::Dense(vb.get_with_hints(shape, &full, init)?)
            }
            Backing::Gguf {
                content,
                file,
                names,
            } => {
                let gname = names.map(&full).ok_or_else(|| self.missing(&full))?;
                if !content.tensor_infos.contains_key(&gname) {
                    return Err(self.missing(&format!("{full} (GGUF `{gname}`)")));
                }
                let mut f = file
                    .lock()
                    .map_err(|_| ModelError::State("GGUF file lock poisoned".into()))?;
                let q = content.tensor(&mut *f, &gname, &self.device)?;
                let q = names.fix_tensor(&full, q)?;
                self.quantized_or_dense(q, allow_quant)?
            }
        };
        self.check_shape(&full, &stored, shape)?;
        match stored {
            Stored::Dense(t) if allow_quant && self.quantizes(&t) => Ok(Stored::Quantized(
                Arc::new(QTensor::quantize(&t, GgmlDType::Q8_0)?),
            )),
            other => Ok(other),
        }
    }

    /// Whether the Q8_0 policy applies to the dense matrix `t`.
    fn quantizes(&self, t: &Tensor) -> bool {
        self.quant == QuantPolicy::Q8_0
            && !self.is_trainable()
            && self.device.is_cpu()
            && t.dims().len() == 2
            && t.dims()[1].is_multiple_of(crate::layers::Q8_BLOCK)
    }

    fn quantized_or_dense(&self, q: QTensor, allow_quant: bool) -> Result<Stored> {
        let dense_type = matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
        if dense_type || !allow_quant || self.quant == QuantPolicy::Dequantize {
            return Ok(Stored::Dense(q.dequantize(&self.device)?));
        }
        let q = match q.dtype() {
            GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 => {
                QTensor::quantize(&q.dequantize(&self.device)?, GgmlDType::Q8_0)?
            }
            _ => q,
        };
        Ok(Stored::Quantized(Arc::new(q)))
    }

    fn check_shape(&self, name: &str, stored: &Stored, expected: &[usize]) -> Result<()> {
        let actual = match stored {
            Stored::Dense(t) => t.dims().to_vec(),
            Stored::Quantized(q) => q.shape().dims().to_vec(),
        };
        if actual != expected {
            return Err(ModelError::TensorShape {
                source_name: self.source_name.to_string(),
                name: name.to_string(),
                actual,
                expected: expected.to_vec(),
            });
        }
        Ok(())
    }

    fn missing(&self, name: &str) -> ModelError {
        ModelError::MissingTensor {
            source_name: self.source_name.to_string(),
            name: name.to_string(),
        }
    }
}

impl Seed {
    /// Inserts `name` into `varmap` from the seed source, when the variable
    /// does not exist yet and the source holds it.
    fn plant(&self, varmap: &VarMap, name: &str, shape: &[usize]) -> Result<()> {
        let mut data = varmap
            .data()
            .lock()
            .map_err(|_| ModelError::State("variable map lock poisoned".into()))?;
        if data.contains_key(name) {
            return Ok(());
        }
        let stripped = name
            .strip_prefix(self.strip.as_str())
            .filter(|_| !self.strip.is_empty());
        let source_name = if self.weights.contains(name) {
            name
        } else if let Some(s) = stripped.filter(|s| self.weights.contains(s)) {
            s
        } else {
            return Ok(());
        };
        let t = self.weights.tensor(source_name, shape, Init::Const(0.0))?;
        data.insert(name.to_string(), candle_core::Var::from_tensor(&t)?);
        Ok(())
    }
}
