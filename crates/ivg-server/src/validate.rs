//! Validation at the edge (architecture.md, practice 7): a request body is
//! turned into a [`ValidRequest`] or an [`ApiError`] naming the field, before
//! anything reaches the engine. The body is read as a JSON value and each
//! field checked by hand, so a wrong type, a negative or huge number or an
//! unknown `ivg` key is reported as the field it is, not as a serde position.

use std::sync::Arc;

use ivg_decode::{value_feeds, GuidanceConfig, ValueRole};
use ivg_runtime::{GuidanceOverrides, GuidanceSpec, GuideSet, PromptTemplate, RuntimeError};
use ivg_tokenize::{ChatMessage, Tokenizer};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Beam rows one choice may ask for (`W * K`).
pub const MAX_ROWS_PER_CHOICE: usize = 64;
/// Stop strings one request may give.
pub const MAX_STOPS: usize = 16;

/// What validation needs to know about a preset.
pub struct PresetInfo {
    pub name: String,
    pub defaults: GuidanceSpec,
    pub has_implicit: bool,
    pub has_explicit: bool,
    /// The preset's loaded guides, for their context checks.
    pub guides: Option<Arc<GuideSet>>,
}

/// What validation needs to know about the server.
pub struct Edge<'a> {
    pub presets: &'a [PresetInfo],
    pub tokenizer: &'a Tokenizer,
    pub base_template: &'a PromptTemplate,
    /// Positions of the base model (prompt plus new tokens).
    pub context: usize,
    pub max_n: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Completions,
    Chat,
}

/// A request ready for the engine.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    pub endpoint: Endpoint,
    pub preset: usize,
    pub model: String,
    /// The prompt text the guides read (each applies its own template).
    pub text: String,
    /// The base model's prompt ids.
    pub prompt_ids: Vec<u32>,
    pub config: GuidanceConfig,
    pub n: usize,
    pub stream: bool,
    /// Send a usage chunk before `[DONE]` (`stream_options.include_usage`).
    pub stream_usage: bool,
    /// Top-level fields that were ignored (logged by the caller).
    pub ignored: Vec<String>,
}

/// Fields of the OpenAI request that are honoured; any other top-level field
/// is ignored.
const KNOWN: [&str; 14] = [
    "model",
    "prompt",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "seed",
    "stop",
    "n",
    "stream",
    "stream_options",
    "user",
    "ivg",
];

/// Parses and checks a body for `endpoint`.
pub fn validate(
    body: &[u8],
    endpoint: Endpoint,
    edge: &Edge<'_>,
) -> Result<ValidRequest, ApiError> {
    let map = parse_object(body)?;
    let (preset, model) = preset(&map, edge)?;
    let info = &edge.presets[preset];
    let (text, prompt_ids) = match endpoint {
        Endpoint::Completions => completion_prompt(&map, edge)?,
        Endpoint::Chat => chat_prompt(&map, edge)?,
    };
    let mut overrides = ivg_overrides(map.get("ivg"))?;
    let max_key = match (endpoint, map.contains_key("max_completion_tokens")) {
        (Endpoint::Chat, true) => "max_completion_tokens",
        _ => "max_tokens",
    };
    overrides.max_new_tokens = opt_count(&map, max_key, 1, usize::MAX)?;
    overrides.temperature = opt_number(&map, "temperature")?;
    if let Some(t) = overrides.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::invalid(
                "temperature",
                format!("must be between 0 and 2, got {t}"),
            ));
        }
    }
    overrides.top_p = opt_number(&map, "top_p")?;
    if let Some(p) = overrides.top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ApiError::invalid(
                "top_p",
                format!("must be in (0, 1], got {p}"),
            ));
        }
    }
    overrides.seed = opt_count(&map, "seed", 0, u64::MAX as usize)?.map(|s| s as u64);
    overrides.stop = stops(map.get("stop"))?;
    let spec = info.defaults.with_overrides(&overrides);
    let config = guidance(&spec, info)?;
    check_context(
        prompt_ids.len(),
        config.max_new_tokens,
        edge.context,
        max_key,
    )?;
    check_guide_context(info, &text, &config, max_key)?;
    let n = opt_count(&map, "n", 1, edge.max_n)?.unwrap_or(1);
    let stream = opt_bool(&map, "stream")?.unwrap_or(false);
    let stream_usage = stream_usage(map.get("stream_options"))?;
    if let Some(u) = map.get("user") {
        if !u.is_string() {
            return Err(ApiError::invalid("user", "must be a string"));
        }
    }
    let ignored = map
        .keys()
        .filter(|k| !KNOWN.contains(&k.as_str()))
        .cloned()
        .collect();
    Ok(ValidRequest {
        endpoint,
        preset,
        model,
        text,
        prompt_ids,
        config,
        n,
        stream,
        stream_usage,
        ignored,
    })
}

