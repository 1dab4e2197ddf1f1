//! JSONL training data, one object per line, in the formats of issue 4:
//! `{prompt, response}` (SFT), `{prompt, chosen, rejected}` (DPO, reward
//! models), `{prompt, response, reward}` (explicit values), `{text, label}`
//! (classifiers). A bad row is reported with its file, line number and field;
//! nothing is dropped silently.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {problem}")]
    Row {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("{path}: no rows")]
    Empty { path: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftRow {
    pub prompt: String,
    pub response: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairRow {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardRow {
    pub prompt: String,
    pub response: String,
    pub reward: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelRow {
    pub text: String,
    pub label: u32,
}

/// Rows whose values must be checked beyond their JSON types.
pub trait CheckRow {
    /// A problem with this row's values, naming the field.
    fn problem(&self) -> Option<String> {
        None
    }
}

impl CheckRow for SftRow {}
impl CheckRow for PairRow {}
impl CheckRow for LabelRow {}
impl CheckRow for RewardRow {
    fn problem(&self) -> Option<String> {
        (!self.reward.is_finite())
            .then(|| format!("field `reward` must be finite, got {}", self.reward))
    }
}

/// Reads every non-blank line of `path` as a `T`.
pub fn read_jsonl<T: DeserializeOwned + CheckRow>(path: &Path) -> Result<Vec<T>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row_err = |problem: String| DataError::Row {
            path: path.to_path_buf(),
            line: i + 1,
            problem,
        };
        let row: T = serde_json::from_str(line).map_err(|e| row_err(e.to_string()))?;
        if let Some(problem) = row.problem() {
            return Err(row_err(problem));
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(lines: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("data.jsonl");
        std::fs::write(&path, lines).expect("write");
        (dir, path)
    }

    #[test]
    fn reads_rows_and_skips_blank_lines() {
        let (_d, p) = write("{\"prompt\":\"a\",\"chosen\":\"b\",\"rejected\":\"c\"}\n\n{\"prompt\":\"d\",\"chosen\":\"e\",\"rejected\":\"f\"}\n");
        let rows: Vec<PairRow> = read_jsonl(&p).expect("rows");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].rejected, "f");
    }

    #[test]
    fn bad_rows_name_line_and_field() {
        let (_d, p) = write("{\"prompt\":\"a\",\"response\":\"b\",\"reward\":1.5}\n{\"prompt\":\"a\",\"response\":\"b\"}\n");
        let err = read_jsonl::<RewardRow>(&p)
            .expect_err("missing field")
            .to_string();
        assert!(
            err.contains("data.jsonl:2") && err.contains("reward"),
            "{err}"
        );
        let (_d, p) = write("{\"text\":\"x\",\"label\":1,\"extra\":2}\n");
        let err = read_jsonl::<LabelRow>(&p)
            .expect_err("unknown field")
            .to_string();
        assert!(err.contains(":1") && err.contains("extra"), "{err}");
        let (_d, p) = write("{\"prompt\":\"a\",\"response\":\"b\",\"reward\":1e999}\n");
        assert!(read_jsonl::<RewardRow>(&p).is_err());
        let (_d, p) = write("\n\n");
        assert!(read_jsonl::<SftRow>(&p)
            .expect_err("empty")
            .to_string()
            .contains("no rows"));
    }
}
