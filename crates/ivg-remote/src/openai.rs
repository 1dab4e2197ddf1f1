//! The OpenAI `/v1/completions` protocol with token-id prompts, as vLLM,
//! SGLang and llama.cpp's server implement it, plus the `/tokenize` and
//! `/detokenize` those engines serve beside it (not OpenAI's, but every one
//! of them has them).
//!
//! The engines agree on the request (`prompt` as ids, `n`, `max_tokens`,
//! `logprobs` = top-k, `temperature`, `top_p`, `seed`) and differ in how
//! ids come back, so `/v1/models` tells at connect which one answers
//! ([`Dialect`]) and the parsers accept every shape:
//! - vLLM: `return_tokens_as_token_ids` turns every logprob token into the
//!   string `"token_id:N"` (`logprobs.tokens`, keys of the
//!   `logprobs.top_logprobs` maps); newer vLLM also sends
//!   `choices[i].token_ids` when asked with `return_token_ids`. Choice `i`
//!   of a seeded request uses seed `seed + i` (V1's `ParentRequest`).
//! - llama.cpp (`owned_by: "llamacpp"`): logprobs in the chat shape,
//!   `logprobs.content[j] = {id, token, bytes, logprob, top_logprobs:
//!   [{id, token, bytes, logprob}]}`. Those entries leave out every token
//!   that ends inside a UTF-8 character (`process_token` only records
//!   complete text), so they are no source of sampled ids; the sampled ids
//!   come from `__verbose.tokens` (asked with `verbose` and
//!   `return_tokens`), which llama.cpp keeps for the first choice of a
//!   response only, hence one request per choice with seed `seed + i`,
//!   exactly the seeds llama.cpp gives the children of one `n` request.
//!   It records log-probabilities only for a sampled token that completes
//!   a character, so the top-k call pins its one token with a `logit_bias`.
//!   Its default sampler chain (top-k 40, min-p 0.05, top-p before
//!   temperature) is replaced by `samplers: ["temperature", "top_p"]`, the
//!   order vLLM and ivg apply.

use serde_json::{json, Value};

use crate::engine::{checked_chunk, in_index_order, logprob_entry, token_ids, top_k_of};
use crate::http::Http;
use crate::{Chunk, Finish, RemoteError, RemoteSpec, Sampling, TopK};

pub(crate) const TOPK: &str = "POST /v1/completions (top-k)";
pub(crate) const CHUNKS: &str = "POST /v1/completions (chunks)";
const MODELS: &str = "GET /v1/models";
const TOKENIZE: &str = "POST /tokenize";
const DETOKENIZE: &str = "POST /detokenize";

/// Which engine answers, as far as the request fields it needs differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// llama.cpp's server (`owned_by: "llamacpp"`, a `meta` block).
    LlamaCpp,
    /// vLLM and engines that copy its extensions (SGLang).
    Vllm,
}

/// What an OpenAI-protocol engine said at connect.
pub(crate) struct OpenAi {
    /// Sent as `model` in every request.
    model: String,
    dialect: Dialect,
    vocab: Option<usize>,
}

/// One entry of `/v1/models`.
#[derive(Debug, Clone, PartialEq)]
struct Served {
    id: String,
    /// llama.cpp's `--alias` names.
    aliases: Vec<String>,
    context: Option<usize>,
    vocab: Option<usize>,
    dialect: Dialect,
}

impl OpenAi {
    /// Reads `/v1/models`: the model to name (the spec's, which must be
    /// listed, or the first), its context length and the dialect.
    pub(crate) fn connect(
        http: &Http,
        spec: &RemoteSpec,
    ) -> Result<(Self, Option<usize>), RemoteError> {
        let answer = http.get(MODELS, "/v1/models")?;
        let served = parse_models(&answer).map_err(|p| http.malformed(MODELS, p))?;
        let entry = match &spec.model {
            None => served.first(),
            Some(m) => served.iter().find(|s| s.id == *m || s.aliases.contains(m)),
        };
        let Some(entry) = entry else {
            let ids: Vec<&str> = served.iter().map(|s| s.id.as_str()).collect();
            return Err(RemoteError::Spec {
                url: http.url.clone(),
                field: "model",
                problem: format!(
                    "the engine serves {ids:?}, not {:?}",
                    spec.model.as_deref().unwrap_or_default()
                ),
            });
        };
        let model = spec.model.clone().unwrap_or_else(|| entry.id.clone());
        let openai = Self {
            model,
            dialect: entry.dialect,
            vocab: entry.vocab,
        };
        Ok((openai, entry.context))
    }

