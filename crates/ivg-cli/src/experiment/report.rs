//! The report: per-method gold reward with 95% intervals, win rate against
//! Base, base NLL, tokens/s and wall time; the paper's ordering claims tested
//! on paired differences; guide quality; the ablation; plus the per-sample
//! JSONL, an SVG plot, the exact config files and the git revision.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use ivg_eval::report::{markdown_table, mean_ci95, svg_plot, win_rate, Interval, MethodSummary};
use serde_json::{json, Value};

use super::config::{ExperimentConfig, ValueTexts};
use super::evaluate::{read_samples, SampleRow};
use super::stages::Stage;
use super::Finished;
use crate::data_cmd::write_lines;

pub fn write(config: &ExperimentConfig, config_path: &Path, done: &Finished) -> Result<()> {
    let out = &config.results_dir;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (summaries, samples) = summarise(&done.methods)?;
    let (ablation, ablation_samples) = summarise(&done.ablation)?;
    let title = config_path
        .file_stem()
        .map_or("experiment".into(), |s| s.to_string_lossy());
    let mut md = format!("# Experiment `{title}`\n\n");
    let _ = writeln!(
        md,
        "Gold reward = logit(positive) - logit(negative) of the gold classifier on \
         prompt + output; {} test prompts, every method on the same prompts and seeds. \
         Win rate: paired against Base (ties count 1/2). Regenerate with \
         `ivg experiment run {}`.\n",
        summaries.first().map_or(0, |s| s.reward.n),
        config_path.display()
    );
    md.push_str(&markdown_table(&summaries));
    md.push_str("\n## The paper's ordering\n\n");
    md.push_str(&claims(&samples)?);
    md.push_str("\n## Guides\n\n");
    md.push_str(&guide_table(done, config.guides.value_texts)?);
    if !ablation.is_empty() {
        md.push_str("\n## Ablation (validation prompts)\n\n");
        md.push_str(&markdown_table(&ablation));
    }
    let revisions = revisions(done);
    md.push_str("\n## Code\n\n");
    md.push_str(&revisions);
    let put = |name: &str, text: &str| {
        let path = out.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    put("report.md", &md)?;
    put(
        "plot.svg",
        &svg_plot(&summaries, "Gold reward by method (mean, 95% CI)"),
    )?;
    let summary = json!({ "methods": summaries, "ablation": ablation });
    put("summary.json", &serde_json::to_string_pretty(&summary)?)?;
    let all = samples
        .iter()
        .flat_map(|(_, rows)| rows.iter().map(|r| json!(r)));
    write_lines(&out.join("samples.jsonl"), all)?;
    let all = ablation_samples.iter().flat_map(|(name, rows)| {
        rows.iter()
            .map(move |r| json!({ "setting": name, "sample": r }))
    });
    write_lines(&out.join("ablation_samples.jsonl"), all)?;
    copy_config(config, config_path, out)?;
    put("revision.txt", &revisions)
}

/// The git revision each stage was finished by: one line when they agree,
/// else one per revision with its stages (a run resumed across commits).
fn revisions(done: &Finished) -> String {
    let g = &done.guides;
    let guides = [
        &g.data,
        &g.gold,
        &g.base_samples,
        &g.lm,
        &g.sft,
        &g.ref_samples,
        &g.pairs,
        &g.dpo,
        &g.reward,
        &g.value_data,
        &g.value,
    ];
    let all = guides
        .into_iter()
        .chain(done.methods.iter().map(|(_, s)| s))
        .chain(done.ablation.iter().map(|(_, s)| s));
    let mut by_rev: Vec<(String, Vec<String>)> = Vec::new();
    for st in all {
        let rev = st.revision().unwrap_or_else(|| "unrecorded".into());
        match by_rev.iter_mut().find(|(r, _)| *r == rev) {
            Some((_, names)) => names.push(st.name.clone()),
            None => by_rev.push((rev, vec![st.name.clone()])),
        }
    }
    if let [(rev, _)] = by_rev.as_slice() {
        return format!("Every stage was finished by revision `{rev}`.\n");
    }
    let mut md = String::from("Stages were finished by several revisions:\n\n");
    for (rev, names) in &by_rev {
        let _ = writeln!(md, "- `{rev}`: {}", names.join(", "));
    }
    md
}

type Samples = Vec<(String, Vec<SampleRow>)>;

fn summarise(stages: &[(String, Stage)]) -> Result<(Vec<MethodSummary>, Samples)> {
    let samples: Samples = stages
        .iter()
        .map(|(name, st)| Ok((name.clone(), read_samples(st)?)))
        .collect::<Result<_>>()?;
    let Some((_, base)) = samples.iter().find(|(n, _)| n == "base") else {
        return Ok((Vec::new(), samples));
    };
    for (name, rows) in &samples {
        if rows.len() != base.len() || rows.iter().zip(base).any(|(a, b)| a.index != b.index) {
            bail!("{name} and base were not evaluated on the same prompts");
        }
    }
    let base_rewards = rewards(base);
    let mut out = Vec::new();
    for (name, rows) in &samples {
        let r = rewards(rows);
        let reward =
            mean_ci95(&r).with_context(|| format!("{name}: fewer than two finite gold rewards"))?;
        let nlls: Vec<f64> = rows.iter().filter_map(|s| s.nll).collect();
        let seconds: f64 = rows.iter().map(|s| s.seconds).sum();
        let tokens: usize = rows.iter().map(|s| s.tokens).sum();
        out.push(MethodSummary {
            method: name.clone(),
            reward,
            win_rate: (name != "base")
                .then(|| win_rate(&r, &base_rewards))
                .flatten(),
            nll: (!nlls.is_empty()).then(|| nlls.iter().sum::<f64>() / nlls.len() as f64),
            tokens_per_second: tokens as f64 / seconds.max(1e-9),
            wall_seconds: seconds,
        });
    }
    Ok((out, samples))
}

fn rewards(rows: &[SampleRow]) -> Vec<f64> {
    rows.iter().map(|s| s.gold_reward).collect()
}

/// The paper's claims as paired differences `a - b` with 95% intervals.
fn claims(samples: &Samples) -> Result<String> {
    let find = |name: &str| samples.iter().find(|(n, _)| n == name).map(|(_, r)| r);
    let mut pairs: Vec<(&str, &str, bool)> = vec![
        ("ivg", "cbse", false),
        ("cbse", "cbsi", true),
        ("efti", "base", true),
    ];
    for (name, _) in samples {
        if !matches!(name.as_str(), "base" | "tuned" | "efti") {
            pairs.push((name, "base", true));
        }
    }
    let mut md = String::from("| claim | mean difference [95% CI] | verdict |\n|---|---|---|\n");
    for (a, b, strict) in pairs {
        let (Some(ra), Some(rb)) = (find(a), find(b)) else {
            continue;
        };
        if ra.len() != rb.len() || ra.iter().zip(rb).any(|(x, y)| x.index != y.index) {
            bail!("{a} and {b} were not evaluated on the same prompts");
        }
        let diff: Vec<f64> = ra
            .iter()
            .zip(rb)
            .map(|(x, y)| x.gold_reward - y.gold_reward)
            .collect();
        let Some(iv) = mean_ci95(&diff) else { continue };
        let op = if strict { ">" } else { ">=" };
        let _ = writeln!(
            md,
            "| {a} {op} {b} | {:+.3} [{:+.3}, {:+.3}] | {} |",
            iv.mean,
            iv.low,
            iv.high,
            verdict(&iv, strict)
        );
    }
    Ok(md)
}

fn verdict(iv: &Interval, strict: bool) -> &'static str {
    match (iv.low > 0.0, iv.mean > 0.0, iv.high < 0.0) {
        (true, _, _) => "holds (interval above 0)",
        (_, true, _) => "holds in the mean, not significant",
        (_, _, true) => "does not hold (interval below 0)",
        _ if !strict => "holds within noise (interval contains 0)",
        _ => "does not hold in the mean, not significant",
    }
}

