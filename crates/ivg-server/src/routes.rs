//! The HTTP handlers. A generation request is validated, split into one
//! engine job per choice (choice `i` samples with the seed stream of prompt
//! `i`, so choice 0 equals `ivg generate` with the same seed), and answered
//! either in one body or as server-sent events.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream};
use ivg_decode::{FinishReason, GuidedOutput, Request};
use ivg_tokenize::Tokenizer;
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::error::ApiError;
use crate::metrics::{Metrics, Outcome};
use crate::text::ChoiceText;
use crate::validate::{parse_object, validate, Edge, Endpoint, ValidRequest};
use crate::worker::{Job, JobEvent};
use crate::{App, Ready};

pub(crate) fn router(app: Arc<App>) -> Router {
    let limit = app.config.server.max_body_bytes;
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let status = if app.draining.load(Ordering::SeqCst) {
        "draining"
    } else if app.ready.get().is_some() {
        "ok"
    } else {
        "loading"
    };
    let code = if status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(json!({ "status": status }))).into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        app.metrics.render(),
    )
        .into_response()
}

fn model_entry(app: &App, name: &str) -> Value {
    json!({ "id": name, "object": "model", "created": app.started, "owned_by": "ivg" })
}

async fn models(State(app): State<Arc<App>>) -> Response {
    let data: Vec<Value> = app
        .config
        .presets
        .iter()
        .map(|p| model_entry(&app, &p.name))
        .collect();
    Json(json!({ "object": "list", "data": data })).into_response()
}

async fn model(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match app.config.presets.iter().find(|p| p.name == id) {
        Some(p) => Json(model_entry(&app, &p.name)).into_response(),
        None => ApiError::not_found(Some("model"), format!("the model `{id}` does not exist"))
            .into_response(),
    }
}

async fn method_not_allowed() -> Response {
    ApiError::with_status(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
    .into_response()
}

async fn not_found() -> Response {
    ApiError::with_status(StatusCode::NOT_FOUND, "not_found", "no such endpoint").into_response()
}

/// The models, or 503 while loading or draining.
fn ready(app: &App) -> Result<&Ready, ApiError> {
    if app.draining.load(Ordering::SeqCst) {
        return Err(ApiError::with_status(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "the server is shutting down",
        ));
    }
    app.ready.get().ok_or_else(|| {
        ApiError::with_status(
            StatusCode::SERVICE_UNAVAILABLE,
            "loading",
            "the models are still loading",
        )
    })
}

/// What validation needs of the loaded server.
fn edge<'a>(app: &'a App, ready: &'a Ready) -> Edge<'a> {
    Edge {
        presets: &ready.presets,
        tokenizer: &ready.tokenizer,
        base_template: &ready.base_template,
        context: ready.context,
        max_n: app.config.server.max_n,
    }
}

fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        let code = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "invalid_body"
        };
        ApiError::with_status(r.status(), code, r.body_text())
    })
}

async fn completions(State(app): State<Arc<App>>, b: Result<Bytes, BytesRejection>) -> Response {
    generate(app, b, Endpoint::Completions).await
}

async fn chat(State(app): State<Arc<App>>, b: Result<Bytes, BytesRejection>) -> Response {
    generate(app, b, Endpoint::Chat).await
}

async fn generate(app: Arc<App>, b: Result<Bytes, BytesRejection>, endpoint: Endpoint) -> Response {
    match start(&app, b, endpoint) {
        Ok((valid, rx, tracker, tokenizer)) => {
            let ctx = Ctx::new(&app, valid, tracker, tokenizer);
            if ctx.valid.stream {
                stream_response(ctx, rx).into_response()
            } else {
                collect(ctx, rx).await
            }
        }
        Err(e) => {
            let outcome = match e.status {
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                    Outcome::Rejected
                }
                _ => Outcome::Error,
            };
            app.metrics.count(outcome);
            e.into_response()
        }
    }
}

/// Validates, reserves queue places and hands one job per choice to the engine.
fn start(
    app: &Arc<App>,
    b: Result<Bytes, BytesRejection>,
    endpoint: Endpoint,
) -> Result<
    (
        ValidRequest,
        UnboundedReceiver<JobEvent>,
        Tracker,
        Arc<Tokenizer>,
    ),
    ApiError,
