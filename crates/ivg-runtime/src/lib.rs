//! ivg-runtime: the typed specs that say what to load and how to decode, and
//! the owned, thread-shareable handles they load into. The CLI, the HTTP
//! server and bindings all build from these (architecture.md: a clap struct
//! is not a library config).
//!
//! - [`ModelRef`]: a model path (HF directory, `.gguf`, `asset:NAME`), its
//!   device and quantization policy; [`ModelRef::load`] gives a
//!   [`LoadedModel`] (`Arc`ed causal LM and tokenizer, with its stop ids).
//! - [`PromptTemplate`]: a template that must contain `{prompt}`.
//! - [`GuideSpec`] -> [`GuideSet`]: the tuned/reference pairs and explicit
//!   value model of a guide set, loaded once (a model named twice loads
//!   once) and implementing [`ivg_decode::GuideSource`].
//! - [`GuidanceSpec`] / [`GuidanceOverrides`] -> [`ivg_decode::GuidanceConfig`]:
//!   a method name of the paper's matrix plus settings; or a config file
//!   ([`load_guidance_config`]).
//!
//! Specs deserialize from TOML or JSON with unknown fields refused; every
//! error is a [`RuntimeError`] naming the field, file or value at fault.

mod base;
mod error;
mod guidance;
mod guide_set;
mod guide_spec;
mod model;
mod remote_base;
mod template;

use std::path::Path;

pub use base::{BaseHandle, BaseRef, LoadedBase, RemoteBaseSpec, DEFAULT_TOP_K};
pub use error::RuntimeError;
pub use guidance::{guidance_config, load_guidance_config, GuidanceOverrides, GuidanceSpec};
pub use guide_set::{ExplicitGuide, GuidePair, GuideSet};
pub use guide_spec::{ExplicitSpec, GuideSpec, PairSpec};
pub use model::{load_tokenizer, resolve_path, DeviceSpec, LoadedModel, ModelRef, Quant};
pub use remote_base::{RemoteBackend, RemoteStats};
pub use template::PromptTemplate;

/// Reads a spec file as JSON when its name ends in `.json`, else as TOML;
/// the parser's message (with the offending key and position) names the file.
pub(crate) fn read_spec_file<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
) -> Result<T, RuntimeError> {
    let text = std::fs::read_to_string(path).map_err(|error| RuntimeError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    } else {
        toml::from_str(&text).map_err(|e| e.to_string())
    };
    parsed.map_err(|problem| RuntimeError::Parse {
        path: path.to_path_buf(),
        what,
        problem,
    })
}
