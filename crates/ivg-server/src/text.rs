//! The text of one choice as tokens arrive: decoded in full each time (so the
//! streamed pieces add up to exactly the non-streamed text), cut at the first
//! stop string (which is not part of the text, as in the OpenAI API), and
//! released only up to where no stop string could still begin and no UTF-8
//! character is still incomplete.

use ivg_tokenize::{TokenizeError, Tokenizer};

pub struct ChoiceText {
    tokens: Vec<u32>,
    stops: Vec<String>,
    /// Bytes a stop string could still reach back into the text.
    hold: usize,
    sent: String,
    stopped: bool,
}

impl ChoiceText {
    pub fn new(stops: Vec<String>) -> Self {
        let hold = stops
            .iter()
            .map(|s| s.len().saturating_sub(1))
            .max()
            .unwrap_or(0);
        Self {
            tokens: Vec::new(),
            stops,
            hold,
            sent: String::new(),
            stopped: false,
        }
    }

    /// Whether a stop string ended the text.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Adds final tokens; returns the text that can be sent now.
    pub fn push(&mut self, tokenizer: &Tokenizer, tokens: &[u32]) -> Result<String, TokenizeError> {
        if self.stopped {
            return Ok(String::new());
        }
        self.tokens.extend_from_slice(tokens);
        let text = self.cut(tokenizer.decode(&self.tokens, true)?);
        let mut safe = if self.stopped {
            text.len()
        } else {
            text.len().saturating_sub(self.hold)
        };
        if !self.stopped && text.ends_with('\u{FFFD}') {
            safe = safe.min(text.len() - '\u{FFFD}'.len_utf8());
        }
        while !text.is_char_boundary(safe) {
            safe -= 1;
        }
        Ok(self.release(&text[..safe]))
    }

    /// The whole text of the finished choice (`tokens`: its output); returns
    /// what was not sent yet.
    pub fn finish(
        &mut self,
        tokenizer: &Tokenizer,
        tokens: &[u32],
    ) -> Result<String, TokenizeError> {
        self.tokens = tokens.to_vec();
        self.stopped = false;
        let text = self.cut(tokenizer.decode(&self.tokens, true)?);
        Ok(self.release(&text))
    }

    /// Everything sent so far (after `finish`: the whole text).
    pub fn text(&self) -> &str {
        &self.sent
    }

    fn cut(&mut self, mut text: String) -> String {
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| text.find(s.as_str()))
            .min()
        {
            text.truncate(at);
            self.stopped = true;
        }
        text
    }

    /// The part of `upto` beyond what was sent. Decoding more tokens can in
    /// rare cases rewrite earlier text (a tokenizer's clean-up); then nothing
    /// more is sent until the text agrees again.
    fn release(&mut self, upto: &str) -> String {
        match upto.strip_prefix(self.sent.as_str()) {
            Some(new) if !new.is_empty() => {
                let new = new.to_string();
                self.sent.push_str(&new);
                new
            }
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word-level test tokenizer, written to a directory of its own
    /// (tests run in parallel).
    fn tok() -> Tokenizer {
        let dir = tempfile::tempdir().expect("tmp");
        let path = ivg_testkit::write_word_tokenizer(dir.path());
        Tokenizer::from_file(&path).expect("tokenizer")
    }

    #[test]
    fn pieces_add_up_and_stop_strings_cut() {
        let t = tok();
        let mut c = ChoiceText::new(vec!["t9 t9".into()]);
        let mut streamed = String::new();
        for id in [5, 6, 7, 9] {
            streamed += &c.push(&t, &[id]).expect("push");
        }
        // "t9" could begin the stop string "t9 t9": held back.
        assert!(!streamed.contains("t9"), "{streamed}");
        streamed += &c.push(&t, &[9, 4]).expect("push");
        assert!(c.stopped());
        streamed += &c.finish(&t, &[5, 6, 7, 9, 9, 4]).expect("finish");
        assert_eq!(streamed, c.text());
        assert_eq!(c.text(), "t5 t6 t7 ");
    }

    #[test]
    fn without_stops_everything_is_sent_at_once() {
        let t = tok();
        let mut c = ChoiceText::new(Vec::new());
        assert_eq!(c.push(&t, &[1, 2]).expect("push"), "t1 t2");
        assert_eq!(c.push(&t, &[3]).expect("push"), " t3");
        assert_eq!(c.finish(&t, &[1, 2, 3]).expect("finish"), "");
        assert_eq!(c.text(), "t1 t2 t3");
    }
}
