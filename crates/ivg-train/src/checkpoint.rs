//! Self-describing, atomically written checkpoints (architecture.md, practice 10).
//!
//! `OUT/checkpoint-STEP/` holds a Hugging Face directory (`config.json`,
//! `model.safetensors`, `tokenizer.json` when given) that ivg and transformers
//! load, plus `train_config.json` (the resolved training configuration),
//! `loss_log.jsonl`, `optimizer.safetensors` and `trainer_state.json` for resume.
//! Each checkpoint is written into a temporary folder and renamed into place,
//! then `OUT/latest` is replaced atomically (temporary file + rename): a run
//! killed at any moment leaves `latest` naming a complete checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::TrainError;

/// One logged optimisation step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossRecord {
    pub step: usize,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
}

/// Everything a checkpoint stores.
pub struct Checkpoint<'a> {
    /// The model's HF `config.json`.
    pub model_config: &'a Value,
    /// Parameters under their HF names.
    pub weights: HashMap<String, Tensor>,
    /// Optimiser moments (see `AdamW::state`).
    pub optimizer: HashMap<String, Tensor>,
    pub step: usize,
    pub train_config: &'a Value,
    pub losses: &'a [LossRecord],
    /// A `tokenizer.json` to copy beside the weights, or a directory whose
    /// `tokenizer.json` and `tokenizer_config.json` are copied.
    pub tokenizer: Option<&'a Path>,
}

/// A checkpoint read back for resuming.
pub struct Resumed {
    pub dir: PathBuf,
    pub step: usize,
    pub weights: HashMap<String, Tensor>,
    pub optimizer: HashMap<String, Tensor>,
    pub losses: Vec<LossRecord>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |e| TrainError::Checkpoint(format!("{}: {e}", path.display()))
}

fn write_json(path: &Path, v: &impl Serialize) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(v)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))?;
    std::fs::write(path, text).map_err(io(path))
}

/// Copies a tokenizer file, or the tokenizer files of a directory, into `dir`.
fn copy_tokenizer(from: &Path, dir: &Path) -> Result<(), TrainError> {
    if from.is_file() {
        std::fs::copy(from, dir.join("tokenizer.json")).map_err(io(from))?;
        return Ok(());
    }
    for name in ["tokenizer.json", "tokenizer_config.json"] {
        let src = from.join(name);
        if src.is_file() {
            std::fs::copy(&src, dir.join(name)).map_err(io(&src))?;
        }
    }
    Ok(())
}

/// Writes `ckpt` as `out/checkpoint-STEP` and points `out/latest` at it.
pub fn save_checkpoint(out: &Path, ckpt: &Checkpoint<'_>) -> Result<PathBuf, TrainError> {
    save_with_stops(out, ckpt, usize::MAX)
}

/// [`save_checkpoint`] stopping after `stops` stages, to test interruption.
fn save_with_stops(out: &Path, ckpt: &Checkpoint<'_>, stops: usize) -> Result<PathBuf, TrainError> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    remove_torn_saves(out)?;
    let name = format!("checkpoint-{}", ckpt.step);
    let final_dir = out.join(&name);
    let tmp = out.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let stages: [&dyn Fn() -> Result<(), TrainError>; 6] = [
        &|| write_json(&tmp.join("config.json"), ckpt.model_config),
        &|| {
            let p = tmp.join("model.safetensors");
            candle_core::safetensors::save(&ckpt.weights, &p)
                .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", p.display())))
        },
        &|| {
            let p = tmp.join("optimizer.safetensors");
            candle_core::safetensors::save(&ckpt.optimizer, &p)
                .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", p.display())))
        },
        &|| {
            write_json(&tmp.join("train_config.json"), ckpt.train_config)?;
            write_json(
                &tmp.join("trainer_state.json"),
                &serde_json::json!({ "step": ckpt.step }),
            )?;
            let log: String = ckpt
                .losses
                .iter()
                .filter_map(|r| serde_json::to_string(r).ok())
                .map(|l| l + "\n")
                .collect();
            std::fs::write(tmp.join("loss_log.jsonl"), log).map_err(io(&tmp))
        },
        &|| match ckpt.tokenizer {
            Some(t) => copy_tokenizer(t, &tmp),
            None => Ok(()),
        },
        &|| {
            if final_dir.exists() {
                std::fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
            }
            std::fs::rename(&tmp, &final_dir).map_err(io(&final_dir))
        },
    ];
    for (i, stage) in stages.iter().enumerate() {
        if i >= stops {
            return Err(TrainError::Checkpoint(format!(
                "interrupted after {i} stages"
            )));
        }
        stage()?;
    }
    if stops <= stages.len() {
        return Err(TrainError::Checkpoint(
            "interrupted before `latest` was updated".into(),
        ));
    }
    let latest_tmp = out.join(".latest.tmp");
    std::fs::write(&latest_tmp, &name).map_err(io(&latest_tmp))?;
    std::fs::rename(&latest_tmp, out.join("latest")).map_err(io(out))?;
    Ok(final_dir)
}

