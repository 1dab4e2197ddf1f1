//! ivg-decode: decoding for ivg (method.md). For now: token sampling
//! (greedy, temperature, top-k, top-p) with a seeded, per-row RNG.

pub mod sampling;

pub use sampling::{row_seed, Sampler, SamplingConfig, SamplingError};
pub mod generate;

pub use generate::{generate, DecodeError, FinishReason, GenerateConfig, Generation};
