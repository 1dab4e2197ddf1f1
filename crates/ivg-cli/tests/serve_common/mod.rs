//! Shared by the `serve*` tests: the real `ivg serve` binary started as a
//! child process on 127.0.0.1 with a free port, plain-HTTP helpers (ureq)
//! that return the status and body of every answer (4xx and 5xx included),
//! an SSE reader, the tiny-fixture server config, and `ivg generate` run as a
//! subprocess for parity checks. No mocks: every request crosses a socket.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long a server on the tiny fixtures may take to answer /health 200.
pub const TINY_READY: Duration = Duration::from_secs(120);
/// SmolLM2 may have to be fetched into the cache first (PyPI, ~100 MB).
pub const SMOLLM2_READY: Duration = Duration::from_secs(900);
/// Lines of the server's stderr kept for failure messages.
const TAIL_LINES: usize = 200;

/// A running `ivg serve`; SIGTERM and wait on drop.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    tail: Arc<Mutex<VecDeque<String>>>,
    drain: Option<JoinHandle<()>>,
}

impl Server {
    /// `ivg serve --config CONFIG --host 127.0.0.1 --port 0`, ready.
    pub fn start(config: &Path) -> Server {
        let config = config.to_str().expect("utf-8 config path");
        Self::start_args(&["--config", config], TINY_READY)
    }

