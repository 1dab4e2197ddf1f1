//! Incremental detokenization for streaming generation, after the
//! prefix/read-offset scheme of TGI's `decode_token` and candle's
//! `TokenOutputStream`: decode a short window of recent ids twice (without
//! and with the pending ids) and emit the difference, holding text back
//! while it ends in U+FFFD, i.e. while a UTF-8 character is split across
//! byte-level tokens or `<0x..>` byte-fallback tokens.
//!
//! Decoding a window rather than the whole sequence keeps each step O(window)
//! instead of O(length); the window always starts on a character boundary
//! already emitted, so the pieces concatenate to the full decode for
//! byte-level and SentencePiece/byte-fallback decoders.

use crate::{TokenizeError, Tokenizer};

/// Yields newly completed text as ids arrive; see the module docs.
pub struct StreamingDetokenizer<'a> {
    tokenizer: &'a Tokenizer,
    skip_special_tokens: bool,
    ids: Vec<u32>,
    /// Start of the window decoded for context.
    prefix_offset: usize,
    /// End of the ids whose text has been emitted.
    read_offset: usize,
}

impl<'a> StreamingDetokenizer<'a> {
    pub(crate) fn new(tokenizer: &'a Tokenizer, skip_special_tokens: bool) -> Self {
        Self {
            tokenizer,
            skip_special_tokens,
            ids: Vec::new(),
            prefix_offset: 0,
            read_offset: 0,
        }
    }

    /// Adds one id; returns the text it completes, or `None` when nothing is
    /// complete yet (a partial character, or a skipped special token).
    pub fn push(&mut self, id: u32) -> Result<Option<String>, TokenizeError> {
        self.ids.push(id);
        let (prefix_text, new_text) = self.window_texts()?;
        if new_text.len() > prefix_text.len() && !new_text.ends_with(char::REPLACEMENT_CHARACTER) {
            let emitted = suffix_after(&new_text, &prefix_text);
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            Ok(Some(emitted))
        } else {
            Ok(None)
        }
    }

    /// Emits whatever is still held back (e.g. a trailing incomplete byte
    /// sequence, decoded as U+FFFD); call once after the last id.
    pub fn flush(&mut self) -> Result<Option<String>, TokenizeError> {
        if self.read_offset == self.ids.len() {
            return Ok(None);
        }
        let (prefix_text, new_text) = self.window_texts()?;
        self.prefix_offset = self.read_offset;
        self.read_offset = self.ids.len();
        let emitted = suffix_after(&new_text, &prefix_text);
        Ok((!emitted.is_empty()).then_some(emitted))
    }

    /// All ids pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Text of the window up to the read offset, and of the whole window.
    fn window_texts(&self) -> Result<(String, String), TokenizeError> {
        let skip = self.skip_special_tokens;
        let prefix = self
            .tokenizer
            .decode(&self.ids[self.prefix_offset..self.read_offset], skip)?;
        let full = self
            .tokenizer
            .decode(&self.ids[self.prefix_offset..], skip)?;
        Ok((prefix, full))
    }
}

/// `new` minus its leading `prefix`. Decoders with clean-up rules (WordPiece)
/// can rewrite the end of `prefix` once more ids arrive; then the text past
/// `prefix`'s length (at a char boundary) is the best available answer.
fn suffix_after(new: &str, prefix: &str) -> String {
    if let Some(rest) = new.strip_prefix(prefix) {
        return rest.to_string();
    }
    let mut cut = prefix.len().min(new.len());
    while !new.is_char_boundary(cut) {
        cut += 1;
    }
    new[cut..].to_string()
}

#[cfg(test)]
mod tests {
    use super::suffix_after;

    #[test]
    fn suffix_after_prefix_or_char_boundary() {
        assert_eq!(suffix_after("hello world", "hello"), " world");
        assert_eq!(suffix_after("a's", "a '"), "");
        assert_eq!(suffix_after("éa", "x"), "a");
    }
}
