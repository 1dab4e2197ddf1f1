//! Chunk-level scoring across vocabularies (issue 3): a value function whose
//! tokenizer differs from the base model's cannot read the base's token ids, so
//! [`TextLevelValue`] scores at the text level, as the released Weak-to-Strong
//! Search / IVG code does for chunk-level scorers (method.md, "Chunk-level beam
//! search"): it keeps every row's base-token response, and at each chunk
//! boundary decodes it with the base tokenizer, re-tokenizes the text with the
//! scorer's tokenizer and has the wrapped value function score it.
//!
//! Re-tokenizing a longer text can change earlier tokens (a merge across the
//! chunk boundary), and the [`ValueFunction`] contract only lets a row continue
//! when it received a token at every step (a row fed fewer tokens than the
//! others is padded, i.e. its state is spent). Rows re-tokenize to different
//! lengths, so the inner value function is rebuilt at every boundary: its
//! prompts are prefilled once per distinct prompt and forked to the rows, then
//! every row's whole re-tokenized response is fed (one forward per boundary when
//! the inner value function is [`crate::Feed::Chunked`]), which is the cost of
//! the released Python code. Token-wise guidance across vocabularies is
//! impossible, so [`ValueFunction::guidance`] is `None`.

use std::sync::Arc;

use ivg_tokenize::{check_same_vocab, Tokenizer};

use crate::{ValueError, ValueFunction};

/// One decoder row: which prompt it answers and its base-token response.
#[derive(Clone)]
struct Row {
    prompt: usize,
    tokens: Vec<u32>,
}

/// A value function over another vocabulary, fed base-model token ids.
pub struct TextLevelValue {
    name: String,
    inner: Box<dyn ValueFunction>,
    base: Arc<Tokenizer>,
    /// Scorer id appended when a response ends with one of the base's EOS ids
    /// (the EOS itself is a special token and does not survive decoding).
    end_token: Option<u32>,
    prompts: Vec<String>,
    rows: Vec<Row>,
    /// Values of the current rows, until the next observe/reorder/begin.
    cached: Option<Vec<f64>>,
}

impl TextLevelValue {
    /// Wraps `inner`, which must expose its tokenizer (the scorer's vocabulary);
    /// a response that ends with a base EOS is scored with the scorer's first
    /// EOS id appended (see [`Self::with_end_token`]).
    pub fn new(inner: Box<dyn ValueFunction>, base: Arc<Tokenizer>) -> Result<Self, ValueError> {
        let Some(scorer) = inner.tokenizer() else {
            return Err(ValueError::Invalid {
                name: inner.name().to_string(),
                problem: "has no tokenizer, so base-model text cannot be re-tokenized for it"
                    .into(),
            });
        };
        let end_token = scorer.eos_ids().first().copied();
        Ok(Self::assemble(inner, base, end_token))
    }

    fn assemble(
        inner: Box<dyn ValueFunction>,
        base: Arc<Tokenizer>,
        end_token: Option<u32>,
    ) -> Self {
        Self {
            name: format!("{} (text level)", inner.name()),
            inner,
            base,
            end_token,
            prompts: Vec::new(),
            rows: Vec::new(),
            cached: None,
        }
    }

    /// The scorer id that stands for the base's EOS at the end of a finished
    /// response (`None`: score the text alone). A chat-tuned scorer may want
    /// its end-of-turn id rather than its first EOS id.
    pub fn with_end_token(mut self, end_token: Option<u32>) -> Self {
        self.end_token = end_token;
        self
    }

    /// The wrapped value function.
    pub fn inner(&self) -> &dyn ValueFunction {
        self.inner.as_ref()
    }

    fn invalid(&self, problem: String) -> ValueError {
        ValueError::Invalid {
            name: self.name.clone(),
            problem,
        }
    }

    /// The scorer's ids for a base-token response: its decoded text (special
    /// tokens dropped; an unfinished response holds back a trailing split
    /// character, decoded as U+FFFD, as streaming detokenizers do), plus the
    /// end token when the response ended with a base EOS.
    fn retokenize(&self, tokens: &[u32]) -> Result<Vec<u32>, ValueError> {
        let ended = tokens
            .last()
            .is_some_and(|t| self.base.eos_ids().contains(t));
        let decoded = self.base.decode(tokens, true)?;
        let text = if ended {
            decoded.as_str()
        } else {
            decoded.trim_end_matches(char::REPLACEMENT_CHARACTER)
        };
        let scorer = self
            .inner
            .tokenizer()
            .ok_or_else(|| self.invalid("the wrapped value function lost its tokenizer".into()))?;
        let mut ids = if text.is_empty() {
            Vec::new()
        } else {
            scorer.encode(text, false)?
        };
        if let (true, Some(end)) = (ended, self.end_token) {
            ids.push(end);
        }
        Ok(ids)
    }