/// The body as a JSON object (invalid UTF-8 and truncated JSON are refused here).
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_body(
            "the request body is empty; send a JSON object",
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_body(format!("the request body is not valid JSON: {e}")))?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(ApiError::bad_body(format!(
            "the request body must be a JSON object, got {}",
            kind(&other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The preset `model` names (the first one when absent).
pub fn preset(map: &Map<String, Value>, edge: &Edge<'_>) -> Result<(usize, String), ApiError> {
    let name = match map.get("model") {
        None => return Ok((0, edge.presets[0].name.clone())),
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(ApiError::invalid(
                "model",
                format!("must be a string, got {}", kind(other)),
            ))
        }
    };
    match edge.presets.iter().position(|p| &p.name == name) {
        Some(i) => Ok((i, name.clone())),
        None => {
            let known: Vec<&str> = edge.presets.iter().map(|p| p.name.as_str()).collect();
            Err(ApiError::not_found(
                Some("model"),
                format!(
                    "the model `{name}` does not exist (served: {})",
                    known.join(", ")
                ),
            ))
        }
    }
}

/// `prompt`: a string, an array of one string, or an array of token ids.
fn completion_prompt(
    map: &Map<String, Value>,
    edge: &Edge<'_>,
) -> Result<(String, Vec<u32>), ApiError> {
    let prompt = map
        .get("prompt")
        .ok_or_else(|| ApiError::invalid("prompt", "is required"))?;
    let text = match prompt {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.len() == 1 && items[0].is_string() => {
            items[0].as_str().unwrap_or_default().to_string()
        }
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_number) => {
            return token_prompt(items, edge);
        }
        Value::Array(items) if items.len() > 1 => {
            return Err(ApiError::invalid(
                "prompt",
                "give one prompt per request (use `n` for several completions)",
            ))
        }
        other => {
            return Err(ApiError::invalid(
                "prompt",
                format!(
                    "must be a string, an array of one string or of token ids, got {}",
                    kind(other)
                ),
            ))
        }
    };
    if text.is_empty() {
        return Err(ApiError::invalid("prompt", "is empty"));
    }
    let ids = edge
        .tokenizer
        .encode(&edge.base_template.render(&text), true)
        .map_err(|e| ApiError::invalid("prompt", format!("cannot be tokenized: {e}")))?;
    Ok((text, ids))
}

/// A prompt given as base token ids; the guides read its decoded text.
fn token_prompt(items: &[Value], edge: &Edge<'_>) -> Result<(String, Vec<u32>), ApiError> {
    let vocab = edge.tokenizer.vocab_size() as u64;
    let ids = items
        .iter()
        .map(|v| match v.as_u64() {
            Some(id) if id < vocab => Ok(id as u32),
            _ => Err(ApiError::invalid(
                "prompt",
                format!("token ids must be integers below {vocab}, got {v}"),
            )),
        })
        .collect::<Result<Vec<u32>, _>>()?;
    let text = edge
        .tokenizer
        .decode(&ids, true)
        .map_err(|e| ApiError::invalid("prompt", format!("cannot be decoded: {e}")))?;
    Ok((text, ids))
}

/// `messages` through the base model's chat template; the guides read the
/// last user message.
fn chat_prompt(map: &Map<String, Value>, edge: &Edge<'_>) -> Result<(String, Vec<u32>), ApiError> {
    let messages = match map.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => return Err(ApiError::invalid("messages", "is empty")),
        Some(other) => {
            return Err(ApiError::invalid(
                "messages",
                format!("must be an array, got {}", kind(other)),
            ))
        }
        None => return Err(ApiError::invalid("messages", "is required")),
    };
    let parsed = messages
        .iter()
        .enumerate()
        .map(|(i, m)| message(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    let text = parsed
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content.clone())
        .ok_or_else(|| ApiError::invalid("messages", "needs at least one `user` message"))?;
    if !edge.tokenizer.has_chat_template() {
        return Err(ApiError::invalid(
            "messages",
            "the base model has no chat template; use /v1/completions",
        ));
    }
    let rendered = edge
        .tokenizer
        .apply_chat_template(&parsed, true)
        .map_err(|e| ApiError::invalid("messages", format!("the chat template failed: {e}")))?;
    let ids = edge
        .tokenizer
        .encode(&rendered, false)
        .map_err(|e| ApiError::invalid("messages", format!("cannot be tokenized: {e}")))?;
    Ok((text, ids))
}

fn message(i: usize, m: &Value) -> Result<ChatMessage, ApiError> {
    let field = |f: &str| format!("messages[{i}].{f}");
    let Value::Object(m) = m else {
        return Err(ApiError::invalid(
            format!("messages[{i}]"),
            format!("must be an object, got {}", kind(m)),
        ));
    };
    let role = match m.get("role") {
        Some(Value::String(r))
            if ["system", "user", "assistant", "developer"].contains(&r.as_str()) =>
        {
            if r == "developer" {
                "system".to_string()
            } else {
                r.clone()
            }
        }
        Some(Value::String(r)) => {
            return Err(ApiError::invalid(
                field("role"),
                format!("`{r}` is not one of system, user, assistant"),
            ))
        }
        _ => {
            return Err(ApiError::invalid(
                field("role"),
                "is required and must be a string",
            ))
        }
    };
    let content = match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => text_parts(parts, &field("content"))?,
        Some(other) => {
            return Err(ApiError::invalid(
                field("content"),
                format!("must be a string, got {}", kind(other)),
            ))
        }
        None => return Err(ApiError::invalid(field("content"), "is required")),
    };
    Ok(ChatMessage::new(role, content))
}

/// Content given as `[{"type": "text", "text": ...}, ...]`, joined.
fn text_parts(parts: &[Value], field: &str) -> Result<String, ApiError> {
    let mut out = String::new();
    for p in parts {
        match (
            p.get("type").and_then(Value::as_str),
            p.get("text").and_then(Value::as_str),
        ) {
            (Some("text"), Some(t)) => out.push_str(t),
            _ => {
                return Err(ApiError::invalid(
                    field,
                    "only text parts `{\"type\": \"text\", \"text\": ...}` are supported",
                ))
            }
        }
    }
    Ok(out)
}

/// The `ivg` object: a method name and any guidance field.
fn ivg_overrides(value: Option<&Value>) -> Result<GuidanceOverrides, ApiError> {
    let mut o = GuidanceOverrides::default();
    let map = match value {
        None | Some(Value::Null) => return Ok(o),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(ApiError::invalid(
                "ivg",
                format!("must be an object, got {}", kind(other)),
            ))
        }
    };
    for key in map.keys() {
        if ![
            "method",
            "width",
            "successors",
            "chunk_len",
            "beta",
            "top_k",
        ]
        .contains(&key.as_str())
        {
            return Err(ApiError::invalid(
                format!("ivg.{key}"),
                format!("unknown field `{key}` (known: method, width, successors, chunk_len, beta, top_k)"),
            ));
        }
    }
    o.method = match map.get("method") {
        None => None,
        Some(Value::String(m)) => Some(m.clone()),
        Some(other) => {
            return Err(ApiError::invalid(
                "ivg.method",
                format!("must be a string, got {}", kind(other)),
            ))
        }
    };
    let count = |key: &str, min: usize, max: usize| {
        opt_count(map, key, min, max).map_err(|e| prefixed(e, key))
    };
    o.width = count("width", 1, MAX_ROWS_PER_CHOICE)?;
    o.successors = count("successors", 1, MAX_ROWS_PER_CHOICE)?;
    o.chunk_len = count("chunk_len", 0, 1 << 20)?;
    o.top_k = count("top_k", 1, 1 << 24)?;
    o.beta = opt_number(map, "beta").map_err(|e| prefixed(e, "beta"))?;
    if let Some(b) = o.beta {
        if b.abs() > 1e6 {
            return Err(ApiError::invalid(
                "ivg.beta",
                format!("must be within ±1e6, got {b}"),
            ));
        }
    }
    Ok(o)
}

