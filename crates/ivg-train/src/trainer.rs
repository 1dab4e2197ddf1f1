//! One training loop for every objective: micro-batches accumulated into each
//! optimiser step, AdamW with warm-up + cosine and clipping, evaluation every
//! N steps, progress reports with loss and tokens/s, atomic checkpoints with
//! the resolved configuration and loss log, and resume from the latest one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Tensor, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checkpoint::{
    latest_checkpoint, load_checkpoint, save_checkpoint, Checkpoint, LossRecord,
};
use crate::objective::Objective;
use crate::optim::{AdamW, OptimConfig};
use crate::TrainError;

/// Typed settings of the loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopConfig {
    pub optimizer: OptimConfig,
    /// Micro-batches per optimiser step.
    #[serde(default = "one")]
    pub grad_accum: usize,
    #[serde(default)]
    pub eval_every: Option<usize>,
    #[serde(default)]
    pub checkpoint_every: Option<usize>,
    /// Required; may be left out of a job that an experiment completes.
    #[serde(default)]
    pub out_dir: PathBuf,
}

fn one() -> usize {
    1
}

/// What the loop reports after each step.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub step: usize,
    pub total: usize,
    pub loss: f64,
    pub lr: f64,
    pub tokens_per_second: f64,
    pub eval: Option<f64>,
}

/// Evaluates the model after the given step; the number is shown in progress.
pub type EvalAt<'a, M> = dyn FnMut(&M, usize) -> Result<f64, TrainError> + 'a;

/// The model-side inputs of a run.
pub struct Run<'a, O: Objective> {
    pub objective: &'a O,
    pub model: &'a O::Model,
    pub varmap: &'a VarMap,
    /// `config.json` of the model, saved in every checkpoint.
    pub model_config: &'a Value,
    pub tokenizer: Option<&'a std::path::Path>,
    /// The resolved job specification, saved in `train_config.json`.
    pub spec: Option<&'a Value>,
}

/// Trains for `optimizer.total_steps` steps, resuming from `out_dir/latest`
/// when it exists. `next_batch(i)` gives micro-batch `i` (0-based, counted
/// across steps) and its token count; `eval(model, step)` runs every
/// `eval_every` steps.
pub fn train<O: Objective>(
    run: &Run<'_, O>,
    config: &LoopConfig,
    next_batch: &mut dyn FnMut(usize) -> Result<(O::Batch, usize), TrainError>,
    eval: &mut EvalAt<'_, O::Model>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Vec<LossRecord>, TrainError> {
    if config.grad_accum == 0 {
        return Err(TrainError::Config("grad_accum must be at least 1".into()));
    }
    let vars = sorted_vars(run.varmap)?;
    let mut optimizer = AdamW::new(config.optimizer.clone(), vars.clone())?;
    let mut losses = resume(config, &vars, &mut optimizer)?;
    let total = config.optimizer.total_steps;
    for step in optimizer.step_count()..total {
        let start = Instant::now();
        let mut micro = Vec::with_capacity(config.grad_accum);
        let mut tokens = 0;
        for k in 0..config.grad_accum {
            let (batch, n) = next_batch(step * config.grad_accum + k)?;
            micro.push(run.objective.loss(run.model, &batch)?);
            tokens += n;
        }
        let loss = Tensor::stack(&micro, 0)?.mean_all()?;
        let value = loss.to_scalar::<f32>()? as f64;
        if !value.is_finite() {
            return Err(TrainError::Numerics(format!(
                "loss is {value} at step {step}"
            )));
        }
        let lr = config.optimizer.lr_at(step);
        let grad_norm = optimizer.step(&loss.backward()?)?;
        losses.push(LossRecord {
            step,
            loss: value,
            lr,
            grad_norm,
        });
        let done = step + 1;
        let eval_value = match config.eval_every {
            Some(n) if n > 0 && done % n == 0 => Some(eval(run.model, done)?),
            _ => None,
        };
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        progress(&Progress {
            step: done,
            total,
            loss: value,
            lr,
            tokens_per_second: tokens as f64 / secs,
            eval: eval_value,
        });
        let checkpoint_now = config
            .checkpoint_every
            .is_some_and(|n| n > 0 && done % n == 0)
            || done == total;
        if checkpoint_now {
            save(run, config, &vars, &optimizer, &losses)?;
        }
    }
    Ok(losses)
}

fn sorted_vars(varmap: &VarMap) -> Result<Vec<(String, Var)>, TrainError> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| TrainError::Config("variable map lock poisoned".into()))?;
    let mut vars: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(vars)
}

/// Loads weights, optimiser state and the loss log of `out_dir/latest`, if any.
fn resume(
    config: &LoopConfig,
    vars: &[(String, Var)],
    optimizer: &mut AdamW,
) -> Result<Vec<LossRecord>, TrainError> {
    let Some(dir) = latest_checkpoint(&config.out_dir)? else {
        return Ok(Vec::new());
    };
    let back = load_checkpoint(&dir)?;
    for (name, var) in vars {
        let t = back.weights.get(name).ok_or_else(|| {
            TrainError::Checkpoint(format!("{}: no tensor `{name}`", dir.display()))
        })?;
        var.set(t)?;
    }
    optimizer.restore(back.optimizer, back.step)?;
    Ok(back.losses)
}

fn save<O: Objective>(
    run: &Run<'_, O>,
    config: &LoopConfig,
    vars: &[(String, Var)],
    optimizer: &AdamW,
    losses: &[LossRecord],
) -> Result<(), TrainError> {
    let weights: HashMap<String, Tensor> = vars
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?)))
        .collect::<Result<_, candle_core::Error>>()?;
    let (state, step) = optimizer.state();
    let train_config =
        serde_json::to_value(config).map_err(|e| TrainError::Config(e.to_string()))?;
    let train_config = serde_json::json!({
        "objective": run.objective.name(),
        "loop": train_config,
        "spec": run.spec,
    });
    save_checkpoint(
        &config.out_dir,
        &Checkpoint {
            model_config: run.model_config,
            weights,
            optimizer: state,
            step,
            train_config: &train_config,
            losses,
            tokenizer: run.tokenizer,
        },
    )?;
    Ok(())
}
