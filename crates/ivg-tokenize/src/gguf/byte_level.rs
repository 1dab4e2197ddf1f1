//! Byte-level BPE from GGUF `tokenizer.ggml.tokens` + `tokenizer.ggml.merges`
//! (GPT-2 family; SmolLM2). Follows transformers' `byte_level_tokenizer`
//! (`integrations/gguf/gguf_tokenizer_mapping.py`) for the vocabulary, and the
//! model's original `tokenizer.json` for the pre-tokenizer: SmolLM2
//! (`tokenizer.ggml.pre = "smollm"`) splits every digit apart before the
//! byte-level regex. candle's `TokenizerFromGguf` falls back to GPT-2 with a
//! prefix space there, which gives different ids (architecture.md).

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::PreTokenizerWrapper;

use super::meta::Meta;
use super::unsupported;
use crate::TokenizeError;

const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_PRE: &str = "tokenizer.ggml.pre";

/// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes stand for themselves,
/// the other 68 bytes (controls, space, DEL, NBSP block, soft hyphen) are
/// shifted to U+0100..U+0143 in byte order.
pub(super) fn byte_char(byte: u8) -> char {
    let mut shifted = 0u32;
    for b in 0..byte {
        if !is_printable_byte(b) {
            shifted += 1;
        }
    }
    if is_printable_byte(byte) {
        char::from(byte)
    } else {
        // 256 + shifted is at most 256 + 67, always a valid scalar value.
        char::from_u32(256 + shifted).unwrap_or(char::REPLACEMENT_CHARACTER)
    }
}

fn is_printable_byte(b: u8) -> bool {
    matches!(b, 33..=126 | 161..=172 | 174..=255)
}

/// Whether `c` is one of the 256 characters of the byte alphabet.
pub(super) fn is_byte_char(c: char) -> bool {
    let c = c as u32;
    (c < 256 && is_printable_byte(c as u8)) || (256..256 + 68).contains(&c)
}

/// A token as the byte-level model must see it: unchanged when already
/// spelled in the byte alphabet, else its UTF-8 bytes respelled.
fn spell(token: &str, table: &[char; 256]) -> String {
    if token.chars().all(is_byte_char) {
        token.to_string()
    } else {
        token.bytes().map(|b| table[b as usize]).collect()
    }
}

/// The model, pre-tokenizer and decoder (added tokens come later).
pub(super) fn build(
    meta: &Meta<'_>,
    tokens: &[&str],
) -> Result<tokenizers::Tokenizer, TokenizeError> {
    let pre_tokenizer = pre_tokenizer(meta)?;
    let mut table = ['\0'; 256];
    for (b, slot) in table.iter_mut().enumerate() {
        *slot = byte_char(b as u8);
    }
    // Later duplicates win, as in the Python dict transformers builds.
    let mut vocab = Vocab::with_capacity(tokens.len());
    for (id, token) in tokens.iter().enumerate() {
        vocab.insert(spell(token, &table), id as u32);
    }
    let merges = meta
        .strings(KEY_MERGES)?
        .into_iter()
        .enumerate()
        .map(|(i, merge)| {
            merge
                .split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| {
                    meta.bad(
                        KEY_MERGES,
                        format!("entry {i} ({merge:?}) is not two tokens separated by a space"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix(String::new())
        .build()
        .map_err(|e| super::build_error(meta, format!("byte-level BPE from {KEY_MERGES}: {e}")))?;
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer
        .with_pre_tokenizer(Some(pre_tokenizer))
        .with_decoder(Some(ByteLevelDecoder::default()));
    Ok(tokenizer)
}

/// The split the merges were learned with, from `tokenizer.ggml.pre`.
fn pre_tokenizer(meta: &Meta<'_>) -> Result<PreTokenizerWrapper, TokenizeError> {
    let byte_level = ByteLevel::new(false, true, true);
    match meta.opt_string(KEY_PRE)? {
        None | Some("gpt2") => Ok(byte_level.into()),
        Some("smollm") => {
            Ok(Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into())
        }
        Some(other) => Err(unsupported(meta, KEY_PRE, other, "smollm, gpt2")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_matches_gpt2() {
        assert_eq!(byte_char(b'a'), 'a');
        assert_eq!(byte_char(b' '), 'Ġ'); // U+0120
        assert_eq!(byte_char(b'\n'), 'Ċ'); // U+010A
        assert_eq!(byte_char(0), '\u{100}');
        assert_eq!(byte_char(127), '\u{121}');
        assert_eq!(byte_char(173), '\u{143}');
        let all: std::collections::HashSet<char> = (0..=255u8).map(byte_char).collect();
        assert_eq!(all.len(), 256);
        assert!(all.iter().all(|c| is_byte_char(*c)));
        assert!(!is_byte_char('\u{144}') && !is_byte_char(' ') && !is_byte_char('\u{ad}'));
        assert!(is_byte_char('é'));
    }

    #[test]
    fn spell_respells_only_foreign_tokens() {
        let mut table = ['\0'; 256];
        for (b, slot) in table.iter_mut().enumerate() {
            *slot = byte_char(b as u8);
        }
        assert_eq!(spell("Ġhello", &table), "Ġhello");
        assert_eq!(spell("a b", &table), "aĠb");
        assert_eq!(spell("é", &table), "é");
        assert_eq!(spell("日", &table), "æĹ¥");
    }
}