fn prefixed(mut e: ApiError, key: &str) -> ApiError {
    e.param = Some(format!("ivg.{key}"));
    e
}

/// The engine's configuration of `spec`, with the preset's guides checked.
fn guidance(spec: &GuidanceSpec, info: &PresetInfo) -> Result<GuidanceConfig, ApiError> {
    if ivg_decode::Method::from_name(&spec.method).is_err() {
        return Err(ApiError::invalid(
            "ivg.method",
            format!("unknown method `{}` (known: base, boni, bone, efti, efte, cbsi, cbse, efti+cbsi, ivg)", spec.method),
        ));
    }
    let config = spec
        .config()
        .map_err(|e| ApiError::invalid(config_param(&e.to_string()), e.to_string()))?;
    if config.rows_per_prompt() > MAX_ROWS_PER_CHOICE {
        return Err(ApiError::invalid(
            "ivg.width",
            format!(
                "width * successors must be at most {MAX_ROWS_PER_CHOICE}, got {}",
                config.rows_per_prompt()
            ),
        ));
    }
    for (role, _) in value_feeds(&config) {
        let has = match role {
            ValueRole::Implicit => info.has_implicit,
            ValueRole::Explicit => info.has_explicit,
        };
        if !has {
            return Err(ApiError::invalid(
                "ivg.method",
                format!(
                    "method `{}` needs the {} value, which model `{}` does not have",
                    spec.method,
                    role.name(),
                    info.name
                ),
            ));
        }
    }
    Ok(config)
}