    /// `ivg serve ARGS --host 127.0.0.1 --port 0`, waiting up to `ready`
    /// for /health to answer 200.
    pub fn start_args(args: &[&str], ready: Duration) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ivg"))
            .arg("serve")
            .args(args)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ivg serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let drain = {
            let tail = tail.clone();
            std::thread::spawn(move || {
                let prefix = "ivg serve: listening on ";
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(url) = line.strip_prefix(prefix) {
                        let _ = tx.send(url.trim().to_string());
                    }
                    let mut t = tail.lock().expect("tail lock");
                    t.push_back(line);
                    if t.len() > TAIL_LINES {
                        t.pop_front();
                    }
                }
            })
        };
        let mut server = Server {
            child: Some(child),
            base: String::new(),
            tail,
            drain: Some(drain),
        };
        // The listening line comes as soon as the socket is bound, before
        // the models load.
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => server.base = url,
            Err(_) => panic!(
                "no `ivg serve: listening on` line within 60 s (exited: {:?}); stderr:\n{}",
                server.exited(),
                server.stderr_tail()
            ),
        }
        assert!(
            server.base.starts_with("http://127.0.0.1:"),
            "listening line names {}, not http://127.0.0.1:PORT",
            server.base
        );
        server.wait_ready(ready);
        server
    }

    fn wait_ready(&mut self, limit: Duration) {
        let start = Instant::now();
        let agent = agent(Duration::from_secs(10));
        loop {
            if let Some(status) = self.exited() {
                panic!(
                    "ivg serve exited ({status}) before it was ready; stderr:\n{}",
                    self.stderr_tail()
                );
            }
            if let Ok(r) = request(&agent, "GET", &self.url("/health"), None, None) {
                match r.status {
                    200 => {
                        assert_eq!(r.json(), json!({"status": "ok"}), "/health body");
                        return;
                    }
                    503 => assert_eq!(r.json(), json!({"status": "loading"}), "/health body"),
                    other => panic!("/health answered {other}: {}", r.body),
                }
            }
            if start.elapsed() > limit {
                panic!(
                    "/health not 200 within {limit:?}; stderr:\n{}",
                    self.stderr_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The last lines the server wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        let t = self.tail.lock().expect("tail lock");
        t.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The exit status once the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends SIGTERM (through `kill`, so no libc binding is needed).
    pub fn sigterm(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
    }

    /// Waits up to `limit` for the process to end.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGTERM, then the exit status (None if it did not end within 60 s;
    /// it is killed then).
    pub fn terminate(mut self) -> Option<ExitStatus> {
        self.sigterm();
        let status = self.wait_exit(Duration::from_secs(60));
        self.shutdown();
        status
    }

    fn shutdown(&mut self) {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                let start = Instant::now();
                while child.try_wait().ok().flatten().is_none() {
                    if start.elapsed() > Duration::from_secs(30) {
                        eprintln!("ivg serve ignored SIGTERM for 30 s; killing it");
                        let _ = child.kill();
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            let _ = child.wait();
        }
        if let Some(d) = self.drain.take() {
            let _ = d.join();
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None, None)
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.call(
            "POST",
            path,
            Some(body.to_string().into_bytes()),
            Some("application/json"),
        )
    }

    /// Any bytes as the body, with an optional content type.
    pub fn post_raw(&self, path: &str, body: &[u8], content_type: Option<&str>) -> Reply {
        self.call("POST", path, Some(body.to_vec()), content_type)
    }

    fn call(&self, method: &str, path: &str, body: Option<Vec<u8>>, ct: Option<&str>) -> Reply {
        let agent = agent(Duration::from_secs(300));
        request(&agent, method, &self.url(path), body, ct).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: {e}\nserver stderr:\n{}",
                self.stderr_tail()
            )
        })
    }

    /// POST a JSON body and open its answer as a stream (SSE when 200).
    pub fn stream(&self, path: &str, body: &Value) -> Sse {
        Sse::open(&agent(Duration::from_secs(300)), &self.url(path), body).unwrap_or_else(|e| {
            panic!("stream {path}: {e}\nserver stderr:\n{}", self.stderr_tail())
        })
    }

    /// The samples of `/metrics`, by series name with labels
    /// (`ivg_requests_total{outcome="ok"}`).
    pub fn metrics(&self) -> Metrics {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "/metrics: {}", r.body);
        Metrics::parse(&r.body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// An agent that never treats a status as an error, ignores proxy variables
/// (everything here is loopback) and gives up after `timeout`.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(timeout))
        .build()
        .new_agent()
}

/// One HTTP exchange: status and body (as text, lossily).
pub fn request(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<Vec<u8>>,
    content_type: Option<&str>,
) -> Result<Reply, ureq::Error> {
    let response = match method {
        "GET" => agent.get(url).call()?,
        "POST" => {
            let mut req = agent.post(url);
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            req.send(body.unwrap_or_default())?
        }
        other => panic!("method {other}"),
    };
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = response
        .into_body()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()?;
    Ok(Reply {
        status,
        content_type,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// A status and a body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Reply {
    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {:?}",
                self.status, self.body
            )
        })
    }

    /// `Ok(param)` when the body is an OpenAI error
    /// `{"error": {"message": non-empty string, "type": string, "param":
    /// string|null, "code": present}}`; the reason otherwise.
    pub fn error_param(&self) -> Result<Option<String>, String> {
        let v: Value = serde_json::from_str(&self.body)
            .map_err(|e| format!("error body is not JSON ({e}): {:?}", self.body))?;
        let e = v
            .get("error")
            .and_then(Value::as_object)
            .ok_or_else(|| format!("no `error` object: {v}"))?;
        match e.get("message").and_then(Value::as_str) {
            Some(m) if !m.is_empty() => {}
            _ => return Err(format!("`error.message` is not a non-empty string: {v}")),
        }
        if !e.get("type").is_some_and(Value::is_string) {
            return Err(format!("`error.type` is not a string: {v}"));
        }
        if !e.contains_key("code") {
            return Err(format!("`error.code` is missing: {v}"));
        }
        match e.get("param") {
            Some(Value::String(p)) => Ok(Some(p.clone())),
            Some(Value::Null) => Ok(None),
            _ => Err(format!("`error.param` is not a string or null: {v}")),
        }
    }

    pub fn error_message(&self) -> String {
        serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// A server-sent-events answer read line by line.
pub struct Sse {
    pub status: u16,
    pub content_type: String,
    reader: BufReader<ureq::BodyReader<'static>>,
}

impl Sse {
    pub fn open(agent: &ureq::Agent, url: &str, body: &Value) -> Result<Sse, ureq::Error> {
        let response = agent
            .post(url)
            .header("content-type", "application/json")
            .send(body.to_string())?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        Ok(Sse {
            status,
            content_type,
            reader: BufReader::new(response.into_body().into_reader()),
        })
    }

    /// The payload of the next `data:` line (`[DONE]` included); None at the
    /// end of the body. Other SSE lines (comments, blank separators) are skipped.
    pub fn next_data(&mut self) -> Option<Result<String, String>> {
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(e.to_string())),
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(data) = line.strip_prefix("data:") {
                return Some(Ok(data.trim_start().to_string()));
            }
        }
    }

    /// Every JSON chunk up to `[DONE]`; errors on a malformed chunk, a
    /// missing `[DONE]` or anything after it.
    pub fn collect(mut self) -> Result<Vec<Value>, String> {
        let mut chunks = Vec::new();
        loop {
            match self.next_data() {
                None => {
                    return Err(format!(
                        "stream ended without [DONE] after {} chunks",
                        chunks.len()
                    ))
                }
                Some(Err(e)) => return Err(format!("reading the stream: {e}")),
                Some(Ok(d)) if d == "[DONE]" => break,
                Some(Ok(d)) => chunks.push(
                    serde_json::from_str(&d)
                        .map_err(|e| format!("chunk is not JSON ({e}): {d}"))?,
                ),
            }
        }
        match self.next_data() {
            None => Ok(chunks),
            Some(other) => Err(format!("data after [DONE]: {other:?}")),
        }
    }

    /// The whole body as text (for a non-200 answer).
    pub fn body(mut self) -> String {
        let mut s = String::new();
        let _ = self.reader.read_to_string(&mut s);
        s
    }
}