    /// Drops the prompts no row answers any more, so a long-running batch that
    /// requests keep joining and leaving does not accumulate them.
    fn forget_unused_prompts(&mut self) {
        let mut renumber: Vec<Option<usize>> = vec![None; self.prompts.len()];
        let mut kept = Vec::new();
        for row in &mut self.rows {
            let old = row.prompt;
            row.prompt = match renumber[old] {
                Some(new) => new,
                None => {
                    kept.push(std::mem::take(&mut self.prompts[old]));
                    renumber[old] = Some(kept.len() - 1);
                    kept.len() - 1
                }
            };
        }
        self.prompts = kept;
    }

    /// Starts the inner value function afresh for the current rows: each
    /// distinct prompt is prefilled once and forked to its rows.
    fn restart_inner(&mut self) -> Result<(), ValueError> {
        let mut used: Vec<usize> = Vec::new();
        let mut order = Vec::with_capacity(self.rows.len());
        for row in &self.rows {
            let slot = match used.iter().position(|&p| p == row.prompt) {
                Some(s) => s,
                None => {
                    used.push(row.prompt);
                    used.len() - 1
                }
            };
            order.push(slot);
        }
        let texts: Vec<String> = used.iter().map(|&p| self.prompts[p].clone()).collect();
        self.inner.begin(&texts)?;
        self.inner.reorder(&order)
    }
}

/// Feeds every row its own sequence, one step per position; a row whose
/// sequence is shorter is marked not live (its state is spent, which is fine:
/// the inner value function is rebuilt at the next boundary).
fn feed(inner: &mut dyn ValueFunction, seqs: &[Vec<u32>]) -> Result<(), ValueError> {
    let n = seqs.iter().map(Vec::len).max().unwrap_or(0);
    for k in 0..n {
        let tokens: Vec<u32> = seqs
            .iter()
            .map(|s| s.get(k).or(s.last()).copied().unwrap_or(0))
            .collect();
        let live: Vec<bool> = seqs.iter().map(|s| k < s.len()).collect();
        inner.observe(&tokens, &live)?;
    }
    Ok(())
}

impl ValueFunction for TextLevelValue {
    fn name(&self) -> &str {
        &self.name
    }

    fn begin(&mut self, prompts: &[String]) -> Result<(), ValueError> {
        self.prompts = prompts.to_vec();
        self.rows = (0..prompts.len())
            .map(|prompt| Row {
                prompt,
                tokens: Vec::new(),
            })
            .collect();
        self.cached = None;
        Ok(())
    }

    /// The inner value function is rebuilt at every boundary, so a joining
    /// request only adds its prompt and empty rows; nothing is flushed.
    fn append(&mut self, prompts: &[String]) -> Result<(), ValueError> {
        let first = self.prompts.len();
        self.prompts.extend_from_slice(prompts);
        self.rows
            .extend((first..first + prompts.len()).map(|prompt| Row {
                prompt,
                tokens: Vec::new(),
            }));
        self.cached = None;
        Ok(())
    }

    fn reorder(&mut self, order: &[usize]) -> Result<(), ValueError> {
        if let Some(&bad) = order.iter().find(|&&r| r >= self.rows.len()) {
            return Err(self.invalid(format!(
                "reorder names row {bad}, but there are {} rows",
                self.rows.len()
            )));
        }
        self.rows = order.iter().map(|&r| self.rows[r].clone()).collect();
        self.forget_unused_prompts();
        self.cached = None;
        Ok(())
    }

    fn observe(&mut self, tokens: &[u32], live: &[bool]) -> Result<(), ValueError> {
        if tokens.len() != self.rows.len() || live.len() != self.rows.len() {
            return Err(self.invalid(format!(
                "observe got {} tokens and {} live flags for {} rows",
                tokens.len(),
                live.len(),
                self.rows.len()
            )));
        }
        for ((row, &t), &l) in self.rows.iter_mut().zip(tokens).zip(live) {
            if l {
                row.tokens.push(t);
            }
        }
        self.cached = None;
        Ok(())
    }