    pub(crate) fn vocab_size(&self) -> Option<usize> {
        self.vocab
    }

    /// One body for both engines: vLLM reads `prompt` and
    /// `add_special_tokens`, llama.cpp `content`, `add_special` and
    /// `parse_special`; each ignores the other's (vLLM logs them), and a
    /// llama.cpp server without `content` would answer `[]` silently.
    pub(crate) fn tokenize(
        &self,
        http: &Http,
        text: &str,
        add_special: bool,
    ) -> Result<Vec<u32>, RemoteError> {
        let body = json!({
            "model": self.model, "prompt": text, "add_special_tokens": add_special,
            "content": text, "add_special": add_special, "parse_special": true,
        });
        let answer = http.post(TOKENIZE, "/tokenize", &body)?;
        token_ids(answer.get("tokens")).map_err(|p| http.malformed(TOKENIZE, p))
    }

    /// vLLM answers `{prompt}`, llama.cpp `{content}`.
    pub(crate) fn detokenize(&self, http: &Http, ids: &[u32]) -> Result<String, RemoteError> {
        let body = json!({"model": self.model, "tokens": ids});
        let answer = http.post(DETOKENIZE, "/detokenize", &body)?;
        ["prompt", "content"]
            .iter()
            .find_map(|key| answer.get(*key).and_then(Value::as_str))
            .map(str::to_string)
            .ok_or_else(|| http.malformed(DETOKENIZE, "neither a `prompt` nor a `content` string"))
    }

    /// One greedy token with `logprobs: k`: the engines report the model's
    /// own log-softmax there (vLLM's default `logprobs_mode` is raw,
    /// llama.cpp's probabilities are pre-sampler), whatever is sampled; so
    /// llama.cpp's sampled token is pinned to a whole character, as
    /// natively (see `llama::FORCE_ASCII`).
    pub(crate) fn next_token_topk(
        &self,
        http: &Http,
        prefix: &[u32],
        k: usize,
    ) -> Result<TopK, RemoteError> {
        let mut body = json!({
            "model": self.model, "prompt": prefix, "max_tokens": 1, "n": 1,
            "logprobs": k, "temperature": 0.0, "stream": false,
        });
        let extra = match self.dialect {
            Dialect::Vllm => json!({"return_tokens_as_token_ids": true}),
            Dialect::LlamaCpp => json!({"logit_bias": crate::llama::FORCE_ASCII}),
        };
        extend(&mut body, extra);
        let answer = http.post(TOPK, "/v1/completions", &body)?;
        parse_topk(&answer, k).map_err(|p| http.malformed(TOPK, p))
    }

    pub(crate) fn sample_chunks(
        &self,
        http: &Http,
        prefix: &[u32],
        n: usize,
        max_tokens: usize,
        sampling: Sampling,
    ) -> Result<Vec<Chunk>, RemoteError> {
        // Only temperature and nucleus: vLLM fills fields a request leaves
        // out from the model's generation_config.json (often a top-k or a
        // repetition penalty), so the neutral values are sent explicitly.
        let mut body = json!({
            "model": self.model, "prompt": prefix, "max_tokens": max_tokens,
            "temperature": sampling.temperature, "top_p": sampling.top_p,
            "top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0,
            "presence_penalty": 0.0, "frequency_penalty": 0.0, "stream": false,
        });
        match self.dialect {
            Dialect::Vllm => {
                extend(
                    &mut body,
                    json!({
                        "n": n, "seed": sampling.seed, "logprobs": 0,
                        "return_tokens_as_token_ids": true, "return_token_ids": true,
                    }),
                );
                let answer = http.post(CHUNKS, "/v1/completions", &body)?;
                parse_chunks(&answer, max_tokens)
                    .and_then(|indexed| in_index_order(n, indexed))
                    .map_err(|p| http.malformed(CHUNKS, p))
            }
            Dialect::LlamaCpp => {
                extend(
                    &mut body,
                    json!({
                        "n": 1, "samplers": ["temperature", "top_p"],
                        "verbose": true, "return_tokens": true, "cache_prompt": true,
                    }),
                );
                self.llama_cpp_chunks(http, body, n, max_tokens, sampling.seed)
            }
        }
    }

