//! `ivg serve` over real HTTP on the tiny fixtures: the OpenAI schema of
//! models, completions (plain and streamed), chat, tokenize/detokenize and
//! metrics; determinism (same seed, same text; streamed equals plain; a
//! guided request equals `ivg generate` with the same settings); stop
//! strings; a client that drops its stream is cancelled; SIGTERM drains.

mod serve_common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use serve_common::*;

#[test]
fn models_health_metrics_and_unknown_paths() {
    let (_fx, server) = tiny_server(Limits::default());
    let r = server.get("/health");
    assert_eq!((r.status, r.json()), (200, json!({"status": "ok"})));

    let r = server.get("/v1/models");
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "list", "{v}");
    let data = v["data"].as_array().expect("data array");
    let ids: Vec<&str> = data.iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids.len(), 2, "{v}");
    assert!(ids.contains(&"tiny") && ids.contains(&"tiny-ivg"), "{v}");
    for m in data {
        assert_eq!(m["object"], "model", "{m}");
        assert_eq!(m["owned_by"], "ivg", "{m}");
        assert!(m["created"].is_u64(), "created: {m}");
    }

    let m = server.get("/metrics");
    assert_eq!(m.status, 200);
    for name in [
        "ivg_requests_total{outcome=\"ok\"}",
        "ivg_requests_total{outcome=\"error\"}",
        "ivg_requests_total{outcome=\"cancelled\"}",
        "ivg_requests_total{outcome=\"rejected\"}",
        "ivg_tokens_total{kind=\"prompt\"}",
        "ivg_tokens_total{kind=\"completion\"}",
        "ivg_queue_depth",
        "ivg_batch_rows",
        "ivg_live_requests",
        "ivg_request_latency_seconds_count",
        "ivg_time_to_first_token_seconds_count",
        "ivg_request_latency_seconds_bucket{le=\"+Inf\"}",
    ] {
        assert!(
            Metrics::parse(&m.body).get(name).is_some(),
            "/metrics lacks {name}:\n{}",
            m.body
        );
    }

    for path in ["/nothing", "/v1/nothing", "/v1/models/x/y"] {
        let r = server.get(path);
        assert_eq!(r.status, 404, "GET {path}: {}", r.body);
        r.error_param()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    }
    let r = server.post_json("/v1/engines", &json!({}));
    assert_eq!(r.status, 404, "POST /v1/engines: {}", r.body);
    r.error_param()
        .unwrap_or_else(|e| panic!("POST /v1/engines: {e}"));
}

#[test]
fn completion_schema_is_openai_and_deterministic() {
    let (_fx, server) = tiny_server(Limits::default());
    let body = completion("tiny", 8, 3, json!({}));
    let r = server.post_json("/v1/completions", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.content_type.starts_with("application/json"),
        "{}",
        r.content_type
    );
    let v = r.json();
    assert!(v["id"].as_str().is_some_and(|s| !s.is_empty()), "id: {v}");
    assert_eq!(v["object"], "text_completion", "{v}");
    assert!(v["created"].is_u64(), "created: {v}");
    assert_eq!(v["model"], "tiny", "{v}");
    let choices = v["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 1, "{v}");
    let c = &choices[0];
    assert_eq!(c["index"], 0, "{v}");
    assert!(c["logprobs"].is_null(), "logprobs: {v}");
    // The tiny fixtures have no end-of-sequence token: 8 tokens, then length.
    assert_eq!(c["finish_reason"], "length", "{v}");
    let text = c["text"].as_str().expect("text").to_string();
    assert_eq!(
        text.split_whitespace().count(),
        8,
        "8 word tokens: {text:?}"
    );
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 8, "total_tokens": 11}),
        "{v}"
    );

    // Same seed, same text; the prompt as an array of one string too.
    assert_eq!(
        completion_text(&server.post_json("/v1/completions", &body)),
        text
    );
    let mut as_array = body.clone();
    as_array["prompt"] = json!([PROMPT]);
    assert_eq!(
        completion_text(&server.post_json("/v1/completions", &as_array)),
        text
    );
    // Unknown top-level fields are ignored.
    let mut extra = body.clone();
    extra["frobnicate"] = json!({"x": [1, 2]});
    assert_eq!(
        completion_text(&server.post_json("/v1/completions", &extra)),
        text
    );

    // Streamed: the chunks' texts concatenate to the same text.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let sse = server.stream("/v1/completions", &streamed);
    assert_eq!(sse.status, 200);
    assert!(
        sse.content_type.starts_with("text/event-stream"),
        "content-type {}",
        sse.content_type
    );
    let chunks = sse.collect().expect("stream");
    assert!(chunks.len() >= 2, "{chunks:?}");
    for ch in &chunks {
        assert_eq!(ch["object"], "text_completion", "{ch}");
        assert_eq!(ch["model"], "tiny", "{ch}");
        assert!(ch["id"].is_string() && ch["created"].is_u64(), "{ch}");
    }
    let ids: std::collections::HashSet<_> = chunks.iter().map(|c| c["id"].to_string()).collect();
    assert_eq!(ids.len(), 1, "one id across a stream: {chunks:?}");
    let (stream_text, finish) = stream_text(&chunks, 0);
    assert_eq!(stream_text, text, "streamed vs plain (seed 3)");
    assert_eq!(finish.as_deref(), Some("length"));

    // Another seed gives another sample (8 tokens over 96 ids).
    let other =
        completion_text(&server.post_json("/v1/completions", &completion("tiny", 8, 4, json!({}))));
    assert_ne!(other, text, "seeds 3 and 4 gave the same text");
}

