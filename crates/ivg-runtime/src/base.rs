//! The base model of a run, as a config names it: a local model
//! ([`ModelRef`]) or one served by an inference engine over HTTP:
//!
//! ```toml
//! base = "asset:smollm2"                                   # local
//! base = "http://127.0.0.1:8080"                           # llama.cpp's server
//! base = { url = "http://gpu-box:8000", protocol = "openai", model = "Qwen/Qwen2.5-7B",
//!          api_key_env = "VLLM_KEY", top_k = 20, tokenizer = "asset:qwen25-05b" }
//! ```
//!
//! A remote base needs a local tokenizer of its vocabulary (stop strings,
//! prompt ids, text-level chunk values): `tokenizer`, or else the guides'.
//! At load the engine's vocabulary is compared with it through token
//! strings; a mismatch is refused there, naming both.

use std::fmt;
use std::sync::Arc;

use ivg_decode::BaseModel;
use ivg_models::CausalLm;
use ivg_remote::{RemoteEngine, RemoteSpec, Vocabulary};
use ivg_tokenize::Tokenizer;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::remote_base::RemoteBackend;
use crate::{ModelRef, RuntimeError};

/// Ids of the vocabulary whose text is compared at load (spread evenly).
const VOCAB_SAMPLES: usize = 64;

/// Where the base model runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum BaseRef {
    Local(ModelRef),
    Remote(RemoteBaseSpec),
}

/// A base model served by an inference engine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteBaseSpec {
    #[serde(flatten)]
    pub engine: RemoteSpec,
    /// Candidates per top-k call of token-level guidance (EFT).
    pub top_k: usize,
    /// A local tokenizer of the engine's vocabulary (a model path or
    /// `asset:NAME`); `None`: the guides'.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<ModelRef>,
}

/// EFT's default candidate count (the issue's and vLLM's default cap).
pub const DEFAULT_TOP_K: usize = 20;

impl<'de> Deserialize<'de> for BaseRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        BaseRef::from_value(value).map_err(de::Error::custom)
    }
}

impl BaseRef {
    /// A bare string is a model path, or an engine's `http://` URL speaking
    /// llama.cpp's protocol; a table with `url` is an engine, else a model.
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::String(s) if s.starts_with("http://") || s.starts_with("https://") => {
                Ok(Self::Remote(RemoteBaseSpec::llama_cpp(s)))
            }
            Value::Object(mut map) if map.contains_key("url") => {
                let top_k = match map.remove("top_k") {
                    None => DEFAULT_TOP_K,
                    Some(v) => v
                        .as_u64()
                        .filter(|&k| k > 0)
                        .ok_or_else(|| format!("`top_k` must be a positive integer, got {v}"))?
                        as usize,
                };
                let tokenizer = map
                    .remove("tokenizer")
                    .map(serde_json::from_value::<ModelRef>)
                    .transpose()
                    .map_err(|e| format!("`tokenizer`: {e}"))?;
                let engine: RemoteSpec =
                    serde_json::from_value(Value::Object(map)).map_err(|e| e.to_string())?;
                Ok(Self::Remote(RemoteBaseSpec {
                    engine,
                    top_k,
                    tokenizer,
                }))
            }
            other => serde_json::from_value(other)
                .map(Self::Local)
                .map_err(|e| e.to_string()),
        }
    }

    /// Loads a local model, or connects to the engine and checks its
    /// vocabulary against its tokenizer (`fallback`, the guides' model, when
    /// the spec names none).
    pub fn load(&self, fallback: Option<&ModelRef>) -> Result<LoadedBase, RuntimeError> {
        match self {
            Self::Local(m) => {
                let loaded = m.load()?;
                let stop_ids = loaded.stop_ids();
                let context = loaded.model.context_length();
                Ok(LoadedBase {
                    handle: BaseHandle::Local(loaded.model),
                    tokenizer: loaded.tokenizer,
                    stop_ids,
                    context,
                })
            }
            Self::Remote(spec) => spec.load(fallback),
        }
    }
}

impl fmt::Display for BaseRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(m) => write!(f, "{}", m.path.display()),
            Self::Remote(r) => write!(f, "{}", r.engine.url),
        }
    }
}

impl From<ModelRef> for BaseRef {
    fn from(m: ModelRef) -> Self {
        Self::Local(m)
    }
}

impl RemoteBaseSpec {
    /// A llama.cpp server at `url` with default settings.
    pub fn llama_cpp(url: impl Into<String>) -> Self {
        Self {
            engine: RemoteSpec::llama_cpp(url),
            top_k: DEFAULT_TOP_K,
            tokenizer: None,
        }
    }

