//! Load on 127.0.0.1 only, bounded in count and time: 64 streaming clients
//! x 4 requests of mixed methods and seeds on the tiny fixtures must all
//! succeed and each equal the text the same request gets alone (batching
//! with other requests changes nothing). Prints p50/p99 latency and the
//! aggregate tokens/s; then 16 base requests at once against the same 16
//! one after another (continuous batching), printed, not asserted.

mod serve_common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use serve_common::*;

const CLIENTS: usize = 64;
const PER_CLIENT: usize = 4;
const MAX_TOKENS: u64 = 12;
const LOAD_METHODS: [&str; 8] = [
    "base",
    "efti",
    "cbsi",
    "ivg",
    "boni",
    "efti+cbsi",
    "bone",
    "cbse",
];
const SEEDS: [u64; 4] = [1, 2, 3, 4];

/// The distinct requests of the load: every method with every seed.
fn distinct() -> Vec<Value> {
    let mut out = Vec::new();
    for method in LOAD_METHODS {
        for seed in SEEDS {
            let mut b = completion(
                "tiny-ivg",
                MAX_TOKENS,
                seed,
                json!({"method": method, "width": 2, "successors": 2, "chunk_len": 3}),
            );
            b["stream"] = json!(true);
            out.push(b);
        }
    }
    out
}

/// One streamed request: its text (choice 0) and the seconds it took.
fn streamed(server: &Server, body: &Value) -> Result<(String, f64), String> {
    let start = Instant::now();
    let sse = Sse::open(
        &agent(Duration::from_secs(120)),
        &server.url("/v1/completions"),
        body,
    )
    .map_err(|e| format!("no answer: {e}"))?;
    if sse.status != 200 {
        let status = sse.status;
        return Err(format!("status {status}: {}", sse.body()));
    }
    let chunks = sse.collect()?;
    Ok((stream_text(&chunks, 0).0, start.elapsed().as_secs_f64()))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn tokens(text: &str) -> usize {
    // The word tokenizer: one token per word.
    text.split_whitespace().count()
}

#[test]
fn concurrent_streams_equal_their_alone_texts_and_batching_pays() {
    let test_start = Instant::now();
    let (_fx, server) = tiny_server(Limits {
        max_concurrent: 16,
        max_queued: 128,
        max_body_bytes: 65536,
    });
    let requests = distinct();
    let alone: Vec<String> = requests
        .iter()
        .map(|b| {
            streamed(&server, b)
                .unwrap_or_else(|e| panic!("alone {b}: {e}"))
                .0
        })
        .collect();
    for (b, t) in requests.iter().zip(&alone) {
        assert_eq!(tokens(t), MAX_TOKENS as usize, "alone {b}: {t:?}");
    }

    // Every client walks the distinct requests from its own offset.
    let pick = |client: usize, k: usize| (client * 7 + k * 13) % requests.len();
    let wall = Instant::now();
    let results = concurrently(CLIENTS, |client| {
        (0..PER_CLIENT)
            .map(|k| {
                let i = pick(client, k);
                (i, streamed(&server, &requests[i]))
            })
            .collect::<Vec<_>>()
    });
    let wall = wall.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    let mut total_tokens = 0;
    let mut failures = Vec::new();
    for (client, rs) in results.iter().enumerate() {
        for (k, (i, r)) in rs.iter().enumerate() {
            match r {
                Ok((text, secs)) => {
                    latencies.push(*secs);
                    total_tokens += tokens(text);
                    if text != &alone[*i] {
                        failures.push(format!(
                            "client {client} request {k} ({}): under load {text:?}, alone {:?}",
                            requests[*i]["ivg"], alone[*i]
                        ));
                    }
                }
                Err(e) => failures.push(format!(
                    "client {client} request {k} ({}): {e}",
                    requests[*i]["ivg"]
                )),
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    if !latencies.is_empty() {
        eprintln!(
            "load: {} requests ({CLIENTS} clients x {PER_CLIENT}), {} errors, wall {wall:.2} s, latency p50 {:.3} s p99 {:.3} s, {:.0} tokens/s aggregate",
            CLIENTS * PER_CLIENT,
            failures.len(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            total_tokens as f64 / wall
        );
    }
    let m = server.metrics();
    assert!(
        failures.is_empty(),
        "{} of {} requests under load failed:\n{}\nserver stderr (tail):\n{}",
        failures.len(),
        CLIENTS * PER_CLIENT,
        failures.join("\n"),
        server.stderr_tail()
    );
    assert_eq!(m.value("ivg_batch_rows"), 0.0, "{m:?}");
    assert_eq!(m.value("ivg_queue_depth"), 0.0, "{m:?}");
    assert_eq!(
        m.requests("ok"),
        (requests.len() + CLIENTS * PER_CLIENT) as f64,
        "{m:?}"
    );

    // Continuous batching: 16 base requests one after another, then at once.
    let base: Vec<Value> = (0..16u64)
        .map(|s| {
            let mut b = completion("tiny", 48, 100 + s, json!({}));
            b["stream"] = json!(true);
            b
        })
        .collect();
    let t = Instant::now();
    let one_by_one: Vec<String> = base
        .iter()
        .map(|b| {
            streamed(&server, b)
                .unwrap_or_else(|e| panic!("{b}: {e}"))
                .0
        })
        .collect();
    let sequential_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let at_once: Vec<String> = concurrently(base.len(), |i| {
        streamed(&server, &base[i])
            .unwrap_or_else(|e| panic!("{}: {e}", base[i]))
            .0
    });
    let concurrent_s = t.elapsed().as_secs_f64();
    assert_eq!(at_once, one_by_one, "base texts at once vs one by one");
    let n: usize = one_by_one.iter().map(|t| tokens(t)).sum();
    let (seq_tps, con_tps) = (n as f64 / sequential_s, n as f64 / concurrent_s);
    eprintln!(
        "continuous batching: 16 base requests x 48 tokens: one by one {seq_tps:.0} tokens/s ({sequential_s:.2} s), at once {con_tps:.0} tokens/s ({concurrent_s:.2} s), ratio {:.2}",
        con_tps / seq_tps
    );
    eprintln!(
        "serve_load took {:.1} s",
        test_start.elapsed().as_secs_f64()
    );
}