/// Deletes the temporary folders of saves that a killed run left behind
/// (`.checkpoint-N.tmp-PID`); `latest` never names one.
fn remove_torn_saves(out: &Path) -> Result<(), TrainError> {
    for entry in std::fs::read_dir(out).map_err(io(out))? {
        let path = entry.map_err(io(out))?.path();
        let torn = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(".checkpoint-") && n.contains(".tmp-"));
        if torn && path.is_dir() {
            std::fs::remove_dir_all(&path).map_err(io(&path))?;
        }
    }
    Ok(())
}

/// The checkpoint `out/latest` names, if any.
pub fn latest_checkpoint(out: &Path) -> Result<Option<PathBuf>, TrainError> {
    let pointer = out.join("latest");
    if !pointer.exists() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&pointer).map_err(io(&pointer))?;
    Ok(Some(out.join(name.trim())))
}

/// Reads a checkpoint written by [`save_checkpoint`].
pub fn load_checkpoint(dir: &Path) -> Result<Resumed, TrainError> {
    let load = |file: &str| {
        let p = dir.join(file);
        candle_core::safetensors::load(&p, &Device::Cpu)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", p.display())))
    };
    let state_path = dir.join("trainer_state.json");
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).map_err(io(&state_path))?)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", state_path.display())))?;
    let step = state.get("step").and_then(Value::as_u64).ok_or_else(|| {
        TrainError::Checkpoint(format!("{}: field `step` missing", state_path.display()))
    })? as usize;
    let log_path = dir.join("loss_log.jsonl");
    let losses = std::fs::read_to_string(&log_path)
        .map_err(io(&log_path))?
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                TrainError::Checkpoint(format!("{}:{}: {e}", log_path.display(), i + 1))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Resumed {
        dir: dir.to_path_buf(),
        step,
        weights: load("model.safetensors")?,
        optimizer: load("optimizer.safetensors")?,
        losses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ckpt<'a>(
        step: usize,
        value: f32,
        config: &'a Value,
        losses: &'a [LossRecord],
    ) -> Checkpoint<'a> {
        let t = Tensor::new(&[value, value + 1.0], &Device::Cpu).expect("t");
        Checkpoint {
            model_config: config,
            weights: HashMap::from([("w".to_string(), t.clone())]),
            optimizer: HashMap::from([("m.w".to_string(), t.clone()), ("v.w".to_string(), t)]),
            step,
            train_config: config,
            losses,
            tokenizer: None,
        }
    }

    #[test]
    fn an_interrupted_save_leaves_the_previous_checkpoint_loadable() {
        let dir = tempfile::tempdir().expect("tmp");
        let config = serde_json::json!({"model_type": "llama"});
        let losses = vec![LossRecord {
            step: 0,
            loss: 2.0,
            lr: 0.1,
            grad_norm: 1.0,
        }];
        save_checkpoint(dir.path(), &ckpt(10, 1.0, &config, &losses)).expect("first save");
        for stops in 0..=6 {
            let err = save_with_stops(dir.path(), &ckpt(20, 5.0, &config, &losses), stops);
            assert!(err.is_err(), "stage {stops} must report the interruption");
            let latest = latest_checkpoint(dir.path())
                .expect("latest")
                .expect("some");
            let back = load_checkpoint(&latest).expect("previous checkpoint loads");
            assert_eq!(back.step, 10, "after {stops} stages");
            assert_eq!(
                back.weights["w"].to_vec1::<f32>().expect("v"),
                vec![1.0, 2.0]
            );
        }
        save_checkpoint(dir.path(), &ckpt(20, 5.0, &config, &losses)).expect("complete save");
        let back =
            load_checkpoint(&latest_checkpoint(dir.path()).expect("l").expect("s")).expect("load");
        assert_eq!((back.step, back.losses.clone()), (20, losses));
        assert_eq!(
            back.optimizer["v.w"].to_vec1::<f32>().expect("v"),
            vec![5.0, 6.0]
        );
    }
}
