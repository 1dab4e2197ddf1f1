//! Error types of the tokenizer facade: every message names the file, the
//! metadata key or field, and the offending value, so a bad asset can be
//! fixed without a debugger.

use std::path::PathBuf;

/// Everything that can go wrong loading a tokenizer, encoding, decoding or
/// rendering a chat template.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid tokenizer.json: {message}")]
    TokenizerFile { path: PathBuf, message: String },
    #[error("{path} is not valid JSON: {source}")]
    ConfigJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: field `{field}` {problem}")]
    ConfigField {
        path: PathBuf,
        field: String,
        problem: String,
    },
    #[error("GGUF {path}: metadata key `{key}` is missing")]
    MissingGgufKey { path: PathBuf, key: String },
    #[error("GGUF {path}: metadata key `{key}` {problem}")]
    BadGgufValue {
        path: PathBuf,
        key: String,
        problem: String,
    },
    #[error("GGUF {path}: unsupported tokenizer `{key}` = {value:?} (supported: {supported})")]
    UnsupportedGguf {
        path: PathBuf,
        key: String,
        value: String,
        supported: String,
    },
    #[error("{path}: cannot build the tokenizer: {message}")]
    Build { path: PathBuf, message: String },
    #[error("tokenizer {name}: cannot encode {text:?}: {message}")]
    Encode {
        name: String,
        text: String,
        message: String,
    },
    #[error("tokenizer {name}: cannot decode ids {ids:?}: {message}")]
    Decode {
        name: String,
        ids: Vec<u32>,
        message: String,
    },
    #[error("tokenizer {name} has no chat template")]
    NoChatTemplate { name: String },
    #[error("chat template of {name} failed: {message}")]
    ChatTemplate { name: String, message: String },
}

/// Two tokenizers that must share ids (a guide model and the base model it
/// steers) do not. Carries both model names, the first differing id and both
/// token strings (`None` where an id has no token), or the length difference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VocabMismatch {
    #[error(
        "vocabularies of {a_name} and {b_name} differ at id {id}: {a_name} has {}, {b_name} has {}",
        show_token(.a_token),
        show_token(.b_token)
    )]
    Token {
        a_name: String,
        b_name: String,
        id: u32,
        a_token: Option<String>,
        b_token: Option<String>,
    },
    #[error(
        "vocabulary of {longer_name} is longer: {longer_len} ids against {shorter_len} in \
         {shorter_name}; first extra id {shorter_len} is {} in {longer_name}",
        show_token(.first_extra_token)
    )]
    Length {
        longer_name: String,
        longer_len: usize,
        shorter_name: String,
        shorter_len: usize,
        first_extra_token: Option<String>,
    },
}

fn show_token(token: &Option<String>) -> String {
    match token {
        Some(t) => format!("{t:?}"),
        None => "no token".to_string(),
    }
}
