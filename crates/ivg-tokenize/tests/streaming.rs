//! The streaming detokenizer on the real tokenizers: the emitted pieces
//! concatenate to the full decode, no piece carries a broken character, and
//! text is held back while a character is split across tokens (byte-level
//! tokens in SmolLM2, `<0x..>` byte-fallback tokens in Gemma 3).

mod common;

use common::{gemma3, minilm, smollm2};
use ivg_tokenize::Tokenizer;

const TEXTS: [&str; 5] = [
    "Emoji: 🙂👍🏽 and a rare one 🫨 here",
    "日本語のテキストと中文字符, crème brûlée",
    "Ǆ𓀀𠜎 byte fallback 🪿🫎",
    "tab\there  double  spaces\n\nnew paragraph 3.14159",
    "<|im_start|>user\nHi<|im_end|><start_of_turn>model\n",
];

/// Streams `ids` and returns the emitted pieces (flush included).
fn stream(tok: &Tokenizer, ids: &[u32], skip_special_tokens: bool) -> Vec<String> {
    let mut detok = tok.detokenizer(skip_special_tokens);
    let mut pieces: Vec<String> = ids
        .iter()
        .filter_map(|id| detok.push(*id).unwrap())
        .collect();
    pieces.extend(detok.flush().unwrap());
    assert_eq!(detok.ids(), ids);
    pieces
}

fn check_streaming(tok: &Tokenizer) {
    for text in TEXTS {
        let ids = tok.encode(text, true).unwrap();
        for skip in [false, true] {
            let pieces = stream(tok, &ids, skip);
            assert_eq!(
                pieces.concat(),
                tok.decode(&ids, skip).unwrap(),
                "{} on {text:?}",
                tok.name()
            );
            for piece in &pieces {
                assert!(
                    !piece.contains(char::REPLACEMENT_CHARACTER),
                    "broken piece {piece:?} in {text:?}"
                );
            }
        }
    }
}

#[test]
fn smollm2_streaming_equals_full_decode() {
    check_streaming(smollm2());
}

#[test]
fn gemma3_streaming_equals_full_decode() {
    check_streaming(gemma3());
}

#[test]
fn minilm_streaming_equals_full_decode() {
    check_streaming(minilm());
}

/// Pushes the ids of `text` one by one and returns, per id, the text emitted.
fn per_id(tok: &Tokenizer, text: &str) -> Vec<(String, Option<String>)> {
    let ids = tok.encode(text, false).unwrap();
    let mut detok = tok.detokenizer(false);
    ids.iter()
        .map(|id| (tok.id_to_token(*id).unwrap(), detok.push(*id).unwrap()))
        .collect()
}

#[test]
fn gemma3_holds_back_byte_fallback_emoji() {
    // 🫨 is not in Gemma's vocabulary: four <0x..> tokens, text on the last.
    let steps = per_id(gemma3(), "a🫨");
    let tokens: Vec<&str> = steps.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tokens, ["a", "<0xF0>", "<0x9F>", "<0xAB>", "<0xA8>"]);
    let emitted: Vec<Option<&str>> = steps.iter().map(|(_, e)| e.as_deref()).collect();
    assert_eq!(emitted, [Some("a"), None, None, None, Some("🫨")]);
}

#[test]
fn smollm2_holds_back_split_byte_level_character() {
    // SmolLM2 spells " 日" as "Ġæ" + "Ĺ" + "¥": one character over three tokens.
    let steps = per_id(smollm2(), "x 日");
    let tokens: Vec<&str> = steps.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tokens, ["x", "Ġæ", "Ĺ", "¥"]);
    let emitted: Vec<Option<&str>> = steps.iter().map(|(_, e)| e.as_deref()).collect();
    assert_eq!(emitted, [Some("x"), None, None, Some(" 日")]);
}
