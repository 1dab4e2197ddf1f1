//! Gemma's SentencePiece vocabulary as a byte-fallback BPE, rebuilt from GGUF
//! `tokenizer.ggml.tokens` the way transformers does (`gemma_tokenizer` and
//! `generate_merges` in transformers 5.x, `GemmaTokenizer` for the pipeline):
//!
//! 1. Tokens made only of whitespace that contain a space (`"  "`) are stored
//!    with real spaces but looked up as `▁`: they are respelled `▁` x length.
//! 2. The file has no merges, so every token is cut into all its
//!    (left, right) pairs of existing tokens; merges are ranked by the
//!    token's position in the file (earlier = higher priority; Gemma's scores
//!    do not follow its merge order), then by longer left piece first.
//! 3. Normalizer `Replace(" ", "▁")` (no prefix), pre-tokenizer
//!    `Split(" ", merged_with_previous)`, BPE with `<unk>`, `fuse_unk` and
//!    byte fallback (`<0x..>` tokens), decoder
//!    `Replace("▁", " ") + ByteFallback + Fuse`.

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{DecoderWrapper, SplitDelimiterBehavior};

use super::build_error;
use super::meta::Meta;
use crate::TokenizeError;

/// SentencePiece's word-boundary marker (U+2581).
const SPACE_MARK: &str = "\u{2581}";

/// Python's `str.isspace`: Unicode White_Space plus the information
/// separators U+001C..U+001F (bidi class B/S), which Rust leaves out.
fn python_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Step 1: `"  "` -> `"▁▁"`; every other token unchanged.
fn respell(token: &str) -> String {
    if token.contains(' ') && token.chars().all(python_isspace) {
        SPACE_MARK.repeat(token.chars().count())
    } else {
        token.to_string()
    }
}

/// Step 2: merges implied by the vocabulary, best first. `vocab` maps each
/// spelling to its last position, as a Python dict built from the list does.
fn implied_merges(spelled: &[String], vocab: &Vocab) -> Vec<(String, String)> {
    let mut merges = Vec::new();
    for (index, token) in spelled.iter().enumerate() {
        // A duplicated spelling ranks at its last position only.
        if vocab.get(token) != Some(&(index as u32)) {
            continue;
        }
        // Char boundaries strictly inside the token, longest left piece first.
        let cuts = token
            .char_indices()
            .map(|(i, _)| i)
            .filter(|&i| i > 0)
            .rev();
        for cut in cuts {
            let (left, right) = token.split_at(cut);
            if vocab.contains_key(left) && vocab.contains_key(right) {
                merges.push((left.to_string(), right.to_string()));
            }
        }
    }
    merges
}

/// Model, normalizer, pre-tokenizer and decoder (added tokens come later).
/// `unk` is the unknown token's string (`<unk>` for Gemma).
pub(super) fn build_gemma(
    meta: &Meta<'_>,
    tokens: &[&str],
    unk: &str,
) -> Result<tokenizers::Tokenizer, TokenizeError> {
    let spelled: Vec<String> = tokens.iter().map(|t| respell(t)).collect();
    let mut vocab = Vocab::with_capacity(spelled.len());
    for (id, token) in spelled.iter().enumerate() {
        vocab.insert(token.clone(), id as u32);
    }
    let merges = implied_merges(&spelled, &vocab);
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .unk_token(unk.to_string())
        .fuse_unk(true)
        .byte_fallback(true)
        .build()
        .map_err(|e| {
            build_error(
                meta,
                format!("SentencePiece BPE from tokenizer.ggml.tokens: {e}"),
            )
        })?;
    let normalizer = Replace::new(" ", SPACE_MARK)
        .map_err(|e| build_error(meta, format!("space normalizer: {e}")))?;
    let split = Split::new(
        SplitPattern::String(" ".into()),
        SplitDelimiterBehavior::MergedWithPrevious,
        false,
    )
    .map_err(|e| build_error(meta, format!("space split: {e}")))?;
    let space = tokenizers::decoders::DecoderWrapper::Replace(
        Replace::new(SPACE_MARK, " ")
            .map_err(|e| build_error(meta, format!("space decoder: {e}")))?,
    );
    let decoder = DecoderSequence::new(vec![
        space,
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ]);
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer
        .with_normalizer(Some(normalizer))
        .map_err(|e| build_error(meta, format!("space normalizer: {e}")))?
        .with_pre_tokenizer(Some(split))
        .with_decoder(Some(decoder));
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respell_only_space_runs() {
        assert_eq!(respell("  "), "▁▁");
        assert_eq!(respell(" \t"), "▁▁");
        assert_eq!(respell("\n\n"), "\n\n");
        assert_eq!(respell(" a"), " a");
        assert_eq!(respell("▁a"), "▁a");
        assert!(python_isspace('\u{1f}') && !'\u{1f}'.is_whitespace());
    }

    #[test]
    fn merges_follow_file_order_then_longer_left_piece() {
        // "abc" can be cut as "ab"+"c" and "a"+"bc"; the longer left piece
        // comes first. "ab" precedes "bc" and "abc" in the file, so its merge
        // ranks first; "<b>" has no cut into two tokens.
        let spelled: Vec<String> = ["a", "b", "c", "<b>", "ab", "bc", "abc"]
            .map(String::from)
            .to_vec();
        let vocab: Vocab = spelled.iter().cloned().zip(0..).collect();
        let merges = implied_merges(&spelled, &vocab);
        let expected = [("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc")];
        assert_eq!(
            merges,
            expected.map(|(l, r)| (l.to_string(), r.to_string()))
        );
    }

    #[test]
    fn duplicated_spelling_ranks_at_last_position() {
        let spelled: Vec<String> = ["a", "b", "ab", "c", "ab"].map(String::from).to_vec();
        let mut vocab = Vocab::new();
        for (i, t) in spelled.iter().enumerate() {
            vocab.insert(t.clone(), i as u32);
        }
        assert_eq!(
            implied_merges(&spelled, &vocab),
            vec![("a".to_string(), "b".to_string())]
        );
        assert_eq!(vocab["ab"], 4);
    }
}
