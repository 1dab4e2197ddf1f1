//! llama.cpp's native server protocol: `/props`, `/tokenize`, `/detokenize`
//! and `/completion` with the prompt as a token array, `n_probs` for the
//! base's top-k, `n_cmpl` for several seeded continuations (the engine gives
//! child `i` the seed `seed + i`), `return_tokens` for ids rather than text,
//! and `cache_prompt` so a shared prefix is evaluated once.

use serde_json::{json, Value};

use crate::engine::{checked_chunk, in_index_order, logprob_entry, token_ids, top_k_of};
use crate::http::Http;
use crate::{Chunk, Finish, RemoteError, Sampling, TopK};

pub(crate) const TOPK: &str = "POST /completion (top-k)";
pub(crate) const CHUNKS: &str = "POST /completion (chunks)";

/// llama.cpp's `logit_bias` by text (it tokenizes the string): makes the
/// token(s) of "a" win a one-token call. Without it a call whose greedy or
/// sampled token is part of a multi-byte character (the first half of an
/// emoji) comes back without log-probabilities (`process_token` records
/// only complete text).
pub(crate) const FORCE_ASCII: [(&str, f32); 1] = [("a", 1000.0)];

/// The per-slot context `/props` reports; fails when the engine does not
/// answer like a llama.cpp server.
pub(crate) fn connect(http: &Http) -> Result<usize, RemoteError> {
    let props = http.get("GET /props", "/props")?;
    props
        .pointer("/default_generation_settings/n_ctx")
        .and_then(Value::as_u64)
        .map(|n| n as usize)
        .ok_or_else(|| http.malformed("GET /props", "no default_generation_settings.n_ctx"))
}

pub(crate) fn tokenize(
    http: &Http,
    text: &str,
    add_special: bool,
) -> Result<Vec<u32>, RemoteError> {
    const CALL: &str = "POST /tokenize";
    let body = json!({"content": text, "add_special": add_special, "parse_special": true});
    let answer = http.post(CALL, "/tokenize", &body)?;
    token_ids(answer.get("tokens")).map_err(|p| http.malformed(CALL, p))
}

pub(crate) fn detokenize(http: &Http, ids: &[u32]) -> Result<String, RemoteError> {
    const CALL: &str = "POST /detokenize";
    let answer = http.post(CALL, "/detokenize", &json!({ "tokens": ids }))?;
    answer
        .get("content")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| http.malformed(CALL, "no `content` string"))
}

/// The vocabulary size (`/v1/models`, `data[0].meta.n_vocab`).
pub(crate) fn vocab_size(http: &Http) -> Result<usize, RemoteError> {
    const CALL: &str = "GET /v1/models";
    let models = http.get(CALL, "/v1/models")?;
    models
        .pointer("/data/0/meta/n_vocab")
        .and_then(Value::as_u64)
        .map(|n| n as usize)
        .ok_or_else(|| http.malformed(CALL, "no data[0].meta.n_vocab"))
}

/// Pre-sampler probabilities of the first position. llama.cpp records
/// them only for a sampled token that completes a UTF-8 character, so the
/// one sampled token is pinned to one that does ([`FORCE_ASCII`]); the
/// probabilities it reports are the raw logits' softmax, bias or not.
pub(crate) fn next_token_topk(http: &Http, prefix: &[u32], k: usize) -> Result<TopK, RemoteError> {
    let body = json!({
        "prompt": prefix, "n_predict": 1, "n_probs": k, "temperature": 0.0,
        "samplers": [], "logit_bias": FORCE_ASCII, "cache_prompt": true,
        "return_tokens": true, "stream": false,
    });
    let answer = http.post(TOPK, "/completion", &body)?;
    let first = answer
        .pointer("/completion_probabilities/0/top_logprobs")
        .and_then(Value::as_array)
        .ok_or_else(|| http.malformed(TOPK, "no completion_probabilities[0].top_logprobs"))?;
    let mut tokens = Vec::with_capacity(first.len());
    for entry in first {
        let id = entry.get("id").and_then(Value::as_u64);
        let logprob = entry.get("logprob").and_then(Value::as_f64);
        let pair = logprob_entry(id, logprob)
            .ok_or_else(|| http.malformed(TOPK, format!("bad top_logprobs entry {entry}")))?;
        tokens.push(pair);
    }
    Ok(TopK {
        tokens: top_k_of(tokens, k).map_err(|p| http.malformed(TOPK, p))?,
        cached: cached(&answer),
    })
}

/// `n` continuations in one request (`n_cmpl`; child `i` gets `seed + i`).
pub(crate) fn sample_chunks(
    http: &Http,
    prefix: &[u32],
    n: usize,
    max_tokens: usize,
    sampling: Sampling,
) -> Result<Vec<Chunk>, RemoteError> {
    let body = json!({
        "prompt": prefix, "n_predict": max_tokens, "n_cmpl": n,
        "temperature": sampling.temperature, "top_p": sampling.top_p, "seed": sampling.seed,
        "samplers": ["temperature", "top_p"], "cache_prompt": true, "return_tokens": true,
        "stream": false,
    });
    let answer = http.post(CHUNKS, "/completion", &body)?;
    let results = match answer {
        Value::Array(items) => items,
        one @ Value::Object(_) => vec![one],
        other => {
            return Err(http.malformed(CHUNKS, format!("neither an object nor an array: {other}")))
        }
    };
    let indexed = results
        .iter()
        .map(|r| {
            let index = r.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            Ok((index, native_chunk(r, max_tokens)?))
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(|p| http.malformed(CHUNKS, p))?;
    in_index_order(n, indexed).map_err(|p| http.malformed(CHUNKS, p))
}

/// A chunk from a native result object: `tokens`, `stop_type` (`eos` or
/// `limit`), `tokens_cached`. Also what llama.cpp's `/v1/completions`
/// embeds under `__verbose` when asked for it (see `openai.rs`).
pub(crate) fn native_chunk(r: &Value, max_tokens: usize) -> Result<Chunk, String> {
    let tokens = token_ids(r.get("tokens"))?;
    let finish = match r.get("stop_type").and_then(Value::as_str) {
        Some("eos") => Finish::Eos,
        Some("limit") => Finish::Length,
        other => return Err(format!("stop_type {other:?} (expected eos or limit)")),
    };
    checked_chunk(tokens, finish, max_tokens, cached(r))
}

fn cached(answer: &Value) -> usize {
    answer
        .get("tokens_cached")
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize
}
