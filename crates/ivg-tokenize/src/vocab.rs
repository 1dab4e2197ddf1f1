//! Vocabulary compatibility: value guidance adds a guide model's scores to a
//! base model's logits id by id, which is only meaningful when both
//! tokenizers map every id to the same token string. Equal sizes are not
//! enough (two fine-tunes can add different special tokens at the same ids).

use crate::{Tokenizer, VocabMismatch};

/// Checks that `a` and `b` spell every id identically; the error names both
/// models, the first differing id and both strings, or says which
/// vocabulary is longer and what its first extra token is.
pub fn check_same_vocab(
    a_name: &str,
    a: &Tokenizer,
    b_name: &str,
    b: &Tokenizer,
) -> Result<(), VocabMismatch> {
    let (a_len, b_len) = (a.vocab_size(), b.vocab_size());
    for id in 0..a_len.min(b_len) as u32 {
        let (a_token, b_token) = (a.id_to_token(id), b.id_to_token(id));
        if a_token != b_token {
            return Err(VocabMismatch::Token {
                a_name: a_name.to_string(),
                b_name: b_name.to_string(),
                id,
                a_token,
                b_token,
            });
        }
    }
    if a_len == b_len {
        return Ok(());
    }
    let ((longer_name, longer), (shorter_name, shorter_len)) = if a_len > b_len {
        ((a_name, a), (b_name, b_len))
    } else {
        ((b_name, b), (a_name, a_len))
    };
    Err(VocabMismatch::Length {
        longer_name: longer_name.to_string(),
        longer_len: longer.vocab_size(),
        shorter_name: shorter_name.to_string(),
        shorter_len,
        first_extra_token: longer.id_to_token(shorter_len as u32),
    })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    /// A word-level tokenizer over `words` (ids in order) plus added tokens.
    fn tiny(words: &[&str], added: &[(u32, &str)]) -> Tokenizer {
        let vocab: serde_json::Map<String, serde_json::Value> = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_string(), i.into()))
            .collect();
        let added: Vec<_> = added
            .iter()
            .map(|(id, t)| {
                serde_json::json!({"id": id, "content": t, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        let json = serde_json::json!({"version": "1.0", "added_tokens": added,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": words[0]}});
        let inner = tokenizers::Tokenizer::from_str(&json.to_string()).unwrap();
        Tokenizer::assemble(inner, "tiny".into(), None, Vec::new(), None)
    }

    #[test]
    fn detects_one_changed_token_string() {
        let a = tiny(&["<unk>", "a", "b", "c"], &[]);
        check_same_vocab("a", &a, "a2", &tiny(&["<unk>", "a", "b", "c"], &[])).unwrap();
        let err = check_same_vocab("base", &a, "guide", &tiny(&["<unk>", "a", "B", "c"], &[]))
            .unwrap_err();
        let expected = VocabMismatch::Token {
            a_name: "base".into(),
            b_name: "guide".into(),
            id: 2,
            a_token: Some("b".into()),
            b_token: Some("B".into()),
        };
        assert_eq!(err, expected);
        assert_eq!(
            err.to_string(),
            "vocabularies of base and guide differ at id 2: base has \"b\", guide has \"B\""
        );
    }

    #[test]
    fn reports_longer_vocabulary_and_added_tokens() {
        let a = tiny(&["<unk>", "a"], &[]);
        let b = tiny(&["<unk>", "a"], &[(2, "<x>")]);
        assert_eq!(b.vocab_size(), 3);
        let err = check_same_vocab("base", &a, "guide", &b).unwrap_err();
        assert_eq!(
            err.to_string(),
            "vocabulary of guide is longer: 3 ids against 2 in base; first extra id 2 is \"<x>\" in guide"
        );
        // Same size, different added token at the same id.
        let c = tiny(&["<unk>", "a"], &[(2, "<y>")]);
        let err = check_same_vocab("guide", &b, "other", &c).unwrap_err();
        assert!(matches!(err, VocabMismatch::Token { id: 2, .. }), "{err}");
    }
}
