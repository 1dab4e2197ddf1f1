//! llama.cpp's native server protocol: `/props`, `/tokenize`, `/detokenize`
//! and `/completion` with the prompt as a token array, `n_probs` for the
//! base's top-k, `n_cmpl` for several seeded continuations (the engine gives
//! child `i` the seed `seed + i`), `return_tokens` for ids rather than text,
//! and `cache_prompt` so a shared prefix is evaluated once.

use serde_json::{json, Value};

use crate::http::Http;
use crate::{Protocol, RemoteError, RemoteSpec};

/// How continuations are sampled: temperature, then nucleus, as ivg's own
/// sampler does (the engine's other samplers are switched off).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// 0 = greedy.
    pub temperature: f64,
    pub top_p: f64,
    pub seed: u32,
}

/// Why a continuation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model emitted an end-of-generation token (included in `tokens`).
    Eos,
    /// It reached the token limit of the call.
    Length,
}

/// One sampled continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub tokens: Vec<u32>,
    pub finish: Finish,
    /// Prompt tokens the engine took from its cache instead of evaluating.
    pub cached: usize,
}

/// The base's most likely next tokens after a prefix, most likely first.
#[derive(Debug, Clone, PartialEq)]
pub struct TopK {
    /// `(id, log-probability)` under the full-vocabulary softmax.
    pub tokens: Vec<(u32, f32)>,
    pub cached: usize,
}

/// A connected engine: its URL, protocol and what `/props` said.
pub struct RemoteEngine {
    http: Http,
    protocol: Protocol,
    context: usize,
}

impl RemoteEngine {
    /// Validates `spec` and asks the engine for its properties; fails with
    /// the engine's URL when it does not answer like a llama.cpp server.
    pub fn connect(spec: &RemoteSpec) -> Result<Self, RemoteError> {
        let http = Http::new(spec)?;
        let props = http.get("GET /props", "/props")?;
        let context = props
            .pointer("/default_generation_settings/n_ctx")
            .and_then(Value::as_u64)
            .ok_or_else(|| http.malformed("GET /props", "no default_generation_settings.n_ctx"))?;
        Ok(Self {
            http,
            protocol: spec.protocol,
            context: context as usize,
        })
    }

    pub fn url(&self) -> &str {
        &self.http.url
    }

    pub(crate) fn http(&self) -> &Http {
        &self.http
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Positions per sequence the engine holds (its per-slot context).
    pub fn context_length(&self) -> usize {
        self.context
    }

    /// The engine's ids for `text` (special tokens parsed; `add_special`
    /// adds BOS where the model wants one).
    pub fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>, RemoteError> {
        const CALL: &str = "POST /tokenize";
        let body = json!({"content": text, "add_special": add_special, "parse_special": true});
        let answer = self.http.post(CALL, "/tokenize", &body)?;
        self.ids(CALL, answer.get("tokens"))
    }

    /// The engine's text for `ids`.
    pub fn detokenize(&self, ids: &[u32]) -> Result<String, RemoteError> {
        const CALL: &str = "POST /detokenize";
        let answer = self
            .http
            .post(CALL, "/detokenize", &json!({ "tokens": ids }))?;
        answer
            .get("content")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| self.http.malformed(CALL, "no `content` string"))
    }