    fn load(&self, fallback: Option<&ModelRef>) -> Result<LoadedBase, RuntimeError> {
        let (tok_ref, own) = match (&self.tokenizer, fallback) {
            (Some(t), _) => (t, true),
            (None, Some(g)) => (g, false),
            (None, None) => {
                return Err(RuntimeError::spec(
                    "base.tokenizer",
                    format!(
                        "the remote base {} needs a local tokenizer of its vocabulary: name one \
                         (a model path or asset:NAME), or give guides that share it",
                        self.engine.url
                    ),
                ))
            }
        };
        let tokenizer = tok_ref.load_tokenizer()?;
        let engine = RemoteEngine::connect(&self.engine)?;
        if let Vocabulary::Different { reason } =
            engine.compare_vocabulary(&tokenizer, VOCAB_SAMPLES)?
        {
            let whose = if own {
                "the tokenizer named in `base.tokenizer`"
            } else {
                "the guides' tokenizer (name the base's own in `base.tokenizer` to guide it at text level)"
            };
            return Err(RuntimeError::RemoteVocabulary {
                engine: engine.url().to_string(),
                tokenizer: tok_ref.path.display().to_string(),
                whose,
                reason,
            });
        }
        let vocab = engine.vocab_size().unwrap_or(tokenizer.vocab_size());
        let context = engine.context_length();
        let backend = RemoteBackend::new(engine, vocab, self.engine.max_concurrent);
        Ok(LoadedBase {
            handle: BaseHandle::Remote {
                backend: Arc::new(backend),
                top_k: self.top_k,
            },
            stop_ids: tokenizer.eos_ids().to_vec(),
            tokenizer: Arc::new(tokenizer),
            context,
        })
    }
}

/// A loaded base model.
#[derive(Clone)]
pub enum BaseHandle {
    Local(Arc<CausalLm>),
    Remote {
        backend: Arc<RemoteBackend>,
        top_k: usize,
    },
}

/// A base model ready to decode, with its tokenizer.
#[derive(Clone)]
pub struct LoadedBase {
    pub handle: BaseHandle,
    pub tokenizer: Arc<Tokenizer>,
    stop_ids: Vec<u32>,
    context: usize,
}

impl LoadedBase {
    /// A base over an already loaded local model.
    pub fn local(loaded: crate::LoadedModel) -> Self {
        Self {
            stop_ids: loaded.stop_ids(),
            context: loaded.model.context_length(),
            handle: BaseHandle::Local(loaded.model),
            tokenizer: loaded.tokenizer,
        }
    }

    /// The base as the decoding engine takes it.
    pub fn model(&self) -> BaseModel<'_> {
        match &self.handle {
            BaseHandle::Local(m) => BaseModel::Local(m),
            BaseHandle::Remote { backend, top_k } => BaseModel::Remote {
                engine: backend.clone(),
                k: *top_k,
            },
        }
    }

    /// End-of-sequence ids.
    pub fn stop_ids(&self) -> Vec<u32> {
        self.stop_ids.clone()
    }

    /// Positions one sequence may hold.
    pub fn context_length(&self) -> usize {
        self.context
    }

    pub fn name(&self) -> String {
        self.model().name().to_string()
    }

    /// The in-process model, if the base runs here.
    pub fn local_model(&self) -> Option<&Arc<CausalLm>> {
        match &self.handle {
            BaseHandle::Local(m) => Some(m),
            BaseHandle::Remote { .. } => None,
        }
    }

    /// The remote engine, if the base runs there.
    pub fn remote(&self) -> Option<&Arc<RemoteBackend>> {
        match &self.handle {
            BaseHandle::Remote { backend, .. } => Some(backend),
            BaseHandle::Local(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<BaseRef, String> {
        #[derive(Deserialize)]
        struct Doc {
            base: BaseRef,
        }
        toml::from_str::<Doc>(toml_text)
            .map(|d| d.base)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn reads_every_form() {
        assert_eq!(
            parse(r#"base = "asset:smollm2""#).unwrap(),
            BaseRef::Local(ModelRef::new("asset:smollm2"))
        );
        assert_eq!(
            parse(r#"base = { path = "m.gguf", quant = "f32" }"#).unwrap(),
            BaseRef::Local(ModelRef::new("m.gguf").with_quant(crate::Quant::F32))
        );
        assert_eq!(
            parse(r#"base = "http://127.0.0.1:8080""#).unwrap(),
            BaseRef::Remote(RemoteBaseSpec::llama_cpp("http://127.0.0.1:8080"))
        );
        let remote = parse(
            r#"base = { url = "http://h:1", protocol = "llama.cpp", top_k = 50, tokenizer = "asset:smollm2", retries = 1 }"#,
        )
        .unwrap();
        let BaseRef::Remote(r) = remote else {
            panic!("not remote")
        };
        assert_eq!(r.top_k, 50);
        assert_eq!(r.tokenizer, Some(ModelRef::new("asset:smollm2")));
        assert_eq!(r.engine.retries, 1);
    }

    #[test]
    fn names_what_is_wrong() {
        let err = parse(r#"base = { url = "http://h:1", protocol = "llama.cpp", top_k = 0 }"#)
            .unwrap_err();
        assert!(err.contains("`top_k` must be a positive integer"), "{err}");
        let err = parse(r#"base = { url = "http://h:1", protocol = "llama.cpp", topk = 5 }"#)
            .unwrap_err();
        assert!(err.contains("unknown field `topk`"), "{err}");
        let err = parse(r#"base = { url = "http://h:1", protocol = "tgi" }"#).unwrap_err();
        assert!(err.contains("unknown variant `tgi`"), "{err}");
        let err = parse(r#"base = { path = "m", quant = "q2" }"#).unwrap_err();
        assert!(err.contains("q2"), "{err}");
    }

    #[test]
    fn a_remote_base_without_a_tokenizer_is_refused_by_name() {
        let spec = RemoteBaseSpec::llama_cpp("http://127.0.0.1:9");
        let err = BaseRef::Remote(spec).load(None).err().expect("refused");
        let text = err.to_string();
        assert!(
            text.contains("base.tokenizer") && text.contains("127.0.0.1:9"),
            "{text}"
        );
    }
}