/// Each guide's last held-out evaluation (from its `eval_log.jsonl`).
fn guide_table(done: &Finished, value_texts: ValueTexts) -> Result<String> {
    let g = &done.guides;
    let mut md =
        String::from("| guide | held-out metrics at the first and last evaluation |\n|---|---|\n");
    let gold_acc = std::fs::read_to_string(g.gold.path("accuracy.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    if let Some(acc) = gold_acc {
        let _ = writeln!(
            md,
            "| gold classifier | accuracy {:.4} on {} test-side reviews |",
            acc["accuracy"].as_f64().unwrap_or(f64::NAN),
            acc["rows"]
        );
    }
    for (file, what) in [
        ("train_pairs.jsonl", "train"),
        ("heldout_pairs.jsonl", "held-out"),
    ] {
        let n = std::fs::read_to_string(g.pairs.path(file)).map_or(0, |t| t.lines().count());
        let _ = writeln!(
            md,
            "| gold-ranked pairs ({what}) | {n} pairs of pi_ref completions |"
        );
    }
    let count = |file: &str| {
        std::fs::read_to_string(g.value_data.path(file)).map_or(0, |t| t.lines().count())
    };
    let _ = writeln!(
        md,
        "| explicit value's data | {} train and {} held-out texts ({}) labelled by the reward model |",
        count("train.jsonl"),
        count("heldout.jsonl"),
        match value_texts {
            ValueTexts::RefSamples => "pi_ref completions",
            ValueTexts::Reviews => "train-side review openings",
        }
    );
    for (name, stage) in [
        ("LM (IMDB text)", &g.lm),
        ("pi_ref (SFT on base samples)", &g.sft),
        ("pi_tuned (DPO)", &g.dpo),
        ("reward model", &g.reward),
        ("explicit value (Q head)", &g.value),
    ] {
        let log = ivg_train::read_eval_log(&stage.dir)?;
        let render = |r: &ivg_train::EvalRecord| {
            let metrics: Vec<String> = r
                .metrics
                .iter()
                .map(|(k, v)| format!("{k} {v:.4}"))
                .collect();
            format!("step {}: {}", r.step, metrics.join(", "))
        };
        let (Some(first), Some(last)) = (log.first(), log.last()) else {
            continue;
        };
        let _ = writeln!(md, "| {name} | {} → {} |", render(first), render(last));
    }
    Ok(md)
}

/// The experiment file and every job file it names, copied as they were run.
fn copy_config(config: &ExperimentConfig, config_path: &Path, out: &Path) -> Result<()> {
    let dir = out.join("config");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let g = &config.guides;
    for src in [
        config_path,
        &config.gold.job,
        &g.lm_job,
        &g.sft_job,
        &g.dpo_job,
        &g.reward_job,
        &g.value_job,
    ] {
        let name = src
            .file_name()
            .context("a config path without a file name")?;
        std::fs::copy(src, dir.join(name)).with_context(|| format!("copying {}", src.display()))?;
    }
    Ok(())
}