> {
    let ready = ready(app)?;
    let bytes = body(b)?;
    let valid = validate(&bytes, endpoint, &edge(app, ready))?;
    if !valid.ignored.is_empty() {
        eprintln!("ivg serve: ignoring unknown fields {:?}", valid.ignored);
    }
    let limits = &app.config.server;
    let capacity = limits.max_concurrent + limits.max_queued;
    let before = app.in_flight.fetch_add(valid.n, Ordering::SeqCst);
    let tracker = Tracker::new(app, valid.n, valid.prompt_ids.len());
    if before + valid.n > capacity {
        let mut t = tracker;
        t.outcome = Some(Outcome::Rejected);
        t.quiet = true;
        return Err(ApiError::with_status(
            StatusCode::TOO_MANY_REQUESTS,
            "queue_full",
            format!("the server is full ({capacity} requests decoding or queued); retry later"),
        ));
    }
    let (tx, rx) = unbounded_channel();
    let jobs = ready.jobs.lock().map_err(|_| {
        ApiError::with_status(
            StatusCode::SERVICE_UNAVAILABLE,
            "engine_down",
            "the engine has stopped",
        )
    })?;
    for choice in 0..valid.n {
        let request = Request::new(
            valid.text.clone(),
            valid.prompt_ids.clone(),
            valid.config.clone(),
            choice,
            None,
        );
        let job = Job {
            request,
            preset: valid.preset,
            choice,
            reply: tx.clone(),
        };
        jobs.send(job).map_err(|_| {
            ApiError::with_status(
                StatusCode::SERVICE_UNAVAILABLE,
                "engine_down",
                "the engine has stopped",
            )
        })?;
    }
    Ok((valid, rx, tracker, ready.tokenizer.clone()))
}

/// Counts a request's outcome once, when it is dropped: a request dropped
/// before it completed was cancelled by its client. Also holds its queue places.
struct Tracker {
    app: Arc<App>,
    places: usize,
    prompt_tokens: usize,
    started: Instant,
    first_token: bool,
    outcome: Option<Outcome>,
    /// Already counted by the caller.
    quiet: bool,
}

impl Tracker {
    fn new(app: &Arc<App>, places: usize, prompt_tokens: usize) -> Self {
        Self {
            app: app.clone(),
            places,
            prompt_tokens,
            started: Instant::now(),
            first_token: false,
            outcome: None,
            quiet: false,
        }
    }

    fn metrics(&self) -> &Metrics {
        &self.app.metrics
    }

    fn saw_text(&mut self) {
        if !self.first_token {
            self.first_token = true;
            self.metrics()
                .first_token(self.started.elapsed().as_secs_f64());
        }
    }

    fn succeeded(&mut self, completion_tokens: usize) {
        self.outcome = Some(Outcome::Ok);
        self.metrics().latency(self.started.elapsed().as_secs_f64());
        self.metrics()
            .tokens(self.prompt_tokens as u64, completion_tokens as u64);
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.app.in_flight.fetch_sub(self.places, Ordering::SeqCst);
        if !self.quiet {
            self.app
                .metrics
                .count(self.outcome.unwrap_or(Outcome::Cancelled));
        }
    }
}

/// One generation request in progress.
struct Ctx {
    valid: ValidRequest,
    tokenizer: Arc<Tokenizer>,
    texts: Vec<ChoiceText>,
    outputs: Vec<Option<GuidedOutput>>,
    tracker: Tracker,
    id: String,
    created: u64,
}

impl Ctx {
    fn new(
        app: &Arc<App>,
        valid: ValidRequest,
        tracker: Tracker,
        tokenizer: Arc<Tokenizer>,
    ) -> Self {
        let n = app.next_id.fetch_add(1, Ordering::Relaxed);
        let prefix = match valid.endpoint {
            Endpoint::Completions => "cmpl",
            Endpoint::Chat => "chatcmpl",
        };
        Self {
            texts: (0..valid.n)
                .map(|_| ChoiceText::new(valid.config.stop_strings.clone()))
                .collect(),
            outputs: vec![None; valid.n],
            valid,
            tokenizer,
            tracker,
            id: format!("{prefix}-{n}"),
            created: crate::unix_now(),
        }
    }

