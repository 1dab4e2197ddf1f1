//! Naming and loading one model: [`ModelRef`] (a path, HF directory or
//! `.gguf`, or `asset:NAME`; the device; the quantization policy) and what it
//! loads into: a [`LoadedModel`] (causal LM and tokenizer behind `Arc`s, so a
//! server's requests and a guide set's value functions share one copy), a
//! scalar-head model or a BERT classifier.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use candle_core::Device;
use ivg_models::gguf::GgufFile;
use ivg_models::loader::BertWithHead;
use ivg_models::{CausalLm, LoadOptions, ModelConfig, QuantPolicy, ScalarLm};
use ivg_tokenize::Tokenizer;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::RuntimeError;

/// Where a model's weights live. Defaults to the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    #[default]
    Cpu,
    /// A CUDA device by ordinal (`cuda` is `cuda:0`); needs the `cuda` feature.
    Cuda(usize),
}

impl DeviceSpec {
    /// The candle device. CUDA devices are opened once per ordinal and shared:
    /// candle gives every `Device::new_cuda` its own identity, and tensors of
    /// two identities refuse to mix even on one GPU (base logits plus guide
    /// offsets would fail with a device mismatch).
    pub fn device(&self) -> Result<Device, RuntimeError> {
        match *self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(ordinal) => cuda_device(ordinal),
        }
    }
}

fn cuda_device(ordinal: usize) -> Result<Device, RuntimeError> {
    static OPENED: OnceLock<Mutex<HashMap<usize, Device>>> = OnceLock::new();
    // A panic while holding the lock cannot leave the map half-written.
    let mut opened = OPENED
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(device) = opened.get(&ordinal) {
        return Ok(device.clone());
    }
    let device = Device::new_cuda(ordinal).map_err(|e| RuntimeError::Device {
        device: DeviceSpec::Cuda(ordinal).to_string(),
        problem: format!(
            "{e} (a CUDA device needs ivg built with `--features cuda` and a visible GPU)"
        ),
    })?;
    opened.insert(ordinal, device.clone());
    Ok(device)
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = RuntimeError;

    fn from_str(s: &str) -> Result<Self, RuntimeError> {
        let bad = |problem: &str| RuntimeError::Device {
            device: s.to_string(),
            problem: problem.to_string(),
        };
        match s.trim() {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .map(Self::Cuda)
                    .map_err(|_| bad("the CUDA ordinal must be a number, as in `cuda:0`")),
                None => Err(bad("expected `cpu`, `cuda` or `cuda:N`")),
            },
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = RuntimeError;

    fn try_from(s: String) -> Result<Self, RuntimeError> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

/// What to do with quantized (GGUF) weights; dense checkpoints ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quant {
    /// Keep them quantized (Q4 re-quantized to Q8_0, see [`QuantPolicy::Keep`]).
    #[default]
    Keep,
    /// Dequantize to f32: slower, matches the reference implementation (the
    /// CLI's `--f32`).
    #[serde(alias = "dequantize")]
    F32,
    /// Inference only: also quantize dense matrices (a safetensors guide) to
    /// Q8_0, run by the same kernel as a Q8_0 base.
    #[serde(rename = "q8_0")]
    Q8_0,
}

impl Quant {
    pub fn policy(self) -> QuantPolicy {
        match self {
            Self::Keep => QuantPolicy::Keep,
            Self::F32 => QuantPolicy::Dequantize,
            Self::Q8_0 => QuantPolicy::Q8_0,
        }
    }
}

/// A model to load: deserializes from a bare string (the path) or from a
/// table `{ path, device = "cpu", quant = "keep" }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ModelRef {
    /// A HF directory (`config.json`, safetensors, `tokenizer.json`), a
    /// `.gguf` file, a training output directory (its latest checkpoint) or
    /// `asset:NAME` (an offline asset, fetched into the cache when missing).
    pub path: PathBuf,
    pub device: DeviceSpec,
    pub quant: Quant,
}

/// The table form of [`ModelRef`], with unknown keys refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelRefTable {
    path: PathBuf,
    #[serde(default)]
    device: DeviceSpec,
    #[serde(default)]
    quant: Quant,
}

impl<'de> Deserialize<'de> for ModelRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RefVisitor;

        impl<'de> Visitor<'de> for RefVisitor {
            type Value = ModelRef;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a model path, or a table with `path` and optional `device`, `quant`")
            }

            fn visit_str<E: de::Error>(self, path: &str) -> Result<ModelRef, E> {
                if path.is_empty() {
                    return Err(E::custom("a model path must not be empty"));
                }
                Ok(ModelRef::new(path))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ModelRef, A::Error> {
                let t = ModelRefTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if t.path.as_os_str().is_empty() {
                    return Err(de::Error::custom("`path`: a model path must not be empty"));
                }
                Ok(ModelRef {
                    path: t.path,
                    device: t.device,
                    quant: t.quant,
                })
            }
        }

        deserializer.deserialize_any(RefVisitor)
    }
}

impl From<&str> for ModelRef {
    fn from(path: &str) -> Self {
        Self::new(path)
    }
}

impl From<PathBuf> for ModelRef {
    fn from(path: PathBuf) -> Self {
        Self::new(path)
    }
}

