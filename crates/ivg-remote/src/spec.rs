//! The remote base as a config names it:
//! `base = { url = "http://HOST:PORT", protocol = "llama.cpp", ... }`, or
//! `base = { url = "http://HOST:PORT", protocol = "openai", model = "...",
//! api_key_env = "VLLM_API_KEY" }` for vLLM, SGLang or llama.cpp's
//! OpenAI-compatible endpoint.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::RemoteError;

/// The wire protocol an engine speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// llama.cpp's native `/completion`, `/tokenize`, `/detokenize`, `/props`.
    #[serde(rename = "llama.cpp")]
    LlamaCpp,
    /// The OpenAI `/v1/completions` endpoint with token-id prompts, as vLLM,
    /// SGLang and llama.cpp's server implement it, plus the `/tokenize` and
    /// `/detokenize` those engines add beside it.
    #[serde(rename = "openai")]
    OpenAi,
}

/// Where the engine is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteSpec {
    /// `http://HOST:PORT` (a path prefix is allowed; no TLS).
    pub url: String,
    pub protocol: Protocol,
    /// Seconds one HTTP call may take.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    /// Further attempts of a call that failed transiently (connection,
    /// timeout, HTTP 429 or 5xx), with backoff 0.1 s, 0.4 s, 1.6 s, ...
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Calls in flight at once.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
    /// The model an OpenAI request names (vLLM and SGLang answer 404 for
    /// another); when absent, the first one `GET /v1/models` lists. Only
    /// for `protocol = "openai"`: the native llama.cpp protocol names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The environment variable that holds the engine's API key, sent as
    /// `Authorization: Bearer KEY` (vLLM's and llama.cpp's `--api-key`).
    /// The variable's name, not the key, so configs can be shared and
    /// logged without leaking it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
}

fn default_timeout_s() -> f64 {
    120.0
}

fn default_retries() -> u32 {
    3
}

fn default_max_concurrent() -> usize {
    16
}

