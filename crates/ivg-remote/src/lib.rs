//! ivg-remote: a base model served by an existing inference engine, driven
//! over HTTP by token ids (no text round trip), so that small local guides
//! can steer a base that lives in llama.cpp's server, vLLM or SGLang on
//! another machine. Two wire protocols ([`Protocol`]): llama.cpp's native
//! one, and the OpenAI `/v1/completions` that all three serve.
//!
//! What guided decoding needs from a base, and the calls that give it:
//! - [`RemoteEngine::next_token_topk`]: the base's top-k next-token
//!   log-probabilities after a prefix (EFT combines them with the guides'
//!   and samples locally with ivg's seeded generator);
//! - [`RemoteEngine::sample_chunks`]: `n` sampled continuations of at most
//!   `L` tokens with finish reasons (CBS and BoN candidates);
//! - [`RemoteEngine::tokenize`] / [`RemoteEngine::detokenize`] and
//!   [`RemoteEngine::compare_vocabulary`]: whether the engine's vocabulary
//!   is the local one (token-level guidance) or not (text level only).
//!
//! Every call is idempotent (sampling is seeded), so transient failures are
//! retried with backoff; a concurrency limit bounds the calls in flight; an
//! error names the engine's URL and the call.

mod engine;
mod error;
mod http;
mod llama;
mod openai;
mod spec;
mod vocab;

pub use engine::{Chunk, Finish, RemoteEngine, Sampling, TopK};
pub use error::RemoteError;
pub use spec::{Protocol, RemoteSpec};
pub use vocab::{Vocabulary, PROBE};
