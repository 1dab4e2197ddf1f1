//! Prometheus text metrics (exposition format 0.0.4), kept with atomics and
//! small fixed-bucket histograms: no metrics crate is needed for a handful of
//! counters, and the worker thread updates the gauges once per step.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use ivg_decode::TopKCoverage;
use ivg_runtime::RemoteBackend;

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

/// Upper bounds of the remote top-k's base-mass buckets.
const MASS_BUCKETS: [f64; 8] = [0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 0.9999, 1.0];
/// Upper bounds of the remote top-k's total-variation-bound buckets.
const TV_BUCKETS: [f64; 9] = [1e-6, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0];

struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::with(&BUCKETS)
    }
}

impl Histogram {
    fn with(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    fn observe(&mut self, v: f64) {
        for (c, &b) in self.counts.iter_mut().zip(self.bounds) {
            if v <= b {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += v;
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (c, b) in self.counts.iter().zip(self.bounds) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", self.sum, self.count);
    }
}

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
    /// Per guided row and token, with a remote base.
    topk_mass: Mutex<Histogram>,
    topk_tv: Mutex<Histogram>,
    remote_failures: AtomicU64,
    remote: OnceLock<Arc<RemoteBackend>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            outcomes: Default::default(),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            batch_rows: AtomicU64::new(0),
            live_requests: AtomicU64::new(0),
            steps: AtomicU64::new(0),
            latency: Mutex::default(),
            first_token: Mutex::default(),
            topk_mass: Mutex::new(Histogram::with(&MASS_BUCKETS)),
            topk_tv: Mutex::new(Histogram::with(&TV_BUCKETS)),
            remote_failures: AtomicU64::new(0),
            remote: OnceLock::new(),
        }
    }
}

impl Metrics {
    /// Reports the remote base's call counters from now on.
    pub fn watch_remote(&self, backend: Arc<RemoteBackend>) {
        let _ = self.remote.set(backend);
    }

    /// One step's top-k coverage of a request's rows.
    pub fn topk(&self, rows: &[TopKCoverage]) {
        if let (Ok(mut m), Ok(mut t)) = (self.topk_mass.lock(), self.topk_tv.lock()) {
            for r in rows {
                m.observe(r.base_mass);
                t.observe(r.tv_bound);
            }
        }
    }

    /// A request failed because a call to the remote base failed.
    pub fn remote_failure(&self) {
        self.remote_failures.fetch_add(1, Ordering::Relaxed);
    }

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
        if let Some(remote) = self.remote.get() {
            self.render_remote(remote, &mut out);
        }
        out
    }

    fn render_remote(&self, remote: &RemoteBackend, out: &mut String) {
        let s = remote.stats();
        let counters = [
            ("ivg_remote_calls_total{call=\"topk\"}", s.topk_calls),
            ("ivg_remote_calls_total{call=\"chunks\"}", s.chunk_calls),
            ("ivg_remote_failed_calls_total", s.failed_calls),
            ("ivg_remote_prompt_tokens_total", s.prompt_tokens),
            ("ivg_remote_cached_tokens_total", s.cached_tokens),
            (
                "ivg_remote_failed_requests_total",
                self.remote_failures.load(Ordering::Relaxed),
            ),
        ];
        out.push_str("# HELP ivg_remote_calls_total Calls to the remote base by kind.\n# TYPE ivg_remote_calls_total counter\n");
        for (name, v) in counters {
            if !name.starts_with("ivg_remote_calls_total") {
                let bare = name.split('{').next().unwrap_or(name);
                let _ = writeln!(out, "# TYPE {bare} counter");
            }
            let _ = writeln!(out, "{name} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP ivg_remote_wait_seconds_total Time the engine thread waited on the remote base.\n# TYPE ivg_remote_wait_seconds_total counter\nivg_remote_wait_seconds_total {}",
            s.wait_us as f64 / 1e6
        );
        if let Ok(h) = self.topk_mass.lock() {
            h.render(
                "ivg_remote_topk_base_mass",
                "Base probability mass of the remote top-k, per guided row and token.",
                out,
            );
        }
        if let Ok(h) = self.topk_tv.lock() {
            h.render(
                "ivg_remote_topk_tv_bound",
                "Bound on the total-variation error of sampling among the remote top-k.",
                out,
            );
        }
    }
}
