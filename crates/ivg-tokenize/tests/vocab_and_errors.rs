//! Vocabulary compatibility on the real tokenizers (a single changed token
//! string is found and reported by id), and load errors that name the file
//! and the field.

mod common;

use std::path::{Path, PathBuf};

use common::{gemma3, minilm, minilm_json, smollm2};
use ivg_tokenize::{check_same_vocab, TokenizeError, Tokenizer, VocabMismatch};

/// A copy of MiniLM's tokenizer.json, edited by `edit`, in a temp dir.
fn edited_minilm(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(minilm_json()).unwrap()).unwrap();
    edit(&mut json);
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
    path
}

#[test]
fn same_tokenizer_passes() {
    check_same_vocab("smollm2", smollm2(), "smollm2-again", smollm2()).unwrap();
    check_same_vocab("minilm", minilm(), "minilm-again", minilm()).unwrap();
}

#[test]
fn different_models_differ_at_id_zero() {
    let err = check_same_vocab("SmolLM2", smollm2(), "Gemma3", gemma3()).unwrap_err();
    assert_eq!(
        err,
        VocabMismatch::Token {
            a_name: "SmolLM2".into(),
            b_name: "Gemma3".into(),
            id: 0,
            a_token: Some("<|endoftext|>".into()),
            b_token: Some("<pad>".into()),
        }
    );
}

#[test]
fn one_renamed_token_is_reported_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited_minilm(dir.path(), |json| {
        let vocab = json["model"]["vocab"].as_object_mut().unwrap();
        let id = vocab.remove("paris").unwrap();
        vocab.insert("pariz".into(), id);
    });
    let edited = Tokenizer::from_file(&path).unwrap();
    assert_eq!(edited.vocab_size(), minilm().vocab_size());
    let id = minilm().token_to_id("paris").unwrap();
    let err = check_same_vocab("minilm", minilm(), "minilm-edited", &edited).unwrap_err();
    assert_eq!(
        err,
        VocabMismatch::Token {
            a_name: "minilm".into(),
            b_name: "minilm-edited".into(),
            id,
            a_token: Some("paris".into()),
            b_token: Some("pariz".into()),
        }
    );
    let msg = err.to_string();
    for part in [
        "minilm",
        "minilm-edited",
        &id.to_string(),
        "\"paris\"",
        "\"pariz\"",
    ] {
        assert!(msg.contains(part), "{msg:?} lacks {part:?}");
    }
}

#[test]
fn longer_vocabulary_is_reported_with_first_extra_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited_minilm(dir.path(), |json| {
        let added = json["added_tokens"].as_array_mut().unwrap();
        added.push(
            serde_json::json!({"id": 30522, "content": "<guide>", "single_word": false,
            "lstrip": false, "rstrip": false, "normalized": false, "special": true}),
        );
    });
    let longer = Tokenizer::from_file(&path).unwrap();
    assert_eq!(longer.vocab_size(), 30523);
    let err = check_same_vocab("base", minilm(), "guide", &longer).unwrap_err();
    assert_eq!(
        err,
        VocabMismatch::Length {
            longer_name: "guide".into(),
            longer_len: 30523,
            shorter_name: "base".into(),
            shorter_len: 30522,
            first_extra_token: Some("<guide>".into()),
        }
    );
    assert!(err.to_string().contains("<guide>"), "{err}");
}

#[test]
fn malformed_tokenizer_json_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, r#"{"model": {"type": "BPE", "vocab": 3}}"#).unwrap();
    let err = Tokenizer::from_file(&path).unwrap_err();
    assert!(
        matches!(err, TokenizeError::TokenizerFile { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    let missing = dir.path().join("absent/tokenizer.json");
    let err = Tokenizer::from_file(&missing).unwrap_err();
    assert!(
        matches!(err, TokenizeError::Io { .. })
            && err.to_string().contains("absent/tokenizer.json"),
        "{err}"
    );
}

#[test]
fn tokenizer_config_is_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited_minilm(dir.path(), |_| {});
    let config = dir.path().join("tokenizer_config.json");
    std::fs::write(&config, r#"{"bos_token": {"content": "[CLS]"}, "eos_token": "[SEP]", "chat_template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}{{ eos_token }}"}"#).unwrap();
    let tok = Tokenizer::from_file(&path).unwrap();
    assert_eq!((tok.bos_id(), tok.eos_ids()), (Some(101), &[102][..]));
    let prompt = tok
        .apply_chat_template(&[ivg_tokenize::ChatMessage::new("user", "hi")], false)
        .unwrap();
    assert_eq!(prompt, "[CLS]hi[SEP]");
    std::fs::write(&config, r#"{"eos_token": "<not-a-token>"}"#).unwrap();
    let err = Tokenizer::from_file(&path).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("tokenizer_config.json")
            && msg.contains("eos_token")
            && msg.contains("<not-a-token>"),
        "{msg}"
    );
    std::fs::write(&config, "{").unwrap();
    let err = Tokenizer::from_file(&path).unwrap_err();
    assert!(
        matches!(err, TokenizeError::ConfigJson { .. })
            && err.to_string().contains("tokenizer_config.json"),
        "{err}"
    );
}
