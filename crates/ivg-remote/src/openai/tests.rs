//! The parsers on answers as the engines document them: vLLM's
//! `CompletionResponse` (`vllm/entrypoints/openai/protocol.py`, with
//! `return_tokens_as_token_ids` and `return_token_ids`) and llama.cpp's
//! `to_json_oaicompat` (`tools/server/server-task.cpp`, 0.3.36's vendored
//! copy). No server: `tests/openai.rs` drives a real llama.cpp.

use serde_json::{json, Value};

use super::*;

fn vllm_models() -> Value {
    json!({"object": "list", "data": [{
        "id": "HuggingFaceTB/SmolLM2-135M", "object": "model", "created": 1733460000,
        "owned_by": "vllm", "root": "HuggingFaceTB/SmolLM2-135M", "parent": null,
        "max_model_len": 8192,
        "permission": [{"id": "modelperm-1", "object": "model_permission", "allow_sampling": true}]
    }]})
}

fn llama_cpp_models() -> Value {
    json!({"object": "list", "data": [{
        "id": "smollm2-f32.gguf", "aliases": ["smollm2"], "tags": [], "object": "model",
        "created": 1733460000, "owned_by": "llamacpp",
        "meta": {"vocab_type": 2, "n_vocab": 49152, "n_ctx": 1024, "n_ctx_train": 8192,
                 "n_embd": 576, "n_params": 134515008, "size": 538060800, "ftype": 0}
    }]})
}

#[test]
fn models_tell_name_context_vocabulary_and_dialect() {
    let vllm = parse_models(&vllm_models()).unwrap();
    assert_eq!(
        vllm,
        vec![Served {
            id: "HuggingFaceTB/SmolLM2-135M".into(),
            aliases: vec![],
            context: Some(8192),
            vocab: None,
            dialect: Dialect::Vllm,
        }]
    );
    let llama = parse_models(&llama_cpp_models()).unwrap();
    assert_eq!(
        llama[0].context,
        Some(1024),
        "per-slot n_ctx, not n_ctx_train"
    );
    assert_eq!(llama[0].vocab, Some(49152));
    assert_eq!(llama[0].dialect, Dialect::LlamaCpp);
    assert_eq!(llama[0].aliases, vec!["smollm2".to_string()]);

    // An older llama.cpp without meta.n_ctx: the training context bounds it.
    let mut old = llama_cpp_models();
    old["data"][0]["meta"]
        .as_object_mut()
        .unwrap()
        .remove("n_ctx");
    assert_eq!(parse_models(&old).unwrap()[0].context, Some(8192));
    // SGLang-like: no length at all, then nothing is refused locally.
    let bare = json!({"data": [{"id": "m", "object": "model", "owned_by": "sglang"}]});
    assert_eq!(parse_models(&bare).unwrap()[0].context, None);

    let err = parse_models(&json!({"data": []})).unwrap_err();
    assert!(err.contains("no model served"), "{err}");
    let err = parse_models(&json!({"object": "list"})).unwrap_err();
    assert!(err.contains("no `data` array"), "{err}");
}

#[test]
fn vllm_topk_from_token_id_strings() {
    // vLLM lists the sampled token first, then the top-k (k + 1 entries
    // when the sampled one is not among them); values clamped at -9999.
    let answer = json!({
        "id": "cmpl-5f1", "object": "text_completion", "created": 1733460000,
        "model": "HuggingFaceTB/SmolLM2-135M",
        "choices": [{
            "index": 0, "text": " a", "finish_reason": "length", "stop_reason": null,
            "prompt_logprobs": null,
            "logprobs": {
                "text_offset": [0], "token_logprobs": [-1.25], "tokens": ["token_id:253"],
                "top_logprobs": [{"token_id:253": -1.25, "token_id:260": -1.0,
                                  "token_id:314": -2.75, "token_id:7": -9999.0}]
            }
        }],
        "usage": {"prompt_tokens": 5, "total_tokens": 6, "completion_tokens": 1,
                  "prompt_tokens_details": {"cached_tokens": 4}}
    });
    let top = parse_topk(&answer, 3).unwrap();
    assert_eq!(top.tokens, vec![(260, -1.0), (253, -1.25), (314, -2.75)]);
    assert_eq!(top.cached, 4);
    let err = parse_topk(&answer, 5).unwrap_err();
    assert_eq!(err, "asked for 5 log-probabilities, got 4");

    // Without return_tokens_as_token_ids the keys are text: named, not guessed.
    let mut text = answer.clone();
    text["choices"][0]["logprobs"]["top_logprobs"] = json!([{" a": -1.25}]);
    let err = parse_topk(&text, 1).unwrap_err();
    assert!(err.contains("\" a\" is not \"token_id:N\""), "{err}");
}

#[test]
fn llama_cpp_topk_from_content_ids() {
    let answer = json!({
        "choices": [{"text": ",", "index": 0, "finish_reason": "length", "logprobs": {"content": [{
            "id": 28, "token": ",", "bytes": [44], "logprob": -0.9,
            "top_logprobs": [
                {"id": 28, "token": ",", "bytes": [44], "logprob": -0.9},
                {"id": 282, "token": " I", "bytes": [32, 73], "logprob": -1.7}
            ]
        }]}}],
        "created": 1733460000, "model": "smollm2-f32.gguf", "object": "text_completion",
        "usage": {"completion_tokens": 1, "prompt_tokens": 6, "total_tokens": 7,
                  "prompt_tokens_details": {"cached_tokens": 5}},
        "id": "chatcmpl-x"
    });
    let top = parse_topk(&answer, 2).unwrap();
    assert_eq!(top.tokens, vec![(28, -0.9), (282, -1.7)]);
    assert_eq!(top.cached, 5);

    let mut none = answer.clone();
    none["choices"][0]["logprobs"] = Value::Null;
    let err = parse_topk(&none, 2).unwrap_err();
    assert!(err.contains("no choices[0].logprobs"), "{err}");
    let mut bad = answer;
    bad["choices"][0]["logprobs"]["content"][0]["top_logprobs"][1]["logprob"] = Value::Null;
    assert!(parse_topk(&bad, 2)
        .unwrap_err()
        .contains("bad top_logprobs entry"));
}

