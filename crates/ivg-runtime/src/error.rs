//! The runtime's one error type. Every variant names what it is about (the
//! spec field, the file, the offending value) so that a front end can print it
//! as is: the CLI after `error:`, the server in a 4xx/5xx body.
//!
//! Wrapped errors are kept as typed fields named `error` (not `source`) and
//! their text is part of this error's message: a chain printer (anyhow's
//! `{:#}`) would otherwise print the inner message twice.

use std::path::PathBuf;

use ivg_decode::DecodeError;
use ivg_models::ModelError;
use ivg_tokenize::TokenizeError;
use ivg_value::ValueError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A spec field holds a value it must not (`field` is a dotted path such
    /// as `implicit[0].weight`).
    #[error("invalid `{field}`: {problem}")]
    Spec { field: String, problem: String },
    /// A prompt template that would drop the prompt.
    #[error("prompt template `{template}` has no `{{prompt}}` placeholder, so the prompt would be dropped")]
    Template { template: String },
    /// A device string that is not `cpu`, `cuda` or `cuda:N`, or a CUDA device
    /// this build or machine cannot open.
    #[error("device `{device}`: {problem}")]
    Device { device: String, problem: String },
    #[error("unknown asset `{name}` in `{path}` (known: {known})")]
    UnknownAsset {
        name: String,
        path: String,
        known: String,
    },
    #[error("asset `{name}`: {error}")]
    Asset {
        name: String,
        /// Boxed: the asset error is large and rare, and every `Result` of
        /// this crate would otherwise carry its size.
        error: Box<ivg_assets::AssetError>,
    },
    #[error("loading model {}: {error}", path.display())]
    Model { path: PathBuf, error: ModelError },
    #[error("loading the tokenizer of {}: {error}", path.display())]
    Tokenizer { path: PathBuf, error: TokenizeError },
    /// Ids past the embedding would fail at the first forward; refuse at load.
    #[error("{}: the tokenizer has {tokens} tokens but the model's embedding has only {rows} rows", path.display())]
    VocabLargerThanModel {
        path: PathBuf,
        tokens: usize,
        rows: usize,
    },
    #[error("reading {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A spec file that does not parse (`what` says which spec, `problem`
    /// carries the parser's message with the offending key and line).
    #[error("{}: invalid {what}: {problem}", path.display())]
    Parse {
        path: PathBuf,
        what: &'static str,
        problem: String,
    },
    /// A spec file that parses but does not validate.
    #[error("{}: {error}", path.display())]
    InFile {
        path: PathBuf,
        error: Box<RuntimeError>,
    },
    /// An error while loading what one spec field names (`explicit.model`).
    #[error("`{field}`: {error}")]
    InField {
        field: String,
        error: Box<RuntimeError>,
    },
    #[error(transparent)]
    Value(#[from] ValueError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A remote engine that cannot serve as the base (it names its URL).
    #[error("remote base: {0}")]
    Remote(#[from] ivg_remote::RemoteError),
    /// A remote base whose vocabulary is not its local tokenizer's.
    #[error(
        "the remote base {engine} does not share the vocabulary of {whose} `{tokenizer}`: {reason}"
    )]
    RemoteVocabulary {
        engine: String,
        tokenizer: String,
        whose: &'static str,
        reason: String,
    },
    /// A request that a guide model cannot hold: refused before it joins a
    /// batch, where the overflow would fail every request of the step.
    #[error(
        "guide `{model}` ({role} value) reads this prompt as {prompt_tokens} tokens; with \
         {new_tokens} new tokens that exceeds its context of {context}"
    )]
    GuideContext {
        model: String,
        role: &'static str,
        prompt_tokens: usize,
        new_tokens: usize,
        context: usize,
    },
}

impl RuntimeError {
    pub(crate) fn spec(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Spec {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// This error, said to come from loading what `field` names.
    pub(crate) fn in_field(self, field: impl Into<String>) -> Self {
        Self::InField {
            field: field.into(),
            error: Box::new(self),
        }
    }
}
