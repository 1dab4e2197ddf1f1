//! ivg-decode: decoding for ivg (method.md): token sampling (greedy,
//! temperature, top-k, top-p) with seeded per-row RNGs, batched base
//! generation, and the guided engine that runs every method of the matrix.

pub mod sampling;

pub use sampling::{row_seed, Sampler, SamplingConfig, SamplingError};
pub mod engine;
pub mod generate;
pub mod guidance;
pub mod guide_source;
pub mod topk;

pub use engine::{
    first_token_logits, guided_generate, guided_generate_events, guided_generate_seeded,
    value_feeds, BaseModel, Batch, ChunkJob, ChunkTrace, Engine, Event, GuideSetId, GuidedOutput,
    Guides, RemoteBase, Request, RequestId, SampledChunk, TopKCoverage, TopKReply, TraceCandidate,
};
pub use generate::{generate, DecodeError, FinishReason, GenerateConfig, Generation};
pub use guidance::{ChunkRanking, GuidanceConfig, Method, TokenPolicy};
pub use guide_source::{GuideSource, ValueRole};
pub use topk::{combine_topk, CandidateLogits};