    fn values(&mut self) -> Result<Vec<f64>, ValueError> {
        if let Some(v) = &self.cached {
            return Ok(v.clone());
        }
        if self.rows.is_empty() {
            return Ok(Vec::new());
        }
        let seqs: Vec<Vec<u32>> = self
            .rows
            .iter()
            .map(|r| self.retokenize(&r.tokens))
            .collect::<Result<_, _>>()?;
        self.restart_inner()?;
        feed(self.inner.as_mut(), &seqs)?;
        let values = self.inner.values()?;
        if values.len() != self.rows.len() {
            return Err(self.invalid(format!(
                "the wrapped value function gave {} values for {} rows",
                values.len(),
                self.rows.len()
            )));
        }
        self.cached = Some(values.clone());
        Ok(values)
    }

    /// The scorer's vocabulary: the engine compares it with the base's before
    /// token-wise guidance, which is how guidance across vocabularies is refused.
    fn tokenizer(&self) -> Option<&Tokenizer> {
        self.inner.tokenizer()
    }
}

/// Wraps `inner` in a [`TextLevelValue`] when its tokenizer does not spell
/// every id as `base` does, so that chunk-level scoring works across
/// vocabularies without the caller choosing; returns it unchanged when the
/// vocabularies agree or when it has no tokenizer (nothing to compare, so it
/// is taken to read the base's ids, as the engine assumes). Call it once per
/// value function: a wrapper reports the scorer's tokenizer, so wrapping it
/// again would decode scorer ids with the base tokenizer.
pub fn wrap_if_needed(
    inner: Box<dyn ValueFunction>,
    base_tokenizer: Arc<Tokenizer>,
) -> Box<dyn ValueFunction> {
    let end_token = match inner.tokenizer() {
        None => return inner,
        Some(scorer) => {
            if check_same_vocab("base", &base_tokenizer, inner.name(), scorer).is_ok() {
                return inner;
            }
            scorer.eos_ids().first().copied()
        }
    };
    Box::new(TextLevelValue::assemble(inner, base_tokenizer, end_token))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A word-level tokenizer over `words` (ids in order); `words[0]` is its
    /// special end token.
    fn word_tokenizer(words: &[&str]) -> Arc<Tokenizer> {
        let vocab: serde_json::Map<String, serde_json::Value> = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_string(), i.into()))
            .collect();
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": [{"id": 0, "content": words[0], "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true}],
            "normalizer": null, "pre_tokenizer": {"type": "WhitespaceSplit"},
            "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": words[0]}
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, json.to_string()).unwrap();
        let config = serde_json::json!({ "eos_token": words[0] });
        std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
        Arc::new(Tokenizer::from_file(&path).unwrap())
    }

    fn base() -> Arc<Tokenizer> {
        word_tokenizer(&["<eos>", "a", "b", "c", "d"])
    }

    fn scorer() -> Arc<Tokenizer> {
        word_tokenizer(&["<end>", "d", "c", "b", "a"])
    }

    /// A value of a whole (prompt, ids) sequence that any change alters.
    fn score(prompt: &str, ids: &[u32]) -> f64 {
        let s: usize = ids
            .iter()
            .enumerate()
            .map(|(k, &t)| (k + 1) * (t as usize + 1))
            .sum();
        (prompt.len() * 1000 + s) as f64
    }

    /// Records what it is fed and refuses to continue a row that once missed
    /// a token (its state would be spent in a real value function).
    struct Recorder {
        tokenizer: Option<Arc<Tokenizer>>,
        rows: Vec<(String, Vec<u32>, bool)>,
        begins: Arc<AtomicUsize>,
    }

    impl ValueFunction for Recorder {
        fn name(&self) -> &str {
            "recorder"
        }
        fn begin(&mut self, prompts: &[String]) -> Result<(), ValueError> {
            self.begins.fetch_add(1, Ordering::SeqCst);
            self.rows = prompts
                .iter()
                .map(|p| (p.clone(), Vec::new(), false))
                .collect();
            Ok(())
        }
        fn append(&mut self, prompts: &[String]) -> Result<(), ValueError> {
            self.rows
                .extend(prompts.iter().map(|p| (p.clone(), Vec::new(), false)));
            Ok(())
        }
        fn reorder(&mut self, order: &[usize]) -> Result<(), ValueError> {
            self.rows = order.iter().map(|&r| self.rows[r].clone()).collect();
            Ok(())
        }
        fn observe(&mut self, tokens: &[u32], live: &[bool]) -> Result<(), ValueError> {
            for ((row, &t), &l) in self.rows.iter_mut().zip(tokens).zip(live) {
                match (l, row.2) {
                    (true, true) => panic!("a spent row was continued"),
                    (true, false) => row.1.push(t),
                    (false, _) => row.2 = true,
                }
            }
            Ok(())
        }
        fn values(&mut self) -> Result<Vec<f64>, ValueError> {
            Ok(self.rows.iter().map(|(p, ids, _)| score(p, ids)).collect())
        }
        fn tokenizer(&self) -> Option<&Tokenizer> {
            self.tokenizer.as_deref()
        }
    }

    fn recorder(begins: &Arc<AtomicUsize>) -> Box<dyn ValueFunction> {
        Box::new(Recorder {
            tokenizer: Some(scorer()),
            rows: Vec::new(),
            begins: begins.clone(),
        })
    }

    #[test]
    fn rows_are_rescored_as_scorer_text_through_forks_and_ends() {
        let begins = Arc::new(AtomicUsize::new(0));
        let mut v = wrap_if_needed(recorder(&begins), base());
        assert_eq!(v.name(), "recorder (text level)");
        v.begin(&["p".to_string(), "qq".to_string()]).unwrap();
        v.reorder(&[0, 1, 1]).unwrap();
        // Base ids: a=1 b=2 c=3 d=4 <eos>=0; scorer ids: d=1 c=2 b=3 a=4 <end>=0.
        v.observe(&[1, 2, 0], &[true, true, true]).unwrap();
        v.observe(&[3, 4, 0], &[true, true, false]).unwrap();
        let want = [score("p", &[4, 2]), score("qq", &[3, 1]), score("qq", &[0])];
        assert_eq!(v.values().unwrap(), want);
        assert_eq!(v.values().unwrap(), want, "cached");
        assert_eq!(begins.load(Ordering::SeqCst), 1);
        // Drop row 0, keep the ended row, fork row 1 (one copy gets 3 tokens,
        // the other 1: the inner state is rebuilt, never continued).
        v.reorder(&[2, 1, 1]).unwrap();
        v.observe(&[0, 4, 1], &[false, true, true]).unwrap();
        v.observe(&[0, 4, 0], &[false, true, true]).unwrap();
        let want = [
            score("qq", &[0]),
            score("qq", &[3, 1, 1, 1]),
            score("qq", &[3, 1, 4, 0]),
        ];
        assert_eq!(v.values().unwrap(), want);
        assert_eq!(begins.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn bad_calls_are_errors_naming_the_problem() {
        let begins = Arc::new(AtomicUsize::new(0));
        let mut v = TextLevelValue::new(recorder(&begins), base()).unwrap();
        v.begin(&["p".to_string()]).unwrap();
        let err = v.reorder(&[0, 1]).unwrap_err().to_string();
        assert!(err.contains("row 1") && err.contains("1 rows"), "{err}");
        let err = v.observe(&[1, 2], &[true, true]).unwrap_err().to_string();
        assert!(err.contains("2 tokens") && err.contains("1 rows"), "{err}");
        let blind = Recorder {
            tokenizer: None,
            rows: Vec::new(),
            begins,
        };
        let err = TextLevelValue::new(Box::new(blind), base()).err().unwrap();
        assert!(err.to_string().contains("no tokenizer"), "{err}");
    }

    #[test]
    fn same_vocabulary_or_no_tokenizer_is_not_wrapped() {
        let begins = Arc::new(AtomicUsize::new(0));
        let same = Recorder {
            tokenizer: Some(base()),
            rows: Vec::new(),
            begins: begins.clone(),
        };
        assert_eq!(wrap_if_needed(Box::new(same), base()).name(), "recorder");
        let blind = Recorder {
            tokenizer: None,
            rows: Vec::new(),
            begins,
        };
        assert_eq!(wrap_if_needed(Box::new(blind), base()).name(), "recorder");
    }
}