/// Text of choice `index` of streamed completion chunks (`choices[i].text`)
/// or chat chunks (`choices[i].delta.content`), concatenated, and the last
/// finish_reason seen.
pub fn stream_text(chunks: &[Value], index: u64) -> (String, Option<String>) {
    let mut text = String::new();
    let mut finish = None;
    for c in chunks {
        for choice in c["choices"].as_array().into_iter().flatten() {
            if choice["index"].as_u64() != Some(index) {
                continue;
            }
            if let Some(t) = choice["text"].as_str() {
                text.push_str(t);
            }
            if let Some(t) = choice["delta"]["content"].as_str() {
                text.push_str(t);
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                finish = Some(f.to_string());
            }
        }
    }
    (text, finish)
}

/// Parsed Prometheus samples.
#[derive(Debug, Clone, Default)]
pub struct Metrics(pub Vec<(String, f64)>);

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        Metrics(
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .filter_map(|l| {
                    let (name, value) = l.rsplit_once(' ')?;
                    Some((name.trim().to_string(), value.trim().parse().ok()?))
                })
                .collect(),
        )
    }

    /// The sample named exactly `series` (with its labels), if present.
    pub fn get(&self, series: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| n == series).map(|&(_, v)| v)
    }

    /// Like [`Metrics::get`], 0 when absent.
    pub fn value(&self, series: &str) -> f64 {
        self.get(series).unwrap_or(0.0)
    }

    pub fn requests(&self, outcome: &str) -> f64 {
        self.value(&format!("ivg_requests_total{{outcome=\"{outcome}\"}}"))
    }
}

/// The tiny fixtures in a temp dir and a `server.toml` over them.
pub struct Fixture {
    _dir: tempfile::TempDir,
    pub dir: PathBuf,
    /// Base model and tuned guide: tiny llama + word tokenizer.
    pub llama: PathBuf,
    /// Reference guide: tiny qwen2 + word tokenizer.
    pub qwen2: PathBuf,
    /// Explicit Q value: tiny gpt2 + word tokenizer.
    pub gpt2: PathBuf,
    pub config: PathBuf,
}