#[test]
fn every_method_is_accepted_and_streams_match() {
    let (_fx, server) = tiny_server(Limits::default());
    for method in METHODS {
        let body = completion(
            "tiny-ivg",
            6,
            11,
            json!({"method": method, "width": 2, "successors": 2, "chunk_len": 3, "beta": 1.0}),
        );
        let r = server.post_json("/v1/completions", &body);
        assert_eq!(r.status, 200, "method {method}: {}", r.body);
        let v = r.json();
        let text = v["choices"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(text.split_whitespace().count(), 6, "method {method}: {v}");
        assert_eq!(v["usage"]["completion_tokens"], 6, "method {method}: {v}");
        let again = completion_text(&server.post_json("/v1/completions", &body));
        assert_eq!(again, text, "method {method}: same seed, other text");
        let mut s = body.clone();
        s["stream"] = json!(true);
        let chunks = server
            .stream("/v1/completions", &s)
            .collect()
            .unwrap_or_else(|e| panic!("method {method}: {e}"));
        assert_eq!(
            stream_text(&chunks, 0).0,
            text,
            "method {method}: streamed vs plain"
        );
    }
    // The preset's default (efti+cbsi) applies without an `ivg` object.
    let r = server.post_json("/v1/completions", &completion("tiny-ivg", 6, 11, json!({})));
    let default = completion_text(&r);
    let efti_cbsi = completion_text(&server.post_json(
        "/v1/completions",
        &completion("tiny-ivg", 6, 11, json!({"method": "efti+cbsi"})),
    ));
    assert_eq!(default, efti_cbsi, "preset default vs explicit efti+cbsi");
    // Method names are case-insensitive like the CLI's.
    let upper = completion_text(&server.post_json(
        "/v1/completions",
        &completion("tiny-ivg", 6, 11, json!({"method": "EFTI+CBSI"})),
    ));
    assert_eq!(upper, efti_cbsi, "EFTI+CBSI vs efti+cbsi");
}

#[test]
fn guided_completion_equals_ivg_generate() {
    let (fx, server) = tiny_server(Limits::default());
    let run = GuidedRun {
        method: "ivg",
        width: 2,
        successors: 2,
        chunk_len: 3,
        beta: 1.0,
        max_tokens: 12,
        seed: 5,
    };
    for method in ["ivg", "efti+cbsi", "cbse", "efte"] {
        let run = GuidedRun { method, ..run };
        let cli = run.generate(&fx, 1);
        let served = completion_text(&server.post_json("/v1/completions", &run.request(1)));
        assert_eq!(
            served, cli[0],
            "method {method}: served text vs `ivg generate` (seed 5, 12 tokens)"
        );
    }

    // n = 2: choice i follows the seed stream of prompt i of a batch.
    let cli = run.generate(&fx, 2);
    let r = server.post_json("/v1/completions", &run.request(2));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let choices = v["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 2, "{v}");
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i, "{v}");
        assert_eq!(
            c["text"].as_str(),
            Some(cli[i].as_str()),
            "choice {i} vs `ivg generate` ### {i}"
        );
    }
    assert_eq!(v["usage"]["completion_tokens"], 24, "{v}");
    let single = completion_text(&server.post_json("/v1/completions", &run.request(1)));
    assert_eq!(
        choices[0]["text"].as_str(),
        Some(single.as_str()),
        "choice 0 vs n = 1"
    );
    // Streamed n = 2: each index concatenates to its choice.
    let mut s = run.request(2);
    s["stream"] = json!(true);
    let chunks = server
        .stream("/v1/completions", &s)
        .collect()
        .expect("stream");
    for (i, want) in cli.iter().enumerate() {
        assert_eq!(
            &stream_text(&chunks, i as u64).0,
            want,
            "streamed choice {i}"
        );
    }

    // Base on the base-only preset equals `ivg generate --method base`.
    let fx_llama = fx.llama.to_str().expect("utf-8");
    let cli = ivg(&[
        "generate",
        "--base",
        fx_llama,
        "--method",
        "base",
        "--max-new-tokens",
        "12",
        "--temperature",
        "0.7",
        "--seed",
        "5",
        "--prompt",
        PROMPT,
    ]);
    let cli = cli.strip_suffix('\n').unwrap_or(&cli);
    let served = completion_text(
        &server.post_json("/v1/completions", &completion("tiny", 12, 5, json!({}))),
    );
    assert_eq!(served, cli, "base: served vs `ivg generate --method base`");
}

