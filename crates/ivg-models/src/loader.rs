//! Opens a model from a Hugging Face directory (`config.json` + safetensors,
//! single file or sharded with `model.safetensors.index.json`) or a `.gguf`
//! file, and summarises it for `ivg inspect`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::Device;

use crate::arch::bert::BertModel;
use crate::config::{config_path, ModelConfig};
use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;
use crate::heads::ClassifierHead;
use crate::model::CausalLm;
use crate::weights::{QuantPolicy, Weights};

/// How to materialise weights.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: Device,
    pub quant: QuantPolicy,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            quant: QuantPolicy::Keep,
        }
    }
}

/// Where a model's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A directory with `config.json` and safetensors weights.
    HfDir {
        dir: PathBuf,
        weights: Vec<PathBuf>,
    },
    Gguf(PathBuf),
}

/// A training output directory (no `config.json`, a `latest` file naming a
/// checkpoint, as `ivg train` writes) stands for that checkpoint; any other
/// path is itself.
pub fn checkpoint_dir(path: &Path) -> PathBuf {
    let latest = path.join("latest");
    if path.is_dir() && !config_path(path).is_file() && latest.is_file() {
        if let Ok(name) = std::fs::read_to_string(&latest) {
            let dir = path.join(name.trim());
            if dir.is_dir() {
                return dir;
            }
        }
    }
    path.to_path_buf()
}

impl ModelSource {
    /// Classifies `path`, listing the safetensors shards of a directory (a
    /// training output directory resolves to its latest checkpoint).
    pub fn resolve(path: &Path) -> Result<Self> {
        let path = &checkpoint_dir(path);
        if path.is_file() && path.extension().is_some_and(|e| e == "gguf") {
            return Ok(Self::Gguf(path.to_path_buf()));
        }
        if !path.is_dir() {
            if !path.exists() {
                return Err(ModelError::Io {
                    path: path.to_path_buf(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no such file or directory",
                    ),
                });
            }
            return Err(ModelError::NotAModel {
                path: path.to_path_buf(),
            });
        }
        Ok(Self::HfDir {
            dir: path.to_path_buf(),
            weights: safetensors_files(path)?,
        })
    }

    pub fn path(&self) -> &Path {
        match self {
            Self::HfDir { dir, .. } => dir,
            Self::Gguf(p) => p,
        }
    }
}

/// `model.safetensors`, or the shards named by `model.safetensors.index.json`.
fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        return Err(ModelError::Io {
            path: single,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no model.safetensors and no model.safetensors.index.json",
            ),
        });
    }
    let text = std::fs::read_to_string(&index).map_err(|source| ModelError::Io {
        path: index.clone(),
        source,
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: index.clone(),
            source,
        })?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| {
            crate::config::field_err(&index, "weight_map", "missing or not an object")
        })?;
    let files: BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// Reads the configuration and opens the weights of any supported model.
pub fn open(path: &Path, opts: &LoadOptions) -> Result<(ModelConfig, Weights)> {
    match ModelSource::resolve(path)? {
        ModelSource::HfDir { dir, weights } => {
            let config = ModelConfig::from_file(&config_path(&dir))?;
            Ok((
                config,
                Weights::from_safetensors(&weights, &opts.device)?.with_quant(opts.quant),
            ))
        }
        ModelSource::Gguf(file) => {
            let gguf = GgufFile::open(&file)?;
            let config = gguf.decoder_config()?;
            let weights = gguf.weights(&config, &opts.device, opts.quant)?;
            Ok((ModelConfig::Decoder(config), weights))
        }
    }
}

/// Loads a causal LM (GPT-2, Llama family, Gemma 3) from a directory or GGUF.
pub fn load_causal_lm(path: &Path, opts: &LoadOptions) -> Result<CausalLm> {
    let (config, weights) = open(path, opts)?;
    CausalLm::load(&weights, &config, display_name(path))
}

/// A BERT encoder and, when the checkpoint has one, its classification head.
pub struct BertWithHead {
    pub encoder: BertModel,
    pub classifier: Option<ClassifierHead>,
}

impl BertWithHead {
    /// Classifier logits `(batch, labels)` for token ids of different lengths,
    /// right-padded with the config's `pad_token_id` under an attention mask.
    pub fn classify(&self, ids: &[Vec<u32>]) -> Result<candle_core::Tensor> {
        let head = self.classifier.as_ref().ok_or_else(|| {
            ModelError::Unsupported("this BERT checkpoint has no classification head".into())
        })?;
        let n = ids.iter().map(Vec::len).max().unwrap_or(0);
        if n == 0 {
            return Err(ModelError::State(
                "classify needs at least one non-empty text".into(),
            ));
        }
        let pad = self.encoder.config().pad_token_id;
        let mut flat = Vec::with_capacity(ids.len() * n);
        let mut mask = Vec::with_capacity(ids.len() * n);
        for row in ids {
            flat.extend(
                row.iter()
                    .copied()
                    .chain(std::iter::repeat_n(pad, n - row.len())),
            );
            mask.extend((0..n).map(|k| u32::from(k < row.len())));
        }
        let device = self.encoder.device();
        let ids_t = candle_core::Tensor::from_vec(flat, (ids.len(), n), device)?;
        let mask_t = candle_core::Tensor::from_vec(mask, (ids.len(), n), device)?;
        crate::pool::on_pool(|| head.forward(&self.encoder.forward(&ids_t, &mask_t)?))
    }
}

impl BertWithHead {
    /// The reward a classifier gives each text for `label`: with one label
    /// (a reward model) its logit, with two labels the margin
    /// `logit[label] - logit[other]` (e.g. positive minus negative
    /// sentiment), with more `log_softmax(logits)[label]`.
    pub fn label_scores(&self, ids: &[Vec<u32>], label: usize) -> Result<Vec<f64>> {
        let logits = self.classify(ids)?;
        let labels = logits.dim(1)?;
        if label >= labels {
            return Err(ModelError::State(format!(
                "label {label} out of range ({labels} labels)"
            )));
        }
        if labels == 1 {
            let l = logits.to_vec2::<f32>()?;
            return Ok(l.iter().map(|r| r[0] as f64).collect());
        }
        if labels == 2 {
            let l = logits.to_vec2::<f32>()?;
            return Ok(l.iter().map(|r| (r[label] - r[1 - label]) as f64).collect());
        }
        let lp = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1)?.to_vec2::<f32>()?;
        Ok(lp.iter().map(|r| r[label] as f64).collect())
    }
}

/// Loads `BertModel` or `BertForSequenceClassification` (`bert.`-prefixed).
pub fn load_bert(path: &Path, opts: &LoadOptions) -> Result<BertWithHead> {
    let (config, weights) = open(path, opts)?;
    let ModelConfig::Bert(c) = config else {
        return Err(ModelError::Unsupported(format!(
            "{}: expected a BERT checkpoint, found `{}`",
            path.display(),
            config.architecture()
        )));
    };
    let prefix = if weights.contains("bert.embeddings.word_embeddings.weight") {
        "bert"
    } else {
        ""
    };
    let root = if prefix.is_empty() {
        weights.clone()
    } else {
        weights.pp(prefix)
    };
    let encoder = BertModel::load(&root, &c)?;
    let classifier = if weights.contains("classifier.weight") {
        Some(ClassifierHead::load(
            &weights,
            prefix,
            c.hidden_size,
            c.num_labels,
        )?)
    } else {
        None
    };
    Ok(BertWithHead {
        encoder,
        classifier,
    })
}

fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