/// The `[server]` limits written into the fixture config.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_concurrent: usize,
    pub max_queued: usize,
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent: 16,
            max_queued: 128,
            max_body_bytes: 65536,
        }
    }
}

/// Context of the tiny fixtures (`max_position_embeddings` / `n_positions`).
pub const TINY_CONTEXT: usize = 64;
/// The prompt used throughout: 3 tokens of the word tokenizer.
pub const PROMPT: &str = "t5 t17 t3";
pub const TUNED_TEMPLATE: &str = "t7 {prompt}";
pub const REF_TEMPLATE: &str = "{prompt}";
pub const VALUE_TEMPLATE: &str = "{prompt} t1";

/// Every method name of the paper's matrix the server accepts.
pub const METHODS: [&str; 9] = [
    "base",
    "boni",
    "bone",
    "efti",
    "efte",
    "cbsi",
    "cbse",
    "efti+cbsi",
    "ivg",
];

/// A tiny causal fixture with the word tokenizer over `t0 .. t95`.
fn copy_tiny(name: &str, dir: &Path) -> PathBuf {
    let fixture = ivg_testkit::fixture(&format!("tiny/{name}"));
    let model = dir.join(format!("tiny-{name}"));
    std::fs::create_dir_all(&model).expect("mkdir");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(f), model.join(f)).expect("copy fixture");
    }
    ivg_testkit::write_word_tokenizer(&model);
    model
}

