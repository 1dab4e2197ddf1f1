//! The on-disk cache of an experiment's stages. A stage's fingerprint hashes
//! its settings, the job files it reads and its upstream stages'
//! fingerprints; a stage whose `.done` marker holds the same fingerprint is
//! skipped. A stage started under other inputs is cleared before it reruns,
//! so stale outputs never mix with new ones; one interrupted under the same
//! inputs keeps its files, and its own resume logic (training checkpoints,
//! appended sample files) continues where it stopped.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};

const INPUTS: &str = ".inputs";
const DONE: &str = ".done";
/// The git revision of the code that finished the stage.
const REVISION: &str = ".revision";

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

    /// `cached`, `started` (resumes), `stale` (made under other inputs, will
    /// be cleared) or `to run`.
    pub fn status(&self) -> &'static str {
        if self.is_done() {
            return "cached";
        }
        match read_marker(&self.dir.join(INPUTS)) {
            Some(f) if f == self.fingerprint => "started",
            Some(_) => "stale",
            None if self.dir.exists() => "foreign",
            None => "to run",
        }
    }

    /// The revision recorded when the stage finished.
    pub fn revision(&self) -> Option<String> {
        read_marker(&self.dir.join(REVISION))
    }

    /// Prepares the directory for a (re)run: cleared when it was started or
    /// finished under other inputs, kept (to resume) when under these.
    pub fn begin(&self) -> Result<()> {
        let started = read_marker(&self.dir.join(INPUTS));
        if started.is_none() && is_nonempty_dir(&self.dir) {
            bail!(
                "{} exists but was not made by `ivg experiment` (no {INPUTS} marker): \
                 move it away or choose another work_dir",
                self.dir.display()
            );
        }
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

    /// Marks the stage finished by the code at `revision`.
    pub fn finish(&self, revision: &str) -> Result<()> {
        write_marker(&self.dir.join(REVISION), revision)?;
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

fn is_nonempty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

/// Holds `work_dir/.lock` (with this process's id) while a run works there,
/// so two runs never append to the same files; a lock whose process is gone
/// (a killed run) is taken over.
pub struct WorkLock {
    path: PathBuf,
}

impl WorkLock {
    pub fn take(work: &Path) -> Result<Self> {
        std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
        let path = work.join(".lock");
        if let Some(pid) = read_marker(&path) {
            if pid != std::process::id().to_string() && Path::new("/proc").join(&pid).exists() {
                bail!(
                    "another `ivg experiment run` (pid {pid}) is working in {}; \
                     wait for it or remove {} if that process is not ivg",
                    work.display(),
                    path.display()
                );
            }
        }
        write_marker(&path, &std::process::id().to_string())?;
        Ok(Self { path })
    }
}

impl Drop for WorkLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
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
        again.finish("abc").expect("finish");
        assert_eq!(again.revision().as_deref(), Some("abc"));
        assert!(Stage::new(work.path(), "lm", &json!({"steps": 10})).is_done());
        // Other inputs: not done, and its old outputs are cleared.
        let changed = Stage::new(work.path(), "lm", &json!({"steps": 11}));
        assert_ne!(changed.fingerprint, again.fingerprint);
        assert!(!changed.is_done());
        assert_eq!(changed.status(), "stale");
        changed.begin().expect("begin");
        assert!(!changed.path("partial").exists());
        // A directory the experiment did not make is never cleared.
        let foreign = Stage::new(work.path(), "data", &json!({}));
        std::fs::create_dir_all(&foreign.dir).expect("mkdir");
        std::fs::write(foreign.path("precious"), "x").expect("write");
        assert_eq!(foreign.status(), "foreign");
        let err = foreign.begin().expect_err("refused").to_string();
        assert!(err.contains("not made by `ivg experiment`"), "{err}");
        assert!(foreign.path("precious").exists());
        // The name is part of the fingerprint.
        assert_ne!(
            Stage::new(work.path(), "sft", &json!({"steps": 10})).fingerprint,
            again.fingerprint
        );
    }
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    #[test]
    fn a_live_lock_refuses_a_second_run_and_a_dead_one_is_taken_over() {
        let work = tempfile::tempdir().expect("tmp");
        let lock = WorkLock::take(work.path()).expect("first");
        // Taking it again from the same process is allowed (the pid is ours).
        drop(WorkLock::take(work.path()).expect("same process"));
        drop(lock);
        // pid 1 is alive on any Linux system.
        write_marker(&work.path().join(".lock"), "1").expect("write");
        let err = WorkLock::take(work.path())
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("pid 1"), "{err}");
        // A pid that cannot exist: a killed run's lock.
        write_marker(&work.path().join(".lock"), "4294967295").expect("write");
        drop(WorkLock::take(work.path()).expect("taken over"));
        assert!(!work.path().join(".lock").exists(), "released on drop");
    }
}
