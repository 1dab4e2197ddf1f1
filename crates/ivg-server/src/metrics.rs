//! Prometheus text metrics (exposition format 0.0.4), kept with atomics and
//! small fixed-bucket histograms: no metrics crate is needed for a handful of
//! counters, and the worker thread updates the gauges once per step.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Refused at the edge (bad input, unknown model).
    Error,
    /// The client went away, or the server failed it.
    Cancelled,
    /// 429 or 503: the queue was full or the server draining.
    Rejected,
    Failed,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Self::Ok,
        Self::Error,
        Self::Cancelled,
        Self::Rejected,
        Self::Failed,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
        }
    }
}

/// Upper bounds (seconds) of the latency buckets.
const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        for (c, &b) in self.counts.iter_mut().zip(&BUCKETS) {
            if v <= b {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += v;
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (c, b) in self.counts.iter().zip(BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", self.sum, self.count);
    }
}

#[derive(Default)]
pub struct Metrics {
    outcomes: [AtomicU64; 5],
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    queue_depth: AtomicU64,
    batch_rows: AtomicU64,
    live_requests: AtomicU64,
    steps: AtomicU64,
    latency: Mutex<Histogram>,
    first_token: Mutex<Histogram>,
}

impl Metrics {
    pub fn count(&self, outcome: Outcome) {
        let i = Outcome::ALL.iter().position(|&o| o == outcome).unwrap_or(0);
        self.outcomes[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn tokens(&self, prompt: u64, completion: u64) {
        self.prompt_tokens.fetch_add(prompt, Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(completion, Ordering::Relaxed);
    }

    /// The worker's view after a step.
    pub fn batch(&self, queued: usize, rows: usize, live: usize) {
        self.queue_depth.store(queued as u64, Ordering::Relaxed);
        self.batch_rows.store(rows as u64, Ordering::Relaxed);
        self.live_requests.store(live as u64, Ordering::Relaxed);
    }

    pub fn step(&self) {
        self.steps.fetch_add(1, Ordering::Relaxed);
    }

    pub fn latency(&self, seconds: f64) {
        if let Ok(mut h) = self.latency.lock() {
            h.observe(seconds);
        }
    }

    pub fn first_token(&self, seconds: f64) {
        if let Ok(mut h) = self.first_token.lock() {
            h.observe(seconds);
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP ivg_requests_total Requests by outcome.\n# TYPE ivg_requests_total counter\n",
        );
        for (o, n) in Outcome::ALL.iter().zip(&self.outcomes) {
            let _ = writeln!(
                out,
                "ivg_requests_total{{outcome=\"{}\"}} {}",
                o.label(),
                n.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP ivg_tokens_total Prompt and completion tokens.\n# TYPE ivg_tokens_total counter\n");
        let _ = writeln!(
            out,
            "ivg_tokens_total{{kind=\"prompt\"}} {}",
            self.prompt_tokens.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "ivg_tokens_total{{kind=\"completion\"}} {}",
            self.completion_tokens.load(Ordering::Relaxed)
        );
        let gauges = [
            (
                "ivg_queue_depth",
                "Requests waiting for a place in the batch.",
                &self.queue_depth,
            ),
            (
                "ivg_batch_rows",
                "Rows (beams) decoding in the batch.",
                &self.batch_rows,
            ),
            (
                "ivg_live_requests",
                "Requests decoding in the batch.",
                &self.live_requests,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ivg_engine_steps_total Engine steps.\n# TYPE ivg_engine_steps_total counter\nivg_engine_steps_total {}",
            self.steps.load(Ordering::Relaxed)
        );
        if let Ok(h) = self.latency.lock() {
            h.render(
                "ivg_request_latency_seconds",
                "Time from admission to the last token.",
                &mut out,
            );
        }
        if let Ok(h) = self.first_token.lock() {
            h.render(
                "ivg_time_to_first_token_seconds",
                "Time from admission to the first final token.",
                &mut out,
            );
        }
        out
    }
}
