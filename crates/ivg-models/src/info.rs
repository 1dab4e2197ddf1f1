//! A model's vital statistics without building it (`ivg inspect`).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::safetensors::MmapedSafetensors;

use crate::config::{config_path, ModelConfig};
use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;
use crate::loader::ModelSource;

#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub architecture: String,
    pub format: &'static str,
    pub vocab_size: usize,
    pub context_length: usize,
    pub num_layers: usize,
    pub hidden_size: usize,
    pub parameters: u64,
    /// Parameter count per storage type (`F32`, `Q8_0`, ...).
    pub dtypes: BTreeMap<String, u64>,
}

impl std::fmt::Display for ModelInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "architecture    {}", self.architecture)?;
        writeln!(f, "format          {}", self.format)?;
        writeln!(f, "vocabulary      {}", self.vocab_size)?;
        writeln!(f, "context length  {}", self.context_length)?;
        writeln!(f, "layers          {}", self.num_layers)?;
        writeln!(f, "hidden size     {}", self.hidden_size)?;
        writeln!(
            f,
            "parameters      {} ({:.1}M)",
            self.parameters,
            self.parameters as f64 / 1e6
        )?;
        let types: Vec<String> = self
            .dtypes
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        write!(f, "storage types   {}", types.join(", "))
    }
}

fn shape_of(config: &ModelConfig) -> (usize, usize) {
    match config {
        ModelConfig::Gpt2(c) => (c.n_layer, c.n_embd),
        ModelConfig::Decoder(c) => (c.num_layers, c.hidden_size),
        ModelConfig::Bert(c) => (c.num_layers, c.hidden_size),
    }
}

/// Reads the config and the tensor headers of `path`.
pub fn inspect(path: &Path) -> Result<ModelInfo> {
    let mut dtypes = BTreeMap::new();
    let (config, format) = match ModelSource::resolve(path)? {
        ModelSource::HfDir { dir, weights } => {
            let config = ModelConfig::from_file(&config_path(&dir))?;
            // SAFETY: read-only mapping of files we only read headers from.
            let st = unsafe { MmapedSafetensors::multi(&weights) }.map_err(|e| {
                ModelError::Safetensors {
                    path: dir.clone(),
                    reason: e.to_string(),
                }
            })?;
            for (_, view) in st.tensors() {
                let n: usize = view.shape().iter().product();
                *dtypes.entry(format!("{:?}", view.dtype())).or_insert(0) += n as u64;
            }
            (config, "safetensors")
        }
        ModelSource::Gguf(file) => {
            let gguf = GgufFile::open(&file)?;
            for info in gguf.content.tensor_infos.values() {
                *dtypes.entry(format!("{:?}", info.ggml_dtype)).or_insert(0) +=
                    info.shape.elem_count() as u64;
            }
            (ModelConfig::Decoder(gguf.decoder_config()?), "gguf")
        }
    };
    let (num_layers, hidden_size) = shape_of(&config);
    Ok(ModelInfo {
        architecture: config.architecture().to_string(),
        format,
        vocab_size: config.vocab_size(),
        context_length: config.context_length(),
        num_layers,
        hidden_size,
        parameters: dtypes.values().sum(),
        dtypes,
    })
}
