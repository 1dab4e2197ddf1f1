//! The training loop: a run killed after a checkpoint and restarted continues
//! exactly as an uninterrupted run; evaluation and progress are reported.

mod common;

use std::path::Path;

use common::{batch, deterministic_init, tiny_config_json, trainable};
use ivg_train::{train, LoopConfig, OptimConfig, Progress, Run, Sft, TrainError};

fn loop_config(out: &Path) -> LoopConfig {
    LoopConfig {
        optimizer: OptimConfig {
            lr: 0.01,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.01,
            warmup_steps: 3,
            total_steps: 20,
            min_lr_ratio: 0.1,
            clip_norm: Some(1.0),
        },
        grad_accum: 2,
        eval_every: Some(4),
        checkpoint_every: Some(5),
        out_dir: out.to_path_buf(),
    }
}

/// Trains the tiny model; the batch provider fails at micro-batch `fail_at`.
fn run_once(
    out: &Path,
    fail_at: Option<usize>,
) -> (
    Result<Vec<ivg_train::LossRecord>, TrainError>,
    Vec<f32>,
    Vec<Progress>,
) {
    let (model, varmap) = trainable();
    deterministic_init(&varmap);
    let (chosen, rejected) = batch();
    let config = tiny_config_json();
    let run = Run {
        objective: &Sft,
        model: &model,
        varmap: &varmap,
        model_config: &config,
        tokenizer: None,
        spec: None,
    };
    let mut reports = Vec::new();
    let result = train(
        &run,
        &loop_config(out),
        &mut |i| {
            if Some(i) == fail_at {
                return Err(TrainError::Batch("simulated crash".into()));
            }
            let b = if i % 2 == 0 {
                chosen.clone()
            } else {
                rejected.clone()
            };
            let tokens = b.iter().map(|e| e.prompt.len() + e.response.len()).sum();
            Ok((b, tokens))
        },
        &mut |_, _| Ok(0.5),
        &mut |p| reports.push(p.clone()),
    );
    let data = varmap.data().lock().expect("lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let params = data[names[0]]
        .as_tensor()
        .flatten_all()
        .expect("f")
        .to_vec1::<f32>()
        .expect("v");
    (result, params, reports)
}

#[test]
fn a_killed_run_resumes_exactly() {
    let straight_dir = tempfile::tempdir().expect("tmp");
    let (straight, straight_params, reports) = run_once(straight_dir.path(), None);
    let straight = straight.expect("uninterrupted run");
    assert_eq!(straight.len(), 20);
    assert_eq!(
        reports
            .iter()
            .filter(|p| p.eval.is_some())
            .map(|p| p.step)
            .collect::<Vec<_>>(),
        vec![4, 8, 12, 16, 20]
    );
    assert!(reports.iter().all(|p| p.tokens_per_second > 0.0));
    assert!(straight[19].loss < straight[0].loss, "loss should fall");

    let dir = tempfile::tempdir().expect("tmp");
    // Dies while building step 12 (micro-batch 24): the last checkpoint is step 10.
    let (crashed, _, _) = run_once(dir.path(), Some(24));
    assert!(crashed.is_err());
    let latest = std::fs::read_to_string(dir.path().join("latest")).expect("latest");
    assert_eq!(latest.trim(), "checkpoint-10");
    let (resumed, resumed_params, reports) = run_once(dir.path(), None);
    let resumed = resumed.expect("resumed run");
    assert_eq!(
        reports.first().map(|p| p.step),
        Some(11),
        "resumes after step 10"
    );
    // The log of the first 10 steps went through JSON (serde_json's default
    // float parsing may differ in the last bit); losses and steps are exact.
    assert_eq!(resumed.len(), straight.len());
    for (a, b) in resumed.iter().zip(&straight) {
        assert_eq!(
            (a.step, a.loss),
            (b.step, b.loss),
            "loss log of the resumed run"
        );
        assert!(
            (a.lr - b.lr).abs() <= 1e-15
                && (a.grad_norm - b.grad_norm).abs() <= 1e-12 * b.grad_norm
        );
    }
    assert_eq!(
        resumed_params, straight_params,
        "parameters of the resumed run"
    );
    let loaded = ivg_models::load_causal_lm(
        &dir.path().join("checkpoint-20"),
        &ivg_models::LoadOptions::default(),
    );
    assert!(loaded.is_ok(), "the final checkpoint loads as a model");
}