    /// Takes one engine event; returns the new text of its choice and, when
    /// the choice ended, its finish reason.
    fn apply(
        &mut self,
        event: JobEvent,
    ) -> Result<(usize, String, Option<&'static str>), ApiError> {
        let tokenize = |e: ivg_tokenize::TokenizeError| {
            ApiError::with_status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "detokenize",
                e.to_string(),
            )
        };
        match event {
            JobEvent::Tokens { choice, tokens } => {
                let text = self.texts[choice]
                    .push(&self.tokenizer, &tokens)
                    .map_err(tokenize)?;
                if !text.is_empty() {
                    self.tracker.saw_text();
                }
                Ok((choice, text, None))
            }
            JobEvent::Done { choice, output } => {
                let text = self.texts[choice]
                    .finish(&self.tokenizer, &output.tokens)
                    .map_err(tokenize)?;
                let reason = match (self.texts[choice].stopped(), output.finish) {
                    (true, _) | (_, FinishReason::Stop) => "stop",
                    (false, FinishReason::Length) => "length",
                };
                self.outputs[choice] = Some(output);
                if self.outputs.iter().all(Option::is_some) {
                    let tokens = self.completion_tokens();
                    self.tracker.succeeded(tokens);
                }
                Ok((choice, text, Some(reason)))
            }
            JobEvent::Failed { message, .. } => {
                self.tracker.outcome = Some(Outcome::Failed);
                Err(ApiError::with_status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "engine_error",
                    message,
                ))
            }
        }
    }

    fn done(&self) -> bool {
        self.outputs.iter().all(Option::is_some)
    }

    fn completion_tokens(&self) -> usize {
        self.outputs.iter().flatten().map(|o| o.tokens.len()).sum()
    }

    fn usage(&self) -> Value {
        let prompt = self.valid.prompt_ids.len();
        let completion = self.completion_tokens();
        json!({ "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion })
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.valid.endpoint, chunk) {
            (Endpoint::Completions, _) => "text_completion",
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
        }
    }

    fn envelope(&self, choices: Vec<Value>, chunk: bool) -> Value {
        json!({
            "id": self.id,
            "object": self.object(chunk),
            "created": self.created,
            "model": self.valid.model,
            "choices": choices,
        })
    }

    /// One streamed choice delta.
    fn chunk(&self, choice: usize, text: &str, reason: Option<&str>) -> Value {
        let c = match self.valid.endpoint {
            Endpoint::Completions => {
                json!({ "index": choice, "text": text, "logprobs": null, "finish_reason": reason })
            }
            Endpoint::Chat => {
                let delta = if reason.is_some() && text.is_empty() {
                    json!({})
                } else {
                    json!({ "content": text })
                };
                json!({ "index": choice, "delta": delta, "logprobs": null, "finish_reason": reason })
            }
        };
        self.envelope(vec![c], true)
    }

    fn full_response(&self, reasons: &[&str]) -> Value {
        let choices: Vec<Value> = self
            .texts
            .iter()
            .enumerate()
            .map(|(i, t)| match self.valid.endpoint {
                Endpoint::Completions => {
                    json!({ "index": i, "text": t.text(), "logprobs": null, "finish_reason": reasons[i] })
                }
                Endpoint::Chat => json!({
                    "index": i,
                    "message": { "role": "assistant", "content": t.text() },
                    "logprobs": null,
                    "finish_reason": reasons[i],
                }),
            })
            .collect();
        let mut body = self.envelope(choices, false);
        body["usage"] = self.usage();
        let values: Vec<f64> = self.outputs.iter().flatten().map(|o| o.value).collect();
        body["ivg"] = json!({ "values": values });
        body
    }
}

/// The non-streamed answer: waits for every choice.
async fn collect(mut ctx: Ctx, mut rx: UnboundedReceiver<JobEvent>) -> Response {
    let mut reasons = vec!["length"; ctx.valid.n];
    while !ctx.done() {
        let Some(event) = rx.recv().await else {
            ctx.tracker.outcome = Some(Outcome::Failed);
            return engine_gone().into_response();
        };
        match ctx.apply(event) {
            Ok((choice, _, Some(reason))) => reasons[choice] = reason,
            Ok(_) => {}
            Err(e) => return e.into_response(),
        }
    }
    Json(ctx.full_response(&reasons)).into_response()
}

fn engine_gone() -> ApiError {
    ApiError::with_status(
        StatusCode::INTERNAL_SERVER_ERROR,
        "engine_error",
        "the engine stopped before the request ended",
    )
}

struct StreamState {
    ctx: Ctx,
    rx: UnboundedReceiver<JobEvent>,
    queue: VecDeque<SseEvent>,
    ended: bool,
}

