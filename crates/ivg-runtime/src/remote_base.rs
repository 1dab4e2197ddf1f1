//! A base model behind an inference engine, as the engine of ivg-decode
//! sees it ([`ivg_decode::RemoteBase`]): the calls of one step run in
//! parallel on scoped threads (the engine's `max_concurrent` bounds those in
//! flight), each call's failure stays with its own request, and counters
//! record what the engine was asked and what its prompt cache saved.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ivg_decode::{ChunkJob, DecodeError, RemoteBase, SampledChunk, TopKReply};
use ivg_remote::{Finish, RemoteEngine, RemoteError, Sampling};

/// Counters of a [`RemoteBackend`] since it connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoteStats {
    /// Top-k calls (one per token-level guided row per token).
    pub topk_calls: u64,
    /// Chunk calls (one per group of identical rows per chunk).
    pub chunk_calls: u64,
    /// Continuations those chunk calls returned.
    pub chunks: u64,
    /// Prompt tokens sent, and those the engine took from its prompt cache.
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    /// Calls that failed (after the engine's retries).
    pub failed_calls: u64,
    /// Wall time the decoding thread spent waiting on calls, microseconds.
    pub wait_us: u64,
}

#[derive(Default)]
struct Counters {
    topk_calls: AtomicU64,
    chunk_calls: AtomicU64,
    chunks: AtomicU64,
    prompt_tokens: AtomicU64,
    cached_tokens: AtomicU64,
    failed_calls: AtomicU64,
    wait_us: AtomicU64,
}

/// A connected remote engine serving as a decoding engine's base model.
pub struct RemoteBackend {
    engine: RemoteEngine,
    name: String,
    vocab: usize,
    parallel: usize,
    counters: Counters,
}

impl RemoteBackend {
    /// Wraps a connected engine whose vocabulary has `vocab` tokens; at most
    /// `parallel` calls are made at once.
    pub fn new(engine: RemoteEngine, vocab: usize, parallel: usize) -> Self {
        let name = format!("{} ({})", engine.url(), protocol_name(&engine));
        Self {
            engine,
            name,
            vocab,
            parallel: parallel.max(1),
            counters: Counters::default(),
        }
    }

    pub fn engine(&self) -> &RemoteEngine {
        &self.engine
    }

    pub fn stats(&self) -> RemoteStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RemoteStats {
            topk_calls: get(&c.topk_calls),
            chunk_calls: get(&c.chunk_calls),
            chunks: get(&c.chunks),
            prompt_tokens: get(&c.prompt_tokens),
            cached_tokens: get(&c.cached_tokens),
            failed_calls: get(&c.failed_calls),
            wait_us: get(&c.wait_us),
        }
    }

    /// Runs `call` on every item, `parallel` at a time, results in order.
    fn each<T: Sync, R: Send>(
        &self,
        items: &[T],
        call: impl Fn(&T) -> Result<R, RemoteError> + Sync,
    ) -> Vec<Result<R, DecodeError>> {
        let start = Instant::now();
        let next = AtomicU64::new(0);
        let mut out: Vec<Option<Result<R, DecodeError>>> = (0..items.len()).map(|_| None).collect();
        let threads = self.parallel.min(items.len());
        let done: Vec<Vec<(usize, Result<R, DecodeError>)>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                            let Some(item) = items.get(i) else {
                                return mine;
                            };
                            mine.push((i, call(item).map_err(|e| self.error(e))));
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_default())
                .collect()
        });
        for (i, r) in done.into_iter().flatten() {
            out[i] = Some(r);
        }
        let waited = start.elapsed().as_micros() as u64;
        self.counters.wait_us.fetch_add(waited, Ordering::Relaxed);
        out.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(DecodeError::Remote {
                        engine: self.name.clone(),
                        problem: "the thread making the call panicked".into(),
                    })
                })
            })
            .collect()
    }

    fn error(&self, e: RemoteError) -> DecodeError {
        self.counters.failed_calls.fetch_add(1, Ordering::Relaxed);
        DecodeError::Remote {
            engine: self.name.clone(),
            problem: e.to_string(),
        }
    }
}

fn protocol_name(engine: &RemoteEngine) -> String {
    serde_json::to_value(engine.protocol())
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{:?}", engine.protocol()))
}

impl RemoteBase for RemoteBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn vocab_size(&self) -> usize {
        self.vocab
    }

    fn topk(&self, prefixes: &[&[u32]], k: usize) -> Vec<Result<TopKReply, DecodeError>> {
        let c = &self.counters;
        self.each(prefixes, |prefix| {
            c.topk_calls.fetch_add(1, Ordering::Relaxed);
            c.prompt_tokens
                .fetch_add(prefix.len() as u64, Ordering::Relaxed);
            let reply = self.engine.next_token_topk(prefix, k)?;
            c.cached_tokens
                .fetch_add(reply.cached as u64, Ordering::Relaxed);
            Ok(TopKReply {
                tokens: reply.tokens,
            })
        })
    }

    fn sample(&self, jobs: &[ChunkJob]) -> Vec<Result<Vec<SampledChunk>, DecodeError>> {
        let c = &self.counters;
        self.each(jobs, |job| {
            c.chunk_calls.fetch_add(1, Ordering::Relaxed);
            c.prompt_tokens
                .fetch_add(job.prefix.len() as u64, Ordering::Relaxed);
            let sampling = Sampling {
                temperature: job.temperature,
                top_p: job.top_p,
                seed: job.seed,
            };
            let chunks = self
                .engine
                .sample_chunks(&job.prefix, job.n, job.max_tokens, sampling)?;
            c.chunks.fetch_add(chunks.len() as u64, Ordering::Relaxed);
            // One prompt per call: its cached count is the same in each result.
            let cached = chunks.first().map_or(0, |ch| ch.cached);
            c.cached_tokens.fetch_add(cached as u64, Ordering::Relaxed);
            Ok(chunks
                .into_iter()
                .map(|ch| SampledChunk {
                    tokens: ch.tokens,
                    eos: ch.finish == Finish::Eos,
                })
                .collect())
        })
    }
}