    /// One request per choice, in parallel (the shared concurrency limit
    /// still applies), choice `i` with seed `seed + i`.
    fn llama_cpp_chunks(
        &self,
        http: &Http,
        body: Value,
        n: usize,
        max_tokens: usize,
        seed: u32,
    ) -> Result<Vec<Chunk>, RemoteError> {
        let one = |i: usize| -> Result<Chunk, RemoteError> {
            let mut body = body.clone();
            extend(&mut body, json!({"seed": seed.wrapping_add(i as u32)}));
            let answer = http.post(CHUNKS, "/v1/completions", &body)?;
            let mut chunks = parse_chunks(&answer, max_tokens)
                .and_then(|indexed| in_index_order(1, indexed))
                .map_err(|p| http.malformed(CHUNKS, p))?;
            chunks
                .pop()
                .ok_or_else(|| http.malformed(CHUNKS, "no completion"))
        };
        if n == 1 {
            return Ok(vec![one(0)?]);
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    let one = &one;
                    scope.spawn(move || one(i))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    }
}

/// Adds `extra`'s fields to the object `body`.
fn extend(body: &mut Value, extra: Value) {
    if let (Value::Object(body), Value::Object(extra)) = (body, extra) {
        body.extend(extra);
    }
}

/// Every entry of a `/v1/models` answer (at least one).
fn parse_models(answer: &Value) -> Result<Vec<Served>, String> {
    let data = answer
        .get("data")
        .and_then(Value::as_array)
        .ok_or("no `data` array")?;
    if data.is_empty() {
        return Err("no model served (`data` is empty)".into());
    }
    let count = |entry: &Value, pointer: &str| {
        entry
            .pointer(pointer)
            .and_then(Value::as_u64)
            .filter(|&n| n > 0)
            .map(|n| n as usize)
    };
    data.iter()
        .map(|entry| {
            let id = entry
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("a model without an `id` string: {entry}"))?;
            let aliases = entry
                .get("aliases")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            let llama_cpp = entry.get("owned_by").and_then(Value::as_str) == Some("llamacpp")
                || entry.get("meta").is_some_and(Value::is_object);
            // llama.cpp's per-slot context first (its training context is
            // only an upper bound), then vLLM's `max_model_len`.
            let context = count(entry, "/meta/n_ctx")
                .or_else(|| count(entry, "/max_model_len"))
                .or_else(|| count(entry, "/meta/n_ctx_train"));
            Ok(Served {
                id: id.to_string(),
                aliases,
                context,
                vocab: count(entry, "/meta/n_vocab"),
                dialect: if llama_cpp {
                    Dialect::LlamaCpp
                } else {
                    Dialect::Vllm
                },
            })
        })
        .collect()
}

