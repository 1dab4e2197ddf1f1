//! `ivg train sft|dpo|reward|value|classifier --config train.toml`.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use ivg_train::{run_job, JobEvent, ModelSpec, ObjectiveSpec, TrainSpec};

#[derive(clap::Args)]
pub struct TrainArgs {
    /// The objective.
    #[arg(value_parser = ["sft", "dpo", "reward", "value", "classifier"])]
    objective: String,
    /// The job: TOML (or JSON) with [model], [data], [train] and optionally
    /// [objective] (README, "Training"). Paths may name an asset as `asset:NAME`.
    #[arg(long)]
    config: PathBuf,
    /// Overrides `train.out_dir`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Overrides `train.optimizer.total_steps` (e.g. a smoke run).
    #[arg(long)]
    steps: Option<usize>,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let mut spec = read_spec(&args.config)?;
    if let Some(out) = args.out {
        spec.train.out_dir = out;
    }
    if let Some(steps) = args.steps {
        spec.train.optimizer.total_steps = steps;
        spec.train.optimizer.warmup_steps = spec.train.optimizer.warmup_steps.min(steps);
    }
    let report = train(spec, &args.objective, &args.config)?;
    if let Some(last) = report.evals.last() {
        println!("eval at step {}: {}", last.step, render(&last.metrics));
    }
    let final_loss = report.losses.last().map_or(f64::NAN, |l| l.loss);
    println!(
        "trained {} steps on {} rows (last loss {final_loss:.4}); checkpoints in {}",
        report.losses.len(),
        report.train_rows,
        report.out_dir.display()
    );
    Ok(())
}

/// Resolves `spec` for `objective` and runs it (resuming from its output
/// directory), with a progress bar; `source` names the job file in errors.
pub fn train(spec: TrainSpec, objective: &str, source: &Path) -> Result<ivg_train::JobReport> {
    let mut spec = spec;
    resolve_assets(&mut spec)?;
    let spec = spec
        .resolve(objective)
        .with_context(|| format!("in {}", source.display()))?;
    let tokenizer = tokenizer_for(&spec)?;
    let first = Cell::new(None);
    let shown = Cell::new(false);
    let report = run_job(&spec, &tokenizer, &|event| show(event, &first, &shown))?;
    eprintln!();
    Ok(report)
}

pub fn read_spec(path: &Path) -> Result<TrainSpec> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let spec = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(anyhow::Error::from)
    } else {
        toml::from_str(&text).map_err(anyhow::Error::from)
    };
    spec.with_context(|| format!("{}: invalid training config", path.display()))
}

/// Replaces `asset:NAME` paths with the fetched asset's path.
fn resolve_assets(spec: &mut TrainSpec) -> Result<()> {
    let mut paths: Vec<&mut PathBuf> = vec![&mut spec.data.train];
    paths.extend(spec.data.eval.as_mut());
    match &mut spec.model {
        ModelSpec::Pretrained { path } => paths.push(path),
        ModelSpec::Fresh { tokenizer, .. } => paths.push(tokenizer),
    }
    if let Some(ObjectiveSpec::Dpo {
        reference: Some(r), ..
    }) = &mut spec.objective
    {
        paths.push(r);
    }
    for p in paths {
        *p = crate::load::resolve_path(p)?;
    }
    Ok(())
}

/// The tokenizer of the model (or of `model.tokenizer` for a fresh one): a
/// GGUF's, a directory's `tokenizer.json`, or a `tokenizer.json` file.
fn tokenizer_for(spec: &TrainSpec) -> Result<ivg_tokenize::Tokenizer> {
    let source = spec.model.tokenizer_source();
    if source.is_file() && source.extension().is_some_and(|e| e == "json") {
        return Ok(ivg_tokenize::Tokenizer::from_file(source)?);
    }
    crate::load::load_tokenizer(source)
}

fn render(metrics: &ivg_train::Metrics) -> String {
    metrics
        .iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A one-line progress bar with loss, learning rate, tokens/s and ETA (from
/// the steps of this session, so set-up and a resumed start do not skew it);
/// evaluations and notes on lines of their own.
fn show(event: JobEvent<'_>, first: &Cell<Option<(Instant, usize)>>, shown: &Cell<bool>) {
    match event {
        JobEvent::Step(p) => {
            let width = 24;
            let filled = width * p.step / p.total.max(1);
            let (t0, s0) = first.get().unwrap_or((Instant::now(), p.step));
            first.set(Some((t0, s0)));
            let per_step = t0.elapsed().as_secs_f64() / (p.step - s0).max(1) as f64;
            let eta = per_step * (p.total - p.step) as f64;
            eprint!(
                "\r[{}{}] {}/{} loss {:.4} lr {:.2e} {:.0} tok/s eta {:.0}s   ",
                "#".repeat(filled),
                ".".repeat(width - filled),
                p.step,
                p.total,
                p.loss,
                p.lr,
                p.tokens_per_second,
                eta
            );
            shown.set(true);
        }
        JobEvent::Eval(r) => {
            if shown.replace(false) {
                eprintln!();
            }
            eprintln!(
                "eval step {} ({} rows): {}",
                r.step,
                r.rows,
                render(&r.metrics)
            );
        }
        JobEvent::Note(n) => {
            if shown.replace(false) {
                eprintln!();
            }
            eprintln!("{n}");
        }
    }
}
