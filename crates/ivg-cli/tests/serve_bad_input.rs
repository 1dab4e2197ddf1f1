//! Bad input never gets a 5xx: a table of malformed requests (each with the
//! status it must get and the field `param` must name), a seeded fuzz of
//! mutated valid bodies, the 413 of an oversized body and the 429 of a full
//! queue. After all of them the server still serves a good request.

#[path = "serve_bad_input/cases.rs"]
mod cases;
mod serve_common;

use std::time::Duration;

use cases::*;
use serde_json::{json, Value};
use serve_common::*;

#[test]
fn malformed_requests_get_named_4xx_never_5xx() {
    let (_fx, server) = tiny_server(Limits::default());
    let cases = cases();
    assert!(cases.len() >= 40);
    let mut failures = Vec::new();
    for case in &cases {
        let reply = server.post_raw(case.path, &case.body, case.content_type);
        if let Err(why) = check(case.expect, &reply) {
            failures.push(format!(
                "{}: POST {} {}\n    expected {:?}; {why}\n    got {} {}",
                case.name,
                case.path,
                clip(&case.body),
                case.expect,
                reply.status,
                clip(reply.body.as_bytes())
            ));
        }
    }
    // An oversized body (the fixture allows 64 KiB).
    let mut big = good();
    big["prompt"] = json!(vec!["t5"; 40_000].join(" "));
    let reply = server.post_json("/v1/completions", &big);
    if let Err(why) = check(Expect::Status(413, None), &reply) {
        failures.push(format!(
            "oversized body (120 KB): {why}; got {} {}",
            reply.status,
            clip(reply.body.as_bytes())
        ));
    }
    // Wrong methods on known paths.
    for path in ["/v1/completions", "/v1/chat/completions", "/tokenize"] {
        let reply = server.get(path);
        if let Err(why) = check(Expect::ClientError(None), &reply) {
            failures.push(format!(
                "GET {path}: {why}; got {} {}",
                reply.status,
                clip(reply.body.as_bytes())
            ));
        }
    }
    // Still serving.
    let after = server.post_json("/v1/completions", &good());
    assert_eq!(
        after.status, 200,
        "a good request after the bad ones: {}",
        after.body
    );
    let m = server.metrics();
    assert_eq!(m.value("ivg_batch_rows"), 0.0, "{m:?}");
    assert!(
        failures.is_empty(),
        "{} of {} bad-input cases failed:\n{}\nserver stderr (tail):\n{}",
        failures.len(),
        cases.len() + 4,
        failures.join("\n"),
        server.stderr_tail()
    );
}

/// splitmix64: a seeded source for the fuzz below (no extra dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }

    /// A random JSON value: edge numbers, small ints (kept small so that
    /// a valid mutation stays cheap to serve), strings, nesting.
    fn value(&mut self, depth: usize) -> Value {
        let kinds = if depth == 0 { 7 } else { 9 };
        match self.below(kinds) {
            0 => Value::Null,
            1 => json!(self.below(2) == 0),
            2 => json!(self.below(12) as i64 - 3),
            3 => self
                .pick(&[
                    json!(0),
                    json!(-1),
                    json!(i64::MIN),
                    json!(u64::MAX),
                    json!(9_007_199_254_740_993u64),
                    json!(1e300),
                    json!(-1e-300),
                    json!(0.5),
                    json!(-0.0),
                    json!(1.0000001),
                ])
                .clone(),
            4 => json!(self.below(1000) as f64 / 100.0 - 2.0),
            5 => json!(self
                .pick(&[
                    "",
                    "t5",
                    "base",
                    "ivg",
                    "efti+cbsi",
                    "tiny",
                    "tiny-ivg",
                    "user",
                    "\u{0}",
                    "é\u{301}",
                    "🦀",
                    "t5 t17 t3",
                    "{prompt}",
                    "\\\"",
                    "NaN"
                ])
                .to_string()),
            6 => {
                let n = self.below(40);
                json!((0..n)
                    .map(|_| char::from_u32(self.below(0x3000) as u32).unwrap_or('x'))
                    .collect::<String>())
            }
            7 => Value::Array((0..self.below(4)).map(|_| self.value(depth - 1)).collect()),
            _ => {
                let mut m = serde_json::Map::new();
                for _ in 0..self.below(4) {
                    let k = self.key().to_string();
                    m.insert(k, self.value(depth - 1));
                }
                Value::Object(m)
            }
        }
    }

    fn key(&mut self) -> &'static str {
        const KEYS: [&str; 24] = [
            "model",
            "prompt",
            "messages",
            "max_tokens",
            "temperature",
            "top_p",
            "seed",
            "stop",
            "n",
            "stream",
            "user",
            "ivg",
            "method",
            "width",
            "successors",
            "chunk_len",
            "beta",
            "top_k",
            "role",
            "content",
            "tokens",
            "logprobs",
            "echo",
            "x",
        ];
        KEYS[self.below(KEYS.len())]
    }
}

