//! `ivg label`: scores `{prompt, response}` rows with a reward model or a
//! classifier, and turns scored samples into preference pairs (best against
//! worst response of each prompt), the synthetic-preference step of the
//! experiments.

use ivg_models::loader::BertWithHead;
use ivg_models::ScalarLm;
use ivg_tokenize::Tokenizer;

use crate::data::{PairRow, SftRow};
use crate::prep::{truncate, Encoder};
use crate::reward::sequence_rewards;
use crate::spec::{DataSpec, Truncation};
use crate::TrainError;

/// A model that gives a `(prompt, response)` a scalar reward.
pub enum Labeler {
    /// A reward model, fed exactly as `ivg train reward` fed it (`data`:
    /// template, `max_tokens`, `append_eos`); the score at the last token.
    Reward {
        model: ScalarLm,
        tokenizer: Tokenizer,
        data: DataSpec,
    },
    /// A sequence classifier reading `text` (`{prompt}` and `{response}`
    /// replaced); the reward is its score for `label` (a logit margin with two
    /// labels).
    Classifier {
        model: BertWithHead,
        tokenizer: Tokenizer,
        label: usize,
        text: String,
        max_tokens: usize,
        truncation: Truncation,
    },
}

impl Labeler {
    /// One reward per row, computed `batch` rows at a time.
    pub fn score(&self, rows: &[SftRow], batch: usize) -> Result<Vec<f64>, TrainError> {
        let mut out = Vec::with_capacity(rows.len());
        for (k, chunk) in rows.chunks(batch.max(1)).enumerate() {
            let first = k * batch.max(1);
            out.extend(self.score_chunk(chunk, first)?);
        }
        Ok(out)
    }

    fn score_chunk(&self, rows: &[SftRow], first: usize) -> Result<Vec<f64>, TrainError> {
        match self {
            Self::Reward {
                model,
                tokenizer,
                data,
            } => {
                let mut enc = Encoder::new(tokenizer, data, "rows");
                let examples = rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| enc.example(first + i, &r.prompt, &r.response))
                    .collect::<Result<Vec<_>, _>>()?;
                let r = sequence_rewards(model, &examples)?;
                Ok(r.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?)
            }
            Self::Classifier {
                model,
                tokenizer,
                label,
                text,
                max_tokens,
                truncation,
            } => {
                let ids = rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let t = text
                            .replace("{prompt}", &r.prompt)
                            .replace("{response}", &r.response);
                        let ids = tokenizer.encode(&t, true).map_err(|e| {
                            TrainError::Batch(format!("row {}: {e}", first + i + 1))
                        })?;
                        Ok(if ids.len() > *max_tokens {
                            truncate(&ids, *max_tokens, *truncation)
                        } else {
                            ids
                        })
                    })
                    .collect::<Result<Vec<_>, TrainError>>()?;
                Ok(model.label_scores(&ids, *label)?)
            }
        }
    }
}

/// What [`best_worst_pairs`] left out, so a caller can report it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PairStats {
    pub prompts: usize,
    pub pairs: usize,
    /// Prompts with a single response.
    pub single: usize,
    /// Prompts whose best and worst rewards differ by less than the margin.
    pub close: usize,
}

/// For each prompt (in order of first appearance) its best response as
/// `chosen` and its worst as `rejected`, when their rewards differ by at least
/// `min_margin` (ties are never a preference).
pub fn best_worst_pairs(
    rows: &[SftRow],
    rewards: &[f64],
    min_margin: f64,
) -> (Vec<PairRow>, PairStats) {
    let mut order: Vec<&str> = Vec::new();
    let mut groups: std::collections::HashMap<&str, Vec<usize>> = std::collections::HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        let g = groups.entry(r.prompt.as_str()).or_default();
        if g.is_empty() {
            order.push(r.prompt.as_str());
        }
        g.push(i);
    }
    let mut stats = PairStats {
        prompts: order.len(),
        ..PairStats::default()
    };
    let mut pairs = Vec::new();
    for prompt in order {
        let g = &groups[prompt];
        if g.len() < 2 {
            stats.single += 1;
            continue;
        }
        let by = |a: &&usize, b: &&usize| rewards[**a].total_cmp(&rewards[**b]);
        let (Some(&best), Some(&worst)) = (g.iter().max_by(by), g.iter().min_by(by)) else {
            continue;
        };
        let margin = rewards[best] - rewards[worst];
        if margin <= 0.0 || margin < min_margin {
            stats.close += 1;
            continue;
        }
        pairs.push(PairRow {
            prompt: prompt.to_string(),
            chosen: rows[best].response.clone(),
            rejected: rows[worst].response.clone(),
        });
    }
    stats.pairs = pairs.len();
    (pairs, stats)
}