/// A TOML basic string (JSON escaping is valid TOML for these contents).
fn q(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// Presets `tiny` (base only) and `tiny-ivg` (implicit pair: tuned = the
/// tiny llama under `t7 {prompt}`, reference = tiny qwen2 under `{prompt}`;
/// explicit Q = tiny gpt2 under `{prompt} t1`; default EFTi+CBSi).
pub fn tiny_fixture(limits: Limits) -> Fixture {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().to_path_buf();
    let llama = copy_tiny("llama", &dir);
    let qwen2 = copy_tiny("qwen2", &dir);
    let gpt2 = copy_tiny("gpt2", &dir);
    let path = |p: &Path| q(p.to_str().expect("utf-8 path"));
    let config = format!(
        r#"[server]
max_concurrent = {mc}
max_queued = {mq}
max_body_bytes = {mb}

[base]
model = {llama}
template = "{{prompt}}"

[[presets]]
name = "tiny"
[presets.defaults]
method = "base"
max_tokens = 16
temperature = 0.7

[[presets]]
name = "tiny-ivg"
[presets.guides]
beta_v = 1.0
[[presets.guides.implicit]]
tuned = {llama}
reference = {qwen2}
tuned_template = {tt}
reference_template = {rt}
[presets.guides.explicit]
model = {gpt2}
kind = "q"
template = {vt}
[presets.defaults]
method = "efti+cbsi"
width = 2
successors = 2
chunk_len = 3
beta = 1.0
max_tokens = 16
temperature = 0.7
"#,
        mc = limits.max_concurrent,
        mq = limits.max_queued,
        mb = limits.max_body_bytes,
        llama = path(&llama),
        qwen2 = path(&qwen2),
        gpt2 = path(&gpt2),
        tt = q(TUNED_TEMPLATE),
        rt = q(REF_TEMPLATE),
        vt = q(VALUE_TEMPLATE),
    );
    let config_path = dir.join("server.toml");
    std::fs::write(&config_path, config).expect("write server.toml");
    Fixture {
        _dir: tmp,
        dir,
        llama,
        qwen2,
        gpt2,
        config: config_path,
    }
}

/// A tiny fixture and a server over it.
pub fn tiny_server(limits: Limits) -> (Fixture, Server) {
    let fixture = tiny_fixture(limits);
    let server = Server::start(&fixture.config);
    (fixture, server)
}

/// `/v1/completions` body on `model` with `ivg` settings (an empty object
/// sends none).
pub fn completion(model: &str, max_tokens: u64, seed: u64, ivg: Value) -> Value {
    let mut body = json!({
        "model": model,
        "prompt": PROMPT,
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "seed": seed,
    });
    if ivg.as_object().is_some_and(|o| !o.is_empty()) {
        body["ivg"] = ivg;
    }
    body
}

/// The text of choice 0 of a 200 completion answer; panics otherwise.
pub fn completion_text(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "completion failed: {}", reply.body);
    reply.json()["choices"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no choices[0].text: {}", reply.body))
        .to_string()
}

/// Runs `ivg ARGS` and returns stdout; panics with stderr on failure.
pub fn ivg(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ivg"))
        .args(args)
        .output()
        .expect("run ivg");
    assert!(
        out.status.success(),
        "ivg {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// The completions `ivg generate` printed for a guided run:
/// `### i: PROMPT\nCOMPLETION\n(value V, FINISH)\n` per prompt.
pub fn guided_completions(stdout: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = stdout.lines().peekable();
    while let Some(line) = lines.next() {
        if !line.starts_with(&format!("### {}: ", out.len())) {
            continue;
        }
        let mut body = Vec::new();
        for l in lines.by_ref() {
            if l.starts_with("(value ") {
                break;
            }
            body.push(l);
        }
        out.push(body.join("\n"));
    }
    out
}

/// The ivg settings and CLI flags of one guided run on the tiny fixture.
pub struct GuidedRun<'a> {
    pub method: &'a str,
    pub width: usize,
    pub successors: usize,
    pub chunk_len: usize,
    pub beta: f64,
    pub max_tokens: usize,
    pub seed: u64,
}

impl GuidedRun<'_> {
    /// `ivg generate` with the same settings as the `tiny-ivg` preset's
    /// guides, `prompts` copies of [`PROMPT`]; the completions it printed.
    pub fn generate(&self, fx: &Fixture, prompts: usize) -> Vec<String> {
        let s = |p: &Path| p.to_str().expect("utf-8").to_string();
        let mut args: Vec<String> = vec![
            "generate".into(),
            "--base".into(),
            s(&fx.llama),
            "--method".into(),
            self.method.into(),
            "--tuned".into(),
            s(&fx.llama),
            "--ref".into(),
            s(&fx.qwen2),
            "--value".into(),
            s(&fx.gpt2),
            "--tuned-template".into(),
            TUNED_TEMPLATE.into(),
            "--ref-template".into(),
            REF_TEMPLATE.into(),
            "--value-template".into(),
            VALUE_TEMPLATE.into(),
            "--width".into(),
            self.width.to_string(),
            "--successors".into(),
            self.successors.to_string(),
            "--chunk-len".into(),
            self.chunk_len.to_string(),
            "--beta".into(),
            self.beta.to_string(),
            "--max-new-tokens".into(),
            self.max_tokens.to_string(),
            "--temperature".into(),
            "0.7".into(),
            "--seed".into(),
            self.seed.to_string(),
        ];
        for _ in 0..prompts {
            args.push("--prompt".into());
            args.push(PROMPT.into());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let stdout = ivg(&refs);
        let got = guided_completions(&stdout);
        assert_eq!(
            got.len(),
            prompts,
            "could not parse `ivg generate` output:\n{stdout}"
        );
        got
    }

    /// The same run as a `/v1/completions` body on the `tiny-ivg` preset.
    pub fn request(&self, n: u64) -> Value {
        let mut body = completion(
            "tiny-ivg",
            self.max_tokens as u64,
            self.seed,
            json!({
                "method": self.method,
                "width": self.width,
                "successors": self.successors,
                "chunk_len": self.chunk_len,
                "beta": self.beta,
            }),
        );
        body["n"] = json!(n);
        body
    }
}

/// Threads that run `f(i)` for `i in 0..n` at once (released together by a
/// barrier); their results in order.
pub fn concurrently<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let barrier = std::sync::Barrier::new(n);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (f, barrier) = (&f, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    f(i)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread panicked"))
            .collect()
    })
}