#[test]
fn stop_strings_cut_the_text() {
    let (_fx, server) = tiny_server(Limits::default());
    let body = completion("tiny", 12, 21, json!({}));
    let full = completion_text(&server.post_json("/v1/completions", &body));
    let words: Vec<&str> = full.split_whitespace().collect();
    assert_eq!(words.len(), 12, "{full:?}");
    // Stop at the 4th word: the text ends before it, finish_reason "stop".
    let stop = format!(" {}", words[3]);
    let at = full.find(&stop).expect("stop occurs");
    let want = &full[..at];
    for stop_field in [json!(stop), json!(["t95 t95 t95", stop])] {
        let mut b = body.clone();
        b["stop"] = stop_field.clone();
        let r = server.post_json("/v1/completions", &b);
        assert_eq!(r.status, 200, "stop {stop_field}: {}", r.body);
        let v = r.json();
        assert_eq!(
            v["choices"][0]["text"].as_str(),
            Some(want),
            "stop {stop_field}: {v}"
        );
        assert_eq!(
            v["choices"][0]["finish_reason"], "stop",
            "stop {stop_field}: {v}"
        );
        b["stream"] = json!(true);
        let chunks = server
            .stream("/v1/completions", &b)
            .collect()
            .expect("stream");
        let (text, finish) = stream_text(&chunks, 0);
        assert_eq!(text, want, "streamed, stop {stop_field}");
        assert_eq!(
            finish.as_deref(),
            Some("stop"),
            "streamed, stop {stop_field}"
        );
    }
    // A stop string that never occurs changes nothing.
    let mut b = body.clone();
    b["stop"] = json!(["t95 t95 t95"]);
    if !full.contains("t95 t95 t95") {
        let r = server.post_json("/v1/completions", &b);
        assert_eq!(completion_text(&r), full);
        assert_eq!(r.json()["choices"][0]["finish_reason"], "length");
    }
}

#[test]
fn tokenize_detokenize_round_trip() {
    let (_fx, server) = tiny_server(Limits::default());
    for body in [
        json!({"prompt": PROMPT}),
        json!({"model": "tiny", "prompt": PROMPT}),
    ] {
        let r = server.post_json("/tokenize", &body);
        assert_eq!(r.status, 200, "{body}: {}", r.body);
        assert_eq!(r.json()["tokens"], json!([5, 17, 3]), "{body}");
        assert_eq!(r.json()["count"], 3, "{body}");
    }
    let r = server.post_json("/detokenize", &json!({"tokens": [5, 17, 3]}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"prompt": PROMPT}));
    // A generated completion goes back to its ids and text.
    let text =
        completion_text(&server.post_json("/v1/completions", &completion("tiny", 6, 2, json!({}))));
    let ids = server
        .post_json("/tokenize", &json!({"prompt": text.trim()}))
        .json();
    assert_eq!(ids["count"], 6, "{ids}");
    let back = server
        .post_json("/detokenize", &json!({"tokens": ids["tokens"]}))
        .json();
    assert_eq!(back["prompt"].as_str(), Some(text.trim()));
}

