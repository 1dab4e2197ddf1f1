//! Loading a model together with its tokenizer, from a GGUF file or an HF directory.

use std::path::Path;

use anyhow::{Context, Result};
use ivg_models::gguf::GgufFile;
use ivg_models::{load_causal_lm, CausalLm, LoadOptions, ModelConfig, QuantPolicy};
use ivg_tokenize::Tokenizer;

pub struct LoadedLm {
    pub model: CausalLm,
    pub tokenizer: Tokenizer,
}

impl LoadedLm {
    /// End-of-sequence ids from the tokenizer and the model config.
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
/// the cache when missing; any other path is itself.
pub fn resolve_path(path: &Path) -> Result<std::path::PathBuf> {
    let Some(name) = path.to_str().and_then(|s| s.strip_prefix("asset:")) else {
        return Ok(path.to_path_buf());
    };
    let Some(asset) = ivg_assets::Asset::from_name(name) else {
        let known: Vec<&str> = ivg_assets::Asset::ALL.iter().map(|a| a.name()).collect();
        anyhow::bail!(
            "unknown asset `{name}` in `{}` (known: {})",
            path.display(),
            known.join(", ")
        );
    };
    Ok(crate::assets_cmd::ensure(&[asset])?.remove(0))
}

/// The tokenizer of a model: embedded in a GGUF, or `tokenizer.json` in a directory.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    let path = &ivg_models::loader::checkpoint_dir(&resolve_path(path)?);
    if path.is_file() {
        let gguf = GgufFile::open(path)?;
        return Ok(Tokenizer::from_gguf(&gguf.content, path)?);
    }
    let file = path.join("tokenizer.json");
    Tokenizer::from_file(&file)
        .with_context(|| format!("loading the tokenizer of {}", path.display()))
}

pub fn load_lm(path: &Path, f32_weights: bool) -> Result<LoadedLm> {
    let path = &resolve_path(path)?;
    let opts = LoadOptions {
        quant: if f32_weights {
            QuantPolicy::Dequantize
        } else {
            QuantPolicy::Keep
        },
        ..LoadOptions::default()
    };
    let model =
        load_causal_lm(path, &opts).with_context(|| format!("loading model {}", path.display()))?;
    let tokenizer = load_tokenizer(path)?;
    let (tv, mv) = (tokenizer.vocab_size(), model.vocab_size());
    if tv > mv {
        anyhow::bail!(
            "{}: the tokenizer has {tv} tokens but the model's embedding has only {mv} rows",
            path.display()
        );
    }
    Ok(LoadedLm { model, tokenizer })
}
