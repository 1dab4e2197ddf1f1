//! The server's configuration file (TOML, unknown fields refused): limits,
//! the base model and its completion template, and one or more presets, each
//! a guide set with its default guidance. A request names a preset in
//! `model`. Without a file, [`ServerConfig::demo`] serves SmolLM2 with the
//! demo's training-free guides, so `ivg serve` runs out of the box.

use std::path::Path;

use ivg_runtime::{BaseRef, GuidanceSpec, GuideSpec, ModelRef, PairSpec, PromptTemplate};
use serde::{Deserialize, Serialize};

/// Limits enforced at the edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Requests (choices) decoding at once in the batch.
    pub max_concurrent: usize,
    /// Requests waiting beyond those; one more is refused with 429.
    pub max_queued: usize,
    /// Request bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// Choices (`n`) one request may ask for.
    pub max_n: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent: 16,
            max_queued: 64,
            max_body_bytes: 1 << 20,
            max_n: 16,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseSpec {
    /// A local model, or an inference engine's URL (`ivg_runtime::BaseRef`).
    pub model: BaseRef,
    /// How a `/v1/completions` prompt is put to the base model (chat requests
    /// use the model's chat template instead).
    #[serde(default)]
    pub template: PromptTemplate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresetSpec {
    /// The id clients send as `model`.
    pub name: String,
    /// Guide models; none serves the base model only.
    #[serde(default)]
    pub guides: Option<GuideSpec>,
    /// Default guidance; a request overrides it field by field.
    #[serde(default)]
    pub defaults: GuidanceSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default)]
    pub server: Limits,
    pub base: BaseSpec,
    pub presets: Vec<PresetSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading the server config {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("server config {path}: {error}")]
    Parse { path: String, error: String },
    #[error("server config: {0}")]
    Invalid(String),
}

impl ServerConfig {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.display().to_string(),
            error,
        })?;
        let config: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            error: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Every preset named once, its defaults a valid configuration, and a
    /// guided default method backed by guides.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.presets.is_empty() {
            return invalid("`presets`: at least one preset is needed".into());
        }
        if self.server.max_concurrent == 0 {
            return invalid("`server.max_concurrent` must be at least 1".into());
        }
        if self.server.max_n == 0 {
            return invalid("`server.max_n` must be at least 1".into());
        }
        for (i, p) in self.presets.iter().enumerate() {
            if p.name.is_empty() {
                return invalid(format!("`presets[{i}].name` is empty"));
            }
            if self.presets[..i].iter().any(|q| q.name == p.name) {
                return invalid(format!("`presets[{i}].name`: `{}` is named twice", p.name));
            }
            if let Err(e) = p.defaults.config() {
                return invalid(format!("`presets[{i}].defaults` ({}): {e}", p.name));
            }
            if let Some(g) = &p.guides {
                g.validate().map_err(|e| {
                    ConfigError::Invalid(format!("`presets[{i}].guides` ({}): {e}", p.name))
                })?;
            }
        }
        Ok(())
    }

    /// SmolLM2-135M-Instruct as base, with the demo's training-free implicit
    /// value (the same model under a "glowing review" template against the
    /// neutral one) and EFTi+CBSi by default.
    pub fn demo() -> Self {
        let smollm2 = ModelRef::new("asset:smollm2");
        let pair = PairSpec {
            tuned_template: template(
                "Here is a glowing, enthusiastic, positive movie review from imdb: {prompt}",
            ),
            reference_template: template("Here is a movie review from imdb: {prompt}"),
            ..PairSpec::new(smollm2.clone())
        };
        Self {
            server: Limits::default(),
            base: BaseSpec {
                model: BaseRef::Local(smollm2),
                template: PromptTemplate::default(),
            },
            presets: vec![PresetSpec {
                name: "smollm2".into(),
                guides: Some(GuideSpec {
                    implicit: vec![pair],
                    ..GuideSpec::default()
                }),
                defaults: GuidanceSpec {
                    method: "efti+cbsi".into(),
                    width: 2,
                    successors: 2,
                    chunk_len: Some(5),
                    max_new_tokens: 64,
                    ..GuidanceSpec::default()
                },
            }],
        }
    }
}

/// A template known to contain `{prompt}`.
fn template(t: &str) -> PromptTemplate {
    PromptTemplate::new(t).unwrap_or_default()
}