/// The first position's top-k, in vLLM's shape
/// (`logprobs.top_logprobs[0] = {"token_id:N": logprob}`) or llama.cpp's
/// (`logprobs.content[0].top_logprobs = [{id, logprob}]`).
fn parse_topk(answer: &Value, k: usize) -> Result<TopK, String> {
    let logprobs = answer
        .pointer("/choices/0/logprobs")
        .filter(|v| v.is_object())
        .ok_or("no choices[0].logprobs")?;
    let mut tokens = Vec::new();
    if let Some(content) = logprobs.get("content") {
        let first = content
            .pointer("/0/top_logprobs")
            .and_then(Value::as_array)
            .ok_or("no logprobs.content[0].top_logprobs array")?;
        for entry in first {
            let id = entry.get("id").and_then(Value::as_u64);
            let logprob = entry.get("logprob").and_then(Value::as_f64);
            tokens.push(
                logprob_entry(id, logprob)
                    .ok_or_else(|| format!("bad top_logprobs entry {entry}"))?,
            );
        }
    } else {
        let first = logprobs
            .pointer("/top_logprobs/0")
            .and_then(Value::as_object)
            .ok_or("neither logprobs.content nor a logprobs.top_logprobs[0] map")?;
        for (token, logprob) in first {
            let id = id_of(token)?;
            tokens.push(
                logprob_entry(Some(id.into()), logprob.as_f64())
                    .ok_or_else(|| format!("bad log-probability {logprob} for {token:?}"))?,
            );
        }
    }
    Ok(TopK {
        tokens: top_k_of(tokens, k)?,
        cached: prompt_cached(answer),
    })
}

/// `(index, chunk)` for every choice. Ids from `token_ids` (newer vLLM),
/// else `logprobs.tokens` as `"token_id:N"` (vLLM), else `__verbose.tokens`
/// (llama.cpp, one choice per answer); never from llama.cpp's
/// `logprobs.content`, which leaves tokens out.
fn parse_chunks(answer: &Value, max_tokens: usize) -> Result<Vec<(usize, Chunk)>, String> {
    let choices = answer
        .get("choices")
        .and_then(Value::as_array)
        .ok_or("no `choices` array")?;
    let cached = prompt_cached(answer);
    let verbose = answer.pointer("/__verbose/tokens");
    choices
        .iter()
        .enumerate()
        .map(|(at, choice)| {
            let index = match choice.get("index") {
                None => at,
                Some(i) => i
                    .as_u64()
                    .map(|i| i as usize)
                    .ok_or_else(|| format!("choice index {i} is not a number"))?,
            };
            let tokens = if let Some(ids) = choice.get("token_ids").filter(|v| !v.is_null()) {
                token_ids(Some(ids))?
            } else if let Some(strings) = choice.pointer("/logprobs/tokens") {
                let strings = strings
                    .as_array()
                    .ok_or("logprobs.tokens is not an array")?;
                strings
                    .iter()
                    .map(|s| {
                        s.as_str()
                            .ok_or(format!("token {s} is not a string"))
                            .and_then(id_of)
                    })
                    .collect::<Result<Vec<u32>, String>>()?
            } else if let (Some(ids), 1) = (verbose, choices.len()) {
                token_ids(Some(ids))?
            } else {
                return Err(format!(
                    "choice {index} carries no token ids (no token_ids, no logprobs.tokens, \
                     no __verbose.tokens)"
                ));
            };
            let finish = match choice.get("finish_reason").and_then(Value::as_str) {
                Some("stop") => Finish::Eos,
                Some("length") => Finish::Length,
                other => {
                    return Err(format!(
                        "choice {index}: finish_reason {other:?} (expected stop or length)"
                    ))
                }
            };
            let chunk = checked_chunk(tokens, finish, max_tokens, cached)
                .map_err(|p| format!("choice {index}: {p}"))?;
            Ok((index, chunk))
        })
        .collect()
}

/// The id in vLLM's `"token_id:N"` (its `return_tokens_as_token_ids`).
fn id_of(token: &str) -> Result<u32, String> {
    token
        .strip_prefix("token_id:")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            format!(
                "token {token:?} is not \"token_id:N\" (does the engine support \
                 return_tokens_as_token_ids?)"
            )
        })
}

/// `usage.prompt_tokens_details.cached_tokens` (llama.cpp always, vLLM
/// with `--enable-prompt-tokens-details`), else 0.
fn prompt_cached(answer: &Value) -> usize {
    answer
        .pointer("/usage/prompt_tokens_details/cached_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize
}

#[cfg(test)]
mod tests;
