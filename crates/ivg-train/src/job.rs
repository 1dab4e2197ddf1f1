//! One `ivg train` job end to end: read and tokenize the data, build the model,
//! run the loop with a seeded, resumable data order, evaluate on held-out rows
//! (a JSON line per evaluation in `OUT/eval_log.jsonl`, the learning curve),
//! and write checkpoints that carry the tokenizer.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use ivg_tokenize::Tokenizer;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::build::Built;
use crate::checkpoint::{latest_checkpoint, LossRecord};
use crate::objective::Objective;
use crate::spec::TrainSpec;
use crate::trainer::{train, Progress, Run};
use crate::TrainError;

/// Named metrics of one evaluation, e.g. `loss`, `accuracy`.
pub type Metrics = BTreeMap<String, f64>;

/// One evaluation, as logged in `eval_log.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub step: usize,
    pub rows: usize,
    pub metrics: Metrics,
}

/// What a job reports while it runs.
pub enum JobEvent<'a> {
    Step(&'a Progress),
    Eval(&'a EvalRecord),
    Note(String),
}

/// The outcome of a job.
#[derive(Debug, Clone)]
pub struct JobReport {
    pub out_dir: PathBuf,
    pub train_rows: usize,
    pub losses: Vec<LossRecord>,
    pub evals: Vec<EvalRecord>,
}

/// Evaluates a model on the held-out set.
pub type EvalFn<'a, M> = dyn FnMut(&M) -> Result<Metrics, TrainError> + 'a;

/// Builds the micro-batch of the given training rows and counts its tokens.
pub type MakeBatch<'a, B> = dyn FnMut(&[usize]) -> Result<(B, usize), TrainError> + 'a;

/// The pieces of a job shared by every objective.
pub(crate) struct Driver<'a> {
    pub spec: &'a TrainSpec,
    pub tokenizer: &'a Tokenizer,
    pub train_rows: usize,
    pub eval_rows: usize,
}

impl Driver<'_> {
    /// Trains `built` with `objective`; `make(indices)` builds the micro-batch
    /// of those training rows and counts its tokens.
    pub fn run<O: Objective>(
        &self,
        objective: &O,
        built: &Built<O::Model>,
        make: &mut MakeBatch<'_, O::Batch>,
        mut eval: Option<&mut EvalFn<'_, O::Model>>,
        on: &dyn Fn(JobEvent<'_>),
    ) -> Result<JobReport, TrainError> {
        if self.spec.data.max_tokens > built.context {
            return Err(TrainError::Config(format!(
                "data.max_tokens is {} but the model takes at most {} positions",
                self.spec.data.max_tokens, built.context
            )));
        }
        let out = &self.spec.train.out_dir;
        let tokenizer_dir = out.join("tokenizer");
        self.tokenizer
            .save(&tokenizer_dir)
            .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        let resumed = latest_checkpoint(out)?.is_some();
        let mut evals = read_eval_log(out)?;
        if let (Some(f), false) = (eval.as_deref_mut(), resumed) {
            self.record_eval(f, &built.model, 0, &mut evals, on)?;
        }
        let mut order = Order::new(self.spec.seed, self.train_rows);
        let batch_size = self.spec.data.batch_size;
        let mut next = |i: usize| make(&order.micro_batch(i, batch_size));
        let mut eval_at = |model: &O::Model, step: usize| -> Result<f64, TrainError> {
            match eval.as_deref_mut() {
                Some(f) => {
                    let metrics = self.record_eval(f, model, step, &mut evals, on)?;
                    Ok(metrics.get("loss").copied().unwrap_or(f64::NAN))
                }
                None => Ok(f64::NAN),
            }
        };
        let config =
            serde_json::to_value(self.spec).map_err(|e| TrainError::Config(e.to_string()))?;
        let run = Run {
            objective,
            model: &built.model,
            varmap: &built.varmap,
            model_config: &built.config_json,
            tokenizer: Some(&tokenizer_dir),
            spec: Some(&config),
        };
        let losses = train(&run, &self.spec.train, &mut next, &mut eval_at, &mut |p| {
            on(JobEvent::Step(p))
        })?;
        Ok(JobReport {
            out_dir: out.clone(),
            train_rows: self.train_rows,
            losses,
            evals: read_eval_log(out)?,
        })
    }

    fn record_eval<M>(
        &self,
        f: &mut EvalFn<'_, M>,
        model: &M,
        step: usize,
        evals: &mut Vec<EvalRecord>,
        on: &dyn Fn(JobEvent<'_>),
    ) -> Result<Metrics, TrainError> {
        let record = EvalRecord {
            step,
            rows: self.eval_rows,
            metrics: f(model)?,
        };
        append_eval_log(&self.spec.train.out_dir, &record)?;
        on(JobEvent::Eval(&record));
        let metrics = record.metrics.clone();
        evals.push(record);
        Ok(metrics)
    }
}

/// The data order: each epoch a seeded permutation of the rows, micro-batch
/// `i` the rows at positions `i*b .. (i+1)*b` of their concatenation, so a
/// resumed run sees exactly the batches an uninterrupted one would.
struct Order {
    seed: u64,
    rows: usize,
    epoch: Option<(usize, Vec<usize>)>,
}

impl Order {
    fn new(seed: u64, rows: usize) -> Self {
        Self {
            seed,
            rows,
            epoch: None,
        }
    }

    fn permutation(&mut self, epoch: usize) -> &[usize] {
        if self.epoch.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut perm: Vec<usize> = (0..self.rows).collect();
            let mut rng = ChaCha8Rng::seed_from_u64(
                self.seed
                    .wrapping_mul(0x9E37_79B9)
                    .wrapping_add(epoch as u64),
            );
            perm.shuffle(&mut rng);
            self.epoch = Some((epoch, perm));
        }
        self.epoch.as_ref().map_or(&[], |(_, p)| p.as_slice())
    }

    fn micro_batch(&mut self, i: usize, size: usize) -> Vec<usize> {
        (i * size..(i + 1) * size)
            .map(|p| {
                let rows = self.rows;
                self.permutation(p / rows)[p % rows]
            })
            .collect()
    }
}

fn eval_log(out: &Path) -> PathBuf {
    out.join("eval_log.jsonl")
}

fn append_eval_log(out: &Path, record: &EvalRecord) -> Result<(), TrainError> {
    std::fs::create_dir_all(out)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", out.display())))?;
    let path = eval_log(out);
    let line = serde_json::to_string(record).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))?;
    writeln!(f, "{line}").map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))
}

/// The evaluations logged so far (a resumed run keeps its learning curve).
pub fn read_eval_log(out: &Path) -> Result<Vec<EvalRecord>, TrainError> {
    let path = eval_log(out);
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| TrainError::Checkpoint(format!("{}:{}: {e}", path.display(), i + 1)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_covers_each_epoch_once_and_repeats() {
        let mut a = Order::new(7, 10);
        let first: Vec<usize> = (0..5).flat_map(|i| a.micro_batch(i, 2)).collect();
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        let mut b = Order::new(7, 10);
        assert_eq!(b.micro_batch(3, 2), a.micro_batch(3, 2));
        let next_epoch: Vec<usize> = (5..10).flat_map(|i| a.micro_batch(i, 2)).collect();
        assert_ne!(next_epoch, first, "each epoch reshuffles");
    }
}
