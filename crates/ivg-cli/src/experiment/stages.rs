//! The on-disk cache of an experiment's stages. A stage's fingerprint hashes
//! its settings, the job files it reads and its upstream stages'
//! fingerprints; a stage whose `.done` marker holds the same fingerprint is
//! skipped. A stage started under other inputs is cleared before it reruns,
//! so stale outputs never mix with new ones; one interrupted under the same
//! inputs keeps its files, and its own resume logic (training checkpoints,
//! appended sample files) continues where it stopped.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};

const INPUTS: &str = ".inputs";
const DONE: &str = ".done";

/// One stage: its directory and its fingerprint.
pub struct Stage {
    pub name: String,
    pub dir: PathBuf,
    pub fingerprint: String,
}

impl Stage {
    /// `work/name` with the fingerprint of `inputs` (any JSON; upstream
    /// stages enter it through their fingerprints).
    pub fn new(work: &Path, name: &str, inputs: &Value) -> Self {
        let mut hash = Sha256::new();
        hash.update(name.as_bytes());
        hash.update(inputs.to_string().as_bytes());
        let fingerprint = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Self {
            name: name.to_string(),
            dir: work.join(name),
            fingerprint,
        }
    }

    /// Whether the stage finished under these inputs.
    pub fn is_done(&self) -> bool {
        read_marker(&self.dir.join(DONE)).as_deref() == Some(self.fingerprint.as_str())
    }

    /// Prepares the directory for a (re)run: cleared when it was started or
    /// finished under other inputs, kept (to resume) when under these.
    pub fn begin(&self) -> Result<()> {
        let started = read_marker(&self.dir.join(INPUTS));
        if self.dir.exists() && started.as_deref() != Some(self.fingerprint.as_str()) {
            eprintln!(
                "stage {}: inputs changed since it was started, clearing {}",
                self.name,
                self.dir.display()
            );
            std::fs::remove_dir_all(&self.dir)
                .with_context(|| format!("clearing {}", self.dir.display()))?;
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let _ = std::fs::remove_file(self.dir.join(DONE));
        write_marker(&self.dir.join(INPUTS), &self.fingerprint)
    }

    /// Marks the stage finished.
    pub fn finish(&self) -> Result<()> {
        write_marker(&self.dir.join(DONE), &self.fingerprint)
    }

    /// Forgets the stage's outputs (`--redo`).
    pub fn clear(&self) -> Result<()> {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)
                .with_context(|| format!("clearing {}", self.dir.display()))?;
        }
        Ok(())
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

fn read_marker(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Written to a temporary file then renamed, so a kill leaves the old marker
/// or the new one, never half of one.
fn write_marker(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// The text of a file a stage reads as configuration, for its fingerprint.
pub fn file_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stage_reruns_only_when_its_inputs_change() {
        let work = tempfile::tempdir().expect("tmp");
        let a = Stage::new(work.path(), "lm", &json!({"steps": 10}));
        assert!(!a.is_done());
        a.begin().expect("begin");
        std::fs::write(a.path("partial"), "x").expect("write");
        // Interrupted, then restarted under the same inputs: files kept.
        let again = Stage::new(work.path(), "lm", &json!({"steps": 10}));
        again.begin().expect("begin");
        assert!(again.path("partial").exists());
        again.finish().expect("finish");
        assert!(Stage::new(work.path(), "lm", &json!({"steps": 10})).is_done());
        // Other inputs: not done, and its old outputs are cleared.
        let changed = Stage::new(work.path(), "lm", &json!({"steps": 11}));
        assert_ne!(changed.fingerprint, again.fingerprint);
        assert!(!changed.is_done());
        changed.begin().expect("begin");
        assert!(!changed.path("partial").exists());
        // The name is part of the fingerprint.
        assert_ne!(
            Stage::new(work.path(), "sft", &json!({"steps": 10})).fingerprint,
            again.fingerprint
        );
    }
}
