//! Unit tests on tiny synthetic GGUF vocabularies: exact ids for each
//! pipeline stage, streaming over split characters, and errors naming the
//! file and key. The real SmolLM2/Gemma files are checked against
//! transformers in `tests/reference_ids.rs`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value, VersionedMagic};

use super::byte_level::byte_char;
use crate::{TokenizeError, Tokenizer};

const PATH: &str = "/models/tiny.gguf";

fn content(entries: Vec<(&str, Value)>) -> Content {
    Content {
        magic: VersionedMagic::GgufV3,
        metadata: entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<HashMap<_, _>>(),
        tensor_infos: HashMap::new(),
        tensor_data_offset: 0,
    }
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| Value::String(s.clone())).collect())
}

fn types(items: &[i32]) -> Value {
    Value::Array(items.iter().map(|t| Value::I32(*t)).collect())
}

/// Gemma-like: 5 control tokens, 256 byte tokens (ids 5..=260), then
/// `▁`=261 `a`=262 `b`=263 `ab`=264 `▁a`=265 `\n\n`=266 (user-defined)
/// `  `=267 (user-defined, respelled `▁▁`).
fn gemma_entries() -> Vec<(&'static str, Value)> {
    let mut tokens: Vec<String> = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>"]
        .map(String::from)
        .to_vec();
    let mut kinds = vec![3; 5];
    tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    kinds.extend([6; 256]);
    tokens.extend(["▁", "a", "b", "ab", "▁a", "\n\n", "  "].map(String::from));
    kinds.extend([1, 1, 1, 1, 1, 4, 4]);
    vec![
        ("general.architecture", Value::String("gemma3".into())),
        ("tokenizer.ggml.model", Value::String("llama".into())),
        ("tokenizer.ggml.tokens", strings(&tokens)),
        ("tokenizer.ggml.token_type", types(&kinds)),
        ("tokenizer.ggml.bos_token_id", Value::U32(2)),
        ("tokenizer.ggml.eos_token_id", Value::U32(1)),
        ("tokenizer.ggml.unknown_token_id", Value::U32(3)),
        ("tokenizer.ggml.padding_token_id", Value::U32(0)),
    ]
}

/// SmolLM2-like: 3 control tokens, a control token outside the byte
/// alphabet (a llama.cpp mislabel, id 3), the 256 byte characters
/// (ids 4..=259), then `Ġa`=260 `12`=261, merges `Ġ a` and `1 2`.
fn byte_level_entries(pre: &str) -> Vec<(&'static str, Value)> {
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|日|>"]
        .map(String::from)
        .to_vec();
    let mut kinds = vec![3; 4];
    tokens.extend((0..=255u8).map(|b| byte_char(b).to_string()));
    kinds.extend([1; 256]);
    tokens.extend(["Ġa", "12"].map(String::from));
    kinds.extend([1, 1]);
    vec![
        ("general.architecture", Value::String("llama".into())),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String(pre.into())),
        ("tokenizer.ggml.tokens", strings(&tokens)),
        ("tokenizer.ggml.token_type", types(&kinds)),
        (
            "tokenizer.ggml.merges",
            strings(&["Ġ a".to_string(), "1 2".to_string()]),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
        (
            "tokenizer.chat_template",
            Value::String("{{ messages[0]['content'] }}".into()),
        ),
    ]
}

