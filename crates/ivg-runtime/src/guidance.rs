//! Guidance settings as a front end speaks them: a method name of the paper's
//! matrix (method.md) plus the beam shape, length, sampling and stop settings,
//! expanded into the engine's one [`GuidanceConfig`] by [`Method::config`]
//! (which is where BoN's `W = 1, K = W*K, L = infinity` happens). The CLI
//! builds a [`GuidanceSpec`] from its flags; the server keeps one per preset
//! and layers each request's [`GuidanceOverrides`] over it. A ready
//! [`GuidanceConfig`] can also come from a file ([`load_guidance_config`]).

use std::path::Path;

use ivg_decode::{ChunkRanking, GuidanceConfig, Method, SamplingConfig, TokenPolicy};
use serde::{Deserialize, Serialize};

use crate::RuntimeError;

/// A method and its settings; every field has the CLI's default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuidanceSpec {
    /// base, boni, bone, efti, efte, cbsi, cbse, efti+cbsi or ivg (any case).
    pub method: String,
    /// Beam width `W`.
    pub width: usize,
    /// Successors `K` per survivor.
    pub successors: usize,
    /// Chunk length `L`; absent or 0 is infinity (rank once, at the end).
    pub chunk_len: Option<usize>,
    /// EFT strength `beta` (token-wise methods).
    pub beta: f64,
    /// New tokens at most (`max_tokens` in a server preset, as in the OpenAI API).
    #[serde(alias = "max_tokens")]
    pub max_new_tokens: usize,
    /// 0 is greedy.
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub seed: u64,
    /// A row ends once its response text contains one of these.
    #[serde(alias = "stop_strings")]
    pub stop: Vec<String>,
}

impl Default for GuidanceSpec {
    fn default() -> Self {
        Self {
            method: Method::Base.name().to_string(),
            width: 4,
            successors: 4,
            chunk_len: Some(5),
            beta: 1.0,
            max_new_tokens: 64,
            temperature: 0.7,
            top_k: None,
            top_p: None,
            seed: 0,
            stop: Vec::new(),
        }
    }
}

impl GuidanceSpec {
    /// The engine's configuration: the method expanded over these settings,
    /// validated (errors name the field, e.g. `width`, `method`).
    pub fn config(&self) -> Result<GuidanceConfig, RuntimeError> {
        let method = Method::from_name(&self.method)?;
        let shape = GuidanceConfig {
            token: TokenPolicy::Base,
            chunk: ChunkRanking::None,
            width: self.width,
            successors: self.successors,
            chunk_len: self.chunk_len.filter(|&l| l > 0),
            max_new_tokens: self.max_new_tokens,
            sampling: SamplingConfig {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
            },
            seed: self.seed,
            stop_strings: self.stop.clone(),
        };
        let config = method.config(&shape, self.beta);
        config.validate()?;
        Ok(config)
    }

    /// These settings with every field `overrides` sets replaced.
    pub fn with_overrides(&self, overrides: &GuidanceOverrides) -> Self {
        let o = overrides.clone();
        Self {
            method: o.method.unwrap_or_else(|| self.method.clone()),
            width: o.width.unwrap_or(self.width),
            successors: o.successors.unwrap_or(self.successors),
            chunk_len: o.chunk_len.or(self.chunk_len),
            beta: o.beta.unwrap_or(self.beta),
            max_new_tokens: o.max_new_tokens.unwrap_or(self.max_new_tokens),
            temperature: o.temperature.unwrap_or(self.temperature),
            top_k: o.top_k.or(self.top_k),
            top_p: o.top_p.or(self.top_p),
            seed: o.seed.unwrap_or(self.seed),
            stop: o.stop.unwrap_or_else(|| self.stop.clone()),
        }
    }
}

/// Per-request changes to a [`GuidanceSpec`]: an absent field keeps the
/// spec's value. `chunk_len = 0` asks for infinity.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuidanceOverrides {
    pub method: Option<String>,
    pub width: Option<usize>,
    pub successors: Option<usize>,
    pub chunk_len: Option<usize>,
    pub beta: Option<f64>,
    pub max_new_tokens: Option<usize>,
    pub temperature: Option<f64>,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub seed: Option<u64>,
    #[serde(alias = "stop_strings")]
    pub stop: Option<Vec<String>>,
}

/// The guidance configuration to build from `method` and `overrides` over
/// the CLI's defaults: [`GuidanceSpec::with_overrides`] then
/// [`GuidanceSpec::config`].
pub fn guidance_config(
    method: &str,
    overrides: &GuidanceOverrides,
) -> Result<GuidanceConfig, RuntimeError> {
    let spec = GuidanceSpec {
        method: method.to_string(),
        ..GuidanceSpec::default()
    };
    spec.with_overrides(overrides).config()
}

/// A [`GuidanceConfig`] from a TOML file, or JSON when the name ends in
/// `.json`, validated; errors name the file.
pub fn load_guidance_config(path: &Path) -> Result<GuidanceConfig, RuntimeError> {
    let config: GuidanceConfig = crate::read_spec_file(path, "guidance config")?;
    config.validate().map_err(|error| RuntimeError::InFile {
        path: path.to_path_buf(),
        error: Box::new(error.into()),
    })?;
    Ok(config)
}
