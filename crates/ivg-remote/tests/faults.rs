//! An engine that answers wrongly: a loopback responder that gives canned
//! HTTP answers (the real engine is exercised in `llama_cpp.rs`; this one
//! only misbehaves). Every fault is a typed error naming the engine and the
//! call, never a panic; 5xx is retried, malformed answers are not.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ivg_remote::{RemoteEngine, RemoteError, RemoteSpec};

const PROPS: &str = r#"{"default_generation_settings": {"n_ctx": 64}}"#;
/// vLLM's `/v1/models`: a name and `max_model_len`, no vocabulary size.
const MODELS: &str = r#"{"object": "list", "data": [{"id": "base", "object": "model", "owned_by": "vllm", "max_model_len": 64}]}"#;

/// Serves `/props` and `/v1/models` properly and every other call with
/// `(status, body)`;
/// returns the URL and a counter of the other calls.
fn responder(status: u16, body: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body_in = vec![0u8; length];
            let _ = reader.read_exact(&mut body_in);
            let (code, text) = if line.starts_with("GET /props") {
                (200, PROPS)
            } else if line.starts_with("GET /v1/models") {
                (200, MODELS)
            } else {
                counter.fetch_add(1, Ordering::SeqCst);
                (status, body)
            };
            let reply = format!(
                "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (url, calls)
}

fn engine(url: &str) -> RemoteEngine {
    let mut spec = RemoteSpec::llama_cpp(url);
    spec.retries = 2;
    RemoteEngine::connect(&spec).expect("connect")
}

fn openai_engine(url: &str) -> RemoteEngine {
    let mut spec = RemoteSpec::openai(url);
    spec.retries = 2;
    RemoteEngine::connect(&spec).expect("connect")
}

#[test]
fn http_500_is_retried_then_named() {
    let (url, calls) = responder(500, r#"{"error": "boom"}"#);
    let err = engine(&url).next_token_topk(&[1, 2], 5).unwrap_err();
    assert!(
        matches!(err, RemoteError::Status { status: 500, .. }),
        "{err:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3, "1 try + 2 retries");
    let msg = err.to_string();
    assert!(
        msg.contains(&url) && msg.contains("POST /completion (top-k)") && msg.contains("boom"),
        "{msg}"
    );
}

#[test]
fn malformed_json_is_named_and_not_retried() {
    let (url, calls) = responder(
        200,
        r#"{"completion_probabilities": [{"top_logprobs": [{"id": 3,"#,
    );
    let err = engine(&url).next_token_topk(&[1, 2], 5).unwrap_err();
    assert!(matches!(err, RemoteError::Malformed { .. }), "{err:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(err.to_string().contains("not JSON"), "{err}");
}

#[test]
fn fewer_logprobs_than_asked_is_an_error() {
    let (url, _) = responder(
        200,
        r#"{"completion_probabilities": [{"top_logprobs": [{"id": 3, "logprob": -0.1}, {"id": 4, "logprob": -2.5}]}]}"#,
    );
    let err = engine(&url)
        .next_token_topk(&[1, 2], 5)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("asked for 5 log-probabilities, got 2"),
        "{err}"
    );
}

#[test]
fn wrong_completion_counts_and_stop_types_are_errors() {
    let (url, _) = responder(
        200,
        r#"{"index": 0, "tokens": [5, 6], "stop_type": "limit"}"#,
    );
    let e = engine(&url);
    let sampling = ivg_remote::Sampling {
        temperature: 1.0,
        top_p: 1.0,
        seed: 1,
    };
    let err = e
        .sample_chunks(&[1], 3, 2, sampling)
        .unwrap_err()
        .to_string();
    assert!(err.contains("asked for 3 completions, got 1"), "{err}");
    let err = e
        .sample_chunks(&[1], 1, 4, sampling)
        .unwrap_err()
        .to_string();
    assert!(err.contains("2 tokens for a limit of 4"), "{err}");
    let (url, _) = responder(200, r#"{"index": 0, "tokens": [5], "stop_type": "word"}"#);
    let err = engine(&url)
        .sample_chunks(&[1], 1, 4, sampling)
        .unwrap_err()
        .to_string();
    assert!(err.contains("stop_type Some(\"word\")"), "{err}");
}

#[test]
fn an_engine_that_is_not_there_is_named() {
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut spec = RemoteSpec::llama_cpp(format!("http://127.0.0.1:{port}"));
    spec.retries = 1;
    let err = RemoteEngine::connect(&spec).err().expect("nothing listens");
    assert!(
        matches!(err, RemoteError::Transport { attempts: 2, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!(
            "127.0.0.1:{port}: GET /props failed after 2 attempt(s)"
        )),
        "{err}"
    );
}

#[test]
fn openai_faults_are_named() {
    // Malformed JSON: named, not retried.
    let (url, calls) = responder(200, r#"{"choices": [{"logprobs": {"top_logprobs": [{"#);
    let e = openai_engine(&url);
    assert_eq!(e.context_length(), 64, "max_model_len");
    let err = e.next_token_topk(&[1, 2], 5).unwrap_err();
    assert!(matches!(err, RemoteError::Malformed { .. }), "{err:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let msg = err.to_string();
    assert!(
        msg.contains(&url)
            && msg.contains("POST /v1/completions (top-k)")
            && msg.contains("not JSON"),
        "{msg}"
    );
    // vLLM answers no vocabulary size: said, not guessed.
    let err = e.vocab_size().unwrap_err().to_string();
    assert!(err.contains("reports no vocabulary size"), "{err}");
    // Refused locally past max_model_len.
    let err = e.next_token_topk(&[1; 64], 5).unwrap_err().to_string();
    assert!(err.contains("context of 64"), "{err}");

    // Fewer log-probabilities than asked for (vLLM's shape).
    let (url, _) = responder(
        200,
        r#"{"choices": [{"index": 0, "finish_reason": "length", "logprobs": {"tokens": ["token_id:3"], "top_logprobs": [{"token_id:3": -0.1, "token_id:4": -2.5}]}}]}"#,
    );
    let err = openai_engine(&url)
        .next_token_topk(&[1, 2], 5)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("asked for 5 log-probabilities, got 2"),
        "{err}"
    );

    // Chunks: a length stop short of the limit, and too few choices.
    let (url, _) = responder(
        200,
        r#"{"choices": [{"index": 0, "finish_reason": "length", "token_ids": [5, 6]}]}"#,
    );
    let e = openai_engine(&url);
    let sampling = ivg_remote::Sampling {
        temperature: 1.0,
        top_p: 1.0,
        seed: 1,
    };
    let err = e
        .sample_chunks(&[1], 1, 4, sampling)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("POST /v1/completions (chunks)")
            && err.contains("choice 0: 2 tokens for a limit of 4"),
        "{err}"
    );
    let err = e
        .sample_chunks(&[1], 3, 2, sampling)
        .unwrap_err()
        .to_string();
    assert!(err.contains("asked for 3 completions, got 1"), "{err}");

    // A model the engine does not serve.
    let mut spec = RemoteSpec::openai(&url);
    spec.model = Some("other".into());
    let err = RemoteEngine::connect(&spec)
        .err()
        .expect("not served")
        .to_string();
    assert!(
        err.contains("the engine serves [\"base\"], not \"other\""),
        "{err}"
    );
}