/// Applies 1-3 random mutations to `body`; the result as bytes.
fn mutate(rng: &mut Rng, body: &Value) -> Vec<u8> {
    let mut v = body.clone();
    for _ in 0..1 + rng.below(3) {
        let Some(obj) = v.as_object_mut() else { break };
        let keys: Vec<String> = obj.keys().cloned().collect();
        match rng.below(5) {
            0 if !keys.is_empty() => {
                let k = rng.pick(&keys).clone();
                obj.remove(&k);
            }
            1 if !keys.is_empty() => {
                let k = rng.pick(&keys).clone();
                obj.insert(k, rng.value(2));
            }
            2 => {
                let k = rng.key().to_string();
                obj.insert(k, rng.value(2));
            }
            3 => {
                let mut ivg = obj
                    .get("ivg")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let k = rng
                    .pick(&[
                        "method",
                        "width",
                        "successors",
                        "chunk_len",
                        "beta",
                        "top_k",
                        "wdth",
                    ])
                    .to_string();
                ivg.insert(k, rng.value(1));
                obj.insert("ivg".into(), Value::Object(ivg));
            }
            _ => {
                if let Some(Value::Array(ms)) = obj.get_mut("messages") {
                    if let Some(Value::Object(m)) = ms.first_mut() {
                        let k = rng.pick(&["role", "content", "name"]).to_string();
                        m.insert(k, rng.value(1));
                    }
                }
            }
        }
    }
    let mut bytes = v.to_string().into_bytes();
    // Byte-level damage in a third of the cases.
    match rng.below(9) {
        0 if !bytes.is_empty() => {
            let i = rng.below(bytes.len());
            bytes[i] = rng.next() as u8;
        }
        1 => {
            let i = rng.below(bytes.len() + 1);
            bytes.truncate(i);
        }
        2 => {
            let i = rng.below(bytes.len() + 1);
            let junk: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
            bytes.splice(i..i, junk);
        }
        _ => {}
    }
    bytes
}

#[test]
fn mutated_requests_never_get_a_5xx() {
    let (_fx, server) = tiny_server(Limits::default());
    let bases = [
        ("/v1/completions", good()),
        (
            "/v1/completions",
            json!({"model": "tiny-ivg", "prompt": [PROMPT], "max_tokens": 3, "seed": 2, "n": 2,
                   "stop": ["t1"], "temperature": 0.5, "top_p": 0.9,
                   "ivg": {"method": "ivg", "width": 2, "successors": 2, "chunk_len": 2, "beta": 0.5}}),
        ),
        (
            "/v1/completions",
            json!({"model": "tiny", "prompt": PROMPT, "max_tokens": 3, "stream": true}),
        ),
        ("/v1/chat/completions", good_chat()),
        ("/tokenize", json!({"model": "tiny", "prompt": PROMPT})),
        ("/detokenize", json!({"tokens": [5, 17, 3]})),
    ];
    let mut rng = Rng(0x1f2e_3d4c);
    let agent = agent(Duration::from_secs(120));
    let mut failures = Vec::new();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for case in 0..200 {
        let (path, base) = rng.pick(&bases);
        let body = mutate(&mut rng, base);
        let reply = match request(
            &agent,
            "POST",
            &server.url(path),
            Some(body.clone()),
            Some("application/json"),
        ) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!(
                    "case {case}: POST {path} {}: no answer ({e})",
                    clip(&body)
                ));
                continue;
            }
        };
        *statuses.entry(reply.status).or_default() += 1;
        let bad = if reply.status >= 500 {
            Some("5xx".to_string())
        } else if (400..500).contains(&reply.status) {
            reply.error_param().err()
        } else {
            None
        };
        if let Some(why) = bad {
            failures.push(format!(
                "case {case}: POST {path} {}\n    {why}; got {} {}",
                clip(&body),
                reply.status,
                clip(reply.body.as_bytes())
            ));
        }
    }
    eprintln!("fuzz statuses: {statuses:?}");
    let after = server.post_json("/v1/completions", &good());
    assert_eq!(
        after.status, 200,
        "a good request after the fuzz: {}",
        after.body
    );
    assert!(
        failures.is_empty(),
        "{} of 200 fuzz cases failed (statuses {statuses:?}):\n{}\nserver stderr (tail):\n{}",
        failures.len(),
        failures.join("\n"),
        server.stderr_tail()
    );
}

#[test]
fn a_full_queue_gets_429() {
    let (_fx, server) = tiny_server(Limits {
        max_concurrent: 1,
        max_queued: 1,
        max_body_bytes: 65536,
    });
    // Six long requests at once: one decodes, one waits, the rest are refused.
    let body = {
        let mut b = completion(
            "tiny-ivg",
            40,
            1,
            json!({"method": "ivg", "width": 4, "successors": 4, "chunk_len": 3}),
        );
        b["n"] = json!(1);
        b
    };
    let replies = concurrently(6, |_| server.post_json("/v1/completions", &body));
    let mut ok = 0;
    let mut rejected = 0;
    for r in &replies {
        match r.status {
            200 => ok += 1,
            429 => {
                rejected += 1;
                r.error_param().unwrap_or_else(|e| panic!("429 shape: {e}"));
                let t = r.json()["error"]["type"].clone();
                assert_eq!(t, "rate_limit_error", "{}", r.body);
            }
            s => panic!("status {s}: {}", r.body),
        }
    }
    assert!(ok >= 1 && rejected >= 1, "ok {ok}, rejected {rejected}");
    assert_eq!(server.metrics().requests("rejected"), rejected as f64);
    let texts: Vec<String> = replies
        .iter()
        .filter(|r| r.status == 200)
        .map(completion_text)
        .collect();
    assert!(
        texts.windows(2).all(|w| w[0] == w[1]),
        "same request, other texts: {texts:?}"
    );
}