/// The request field an engine configuration error is about.
fn config_param(message: &str) -> String {
    for (field, param) in [
        ("`width`", "ivg.width"),
        ("`successors`", "ivg.successors"),
        ("`chunk_len`", "ivg.chunk_len"),
        ("`beta`", "ivg.beta"),
        ("`max_new_tokens`", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("top_k", "ivg.top_k"),
        ("stop", "stop"),
    ] {
        if message.contains(field) {
            return param.to_string();
        }
    }
    "ivg".to_string()
}

/// Every guide model the method runs must hold the prompt under its own
/// template plus the new tokens: an overflow found mid-step would fail every
/// request of the batch, so it is a 400 here.
fn check_guide_context(
    info: &PresetInfo,
    text: &str,
    config: &GuidanceConfig,
    max_key: &str,
) -> Result<(), ApiError> {
    let Some(set) = &info.guides else {
        return Ok(());
    };
    let roles: Vec<ValueRole> = value_feeds(config).iter().map(|&(r, _)| r).collect();
    match set.check_fits(text, config.max_new_tokens, &roles) {
        Ok(()) => Ok(()),
        Err(
            e @ RuntimeError::GuideContext {
                prompt_tokens,
                context,
                ..
            },
        ) => {
            let param = if prompt_tokens >= context {
                "prompt"
            } else {
                max_key
            };
            Err(ApiError::invalid(param, e.to_string()))
        }
        Err(e) => Err(ApiError::invalid("prompt", e.to_string())),
    }
}

fn check_context(prompt: usize, max_new: usize, context: usize, key: &str) -> Result<(), ApiError> {
    if prompt >= context {
        return Err(ApiError::invalid(
            "prompt",
            format!("the prompt has {prompt} tokens; the model's context is {context}"),
        ));
    }
    if prompt + max_new > context {
        return Err(ApiError::invalid(
            key,
            format!(
                "{prompt} prompt tokens + {max_new} new tokens exceed the model's context of {context}; ask for at most {}",
                context - prompt
            ),
        ));
    }
    Ok(())
}

/// An optional integer field in `[min, max]`.
fn opt_count(
    map: &Map<String, Value>,
    key: &str,
    min: usize,
    max: usize,
) -> Result<Option<usize>, ApiError> {
    let v = match map.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let n = match v {
        Value::Number(n) if n.is_u64() => n.as_u64().unwrap_or(0),
        Value::Number(n) if n.is_i64() => {
            return Err(ApiError::invalid(
                key,
                format!("must not be negative, got {n}"),
            ))
        }
        Value::Number(n) => {
            return Err(ApiError::invalid(
                key,
                format!("must be an integer, got {n}"),
            ))
        }
        other => {
            return Err(ApiError::invalid(
                key,
                format!("must be an integer, got {}", kind(other)),
            ))
        }
    };
    if n < min as u64 || n > max as u64 {
        let range = if max == usize::MAX {
            format!("at least {min}")
        } else {
            format!("between {min} and {max}")
        };
        return Err(ApiError::invalid(key, format!("must be {range}, got {n}")));
    }
    Ok(Some(n as usize))
}

/// An optional finite number.
fn opt_number(map: &Map<String, Value>, key: &str) -> Result<Option<f64>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if x.is_finite() => Ok(Some(x)),
            _ => Err(ApiError::invalid(
                key,
                format!("must be a finite number, got {n}"),
            )),
        },
        Some(other) => Err(ApiError::invalid(
            key,
            format!("must be a number, got {}", kind(other)),
        )),
    }
}

fn opt_bool(map: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(ApiError::invalid(
            key,
            format!("must be a boolean, got {}", kind(other)),
        )),
    }
}

/// `stop`: a string or an array of non-empty strings.
fn stops(value: Option<&Value>) -> Result<Option<Vec<String>>, ApiError> {
    let list = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::invalid("stop", "must hold strings only"))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(ApiError::invalid(
                "stop",
                format!(
                    "must be a string or an array of strings, got {}",
                    kind(other)
                ),
            ))
        }
    };
    if list.len() > MAX_STOPS {
        return Err(ApiError::invalid(
            "stop",
            format!("at most {MAX_STOPS} stop strings, got {}", list.len()),
        ));
    }
    if list.iter().any(String::is_empty) {
        return Err(ApiError::invalid("stop", "a stop string must not be empty"));
    }
    Ok(Some(list))
}

fn stream_usage(value: Option<&Value>) -> Result<bool, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Object(m)) => match m.get("include_usage") {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(ApiError::invalid(
                "stream_options.include_usage",
                "must be a boolean",
            )),
        },
        Some(other) => Err(ApiError::invalid(
            "stream_options",
            format!("must be an object, got {}", kind(other)),
        )),
    }
}
