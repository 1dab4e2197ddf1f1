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

use anyhow::Result;

use config::ExperimentConfig;
use evaluate::{EvalRun, Evaluator};
use ivg_decode::Method;
use pipeline::{sampling_config, Runner};

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
    config: PathBuf,
}

pub fn run(cmd: ExperimentCommand) -> Result<()> {
    match cmd {
        ExperimentCommand::Run(args) => {
            let config = ExperimentConfig::read(&args.config)?;
            let runner = Runner {
                config: &config,
                redo: &args.redo,
                dry_run: false,
                until: args.until.as_deref(),
            };
            let done = match run_all(&runner) {
                Err(e) if e.downcast_ref::<pipeline::Stopped>().is_some() => {
                    println!("{e}");
                    return Ok(());
                }
                other => other?,
            };
            report::write(&config, &args.config, &done)?;
            println!("report: {}", config.results_dir.join("report.md").display());
            Ok(())
        }
        ExperimentCommand::Status(args) => {
            let config = ExperimentConfig::read(&args.config)?;
            let runner = Runner {
                config: &config,
                redo: &[],
                dry_run: true,
                until: None,
            };
            run_all(&runner).map(|_| ())
        }
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
    // The models of the evaluation load only when a stage has work to do.
    let (base, gold) = if runner.dry_run {
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
        let stage = eval.run(&eval.standard(method, "test_prompts.jsonl"))?;
        methods.push((method.name().to_string(), stage));
    }
    let mut ablation = Vec::new();
    if !(c.ablation.beta.is_empty() && c.ablation.chunk_len.is_empty()) {
        let base_run = EvalRun {
            stage: "ablation/base".into(),
            ..eval.standard(
                config::EvalMethod::Matrix(Method::Base),
                "val_prompts.jsonl",
            )
        };
        ablation.push(("base".to_string(), eval.run(&base_run)?));
    }
    let shape = sampling_config(c, Method::Base, c.eval.max_new_tokens, c.eval.temperature);
    for &beta in &c.ablation.beta {
        let name = format!("efti beta={beta}");
        let run = EvalRun {
            stage: format!("ablation/efti_beta{beta}"),
            method: config::EvalMethod::Matrix(Method::EftI),
            config: Method::EftI.config(&shape, beta),
            prompts: "val_prompts.jsonl",
        };
        ablation.push((name, eval.run(&run)?));
    }
    for &len in &c.ablation.chunk_len {
        let mut config = Method::CbsE.config(&shape, c.eval.beta);
        config.chunk_len = Some(len);
        let run = EvalRun {
            stage: format!("ablation/cbse_L{len}"),
            method: config::EvalMethod::Matrix(Method::CbsE),
            config,
            prompts: "val_prompts.jsonl",
        };
        ablation.push((format!("cbse L={len}"), eval.run(&run)?));
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
