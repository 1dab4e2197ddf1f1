//! `ivg experiment run|status CONFIG`: the sentiment experiment (or any
//! experiment of the same shape) from data to report in one resumable
//! command. Stages: data -> gold classifier -> LM -> base samples -> pi_ref
//! (SFT) -> pi_ref samples -> gold-ranked pairs -> pi_tuned (DPO), reward
//! model -> reward-labelled samples -> explicit value -> one evaluation per
//! method -> ablation on the validation prompts -> report.

mod config;
mod evaluate;
mod pipeline;
mod report;
mod stages;

use std::path::PathBuf;

use anyhow::{bail, Result};

use config::ExperimentConfig;
use evaluate::Evaluator;
use pipeline::{Mode, Runner};

#[derive(clap::Subcommand)]
pub enum ExperimentCommand {
    /// Run every stage whose inputs changed (cached ones are skipped, an
    /// interrupted one resumes), then write the report.
    Run(RunArgs),
    /// List every stage with its status (cached, started, to run) and fingerprint.
    Status(StatusArgs),
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The experiment file, e.g. experiments/sentiment.toml.
    config: PathBuf,
    /// Discard a stage's outputs and run it again, e.g. `--redo eval/cbse`
    /// (repeatable); later stages are not invalidated.
    #[arg(long)]
    redo: Vec<String>,
    /// Stop after this stage (e.g. `--until value` trains the guides only).
    #[arg(long)]
    until: Option<String>,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    /// The experiment file, e.g. experiments/sentiment.toml.
    config: PathBuf,
}

pub fn run(cmd: ExperimentCommand) -> Result<()> {
    let (path, redo, until, mode) = match cmd {
        ExperimentCommand::Run(a) => (a.config, a.redo, a.until, Mode::Run),
        ExperimentCommand::Status(a) => (a.config, Vec::new(), None, Mode::Status),
    };
    let config = ExperimentConfig::read(&path)?;
    let runner = |mode| Runner {
        config: &config,
        redo: &redo,
        mode,
        until: until.as_deref(),
        revision: revision(),
        names: Default::default(),
    };
    if mode == Mode::Status {
        return run_all(&runner(Mode::Status)).map(|_| ());
    }
    // Stage names are checked before any work: a typo'd --until would
    // otherwise run everything, a typo'd --redo nothing.
    let names = runner(Mode::Names);
    run_all(&names)?;
    let known = names.names.into_inner();
    for name in redo.iter().chain(&until) {
        if !known.contains(name) {
            bail!(
                "no stage `{name}` in {} (stages: {})",
                path.display(),
                known.join(", ")
            );
        }
    }
    let _lock = stages::WorkLock::take(&config.work_dir)?;
    let done = match run_all(&runner(Mode::Run)) {
        Err(e) if e.downcast_ref::<pipeline::Stopped>().is_some() => {
            println!("{e}");
            return Ok(());
        }
        other => other?,
    };
    report::write(&config, &path, &done)?;
    println!("report: {}", config.results_dir.join("report.md").display());
    Ok(())
}

/// `git rev-parse HEAD`, with `-dirty` when tracked files have changes.
pub fn revision() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(rev) => {
            let status = git(&["status", "--porcelain", "--untracked-files=no"]);
            if status.is_some_and(|s| !s.is_empty()) {
                format!("{rev}-dirty")
            } else {
                rev
            }
        }
        None => "unknown (not a git checkout)".into(),
    }
}

/// Every stage's outputs, for the report.
pub struct Finished {
    pub guides: pipeline::Guides,
    /// `(method name, stage)` on the test prompts, in the config's order.
    pub methods: Vec<(String, stages::Stage)>,
    /// `(setting, stage)` on the validation prompts.
    pub ablation: Vec<(String, stages::Stage)>,
}

fn run_all(runner: &Runner<'_>) -> Result<Finished> {
    let c = runner.config;
    let guides = pipeline::prepare(runner)?;
    // The models of the evaluation (not loaded for `status`).
    let (base, gold) = if runner.mode != Mode::Run {
        (None, None)
    } else {
        let base = crate::load::load_lm(&c.eval.base, false)?;
        let gold = crate::label_cmd::classifier_labeler(&guides.gold.dir, 1, "{prompt}{response}")?;
        (Some(base), Some(gold))
    };
    let eval = Evaluator {
        runner,
        guides: &guides,
        base: base.as_ref(),
        gold: gold.as_ref(),
    };
    let mut methods = Vec::new();
    for method in c.methods()? {
        let stage = eval.run(&evaluate::standard_run(c, method, "test_prompts.jsonl"))?;
        methods.push((method.name().to_string(), stage));
    }
    let mut ablation = Vec::new();
    for (name, run) in evaluate::ablation_runs(c) {
        ablation.push((name, eval.run(&run)?));
    }
    Ok(Finished {
        guides,
        methods,
        ablation,
    })
}

/// `3h05m`, `4m10s` or `12s`.
pub fn eta(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "?".into();
    }
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}
