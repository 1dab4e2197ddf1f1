//! Errors of model loading and running. Every variant names what went wrong
//! where: the file, the tensor or the config field, so a user can fix the input.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, ModelError>;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: malformed JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: field `{field}`: {problem}")]
    ConfigField {
        path: PathBuf,
        field: String,
        problem: String,
    },
    #[error("{path}: unknown architecture `{model_type}` (supported: {supported})")]
    UnknownArchitecture {
        path: PathBuf,
        model_type: String,
        supported: &'static str,
    },
    #[error("{source_name}: missing tensor `{name}`")]
    MissingTensor { source_name: String, name: String },
    #[error("{source_name}: tensor `{name}` has shape {actual:?}, expected {expected:?}")]
    TensorShape {
        source_name: String,
        name: String,
        actual: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("{path}: not a readable GGUF file: {reason}")]
    Gguf { path: PathBuf, reason: String },
    #[error("{path}: not a readable safetensors file: {reason}")]
    Safetensors { path: PathBuf, reason: String },
    #[error("{path}: neither a model directory with config.json nor a .gguf file")]
    NotAModel { path: PathBuf },
    #[error("{model}: sequence of {len} positions exceeds the context length of {max}")]
    ContextOverflow {
        model: String,
        len: usize,
        max: usize,
    },
    #[error("{model}: token id {id} is outside the vocabulary of {vocab} tokens")]
    TokenOutOfRange {
        model: String,
        id: u32,
        vocab: usize,
    },
    #[error("decode state: {0}")]
    State(String),
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