#[test]
fn chat_on_a_model_without_chat_template_is_a_400() {
    let (_fx, server) = tiny_server(Limits::default());
    let body = json!({"model": "tiny", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 4});
    let r = server.post_json("/v1/chat/completions", &body);
    assert_eq!(r.status, 400, "{}", r.body);
    r.error_param().expect("error shape");
    assert!(
        r.error_message().to_lowercase().contains("template"),
        "the message should name the missing chat template: {}",
        r.body
    );
}

#[test]
fn metrics_count_requests_and_tokens() {
    let (_fx, server) = tiny_server(Limits::default());
    let m0 = server.metrics();
    completion_text(&server.post_json("/v1/completions", &completion("tiny", 5, 1, json!({}))));
    let bad = server.post_json(
        "/v1/completions",
        &json!({"model": "tiny", "prompt": PROMPT, "n": 0}),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    let m1 = server.metrics();
    let d = |s: &str| m1.value(s) - m0.value(s);
    assert_eq!(d("ivg_requests_total{outcome=\"ok\"}"), 1.0, "{:?}", m1);
    assert_eq!(d("ivg_requests_total{outcome=\"error\"}"), 1.0, "{:?}", m1);
    assert_eq!(d("ivg_tokens_total{kind=\"prompt\"}"), 3.0, "{:?}", m1);
    assert_eq!(d("ivg_tokens_total{kind=\"completion\"}"), 5.0, "{:?}", m1);
    assert_eq!(d("ivg_request_latency_seconds_count"), 1.0, "{:?}", m1);
    assert_eq!(d("ivg_time_to_first_token_seconds_count"), 1.0, "{:?}", m1);
    assert_eq!(m1.value("ivg_batch_rows"), 0.0);
    assert_eq!(m1.value("ivg_live_requests"), 0.0);
    assert_eq!(m1.value("ivg_queue_depth"), 0.0);
}

/// A request that keeps the engine busy for a while on the tiny fixtures:
/// 8 choices of IVG with 4 x 4 candidates, 50 tokens each.
fn long_request(stream: bool) -> Value {
    let mut body = completion(
        "tiny-ivg",
        50,
        7,
        json!({"method": "ivg", "width": 4, "successors": 4, "chunk_len": 3}),
    );
    body["n"] = json!(16);
    body["stream"] = json!(stream);
    body
}

#[test]
fn dropped_stream_is_cancelled() {
    let (_fx, server) = tiny_server(Limits::default());
    let m0 = server.metrics();
    let mut sse = server.stream("/v1/completions", &long_request(true));
    assert_eq!(sse.status, 200);
    for i in 0..2 {
        match sse.next_data() {
            Some(Ok(d)) if d != "[DONE]" => {}
            other => panic!("chunk {i}: {other:?}"),
        }
    }
    drop(sse);
    let start = Instant::now();
    let cancelled = "ivg_requests_total{outcome=\"cancelled\"}";
    loop {
        let m = server.metrics();
        let done = m.value(cancelled) == m0.value(cancelled) + 1.0
            && m.value("ivg_batch_rows") == 0.0
            && m.value("ivg_live_requests") == 0.0;
        if done {
            assert_eq!(
                m.requests("ok"),
                m0.requests("ok"),
                "the dropped request was counted ok"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "10 s after the client dropped its stream: cancelled {} (was {}), batch_rows {}, live {}, ok {}",
            m.value(cancelled),
            m0.value(cancelled),
            m.value("ivg_batch_rows"),
            m.value("ivg_live_requests"),
            m.requests("ok"),
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Still serving.
    completion_text(&server.post_json("/v1/completions", &completion("tiny", 4, 1, json!({}))));
}

#[test]
fn sigterm_finishes_in_flight_requests_and_refuses_new_ones() {
    let (_fx, mut server) = tiny_server(Limits::default());
    let mut sse = server.stream("/v1/completions", &long_request(true));
    assert_eq!(sse.status, 200);
    let first = sse.next_data();
    assert!(matches!(&first, Some(Ok(d)) if d != "[DONE]"), "{first:?}");
    server.sigterm();
    // Ask as soon as the server says it is draining: the in-flight request
    // (16 choices x 16 rows) is then still decoding.
    let agent = agent(Duration::from_secs(30));
    let start = Instant::now();
    loop {
        match request(&agent, "GET", &server.url("/health"), None, None) {
            Ok(r) if r.status == 503 => break,
            Ok(r) => assert_eq!(r.status, 200, "health before draining: {}", r.body),
            Err(e) => panic!("/health after SIGTERM got no answer: {e}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "/health still 200 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let body = completion("tiny", 4, 1, json!({})).to_string().into_bytes();
    match request(
        &agent,
        "POST",
        &server.url("/v1/completions"),
        Some(body),
        Some("application/json"),
    ) {
        Ok(r) => {
            assert_eq!(r.status, 503, "a request after SIGTERM: {}", r.body);
            r.error_param().expect("503 error shape");
        }
        Err(e) => panic!(
            "a request after SIGTERM got no answer ({e}); the server {}",
            match server.exited() {
                Some(s) => format!("had already exited ({s})"),
                None =>
                    "was still running (listener closed before in-flight requests ended?)".into(),
            }
        ),
    }
    let mut rest = Vec::new();
    let mut done = false;
    while let Some(d) = sse.next_data() {
        let d = d.unwrap_or_else(|e| panic!("in-flight stream broke after SIGTERM: {e}"));
        if d == "[DONE]" {
            done = true;
            break;
        }
        rest.push(serde_json::from_str::<Value>(&d).expect("json chunk"));
    }
    assert!(
        done,
        "the in-flight stream ended without [DONE] after SIGTERM"
    );
    for i in 0..16 {
        let (_, finish) = stream_text(&rest, i);
        assert_eq!(
            finish.as_deref(),
            Some("length"),
            "choice {i} after SIGTERM"
        );
    }
    let status = server.wait_exit(Duration::from_secs(60));
    match status {
        Some(s) => assert!(
            s.success(),
            "exit status after SIGTERM: {s}\n{}",
            server.stderr_tail()
        ),
        None => panic!("still running 60 s after SIGTERM\n{}", server.stderr_tail()),
    }
}

/// `ivg serve` with no config: SmolLM2-135M-Instruct and the `smollm2`
/// preset; chat through its chat template, plain and streamed.
#[test]
fn smollm2_chat_without_config() {
    let server = Server::start_args(&[], SMOLLM2_READY);
    let v = server.get("/v1/models").json();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["smollm2"], "{v}");
    let body = json!({
        "model": "smollm2",
        "messages": [
            {"role": "system", "content": "You are a film critic."},
            {"role": "user", "content": "Describe a movie in one sentence."}
        ],
        "max_tokens": 8,
        "temperature": 0.7,
        "seed": 3,
        "ivg": {"width": 2, "successors": 2, "chunk_len": 4}
    });
    let r = server.post_json("/v1/chat/completions", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert_eq!(v["model"], "smollm2", "{v}");
    let c = &v["choices"][0];
    assert_eq!(c["index"], 0, "{v}");
    assert_eq!(c["message"]["role"], "assistant", "{v}");
    let content = c["message"]["content"]
        .as_str()
        .expect("content")
        .to_string();
    assert!(!content.is_empty(), "{v}");
    assert!(
        matches!(c["finish_reason"].as_str(), Some("stop" | "length")),
        "{v}"
    );
    let usage = &v["usage"];
    assert!(
        usage["prompt_tokens"].as_u64().is_some_and(|n| n > 10),
        "{v}"
    );
    let completion_tokens = usage["completion_tokens"]
        .as_u64()
        .expect("completion_tokens");
    assert!((1..=8).contains(&completion_tokens), "{v}");
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap_or(0) + completion_tokens)
    );

    let mut s = body.clone();
    s["stream"] = json!(true);
    let chunks = server
        .stream("/v1/chat/completions", &s)
        .collect()
        .expect("stream");
    for ch in &chunks {
        assert_eq!(ch["object"], "chat.completion.chunk", "{ch}");
    }
    let (text, finish) = stream_text(&chunks, 0);
    assert_eq!(text, content, "streamed chat vs plain (seed 3)");
    assert_eq!(finish.as_deref(), c["finish_reason"].as_str());
    // The plain completion endpoint serves the same preset.
    let r = server.post_json(
        "/v1/completions",
        &json!({"model": "smollm2", "prompt": "This movie was", "max_tokens": 4, "seed": 1}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}