/// A vLLM answer to `n: 2, logprobs: 0, return_tokens_as_token_ids`.
fn vllm_chunks() -> Value {
    json!({
        "id": "cmpl-9a2", "object": "text_completion", "created": 1733460000,
        "model": "HuggingFaceTB/SmolLM2-135M",
        "choices": [
            {"index": 1, "text": " it.", "finish_reason": "stop", "stop_reason": null,
             "logprobs": {"text_offset": [0, 3], "token_logprobs": [-0.5, -0.1],
                          "tokens": ["token_id:357", "token_id:0"],
                          "top_logprobs": [{"token_id:357": -0.5}, {"token_id:0": -0.1}]}},
            {"index": 0, "text": " a good", "finish_reason": "length", "stop_reason": null,
             "logprobs": {"text_offset": [0, 2, 7], "token_logprobs": [-1.0, -2.0, -0.3],
                          "tokens": ["token_id:253", "token_id:1123", "token_id:28"],
                          "top_logprobs": [{"token_id:253": -1.0}, {"token_id:1123": -2.0},
                                           {"token_id:28": -0.3}]}}
        ],
        "usage": {"prompt_tokens": 5, "total_tokens": 10, "completion_tokens": 5,
                  "prompt_tokens_details": null}
    })
}

#[test]
fn vllm_chunks_from_token_id_strings_and_token_ids() {
    let indexed = parse_chunks(&vllm_chunks(), 3).unwrap();
    let chunks = in_index_order(2, indexed).unwrap();
    assert_eq!(chunks[0].tokens, vec![253, 1123, 28]);
    assert_eq!(chunks[0].finish, Finish::Length);
    assert_eq!(chunks[1].tokens, vec![357, 0]);
    assert_eq!(chunks[1].finish, Finish::Eos);
    assert_eq!(chunks[1].cached, 0);

    // Newer vLLM with return_token_ids: `token_ids` wins (and no logprobs).
    let mut newer = vllm_chunks();
    for choice in newer["choices"].as_array_mut().unwrap() {
        choice["logprobs"] = Value::Null;
    }
    newer["choices"][0]["token_ids"] = json!([357, 0]);
    newer["choices"][1]["token_ids"] = json!([253, 1123, 28]);
    newer["choices"][0]["prompt_token_ids"] = json!([1, 2, 3, 4, 5]);
    let chunks = in_index_order(2, parse_chunks(&newer, 3).unwrap()).unwrap();
    assert_eq!(chunks[0].tokens, vec![253, 1123, 28]);
    assert_eq!(chunks[1].tokens, vec![357, 0]);
}

#[test]
fn chunk_faults_are_named() {
    // A length stop short of the limit.
    let err = parse_chunks(&vllm_chunks(), 4).unwrap_err();
    assert_eq!(err, "choice 0: 3 tokens for a limit of 4 (Length)");
    // An abort, not a finish.
    let mut abort = vllm_chunks();
    abort["choices"][0]["finish_reason"] = json!("abort");
    let err = parse_chunks(&abort, 3).unwrap_err();
    assert!(err.contains("finish_reason Some(\"abort\")"), "{err}");
    // No ids at all: llama.cpp's logprobs.content is not taken for them.
    let content_only = json!({"choices": [{"index": 0, "finish_reason": "length",
        "logprobs": {"content": [{"id": 5, "logprob": -1.0, "top_logprobs": []}]}}]});
    let err = parse_chunks(&content_only, 1).unwrap_err();
    assert!(err.contains("choice 0 carries no token ids"), "{err}");
    assert!(parse_chunks(&json!({"object": "error"}), 1)
        .unwrap_err()
        .contains("no `choices` array"));
}

#[test]
fn llama_cpp_chunk_from_verbose_tokens() {
    // `verbose: true, return_tokens: true`: one choice, the native result
    // under `__verbose` (its `tokens` keep every sampled id, EOS included).
    let answer = json!({
        "choices": [{"text": " the end", "index": 0, "logprobs": null, "finish_reason": "stop"}],
        "created": 1733460000, "model": "smollm2-f32.gguf", "object": "text_completion",
        "usage": {"completion_tokens": 3, "prompt_tokens": 6, "total_tokens": 9,
                  "prompt_tokens_details": {"cached_tokens": 6}},
        "__verbose": {"index": 0, "content": " the end", "tokens": [260, 1056, 0],
                      "stop_type": "eos", "tokens_cached": 8},
    });
    let chunks = in_index_order(1, parse_chunks(&answer, 4).unwrap()).unwrap();
    assert_eq!(chunks[0].tokens, vec![260, 1056, 0]);
    assert_eq!(chunks[0].finish, Finish::Eos);
    assert_eq!(chunks[0].cached, 6);
}

#[test]
fn token_id_strings() {
    assert_eq!(id_of("token_id:49151"), Ok(49151));
    assert!(id_of("token_id:").is_err());
    assert!(id_of("token_id:-3").is_err());
    assert!(id_of("hello").is_err());
}
