//! Acceptance: ids, token strings and decoded text of the real SmolLM2
//! (GGUF), Gemma 3 (GGUF) and MiniLM (tokenizer.json) tokenizers equal
//! transformers' (`tests/fixtures/reference_ids.json`), as does SmolLM2's
//! rendered chat prompt.

mod common;

use common::{by_name, fixture, ids, strings};
use ivg_tokenize::ChatMessage;

/// Compares every case of one fixture entry and reports all mismatches.
fn check_against_reference(name: &str) {
    check_tokenizer(name, by_name(name));
}

fn check_tokenizer(name: &str, tok: &ivg_tokenize::Tokenizer) {
    let entry = &fixture()["tokenizers"][name];
    assert_eq!(
        tok.vocab_size() as u64,
        entry["vocab_size"].as_u64().unwrap(),
        "{name} vocab_size"
    );
    assert_eq!(
        tok.bos_id().map(u64::from),
        entry["bos_id"].as_u64(),
        "{name} bos"
    );
    assert_eq!(
        tok.eos_ids().first().copied().map(u64::from),
        entry["eos_id"].as_u64(),
        "{name} eos"
    );
    let mut failures = Vec::new();
    let cases = entry["cases"].as_array().unwrap();
    assert!(cases.len() >= 6);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let plain = tok.encode(text, false).unwrap();
        let special = tok.encode(text, true).unwrap();
        let tokens: Vec<String> = plain
            .iter()
            .map(|id| tok.id_to_token(*id).unwrap_or_default())
            .collect();
        let checks = [
            (
                "ids",
                format!("{plain:?}"),
                format!("{:?}", ids(&case["ids"])),
            ),
            (
                "ids_with_special",
                format!("{special:?}"),
                format!("{:?}", ids(&case["ids_with_special"])),
            ),
            (
                "tokens",
                format!("{tokens:?}"),
                format!("{:?}", strings(&case["tokens"])),
            ),
            (
                "decoded",
                format!("{:?}", tok.decode(&plain, false).unwrap()),
                format!("{:?}", case["decoded"].as_str().unwrap()),
            ),
            (
                "decoded_with_special",
                format!("{:?}", tok.decode(&special, false).unwrap()),
                format!("{:?}", case["decoded_with_special"].as_str().unwrap()),
            ),
            (
                "decoded_skip_special",
                format!("{:?}", tok.decode(&special, true).unwrap()),
                format!("{:?}", case["decoded_skip_special"].as_str().unwrap()),
            ),
        ];
        for (what, ours, reference) in checks {
            if ours != reference {
                failures.push(format!(
                    "{name} {what} of {text:?}:\n  ours      {ours}\n  reference {reference}"
                ));
            }
        }
        // token_to_id inverts id_to_token on every id seen.
        for (id, token) in plain.iter().zip(&tokens) {
            if tok.token_to_id(token) != Some(*id) {
                failures.push(format!("{name}: token_to_id({token:?}) != {id}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn smollm2_gguf_matches_transformers() {
    check_against_reference("smollm2");
}

/// A GGUF-built tokenizer saved beside a trained checkpoint (`tokenizer.json`
/// and `tokenizer_config.json`) loads back with the same ids, specials and
/// chat template.
#[test]
fn smollm2_saved_from_gguf_loads_back_identically() {
    let tok = by_name("smollm2");
    let dir = tempfile::tempdir().unwrap();
    tok.save(dir.path()).unwrap();
    let back = ivg_tokenize::Tokenizer::from_file(&dir.path().join("tokenizer.json")).unwrap();
    check_tokenizer("smollm2", &back);
    let messages = [ChatMessage {
        role: "user".into(),
        content: "Hi there".into(),
    }];
    assert_eq!(
        back.apply_chat_template(&messages, true).unwrap(),
        tok.apply_chat_template(&messages, true).unwrap()
    );
}

#[test]
fn gemma3_gguf_matches_transformers() {
    check_against_reference("gemma3");
}

#[test]
fn minilm_tokenizer_json_matches_transformers() {
    check_against_reference("minilm");
}

#[test]
fn smollm2_chat_prompt_matches_transformers() {
    let chat = &fixture()["tokenizers"]["smollm2"]["chat"];
    let messages: Vec<ChatMessage> = serde_json::from_value(chat["messages"].clone()).unwrap();
    let tok = by_name("smollm2");
    assert!(tok.has_chat_template());
    let add_generation_prompt = chat["add_generation_prompt"].as_bool().unwrap();
    let prompt = tok
        .apply_chat_template(&messages, add_generation_prompt)
        .unwrap();
    assert_eq!(prompt, chat["prompt"].as_str().unwrap());
    let prompt_ids = tok.encode(&prompt, false).unwrap();
    assert_eq!(prompt_ids, ids(&chat["ids"]));
    assert_eq!(prompt_ids[..3], [1, 9690, 198]);
    // Without a system message the template inserts SmolLM's default one.
    let user_only = tok.apply_chat_template(&messages[1..], false).unwrap();
    assert!(
        user_only.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"),
        "{user_only}"
    );
    assert!(user_only.ends_with("<|im_end|>\n"), "{user_only}");
}

#[test]
fn gemma3_has_no_template_and_says_so() {
    let tok = by_name("gemma3");
    assert!(!tok.has_chat_template());
    let err = tok
        .apply_chat_template(&[ChatMessage::new("user", "hi")], true)
        .unwrap_err();
    assert!(err.to_string().contains("no chat template"), "{err}");
}
