//! [`RemoteEngine`], the one public handle on a remote base, and the types
//! its calls return. It dispatches on the spec's protocol to `llama.rs`
//! (llama.cpp's native server protocol) or `openai.rs` (`/v1/completions`
//! of vLLM, SGLang and llama.cpp); what both share (the local prefix check,
//! the shape checks on chunks and top-k) lives here, so the two protocols
//! cannot drift apart in what they accept.

use serde_json::Value;

use crate::http::Http;
use crate::openai::OpenAi;
use crate::{llama, Protocol, RemoteError, RemoteSpec};

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
    /// Prompt tokens the engine took from its cache instead of evaluating
    /// (0 where the engine does not say, e.g. vLLM without
    /// `--enable-prompt-tokens-details`).
    pub cached: usize,
}

/// The base's most likely next tokens after a prefix, most likely first.
#[derive(Debug, Clone, PartialEq)]
pub struct TopK {
    /// `(id, log-probability)` under the full-vocabulary softmax.
    pub tokens: Vec<(u32, f32)>,
    pub cached: usize,
}

/// A connected engine: its URL, protocol and what it said about itself.
/// `Send + Sync`: beams call it from several threads at once, and the
/// concurrency limit is shared by all of them.
pub struct RemoteEngine {
    http: Http,
    protocol: Protocol,
    /// Positions per sequence, where the engine says.
    context: Option<usize>,
    wire: Wire,
}

/// The protocol-specific state (a closed set, so an enum, not a trait).
enum Wire {
    LlamaCpp,
    OpenAi(OpenAi),
}

impl RemoteEngine {
    /// Validates `spec`, reads the API key it names, and asks the engine
    /// about itself (`/props` natively, `/v1/models` for OpenAI); fails with
    /// the engine's URL when it does not answer as the protocol promises.
    pub fn connect(spec: &RemoteSpec) -> Result<Self, RemoteError> {
        let http = Http::new(spec)?;
        let (context, wire) = match spec.protocol {
            Protocol::LlamaCpp => (Some(llama::connect(&http)?), Wire::LlamaCpp),
            Protocol::OpenAi => {
                let (openai, context) = OpenAi::connect(&http, spec)?;
                (context, Wire::OpenAi(openai))
            }
        };
        Ok(Self {
            http,
            protocol: spec.protocol,
            context,
            wire,
        })
    }