fn sse(value: &Value) -> SseEvent {
    SseEvent::default().data(value.to_string())
}

/// The streamed answer: a chunk per piece of final text, a last chunk per
/// choice with its finish reason, an optional usage chunk, then `[DONE]`.
fn stream_response(
    ctx: Ctx,
    rx: UnboundedReceiver<JobEvent>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut queue = VecDeque::new();
    if ctx.valid.endpoint == Endpoint::Chat {
        for i in 0..ctx.valid.n {
            let c = json!({ "index": i, "delta": { "role": "assistant", "content": "" }, "logprobs": null, "finish_reason": null });
            queue.push_back(sse(&ctx.envelope(vec![c], true)));
        }
    }
    let state = StreamState {
        ctx,
        rx,
        queue,
        ended: false,
    };
    let events = stream::unfold(state, |mut s| async move {
        loop {
            if let Some(e) = s.queue.pop_front() {
                return Some((Ok(e), s));
            }
            if s.ended {
                return None;
            }
            next_events(&mut s).await;
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// Waits for the next engine event and queues what it means for the client.
async fn next_events(s: &mut StreamState) {
    let Some(event) = s.rx.recv().await else {
        s.ctx.tracker.outcome = Some(Outcome::Failed);
        s.queue.push_back(sse(&engine_gone().body()));
        s.queue.push_back(SseEvent::default().data("[DONE]"));
        s.ended = true;
        return;
    };
    match s.ctx.apply(event) {
        Ok((choice, text, reason)) => {
            if !text.is_empty() {
                s.queue.push_back(sse(&s.ctx.chunk(choice, &text, None)));
            }
            if let Some(reason) = reason {
                s.queue
                    .push_back(sse(&s.ctx.chunk(choice, "", Some(reason))));
            }
            if s.ctx.done() {
                if s.ctx.valid.stream_usage {
                    let mut u = s.ctx.envelope(Vec::new(), true);
                    u["usage"] = s.ctx.usage();
                    s.queue.push_back(sse(&u));
                }
                s.queue.push_back(SseEvent::default().data("[DONE]"));
                s.ended = true;
            }
        }
        Err(e) => {
            s.queue.push_back(sse(&e.body()));
            s.queue.push_back(SseEvent::default().data("[DONE]"));
            s.ended = true;
        }
    }
}

async fn tokenize(State(app): State<Arc<App>>, b: Result<Bytes, BytesRejection>) -> Response {
    let run = || -> Result<Value, ApiError> {
        let ready = ready(&app)?;
        let map = parse_object(&body(b)?)?;
        crate::validate::preset(&map, &edge(&app, ready))?;
        let prompt = match map.get("prompt") {
            Some(Value::String(s)) => s,
            _ => {
                return Err(ApiError::invalid(
                    "prompt",
                    "is required and must be a string",
                ))
            }
        };
        let special = match map.get("add_special_tokens") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ApiError::invalid("add_special_tokens", "must be a boolean")),
        };
        let tokens = ready
            .tokenizer
            .encode(prompt, special)
            .map_err(|e| ApiError::invalid("prompt", format!("cannot be tokenized: {e}")))?;
        Ok(json!({ "count": tokens.len(), "tokens": tokens, "max_model_len": ready.context }))
    };
    respond(run())
}

async fn detokenize(State(app): State<Arc<App>>, b: Result<Bytes, BytesRejection>) -> Response {
    let run = || -> Result<Value, ApiError> {
        let ready = ready(&app)?;
        let map = parse_object(&body(b)?)?;
        let vocab = ready.tokenizer.vocab_size() as u64;
        let tokens = match map.get("tokens") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v.as_u64() {
                    Some(id) if id < vocab => Ok(id as u32),
                    _ => Err(ApiError::invalid(
                        "tokens",
                        format!("token ids must be integers below {vocab}, got {v}"),
                    )),
                })
                .collect::<Result<Vec<u32>, _>>()?,
            _ => {
                return Err(ApiError::invalid(
                    "tokens",
                    "is required and must be an array of token ids",
                ))
            }
        };
        let text = ready
            .tokenizer
            .decode(&tokens, false)
            .map_err(|e| ApiError::invalid("tokens", format!("cannot be decoded: {e}")))?;
        Ok(json!({ "prompt": text }))
    };
    respond(run())
}

fn respond(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}
