//! The table of malformed requests of `serve_bad_input.rs`: each with the
//! status it must get and the field `param` must name, and the check of a reply
//! against it.

use serde_json::{json, Value};

use super::serve_common::*;

/// What a case must get.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expect {
    /// This status; when `Some`, `param` is that field or one inside it
    /// (`messages` matches `messages[0].role`), else anything.
    Status(u16, Option<&'static str>),
    /// Some 4xx with the error shape; `param` as for `Status`.
    ClientError(Option<&'static str>),
    /// 200, or a 4xx with the error shape (`param` as for `Status`).
    OkOrClientError(Option<&'static str>),
}

pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) path: &'static str,
    pub(crate) body: Vec<u8>,
    pub(crate) content_type: Option<&'static str>,
    pub(crate) expect: Expect,
}

pub(crate) fn good() -> Value {
    json!({"model": "tiny-ivg", "prompt": PROMPT, "max_tokens": 4, "seed": 1})
}

pub(crate) fn good_chat() -> Value {
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

pub(crate) fn cases() -> Vec<Case> {
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
        // 3 + 61 tokens fill the base's context of 64, but the tuned guide
        // reads `t7 {prompt}` (4 tokens): refused here, not mid-step, where it
        // would fail every request of the batch.
        c(
            "prompt + max_tokens beyond a guide's context only",
            with("max_tokens", "61"),
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
            "max_tokens filling the base's context, method base (no guide read)",
            json!({"model": "tiny-ivg", "prompt": PROMPT, "max_tokens": 61, "seed": 1,
                   "ivg": {"method": "base"}})
            .to_string()
            .into_bytes(),
            Status(200, None),
        ),
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
pub(crate) fn check(expect: Expect, reply: &Reply) -> Result<(), String> {
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

pub(crate) fn clip(s: &[u8]) -> String {
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