    pub fn url(&self) -> &str {
        &self.http.url
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Positions per sequence the engine holds (llama.cpp's per-slot
    /// context, vLLM's `max_model_len`); `usize::MAX` when the engine does
    /// not say, and then no call is refused locally for its length (the
    /// engine's own error names the overflow).
    pub fn context_length(&self) -> usize {
        self.context.unwrap_or(usize::MAX)
    }

    /// The engine's ids for `text` (special tokens parsed; `add_special`
    /// adds BOS where the model wants one).
    pub fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>, RemoteError> {
        match &self.wire {
            Wire::LlamaCpp => llama::tokenize(&self.http, text, add_special),
            Wire::OpenAi(o) => o.tokenize(&self.http, text, add_special),
        }
    }

    /// The engine's text for `ids`.
    pub fn detokenize(&self, ids: &[u32]) -> Result<String, RemoteError> {
        match &self.wire {
            Wire::LlamaCpp => llama::detokenize(&self.http, ids),
            Wire::OpenAi(o) => o.detokenize(&self.http, ids),
        }
    }

    /// The `k` most likely next tokens after `prefix` with their
    /// log-probabilities (the model's softmax, before any sampler).
    pub fn next_token_topk(&self, prefix: &[u32], k: usize) -> Result<TopK, RemoteError> {
        match &self.wire {
            Wire::LlamaCpp => {
                self.check_prefix(llama::TOPK, prefix, 1)?;
                llama::next_token_topk(&self.http, prefix, k)
            }
            Wire::OpenAi(o) => {
                self.check_prefix(crate::openai::TOPK, prefix, 1)?;
                o.next_token_topk(&self.http, prefix, k)
            }
        }
    }

    /// `n` continuations of `prefix`, each of at most `max_tokens`; choice
    /// `i` is sampled with seed `seed + i` (llama.cpp and vLLM's V1 engine
    /// both derive a child's seed so), so a call is reproducible.
    pub fn sample_chunks(
        &self,
        prefix: &[u32],
        n: usize,
        max_tokens: usize,
        sampling: Sampling,
    ) -> Result<Vec<Chunk>, RemoteError> {
        let call = match &self.wire {
            Wire::LlamaCpp => llama::CHUNKS,
            Wire::OpenAi(_) => crate::openai::CHUNKS,
        };
        self.check_prefix(call, prefix, max_tokens)?;
        if n == 0 || max_tokens == 0 {
            return Ok(Vec::new());
        }
        match &self.wire {
            Wire::LlamaCpp => llama::sample_chunks(&self.http, prefix, n, max_tokens, sampling),
            Wire::OpenAi(o) => o.sample_chunks(&self.http, prefix, n, max_tokens, sampling),
        }
    }

    /// The vocabulary size the engine reports, `None` where its protocol
    /// has no way to say (vLLM, SGLang).
    pub(crate) fn reported_vocab_size(&self) -> Result<Option<usize>, RemoteError> {
        match &self.wire {
            Wire::LlamaCpp => llama::vocab_size(&self.http).map(Some),
            Wire::OpenAi(o) => Ok(o.vocab_size()),
        }
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
        if let Some(context) = self.context {
            if prefix.len() + new > context {
                return Err(refused(format!(
                    "{} prefix tokens + {new} new exceed the engine's context of {context}",
                    prefix.len()
                )));
            }
        }
        Ok(())
    }
}

/// Token ids from a JSON array of integers.
pub(crate) fn token_ids(value: Option<&Value>) -> Result<Vec<u32>, String> {
    let items = value
        .and_then(Value::as_array)
        .ok_or_else(|| "no token array".to_string())?;
    items
        .iter()
        .map(|v| match v.as_u64() {
            Some(id) if id <= u32::MAX as u64 => Ok(id as u32),
            _ => Err(format!("token {v} is not an id")),
        })
        .collect()
}

/// A chunk whose length agrees with its finish reason and the limit (a
/// `Length` chunk shorter than the limit means the engine dropped tokens
/// or stopped for a reason it did not name).
pub(crate) fn checked_chunk(
    tokens: Vec<u32>,
    finish: Finish,
    max_tokens: usize,
    cached: usize,
) -> Result<Chunk, String> {
    if tokens.len() > max_tokens || (finish == Finish::Length && tokens.len() != max_tokens) {
        return Err(format!(
            "{} tokens for a limit of {max_tokens} ({finish:?})",
            tokens.len()
        ));
    }
    Ok(Chunk {
        tokens,
        finish,
        cached,
    })
}

/// `(index, chunk)` pairs in answer order into `n` chunks in index order;
/// a repeated, missing or out-of-range index is an error.
pub(crate) fn in_index_order(n: usize, indexed: Vec<(usize, Chunk)>) -> Result<Vec<Chunk>, String> {
    if indexed.len() != n {
        return Err(format!("asked for {n} completions, got {}", indexed.len()));
    }
    let mut chunks: Vec<Option<Chunk>> = vec![None; n];
    for (index, chunk) in indexed {
        match chunks.get_mut(index) {
            Some(slot @ None) => *slot = Some(chunk),
            _ => return Err(format!("completion index {index} repeated or out of range")),
        }
    }
    chunks
        .into_iter()
        .map(|c| c.ok_or_else(|| "a completion index is missing".to_string()))
        .collect()
}

/// `(id, logprob)` pairs, most likely first (ties by id, so the order does
/// not depend on how the engine listed them), cut to `k`; fewer than `k` is
/// an error (vLLM caps `logprobs` at `--max-logprobs`, llama.cpp at the
/// vocabulary).
pub(crate) fn top_k_of(mut tokens: Vec<(u32, f32)>, k: usize) -> Result<Vec<(u32, f32)>, String> {
    if tokens.len() < k {
        return Err(format!(
            "asked for {k} log-probabilities, got {}",
            tokens.len()
        ));
    }
    tokens.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    tokens.truncate(k);
    Ok(tokens)
}

/// One `(id, logprob)` with a finite log-probability.
pub(crate) fn logprob_entry(id: Option<u64>, logprob: Option<f64>) -> Option<(u32, f32)> {
    match (id, logprob) {
        (Some(id), Some(lp)) if id <= u32::MAX as u64 && lp.is_finite() => {
            Some((id as u32, lp as f32))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_is_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<RemoteEngine>();
    }

    #[test]
    fn top_k_sorts_cuts_and_counts() {
        let got = top_k_of(vec![(5, -3.0), (2, -0.5), (9, -0.5), (1, -7.0)], 3).unwrap();
        assert_eq!(got, vec![(2, -0.5), (9, -0.5), (5, -3.0)]);
        let err = top_k_of(vec![(5, -3.0)], 4).unwrap_err();
        assert_eq!(err, "asked for 4 log-probabilities, got 1");
    }

    #[test]
    fn chunks_are_checked_and_ordered() {
        let c = |t: Vec<u32>| checked_chunk(t, Finish::Length, 2, 0).unwrap();
        let ordered = in_index_order(2, vec![(1, c(vec![3, 4])), (0, c(vec![1, 2]))]).unwrap();
        assert_eq!(ordered[0].tokens, vec![1, 2]);
        let err = in_index_order(2, vec![(0, c(vec![3, 4])), (0, c(vec![1, 2]))]).unwrap_err();
        assert!(err.contains("index 0 repeated"), "{err}");
        let err = checked_chunk(vec![1], Finish::Length, 2, 0).unwrap_err();
        assert_eq!(err, "1 tokens for a limit of 2 (Length)");
        assert!(checked_chunk(vec![1], Finish::Eos, 2, 0).is_ok());
    }
}
