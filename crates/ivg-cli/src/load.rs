//! Loading a model together with its tokenizer from the CLI's flags: the
//! flags become an [`ivg_runtime::ModelRef`] and the runtime loads it (GGUF
//! or HF directory, `asset:NAME` fetched into the cache when missing).

use std::path::{Path, PathBuf};

use anyhow::Result;
use ivg_runtime::{ModelRef, Quant};
use ivg_tokenize::Tokenizer;

/// A causal LM and its tokenizer behind `Arc`s, with its stop ids.
pub type LoadedLm = ivg_runtime::LoadedModel;

/// `asset:NAME` (e.g. `asset:smollm2`) names an offline asset, fetched into
/// the cache when missing; any other path is itself.
pub fn resolve_path(path: &Path) -> Result<PathBuf> {
    Ok(ivg_runtime::resolve_path(path)?)
}

/// The tokenizer of a model: embedded in a GGUF, or `tokenizer.json` in a directory.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    Ok(ivg_runtime::load_tokenizer(path)?)
}

/// The model at `path` on the CPU; `f32_weights` (`--f32`) dequantizes GGUF weights.
pub fn load_lm(path: &Path, f32_weights: bool) -> Result<LoadedLm> {
    let quant = if f32_weights { Quant::F32 } else { Quant::Keep };
    Ok(ModelRef::new(path).with_quant(quant).load()?)
}