/// Rows `2i` and `2i + 1` as one pair each (they must share their prompt),
/// the better-scored one chosen: pairs of independent texts under one prompt,
/// e.g. two reviews labelled by a classifier. Pairs closer than `min_margin`
/// are skipped and counted.
pub fn adjacent_pairs(
    rows: &[SftRow],
    rewards: &[f64],
    min_margin: f64,
) -> Result<(Vec<PairRow>, PairStats), TrainError> {
    if !rows.len().is_multiple_of(2) {
        return Err(TrainError::Batch(format!(
            "adjacent pairing needs an even number of rows, got {}",
            rows.len()
        )));
    }
    let mut stats = PairStats {
        prompts: rows.len() / 2,
        ..PairStats::default()
    };
    let mut pairs = Vec::new();
    for i in (0..rows.len()).step_by(2) {
        let (a, b) = (&rows[i], &rows[i + 1]);
        if a.prompt != b.prompt {
            return Err(TrainError::Batch(format!(
                "rows {} and {} are paired but have different prompts",
                i + 1,
                i + 2
            )));
        }
        let margin = (rewards[i] - rewards[i + 1]).abs();
        if margin == 0.0 || margin < min_margin {
            stats.close += 1;
            continue;
        }
        let (chosen, rejected) = if rewards[i] > rewards[i + 1] {
            (a, b)
        } else {
            (b, a)
        };
        pairs.push(PairRow {
            prompt: a.prompt.clone(),
            chosen: chosen.response.clone(),
            rejected: rejected.response.clone(),
        });
    }
    stats.pairs = pairs.len();
    Ok((pairs, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(p: &str, r: &str) -> SftRow {
        SftRow {
            prompt: p.into(),
            response: r.into(),
        }
    }

    #[test]
    fn pairs_take_best_and_worst_and_skip_ties() {
        let rows = [
            row("a", "x"),
            row("b", "y"),
            row("a", "z"),
            row("a", "w"),
            row("c", "u"),
            row("c", "v"),
        ];
        let rewards = [0.5, 1.0, 2.0, -1.0, 0.3, 0.3];
        let (pairs, stats) = best_worst_pairs(&rows, &rewards, 0.0);
        assert_eq!(
            pairs,
            vec![PairRow {
                prompt: "a".into(),
                chosen: "z".into(),
                rejected: "w".into()
            }]
        );
        assert_eq!(
            stats,
            PairStats {
                prompts: 3,
                pairs: 1,
                single: 1,
                close: 1
            }
        );
        let (pairs, stats) = best_worst_pairs(&rows, &rewards, 3.5);
        assert!(pairs.is_empty() && stats.close == 2);
    }

    #[test]
    fn adjacent_pairs_order_each_couple() {
        let rows = [
            row("", "a"),
            row("", "b"),
            row("", "c"),
            row("", "d"),
            row("", "e"),
            row("", "f"),
        ];
        let (pairs, stats) =
            adjacent_pairs(&rows, &[1.0, 2.0, 0.5, -0.5, 1.0, 1.0], 0.0).expect("pairs");
        let got: Vec<(&str, &str)> = pairs
            .iter()
            .map(|p| (p.chosen.as_str(), p.rejected.as_str()))
            .collect();
        assert_eq!(got, vec![("b", "a"), ("c", "d")]);
        assert_eq!((stats.pairs, stats.close), (2, 1));
        assert!(adjacent_pairs(&rows[..3], &[0.0; 3], 0.0).is_err());
        let mixed = [row("x", "a"), row("y", "b")];
        assert!(adjacent_pairs(&mixed, &[0.0, 1.0], 0.0)
            .expect_err("prompts")
            .to_string()
            .contains("rows 1 and 2"));
    }
}