fn build(entries: Vec<(&'static str, Value)>) -> Result<Tokenizer, TokenizeError> {
    Tokenizer::from_gguf(&content(entries), Path::new(PATH))
}

fn byte_id(b: u8) -> u32 {
    5 + b as u32
}

#[test]
fn gemma_pipeline_ids() {
    let tok = build(gemma_entries()).unwrap();
    assert_eq!(tok.vocab_size(), 268);
    assert_eq!((tok.bos_id(), tok.eos_ids()), (Some(2), &[1][..]));
    assert_eq!(tok.encode("ab a", false).unwrap(), [264, 265]);
    assert_eq!(tok.encode("ab a", true).unwrap(), [2, 264, 265]);
    assert_eq!(tok.encode("a  b", false).unwrap(), [262, 267, 263]);
    assert_eq!(tok.encode("a\n\nb", false).unwrap(), [262, 266, 263]);
    assert_eq!(
        tok.encode("<start_of_turn>x", false).unwrap(),
        [4, byte_id(b'x')]
    );
    let emoji: Vec<u32> = "🙂".bytes().map(byte_id).collect();
    assert_eq!(tok.encode("🙂", false).unwrap(), emoji);
    assert_eq!(tok.id_to_token(267).as_deref(), Some("▁▁"));
    assert_eq!(
        tok.decode(&[2, 264, 265, 267], false).unwrap(),
        "<bos>ab a  "
    );
    assert_eq!(tok.decode(&[2, 264, 265], true).unwrap(), "ab a");
    assert_eq!(tok.decode(&emoji, false).unwrap(), "🙂");
    assert!(!tok.has_chat_template());
}

#[test]
fn gemma_streaming_holds_partial_byte_fallback() {
    let tok = build(gemma_entries()).unwrap();
    let ids = tok.encode("a🙂b", false).unwrap();
    assert_eq!(ids.len(), 6);
    let mut stream = tok.detokenizer(false);
    let pieces: Vec<Option<String>> = ids.iter().map(|id| stream.push(*id).unwrap()).collect();
    let expected =
        [Some("a"), None, None, None, Some("🙂"), Some("b")].map(|p| p.map(String::from));
    assert_eq!(pieces, expected);
    assert_eq!(stream.flush().unwrap(), None);
    // An unfinished character is released by flush, as the full decode shows it.
    let mut stream = tok.detokenizer(false);
    assert_eq!(stream.push(byte_id(0xF0)).unwrap(), None);
    assert_eq!(
        stream.flush().unwrap(),
        Some(tok.decode(&[byte_id(0xF0)], false).unwrap())
    );
}

#[test]
fn byte_level_pipeline_ids() {
    let tok = build(byte_level_entries("smollm")).unwrap();
    let id = |c: char| 4 + (0..=255u8).position(|b| byte_char(b) == c).unwrap() as u32;
    assert_eq!(tok.encode("a a", true).unwrap(), [id('a'), 260]);
    // Digits are split before the merges apply, so `1 2` never fires.
    assert_eq!(tok.encode("12", false).unwrap(), [id('1'), id('2')]);
    assert_eq!(tok.encode("<|im_start|>a", false).unwrap(), [1, id('a')]);
    // The mislabelled control token is not matched whole.
    assert!(!tok.encode("<|日|>", false).unwrap().contains(&3));
    assert_eq!(tok.decode(&[1, id('a'), 260], true).unwrap(), "a a");
    assert_eq!((tok.bos_id(), tok.eos_ids()), (Some(1), &[2][..]));
    let msgs = [crate::ChatMessage::new("user", "hey")];
    assert_eq!(tok.apply_chat_template(&msgs, false).unwrap(), "hey");
    // Without "smollm" the GPT-2 split keeps digits together and `1 2` merges.
    let gpt2 = build(byte_level_entries("gpt2")).unwrap();
    assert_eq!(gpt2.encode("12", false).unwrap(), [261]);
}

#[test]
fn byte_level_streaming_holds_split_utf8() {
    let tok = build(byte_level_entries("smollm")).unwrap();
    let ids = tok.encode("é!", false).unwrap();
    assert_eq!(ids.len(), 3);
    let mut stream = tok.detokenizer(true);
    assert_eq!(stream.push(ids[0]).unwrap(), None);
    assert_eq!(stream.push(ids[1]).unwrap().as_deref(), Some("é"));
    assert_eq!(stream.push(ids[2]).unwrap().as_deref(), Some("!"));
}

fn without(mut entries: Vec<(&'static str, Value)>, key: &str) -> Vec<(&'static str, Value)> {
    entries.retain(|(k, _)| *k != key);
    entries
}

fn replaced(
    mut entries: Vec<(&'static str, Value)>,
    key: &'static str,
    value: Value,
) -> Vec<(&'static str, Value)> {
    entries.retain(|(k, _)| *k != key);
    entries.push((key, value));
    entries
}

fn assert_names(err: TokenizeError, parts: &[&str]) {
    let msg = err.to_string();
    for part in parts {
        assert!(msg.contains(part), "{msg:?} should mention {part:?}");
    }
}

#[test]
fn missing_keys_name_file_and_key() {
    for key in [
        "tokenizer.ggml.model",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges",
    ] {
        let err = build(without(byte_level_entries("smollm"), key)).unwrap_err();
        assert!(matches!(err, TokenizeError::MissingGgufKey { .. }), "{err}");
        assert_names(err, &[PATH, key, "missing"]);
    }
    let err = build(without(gemma_entries(), "general.architecture")).unwrap_err();
    assert_names(err, &[PATH, "general.architecture"]);
}

#[test]
fn bad_values_name_file_key_and_value() {
    let err = build(replaced(
        gemma_entries(),
        "tokenizer.ggml.bos_token_id",
        Value::U32(999),
    ))
    .unwrap_err();
    assert_names(err, &[PATH, "tokenizer.ggml.bos_token_id", "999", "268"]);
    let err = build(replaced(
        gemma_entries(),
        "tokenizer.ggml.token_type",
        types(&[1, 1]),
    ))
    .unwrap_err();
    assert_names(err, &[PATH, "tokenizer.ggml.token_type", "2 entries"]);
    let err = build(replaced(
        gemma_entries(),
        "tokenizer.ggml.tokens",
        Value::U32(1),
    ))
    .unwrap_err();
    assert_names(err, &[PATH, "tokenizer.ggml.tokens", "expected an array"]);
    let merges = strings(&["nospace".to_string()]);
    let err = build(replaced(
        byte_level_entries("smollm"),
        "tokenizer.ggml.merges",
        merges,
    ))
    .unwrap_err();
    assert_names(err, &[PATH, "tokenizer.ggml.merges", "nospace"]);
}

#[test]
fn unsupported_tokenizers_are_refused() {
    let err = build(byte_level_entries("llama-bpe")).unwrap_err();
    assert_names(err, &[PATH, "tokenizer.ggml.pre", "llama-bpe"]);
    let err = build(replaced(
        gemma_entries(),
        "general.architecture",
        Value::String("llama".into()),
    ))
    .unwrap_err();
    assert_names(err, &[PATH, "general.architecture", "\"llama\""]);
    let err = build(replaced(
        gemma_entries(),
        "tokenizer.ggml.model",
        Value::String("t5".into()),
    ))
    .unwrap_err();
    assert_names(err, &[PATH, "tokenizer.ggml.model", "t5"]);
}