    /// The `k` most likely next tokens after `prefix` with their
    /// log-probabilities (the model's softmax, before any sampler).
    pub fn next_token_topk(&self, prefix: &[u32], k: usize) -> Result<TopK, RemoteError> {
        const CALL: &str = "POST /completion (top-k)";
        self.check_prefix(CALL, prefix, 1)?;
        let body = json!({
            "prompt": prefix, "n_predict": 1, "n_probs": k, "temperature": 0.0,
            "samplers": [], "cache_prompt": true, "return_tokens": true, "stream": false,
        });
        let answer = self.http.post(CALL, "/completion", &body)?;
        let first = answer
            .pointer("/completion_probabilities/0/top_logprobs")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                self.http
                    .malformed(CALL, "no completion_probabilities[0].top_logprobs")
            })?;
        let mut tokens = Vec::with_capacity(first.len());
        for entry in first {
            let id = entry.get("id").and_then(Value::as_u64);
            let logprob = entry.get("logprob").and_then(Value::as_f64);
            match (id, logprob) {
                (Some(id), Some(lp)) if id <= u32::MAX as u64 && lp.is_finite() => {
                    tokens.push((id as u32, lp as f32))
                }
                _ => {
                    return Err(self
                        .http
                        .malformed(CALL, format!("bad top_logprobs entry {entry}")))
                }
            }
        }
        if tokens.len() < k {
            return Err(self.http.malformed(
                CALL,
                format!("asked for {k} log-probabilities, got {}", tokens.len()),
            ));
        }
        Ok(TopK {
            tokens,
            cached: cached(&answer),
        })
    }

    /// `n` continuations of `prefix`, each of at most `max_tokens`, sampled
    /// with seeds `seed .. seed + n` (one request).
    pub fn sample_chunks(
        &self,
        prefix: &[u32],
        n: usize,
        max_tokens: usize,
        sampling: Sampling,
    ) -> Result<Vec<Chunk>, RemoteError> {
        const CALL: &str = "POST /completion (chunks)";
        self.check_prefix(CALL, prefix, max_tokens)?;
        if n == 0 || max_tokens == 0 {
            return Ok(Vec::new());
        }
        let body = json!({
            "prompt": prefix, "n_predict": max_tokens, "n_cmpl": n,
            "temperature": sampling.temperature, "top_p": sampling.top_p, "seed": sampling.seed,
            "samplers": ["temperature", "top_p"], "cache_prompt": true, "return_tokens": true,
            "stream": false,
        });
        let answer = self.http.post(CALL, "/completion", &body)?;
        let results = match answer {
            Value::Array(items) => items,
            one @ Value::Object(_) => vec![one],
            other => {
                return Err(self
                    .http
                    .malformed(CALL, format!("neither an object nor an array: {other}")))
            }
        };
        if results.len() != n {
            return Err(self.http.malformed(
                CALL,
                format!("asked for {n} completions, got {}", results.len()),
            ));
        }
        let mut chunks: Vec<Option<Chunk>> = vec![None; n];
        for r in &results {
            let index = r.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            let chunk = self.chunk(CALL, r, max_tokens)?;
            match chunks.get_mut(index) {
                Some(slot @ None) => *slot = Some(chunk),
                _ => {
                    return Err(self.http.malformed(
                        CALL,
                        format!("completion index {index} repeated or out of range"),
                    ))
                }
            }
        }
        chunks
            .into_iter()
            .map(|c| c.ok_or_else(|| self.http.malformed(CALL, "a completion index is missing")))
            .collect()
    }

    fn chunk(
        &self,
        call: &'static str,
        r: &Value,
        max_tokens: usize,
    ) -> Result<Chunk, RemoteError> {
        let tokens = self.ids(call, r.get("tokens"))?;
        let finish = match r.get("stop_type").and_then(Value::as_str) {
            Some("eos") => Finish::Eos,
            Some("limit") => Finish::Length,
            other => {
                return Err(self
                    .http
                    .malformed(call, format!("stop_type {other:?} (expected eos or limit)")))
            }
        };
        if tokens.len() > max_tokens || (finish == Finish::Length && tokens.len() != max_tokens) {
            return Err(self.http.malformed(
                call,
                format!(
                    "{} tokens for a limit of {max_tokens} ({finish:?})",
                    tokens.len()
                ),
            ));
        }
        Ok(Chunk {
            tokens,
            finish,
            cached: cached(r),
        })
    }

    fn ids(&self, call: &'static str, value: Option<&Value>) -> Result<Vec<u32>, RemoteError> {
        let items = value
            .and_then(Value::as_array)
            .ok_or_else(|| self.http.malformed(call, "no token array"))?;
        items
            .iter()
            .map(|v| match v.as_u64() {
                Some(id) if id <= u32::MAX as u64 => Ok(id as u32),
                _ => Err(self.http.malformed(call, format!("token {v} is not an id"))),
            })
            .collect()
    }

    fn check_prefix(
        &self,
        call: &'static str,
        prefix: &[u32],
        new: usize,
    ) -> Result<(), RemoteError> {
        let refused = |problem: String| RemoteError::Refused {
            url: self.http.url.clone(),
            call,
            problem,
        };
        if prefix.is_empty() {
            return Err(refused("the prefix is empty".into()));
        }
        if prefix.len() + new > self.context {
            return Err(refused(format!(
                "{} prefix tokens + {new} new exceed the engine's context of {}",
                prefix.len(),
                self.context
            )));
        }
        Ok(())
    }
}

fn cached(answer: &Value) -> usize {
    answer
        .get("tokens_cached")
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize
}
