//! Bad input never gets a 5xx: a table of malformed requests (each with the
//! status it must get and the field `param` must name), a seeded fuzz of
//! mutated valid bodies, the 413 of an oversized body and the 429 of a full
//! queue. After all of them the server still serves a good request.

mod serve_common;

use std::time::Duration;

use serde_json::{json, Value};
use serve_common::*;

/// What a case must get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// This status; when `Some`, `param` is that field or one inside it
    /// (`messages` matches `messages[0].role`), else anything.
    Status(u16, Option<&'static str>),
    /// Some 4xx with the error shape; `param` as for `Status`.
    ClientError(Option<&'static str>),
    /// 200, or a 4xx with the error shape (`param` as for `Status`).
    OkOrClientError(Option<&'static str>),
}

struct Case {
    name: &'static str,
    path: &'static str,
    body: Vec<u8>,
    content_type: Option<&'static str>,
    expect: Expect,
}

fn good() -> Value {
    json!({"model": "tiny-ivg", "prompt": PROMPT, "max_tokens": 4, "seed": 1})
}

fn good_chat() -> Value {
    // The tiny tokenizer has no chat template: only the shape of the
    // messages is under test here, and bad shapes must be named first.
    json!({"model": "tiny-ivg", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 4})
}

/// `good()` with `field` set to `value` (a JSON text, so that bare tokens
/// such as `NaN` can be sent).
fn with(field: &str, value: &str) -> Vec<u8> {
    let mut v = good();
    v.as_object_mut().expect("object").remove(field);
    let mut s = v.to_string();
    s.pop();
    format!("{s},\"{field}\":{value}}}").into_bytes()
}

/// `good()` without `field`.
fn without(field: &str) -> Vec<u8> {
    let mut v = good();
    v.as_object_mut().expect("object").remove(field);
    v.to_string().into_bytes()
}

/// `good()` with `"ivg": {key: value}` (value as JSON text).
fn ivg(key: &str, value: &str) -> Vec<u8> {
    with("ivg", &format!("{{\"{key}\":{value}}}"))
}

fn chat_with(messages: &str) -> Vec<u8> {
    let mut s = good_chat();
    s.as_object_mut().expect("object").remove("messages");
    let mut s = s.to_string();
    s.pop();
    format!("{s},\"messages\":{messages}}}").into_bytes()
}

fn cases() -> Vec<Case> {
    use Expect::*;
    let c = |name, body: Vec<u8>, expect| Case {
        name,
        path: "/v1/completions",
        body,
        content_type: Some("application/json"),
        expect,
    };
    let chat = |name, body: Vec<u8>, expect| Case {
        name,
        path: "/v1/chat/completions",
        body,
        content_type: Some("application/json"),
        expect,
    };
    let at = |name, path, body: Vec<u8>, expect| Case {
        name,
        path,
        body,
        content_type: Some("application/json"),
        expect,
    };
    let bad = |p| Status(400, Some(p));
    let deep = format!(
        "{{\"model\":\"tiny\",\"prompt\":\"t5\",\"x\":{}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let long_prompt = vec!["t5"; 70].join(" ");
    vec![
        // The body as a whole.
        c("empty body", Vec::new(), Status(400, None)),
        c("not JSON", b"hello".to_vec(), Status(400, None)),
        c(
            "truncated JSON",
            br#"{"model":"tiny","prompt":"t5""#.to_vec(),
            Status(400, None),
        ),
        c(
            "truncated in a string",
            br#"{"model":"tiny","prompt":"t5"#.to_vec(),
            Status(400, None),
        ),
        c("array body", b"[]".to_vec(), Status(400, None)),
        c(
            "array of a request",
            format!("[{}]", good()).into_bytes(),
            Status(400, None),
        ),
        c("string body", b"\"t5 t17\"".to_vec(), Status(400, None)),
        c("null body", b"null".to_vec(), Status(400, None)),
        c("number body", b"42".to_vec(), Status(400, None)),
        c(
            "trailing garbage",
            format!("{} x", good()).into_bytes(),
            Status(400, None),
        ),
        c(
            "invalid UTF-8 in a string",
            b"{\"model\":\"tiny\",\"prompt\":\"t5 \xff\xfe\"}".to_vec(),
            ClientError(None),
        ),
        c(
            "invalid UTF-8 outside strings",
            b"{\"model\":\"tiny\",\xc3\x28\"prompt\":\"t5\"}".to_vec(),
            Status(400, None),
        ),
        c("nesting 10000 deep", deep.into_bytes(), Status(400, None)),
        c(
            "NaN as a bare token",
            with("temperature", "NaN"),
            ClientError(None),
        ),
        c(
            "Infinity",
            with("temperature", "Infinity"),
            ClientError(None),
        ),
        c("-Infinity", with("top_p", "-Infinity"), ClientError(None)),
        c(
            "1e999 overflows f64",
            with("temperature", "1e999"),
            ClientError(None),
        ),
        // model
        c(
            "model missing",
            without("model"),
            OkOrClientError(Some("model")),
        ),
        c(
            "unknown model",
            with("model", "\"gpt-4\""),
            Status(404, Some("model")),
        ),
        c("model a number", with("model", "5"), bad("model")),
        c(
            "model null (as if absent)",
            with("model", "null"),
            OkOrClientError(Some("model")),
        ),
        // prompt
        c("prompt missing", without("prompt"), bad("prompt")),
        c("empty prompt", with("prompt", "\"\""), bad("prompt")),
        c("prompt a number", with("prompt", "5"), bad("prompt")),
        c("prompt null", with("prompt", "null"), bad("prompt")),
        c(
            "prompt an object",
            with("prompt", "{\"text\":\"t5\"}"),
            bad("prompt"),
        ),
        c(
            "prompt two strings",
            with("prompt", "[\"t5\",\"t6\"]"),
            bad("prompt"),
        ),
        c("prompt empty array", with("prompt", "[]"), bad("prompt")),
        c(
            "prompt array of one empty string",
            with("prompt", "[\"\"]"),
            bad("prompt"),
        ),
        c(
            "prompt token ids (OpenAI allows them)",
            with("prompt", "[5,17]"),
            OkOrClientError(Some("prompt")),
        ),
        c(
            "prompt token ids beyond the vocabulary",
            with("prompt", "[5,100000]"),
            bad("prompt"),
        ),
        c(
            "prompt token ids negative",
            with("prompt", "[5,-1]"),
            bad("prompt"),
        ),
        c(
            "prompt beyond the context",
            with("prompt", &format!("\"{long_prompt}\"")),
            ClientError(None),
        ),
        // max_tokens
        c("max_tokens 0", with("max_tokens", "0"), bad("max_tokens")),
        c("max_tokens -1", with("max_tokens", "-1"), bad("max_tokens")),
        c(
            "max_tokens 1e9",
            with("max_tokens", "1000000000"),
            bad("max_tokens"),
        ),
        c(
            "max_tokens u64 max + 1",
            with("max_tokens", "18446744073709551616"),
            bad("max_tokens"),
        ),
        c(
            "max_tokens a string",
            with("max_tokens", "\"5\""),
            bad("max_tokens"),
        ),
        c(
            "max_tokens 2.5",
            with("max_tokens", "2.5"),
            bad("max_tokens"),
        ),
        c(
            "max_tokens true",
            with("max_tokens", "true"),
            bad("max_tokens"),
        ),
        c(
            "prompt + max_tokens beyond the context",
            with("max_tokens", "62"),
            bad("max_tokens"),
        ),
        // sampling
        c(
            "temperature -1",
            with("temperature", "-1"),
            bad("temperature"),
        ),
        c(
            "temperature a string",
            with("temperature", "\"hot\""),
            bad("temperature"),
        ),
        c(
            "temperature 1e308",
            with("temperature", "1e308"),
            OkOrClientError(Some("temperature")),
        ),
        c("top_p 0", with("top_p", "0"), bad("top_p")),
        c("top_p 1.5", with("top_p", "1.5"), bad("top_p")),
        c("top_p -0.1", with("top_p", "-0.1"), bad("top_p")),
        c("top_p an array", with("top_p", "[0.5]"), bad("top_p")),
        c("seed -1", with("seed", "-1"), bad("seed")),
        c("seed 1.5", with("seed", "1.5"), bad("seed")),
        c("seed a string", with("seed", "\"x\""), bad("seed")),
        c(
            "seed u64 max + 1",
            with("seed", "18446744073709551616"),
            bad("seed"),
        ),
        // stop, n, stream, user
        c("stop a number", with("stop", "5"), bad("stop")),
        c("stop an array of numbers", with("stop", "[5]"), bad("stop")),
        c("stop an object", with("stop", "{\"a\":1}"), bad("stop")),
        c(
            "stop an empty string",
            with("stop", "\"\""),
            OkOrClientError(Some("stop")),
        ),
        c("n 0", with("n", "0"), bad("n")),
        c("n -1", with("n", "-1"), bad("n")),
        c("n 17", with("n", "17"), bad("n")),
        c("n 1000", with("n", "1000"), bad("n")),
        c("n a string", with("n", "\"2\""), bad("n")),
        c("n 1.5", with("n", "1.5"), bad("n")),
        c("stream a string", with("stream", "\"yes\""), bad("stream")),
        c("stream 1", with("stream", "1"), bad("stream")),
        c("user a number", with("user", "5"), bad("user")),
        // ivg
        c("ivg a string", with("ivg", "\"fast\""), bad("ivg")),
        c("ivg an array", with("ivg", "[]"), bad("ivg")),
        c("ivg a number", with("ivg", "3"), bad("ivg")),
        c(
            "unknown ivg key",
            ivg("widht", "2"),
            ClientError(Some("ivg")),
        ),
        c(
            "unknown method",
            ivg("method", "\"dexperts\""),
            ClientError(Some("ivg")),
        ),
        c(
            "method a number",
            ivg("method", "5"),
            ClientError(Some("ivg")),
        ),
        c(
            "empty method",
            ivg("method", "\"\""),
            ClientError(Some("ivg")),
        ),
        c("width 0", ivg("width", "0"), ClientError(Some("ivg"))),
        c("width -1", ivg("width", "-1"), ClientError(Some("ivg"))),
        c(
            "width 1e9",
            ivg("width", "1000000000"),
            ClientError(Some("ivg")),
        ),
        c(
            "width a string",
            ivg("width", "\"2\""),
            ClientError(Some("ivg")),
        ),
        c(
            "successors 0",
            ivg("successors", "0"),
            ClientError(Some("ivg")),
        ),
        c(
            "successors 1e9",
            ivg("successors", "1000000000"),
            ClientError(Some("ivg")),
        ),
        c(
            "chunk_len -1",
            ivg("chunk_len", "-1"),
            ClientError(Some("ivg")),
        ),
        c(
            "chunk_len 2.5",
            ivg("chunk_len", "2.5"),
            ClientError(Some("ivg")),
        ),
        c(
            "beta a string",
            ivg("beta", "\"x\""),
            ClientError(Some("ivg")),
        ),
        c("beta 1e999", ivg("beta", "1e999"), ClientError(None)),
        c("top_k -1", ivg("top_k", "-1"), ClientError(Some("ivg"))),
        c(
            "guided method on a base-only preset",
            br#"{"model":"tiny","prompt":"t5","max_tokens":2,"ivg":{"method":"ivg"}}"#.to_vec(),
            ClientError(None),
        ),
        // chat
        chat("messages empty", chat_with("[]"), bad("messages")),
        chat(
            "messages missing",
            {
                let mut v = good_chat();
                v.as_object_mut().expect("object").remove("messages");
                v.to_string().into_bytes()
            },
            bad("messages"),
        ),
        chat("messages a string", chat_with("\"hi\""), bad("messages")),
        chat(
            "message without content",
            chat_with("[{\"role\":\"user\"}]"),
            ClientError(Some("messages")),
        ),
        chat(
            "message without role",
            chat_with("[{\"content\":\"t5\"}]"),
            ClientError(Some("messages")),
        ),
        chat(
            "unknown role",
            chat_with("[{\"role\":\"wizard\",\"content\":\"t5\"}]"),
            ClientError(Some("messages")),
        ),
        chat(
            "content a number",
            chat_with("[{\"role\":\"user\",\"content\":5}]"),
            ClientError(Some("messages")),
        ),
        chat(
            "message a string",
            chat_with("[\"t5\"]"),
            ClientError(Some("messages")),
        ),
        chat(
            "chat on a model without a chat template",
            good_chat().to_string().into_bytes(),
            ClientError(None),
        ),
        chat(
            "chat unknown model",
            {
                let mut v = good_chat();
                v["model"] = json!("nope");
                v.to_string().into_bytes()
            },
            Status(404, Some("model")),
        ),
        chat(
            "chat truncated",
            b"{\"model\":\"tiny\",\"messages\":[".to_vec(),
            Status(400, None),
        ),
        // tokenize / detokenize
        at(
            "tokenize without prompt",
            "/tokenize",
            b"{}".to_vec(),
            bad("prompt"),
        ),
        at(
            "tokenize prompt a number",
            "/tokenize",
            b"{\"prompt\":5}".to_vec(),
            bad("prompt"),
        ),
        at(
            "tokenize unknown model",
            "/tokenize",
            b"{\"model\":\"nope\",\"prompt\":\"t5\"}".to_vec(),
            Status(404, Some("model")),
        ),
        at(
            "tokenize not JSON",
            "/tokenize",
            b"t5 t6".to_vec(),
            Status(400, None),
        ),
        at(
            "detokenize without tokens",
            "/detokenize",
            b"{}".to_vec(),
            bad("tokens"),
        ),
        at(
            "detokenize tokens a string",
            "/detokenize",
            b"{\"tokens\":\"t5\"}".to_vec(),
            bad("tokens"),
        ),
        at(
            "detokenize negative id",
            "/detokenize",
            b"{\"tokens\":[-1]}".to_vec(),
            bad("tokens"),
        ),
        at(
            "detokenize id beyond the vocabulary",
            "/detokenize",
            b"{\"tokens\":[100000]}".to_vec(),
            bad("tokens"),
        ),
        at(
            "detokenize id 2^32",
            "/detokenize",
            b"{\"tokens\":[4294967296]}".to_vec(),
            bad("tokens"),
        ),
        at(
            "detokenize float id",
            "/detokenize",
            b"{\"tokens\":[1.5]}".to_vec(),
            bad("tokens"),
        ),
        // paths and headers
        at(
            "unknown path",
            "/v1/nothing",
            good().to_string().into_bytes(),
            Status(404, None),
        ),
        Case {
            name: "text/plain content type",
            path: "/v1/completions",
            body: good().to_string().into_bytes(),
            content_type: Some("text/plain"),
            expect: OkOrClientError(None),
        },
        Case {
            name: "no content type",
            path: "/v1/completions",
            body: good().to_string().into_bytes(),
            content_type: None,
            expect: OkOrClientError(None),
        },
        // Valid edge values are served.
        c(
            "temperature 0 (greedy)",
            with("temperature", "0"),
            Status(200, None),
        ),
        c("top_p 1", with("top_p", "1"), Status(200, None)),
        c(
            "chunk_len 0 (infinity)",
            ivg("chunk_len", "0"),
            Status(200, None),
        ),
        c(
            "unknown top-level field",
            with("frobnicate", "{\"x\":[1,2,3]}"),
            Status(200, None),
        ),
        c(
            "max_tokens null",
            with("max_tokens", "null"),
            OkOrClientError(Some("max_tokens")),
        ),
    ]
}

/// Why `reply` does not meet `expect`, if it does not.
fn check(expect: Expect, reply: &Reply) -> Result<(), String> {
    let param_ok = |want: Option<&str>| -> Result<(), String> {
        let got = reply.error_param()?;
        match (want, got.as_deref()) {
            (None, _) => Ok(()),
            // `messages` also matches `messages[0].content`, `ivg` `ivg.width`.
            (Some(w), Some(g))
                if g.strip_prefix(w)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '['])) =>
            {
                Ok(())
            }
            (Some(w), g) => Err(format!("param {g:?}, want {w:?}")),
        }
    };
    let status = reply.status;
    match expect {
        Expect::Status(200, _) if status == 200 => Ok(()),
        Expect::Status(want, param) if status == want => param_ok(param),
        Expect::Status(want, _) => Err(format!("status {status}, want {want}")),
        Expect::ClientError(param) if (400..500).contains(&status) => param_ok(param),
        Expect::ClientError(_) => Err(format!("status {status}, want 4xx")),
        Expect::OkOrClientError(_) if status == 200 => Ok(()),
        Expect::OkOrClientError(param) if (400..500).contains(&status) => param_ok(param),
        Expect::OkOrClientError(_) => Err(format!("status {status}, want 200 or 4xx")),
    }
}

fn clip(s: &[u8]) -> String {
    let s = String::from_utf8_lossy(s);
    if s.len() > 160 {
        format!(
            "{}... ({} bytes)",
            &s[..s.char_indices().nth(160).map_or(s.len(), |(i, _)| i)],
            s.len()
        )
    } else {
        s.into_owned()
    }
}

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