impl RemoteSpec {
    /// A llama.cpp server at `url` with the default limits.
    pub fn llama_cpp(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            protocol: Protocol::LlamaCpp,
            timeout_s: default_timeout_s(),
            retries: default_retries(),
            max_concurrent: default_max_concurrent(),
            model: None,
            api_key_env: None,
        }
    }

    /// An OpenAI-compatible engine (vLLM, SGLang, llama.cpp's server) at
    /// `url` with the default limits, serving the model `/v1/models` lists
    /// first.
    pub fn openai(url: impl Into<String>) -> Self {
        Self {
            protocol: Protocol::OpenAi,
            ..Self::llama_cpp(url)
        }
    }

    /// Checks every field; returns the URL without a trailing `/`.
    pub fn validate(&self) -> Result<String, RemoteError> {
        let bad = |field, problem: String| RemoteError::Spec {
            url: self.url.clone(),
            field,
            problem,
        };
        let Some(rest) = self.url.strip_prefix("http://") else {
            return Err(bad(
                "url",
                "must start with http:// (TLS is not supported)".into(),
            ));
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.starts_with('/') {
            return Err(bad("url", "has no host".into()));
        }
        let url = format!("http://{rest}");
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0) {
            return Err(bad(
                "timeout_s",
                format!("must be positive, got {}", self.timeout_s),
            ));
        }
        if self.max_concurrent == 0 {
            return Err(bad("max_concurrent", "must be at least 1".into()));
        }
        if self.retries > 10 {
            return Err(bad("retries", format!("at most 10, got {}", self.retries)));
        }
        if let Some(model) = &self.model {
            if self.protocol != Protocol::OpenAi {
                return Err(bad(
                    "model",
                    "only protocol \"openai\" names a model in its requests".into(),
                ));
            }
            if model.trim().is_empty() {
                return Err(bad("model", "is empty".into()));
            }
        }
        if let Some(var) = &self.api_key_env {
            if var.is_empty() || var.contains(['=', '\0']) {
                return Err(bad(
                    "api_key_env",
                    format!("{var:?} is not an environment variable name"),
                ));
            }
        }
        Ok(url)
    }

    /// The API key from the variable `api_key_env` names, if any; an unset
    /// or empty variable is an error naming it (a missing key would
    /// otherwise surface later as a 401 on the first call).
    pub(crate) fn api_key(&self) -> Result<Option<String>, RemoteError> {
        let Some(var) = &self.api_key_env else {
            return Ok(None);
        };
        let problem = match std::env::var(var) {
            Ok(key) if !key.trim().is_empty() => return Ok(Some(key.trim().to_string())),
            Ok(_) => format!("the environment variable `{var}` is empty"),
            Err(std::env::VarError::NotPresent) => {
                format!("the environment variable `{var}` is not set")
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                format!("the environment variable `{var}` is not UTF-8")
            }
        };
        Err(RemoteError::Spec {
            url: self.url.clone(),
            field: "api_key_env",
            problem,
        })
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates() {
        let spec: RemoteSpec =
            serde_json::from_str(r#"{"url": "http://127.0.0.1:8080/", "protocol": "llama.cpp"}"#)
                .unwrap();
        assert_eq!(spec, RemoteSpec::llama_cpp("http://127.0.0.1:8080/"));
        assert_eq!(spec.validate().unwrap(), "http://127.0.0.1:8080");
        let err = serde_json::from_str::<RemoteSpec>(
            r#"{"url": "http://h:1", "protocol": "llama.cpp", "timeout": 3}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `timeout`"), "{err}");
        let err = serde_json::from_str::<RemoteSpec>(r#"{"url": "http://h:1", "protocol": "tgi"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("unknown variant `tgi`"), "{err}");
    }

    #[test]
    fn rejects_bad_fields_by_name() {
        let with = |f: fn(&mut RemoteSpec)| {
            let mut s = RemoteSpec::llama_cpp("http://127.0.0.1:1");
            f(&mut s);
            s.validate().unwrap_err().to_string()
        };
        assert!(with(|s| s.url = "https://x:1".into()).contains("invalid `url`"));
        assert!(with(|s| s.url = "http://".into()).contains("has no host"));
        assert!(with(|s| s.timeout_s = f64::NAN).contains("`timeout_s`"));
        assert!(with(|s| s.max_concurrent = 0).contains("`max_concurrent`"));
        assert!(with(|s| s.retries = 99).contains("`retries`"));
        assert!(with(|s| s.model = Some("m".into())).contains("only protocol \"openai\""));
        assert!(with(|s| s.api_key_env = Some("A=B".into())).contains("`api_key_env`"));
        assert!(with(|s| s.api_key_env = Some(String::new())).contains("`api_key_env`"));
    }

    #[test]
    fn parses_and_validates_openai() {
        let spec: RemoteSpec = serde_json::from_str(
            r#"{"url": "http://gpu-7:8000", "protocol": "openai",
                "model": "HuggingFaceTB/SmolLM2-135M", "api_key_env": "VLLM_KEY"}"#,
        )
        .unwrap();
        let mut want = RemoteSpec::openai("http://gpu-7:8000");
        want.model = Some("HuggingFaceTB/SmolLM2-135M".into());
        want.api_key_env = Some("VLLM_KEY".into());
        assert_eq!(spec, want);
        assert_eq!(spec.validate().unwrap(), "http://gpu-7:8000");
        // Round trip; unset options are left out.
        let back: RemoteSpec =
            serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);
        let plain = serde_json::to_value(RemoteSpec::openai("http://h:1")).unwrap();
        assert_eq!(plain["protocol"], "openai");
        assert!(plain.get("model").is_none() && plain.get("api_key_env").is_none());

        let mut empty = RemoteSpec::openai("http://h:1");
        empty.model = Some(" ".into());
        let err = empty.validate().unwrap_err().to_string();
        assert!(err.contains("invalid `model`: is empty"), "{err}");
        let err = serde_json::from_str::<RemoteSpec>(
            r#"{"url": "http://h:1", "protocol": "openai", "api_key": "secret"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `api_key`"), "{err}");
    }

    #[test]
    fn an_unset_key_variable_is_named() {
        let mut spec = RemoteSpec::openai("http://h:1");
        assert_eq!(spec.api_key().unwrap(), None);
        spec.api_key_env = Some("IVG_REMOTE_SPEC_TEST_UNSET_KEY".into());
        let err = spec.api_key().unwrap_err().to_string();
        assert!(
            err.contains("`IVG_REMOTE_SPEC_TEST_UNSET_KEY` is not set")
                && err.contains("`api_key_env`"),
            "{err}"
        );
        std::env::set_var("IVG_REMOTE_SPEC_TEST_SET_KEY", "sk-123\n");
        spec.api_key_env = Some("IVG_REMOTE_SPEC_TEST_SET_KEY".into());
        assert_eq!(spec.api_key().unwrap().as_deref(), Some("sk-123"));
    }
}
