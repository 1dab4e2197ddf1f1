//! Turns JSONL rows into token ids for the objectives: the prompt through the
//! data template, the response after it (ending with end-of-sequence), and
//! classifier texts with their special tokens. Over-long examples are
//! truncated and counted, so the job can report them; nothing is dropped.

use ivg_tokenize::Tokenizer;

use crate::data::{LabelRow, PairRow, RewardRow, SftRow};
use crate::objective::Example;
use crate::spec::{DataSpec, Truncation};
use crate::TrainError;

/// Tokenizes rows of one data file under one [`DataSpec`].
pub struct Encoder<'a> {
    tokenizer: &'a Tokenizer,
    spec: &'a DataSpec,
    /// The file the rows came from, for error messages.
    source: String,
    /// Examples cut to `max_tokens` so far.
    pub truncated: usize,
}

impl<'a> Encoder<'a> {
    pub fn new(tokenizer: &'a Tokenizer, spec: &'a DataSpec, source: impl Into<String>) -> Self {
        Self {
            tokenizer,
            spec,
            source: source.into(),
            truncated: 0,
        }
    }

    fn err(&self, row: usize, problem: impl std::fmt::Display) -> TrainError {
        TrainError::Batch(format!("{}: row {}: {problem}", self.source, row + 1))
    }

    /// The templated prompt; an empty one (plain text for language modelling)
    /// becomes the tokenizer's bos (or eos) token, so the first text token is
    /// predicted too.
    fn prompt(&self, row: usize, prompt: &str) -> Result<Vec<u32>, TrainError> {
        let text = self.spec.template.replace("{prompt}", prompt);
        let ids = self
            .tokenizer
            .encode(&text, true)
            .map_err(|e| self.err(row, e))?;
        if !ids.is_empty() {
            return Ok(ids);
        }
        let start = self
            .tokenizer
            .bos_id()
            .or_else(|| self.tokenizer.eos_ids().first().copied())
            .ok_or_else(|| {
                self.err(
                    row,
                    "the prompt is empty and the tokenizer has no bos or eos token to start with",
                )
            })?;
        Ok(vec![start])
    }

    fn response(&self, row: usize, response: &str) -> Result<Vec<u32>, TrainError> {
        let mut ids = self
            .tokenizer
            .encode(response, false)
            .map_err(|e| self.err(row, e))?;
        if self.spec.append_eos {
            let eos = self.tokenizer.eos_ids().first().copied().ok_or_else(|| {
                self.err(
                    row,
                    "data.append_eos is set but the tokenizer has no eos token",
                )
            })?;
            ids.push(eos);
        }
        if ids.is_empty() {
            return Err(self.err(row, "field `response` tokenizes to nothing"));
        }
        Ok(ids)
    }

    /// Prompt and response ids, cut to `max_tokens`: the response loses its
    /// end first; a prompt longer than the budget keeps its last tokens.
    pub fn example(
        &mut self,
        row: usize,
        prompt: &str,
        response: &str,
    ) -> Result<Example, TrainError> {
        let mut prompt = self.prompt(row, prompt)?;
        let mut response = self.response(row, response)?;
        let max = self.spec.max_tokens;
        if prompt.len() + response.len() > max {
            self.truncated += 1;
            if prompt.len() >= max {
                prompt.drain(..prompt.len() + 1 - max);
            }
            response.truncate(max - prompt.len());
        }
        Ok(Example { prompt, response })
    }

    pub fn sft(&mut self, rows: &[SftRow]) -> Result<Vec<Example>, TrainError> {
        rows.iter()
            .enumerate()
            .map(|(i, r)| self.example(i, &r.prompt, &r.response))
            .collect()
    }

    /// Chosen and rejected examples, index-aligned.
    pub fn pairs(&mut self, rows: &[PairRow]) -> Result<(Vec<Example>, Vec<Example>), TrainError> {
        let mut chosen = Vec::with_capacity(rows.len());
        let mut rejected = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            chosen.push(self.example(i, &r.prompt, &r.chosen)?);
            rejected.push(self.example(i, &r.prompt, &r.rejected)?);
        }
        Ok((chosen, rejected))
    }

    pub fn rewarded(&mut self, rows: &[RewardRow]) -> Result<(Vec<Example>, Vec<f64>), TrainError> {
        let examples = rows
            .iter()
            .enumerate()
            .map(|(i, r)| self.example(i, &r.prompt, &r.response))
            .collect::<Result<_, _>>()?;
        Ok((examples, rows.iter().map(|r| r.reward).collect()))
    }

    /// Classifier ids with special tokens, truncated per `data.truncation`
    /// (the last token, `[SEP]`, is always kept).
    pub fn texts(&mut self, rows: &[LabelRow]) -> Result<Vec<Vec<u32>>, TrainError> {
        let max = self.spec.max_tokens;
        let mut out = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let ids = self
                .tokenizer
                .encode(&r.text, true)
                .map_err(|e| self.err(i, e))?;
            if ids.is_empty() {
                return Err(self.err(i, "field `text` tokenizes to nothing"));
            }
            if ids.len() <= max {
                out.push(ids);
                continue;
            }
            self.truncated += 1;
            out.push(truncate(&ids, max, self.spec.truncation));
        }
        Ok(out)
    }
}

/// `ids` cut to `max` tokens, keeping the last one (`[SEP]`).
pub(crate) fn truncate(ids: &[u32], max: usize, how: Truncation) -> Vec<u32> {
    let body = &ids[..ids.len() - 1];
    let keep = max - 1;
    let mut out = match how {
        Truncation::Head => body[..keep].to_vec(),
        Truncation::HeadTail => {
            let head = keep.div_ceil(2);
            let tail = keep - head;
            [&body[..head], &body[body.len() - tail..]].concat()
        }
    };
    out.push(ids[ids.len() - 1]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_the_ends_it_promises() {
        let ids: Vec<u32> = (0..10).collect();
        assert_eq!(truncate(&ids, 5, Truncation::Head), vec![0, 1, 2, 3, 9]);
        assert_eq!(truncate(&ids, 5, Truncation::HeadTail), vec![0, 1, 7, 8, 9]);
        assert_eq!(
            truncate(&ids, 6, Truncation::HeadTail),
            vec![0, 1, 2, 7, 8, 9]
        );
    }
}