impl ModelRef {
    /// `path` on the CPU, quantized weights kept.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            device: DeviceSpec::Cpu,
            quant: Quant::Keep,
        }
    }

    pub fn with_device(mut self, device: DeviceSpec) -> Self {
        self.device = device;
        self
    }

    pub fn with_quant(mut self, quant: Quant) -> Self {
        self.quant = quant;
        self
    }

    /// This reference with `asset:NAME` replaced by the asset's cache path
    /// (fetched when missing): the identity under which a guide set loads a
    /// model once however it is spelled.
    pub fn resolved(&self) -> Result<Self, RuntimeError> {
        Ok(Self {
            path: resolve_path(&self.path)?,
            ..self.clone()
        })
    }

    /// The device and quantization policy in ivg-models' terms.
    pub fn load_options(&self) -> Result<LoadOptions, RuntimeError> {
        Ok(LoadOptions {
            device: self.device.device()?,
            quant: self.quant.policy(),
        })
    }

    /// A causal LM and its tokenizer; refuses a tokenizer with more ids than
    /// the model's embedding has rows.
    pub fn load(&self) -> Result<LoadedModel, RuntimeError> {
        let path = resolve_path(&self.path)?;
        let model = ivg_models::load_causal_lm(&path, &self.load_options()?)
            .map_err(|error| model_error(&path, error))?;
        let tokenizer = tokenizer_at(&path)?;
        let (tokens, rows) = (tokenizer.vocab_size(), model.vocab_size());
        if tokens > rows {
            return Err(RuntimeError::VocabLargerThanModel { path, tokens, rows });
        }
        Ok(LoadedModel {
            model: Arc::new(model),
            tokenizer: Arc::new(tokenizer),
        })
    }

    /// The model's tokenizer alone.
    pub fn load_tokenizer(&self) -> Result<Tokenizer, RuntimeError> {
        tokenizer_at(&resolve_path(&self.path)?)
    }

    /// A causal backbone with a one-label `score` head (a reward or scalar
    /// value model), named `name` in its errors.
    pub fn load_scalar(&self, name: &str) -> Result<ScalarLm, RuntimeError> {
        let path = resolve_path(&self.path)?;
        let (config, weights) = ivg_models::open(&path, &self.load_options()?)
            .map_err(|error| model_error(&path, error))?;
        ScalarLm::load(&weights, &config, name).map_err(|error| model_error(&path, error))
    }

    /// A BERT encoder with its classification head (when the checkpoint has one).
    pub fn load_classifier(&self) -> Result<BertWithHead, RuntimeError> {
        let path = resolve_path(&self.path)?;
        ivg_models::load_bert(&path, &self.load_options()?)
            .map_err(|error| model_error(&path, error))
    }
}

fn model_error(path: &Path, error: ivg_models::ModelError) -> RuntimeError {
    RuntimeError::Model {
        path: path.to_path_buf(),
        error,
    }
}

/// A causal LM with its tokenizer, both shareable across threads.
#[derive(Clone)]
pub struct LoadedModel {
    pub model: Arc<CausalLm>,
    pub tokenizer: Arc<Tokenizer>,
}

impl LoadedModel {
    /// End-of-sequence ids: the tokenizer's, then the model config's (a GGUF
    /// or `generation_config.json` may name ids the tokenizer does not).
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut ids = self.tokenizer.eos_ids().to_vec();
        let from_config = match self.model.config() {
            ModelConfig::Gpt2(c) => c.eos_token_ids.clone(),
            ModelConfig::Decoder(c) => c.eos_token_ids.clone(),
            ModelConfig::Bert(_) => Vec::new(),
        };
        for id in from_config {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }
}

/// `asset:NAME` (e.g. `asset:smollm2`) names an offline asset, fetched into
/// the cache when missing (progress on stderr); any other path is itself.
pub fn resolve_path(path: &Path) -> Result<PathBuf, RuntimeError> {
    let Some(name) = path.to_str().and_then(|s| s.strip_prefix("asset:")) else {
        return Ok(path.to_path_buf());
    };
    let Some(asset) = ivg_assets::Asset::from_name(name) else {
        let known: Vec<&str> = ivg_assets::Asset::ALL.iter().map(|a| a.name()).collect();
        return Err(RuntimeError::UnknownAsset {
            name: name.to_string(),
            path: path.display().to_string(),
            known: known.join(", "),
        });
    };
    let asset_error = |error| RuntimeError::Asset {
        name: name.to_string(),
        error: Box::new(error),
    };
    ivg_assets::AssetCache::from_env()
        .map_err(asset_error)?
        .ensure(asset, &mut |msg| eprintln!("{msg}"))
        .map_err(asset_error)
}

/// The tokenizer of a model (`asset:NAME` resolved): embedded in a GGUF, or
/// `tokenizer.json` in a directory (a training output directory's latest
/// checkpoint).
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer, RuntimeError> {
    tokenizer_at(&resolve_path(path)?)
}

fn tokenizer_at(path: &Path) -> Result<Tokenizer, RuntimeError> {
    let path = &ivg_models::loader::checkpoint_dir(path);
    let tokenizer_error = |error| RuntimeError::Tokenizer {
        path: path.clone(),
        error,
    };
    if path.is_file() {
        let gguf = GgufFile::open(path).map_err(|error| model_error(path, error))?;
        return Tokenizer::from_gguf(&gguf.content, path).map_err(tokenizer_error);
    }
    Tokenizer::from_file(&path.join("tokenizer.json")).map_err(tokenizer_error)
}
