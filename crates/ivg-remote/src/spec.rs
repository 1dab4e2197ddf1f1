//! The remote base as a config names it:
//! `base = { url = "http://HOST:PORT", protocol = "llama.cpp", ... }`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::RemoteError;

/// The wire protocol an engine speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// llama.cpp's native `/completion`, `/tokenize`, `/detokenize`, `/props`.
    #[serde(rename = "llama.cpp")]
    LlamaCpp,
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
        Ok(url)
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
    }
}
