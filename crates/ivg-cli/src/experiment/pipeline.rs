//! The stages before the evaluation: data, the gold classifier, and the
//! guides (LM -> pi_ref -> gold-ranked pairs -> pi_tuned, reward model,
//! explicit value). Each stage is cached (stages.rs) and resumable.

use std::path::Path;

use anyhow::{bail, Context, Result};
use ivg_decode::{GuidanceConfig, Method, SamplingConfig};
use ivg_train::label::adjacent_pairs;
use ivg_train::{read_jsonl, LabelRow, ModelSpec, ObjectiveSpec, SftRow};
use serde_json::{json, Value};

use super::config::{ExperimentConfig, ValueTexts};
use super::stages::{file_text, Stage};
use crate::data_cmd::write_lines;
use crate::guided::GuideArgs;
use crate::sample_cmd::{sample, SampleJob};

/// What a pass over the stages does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Run stages whose inputs changed.
    Run,
    /// Print each stage's status (`ivg experiment status`).
    Status,
    /// Only list the stage names (to check `--redo` and `--until`).
    Names,
}

/// Runs stages in order, skipping cached ones and clearing those named by `--redo`.
pub struct Runner<'a> {
    pub config: &'a ExperimentConfig,
    pub redo: &'a [String],
    pub mode: Mode,
    /// Stop once this stage is finished (`--until`).
    pub until: Option<&'a str>,
    /// Recorded in each stage this run finishes.
    pub revision: String,
    /// Every stage name met so far.
    pub names: std::cell::RefCell<Vec<String>>,
}

/// Returned through the stages when `--until` was reached.
#[derive(Debug)]
pub struct Stopped(pub String);

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped after stage {} (--until)", self.0)
    }
}

impl std::error::Error for Stopped {}

impl Runner<'_> {
    /// Runs `body` as stage `name` unless it finished under the same `inputs`.
    pub fn stage(
        &self,
        name: &str,
        inputs: Value,
        body: impl FnOnce(&Stage) -> Result<()>,
    ) -> Result<Stage> {
        let stage = Stage::new(&self.config.work_dir, name, &inputs);
        self.names.borrow_mut().push(name.to_string());
        match self.mode {
            Mode::Names => return Ok(stage),
            Mode::Status => {
                println!("{name:<24} {:<8} {}", stage.status(), stage.fingerprint);
                return Ok(stage);
            }
            Mode::Run => {}
        }
        if self.redo.iter().any(|r| r == name) {
            stage.clear()?;
        }
        if stage.is_done() {
            eprintln!("[stage {name}] cached in {}", stage.dir.display());
        } else {
            eprintln!("[stage {name}] running in {}", stage.dir.display());
            stage.begin()?;
            body(&stage).with_context(|| format!("stage {name}"))?;
            stage.finish(&self.revision)?;
        }
        if self.until == Some(name) {
            return Err(Stopped(name.to_string()).into());
        }
        Ok(stage)
    }
}

/// The outputs of the stages before the evaluation.
pub struct Guides {
    pub data: Stage,
    pub gold: Stage,
    pub base_samples: Stage,
    pub lm: Stage,
    pub sft: Stage,
    pub ref_samples: Stage,
    pub pairs: Stage,
    pub dpo: Stage,
    pub reward: Stage,
    pub value_data: Stage,
    pub value: Stage,
}

pub fn prepare(r: &Runner<'_>) -> Result<Guides> {
    let c = r.config;
    let data = data_stage(r)?;
    let gold = r.stage(
        "gold",
        json!({ "job": file_text(&c.gold.job)?, "data": data.fingerprint }),
        |st| {
            train_job(
                st,
                &c.gold.job,
                "classifier",
                &data.path("imdb_train.jsonl"),
                Some(&data.path("imdb_test.jsonl")),
                None,
                None,
            )?;
            let (m, rows) =
                crate::label_cmd::classifier_eval(&st.dir, &data.path("imdb_test.jsonl"), 32)?;
            let report = json!({ "accuracy": m["accuracy"], "loss": m["loss"], "rows": rows });
            let path = st.path("accuracy.json");
            std::fs::write(&path, report.to_string())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(())
        },
    )?;
    let base_samples = sampling_stage(r, "base_samples", &data, None, c.guides.sft_prompts, 1)?;
    let lm = job_stage(
        r,
        "lm",
        "sft",
        &c.guides.lm_job,
        &data,
        ("imdb_train_text.jsonl", Some("imdb_test_text.jsonl")),
        None,
        None,
    )?;
    let sft = job_stage(
        r,
        "sft",
        "sft",
        &c.guides.sft_job,
        &base_samples,
        ("train.jsonl", Some("heldout.jsonl")),
        Some(&lm),
        None,
    )?;
    let g = &c.guides;
    let ref_samples = sampling_stage(r, "ref_samples", &data, Some(&sft), g.pair_prompts, 2)?;
    let pairs = pairs_stage(r, &ref_samples, &gold)?;
    let dpo = job_stage(
        r,
        "dpo",
        "dpo",
        &c.guides.dpo_job,
        &pairs,
        ("train_pairs.jsonl", Some("heldout_pairs.jsonl")),
        Some(&sft),
        Some(&sft),
    )?;
    let reward = job_stage(
        r,
        "reward",
        "reward",
        &c.guides.reward_job,
        &pairs,
        ("train_pairs.jsonl", Some("heldout_pairs.jsonl")),
        Some(&sft),
        None,
    )?;
    let value_data = value_data_stage(r, &data, &ref_samples, &reward)?;
    let value = job_stage(
        r,
        "value",
        "value",
        &c.guides.value_job,
        &value_data,
        ("train.jsonl", Some("heldout.jsonl")),
        Some(&sft),
        None,
    )?;
    Ok(Guides {
        data,
        gold,
        base_samples,
        lm,
        sft,
        ref_samples,
        pairs,
        dpo,
        reward,
        value_data,
        value,
    })
}

/// IMDB as JSONL, and the prompts: the first `k` base tokens of a review.
fn data_stage(r: &Runner<'_>) -> Result<Stage> {
    let c = r.config;
    let inputs = json!({ "data": c.data, "seed": c.seed, "base": c.eval.base });
    r.stage("data", inputs, |st| {
        crate::data_cmd::export_imdb(&st.dir, c.data.train_rows, c.data.test_rows, c.seed, 8)?;
        let tokenizer = crate::load::load_tokenizer(&c.eval.base)?;
        let cut = |path: &Path, range: std::ops::Range<usize>, out: &str| -> Result<()> {
            let rows: Vec<LabelRow> = read_jsonl(path)?;
            if range.end > rows.len() {
                bail!(
                    "{} has {} reviews, {} needed",
                    path.display(),
                    rows.len(),
                    range.end
                );
            }
            let prompts = rows[range.clone()]
                .iter()
                .zip(range.clone())
                .map(|(row, i)| Ok(json!({ "prompt": prompt_of(&tokenizer, &row.text, c, i)? })))
                .collect::<Result<Vec<_>>>()?;
            write_lines(&st.path(out), prompts.into_iter())
        };
        let d = &c.data;
        cut(
            &st.path("imdb_train.jsonl"),
            0..d.train_prompts,
            "train_prompts.jsonl",
        )?;
        cut(
            &st.path("imdb_test.jsonl"),
            0..d.test_prompts,
            "test_prompts.jsonl",
        )?;
        cut(
            &st.path("imdb_test.jsonl"),
            d.test_rows - d.val_prompts..d.test_rows,
            "val_prompts.jsonl",
        )
    })
}

/// Review `i` cut to its first `k` base tokens, `k` drawn from the configured
/// range by a hash of the seed and the index (the paper's truncated reviews).
fn prompt_of(
    tokenizer: &ivg_tokenize::Tokenizer,
    text: &str,
    c: &ExperimentConfig,
    i: usize,
) -> Result<String> {
    Ok(review_row(tokenizer, text, c, i, 0)?.prompt)
}

/// Review `i` as a `{prompt, response}` row: the prompt cut as `prompt_of`
/// cuts it, the response the review's next `response_tokens` tokens, so
/// that `prompt + response` is the review's opening.
fn review_row(
    tokenizer: &ivg_tokenize::Tokenizer,
    text: &str,
    c: &ExperimentConfig,
    i: usize,
    response_tokens: usize,
) -> Result<SftRow> {
    let [lo, hi] = c.data.prompt_tokens;
    let draw = ivg_decode::row_seed(c.seed ^ 0x005E_ED0F_9A11, i);
    let k = lo + (draw % (hi - lo + 1) as u64) as usize;
    let ids = tokenizer.encode(text, false)?;
    let k = k.min(ids.len());
    let prompt = tokenizer.decode(&ids[..k], true)?.trim_end().to_string();
    let end = (k + response_tokens).min(ids.len());
    if end == k {
        // A bare prompt (`prompt_of`): nothing more to decode.
        return Ok(SftRow {
            prompt,
            response: String::new(),
        });
    }
    let opening = tokenizer.decode(&ids[..end], true)?;
    // Decoding is prefix-stable except where a cut splits a character; then
    // the response is decoded on its own.
    let response = match opening.strip_prefix(prompt.as_str()) {
        Some(rest) => rest.to_string(),
        None => tokenizer.decode(&ids[k..end], true)?,
    };
    Ok(SftRow { prompt, response })
}

/// A training stage: `job` with the experiment's data and initialisation.
#[allow(clippy::too_many_arguments)]
fn job_stage(
    r: &Runner<'_>,
    name: &str,
    kind: &str,
    job: &Path,
    data: &Stage,
    (train, eval): (&str, Option<&str>),
    init: Option<&Stage>,
    reference: Option<&Stage>,
) -> Result<Stage> {
    let inputs = json!({
        "job": file_text(job)?,
        "data": data.fingerprint,
        "init": init.map(|s| &s.fingerprint),
        "reference": reference.map(|s| &s.fingerprint),
    });
    r.stage(name, inputs, |st| {
        let eval = eval.map(|e| data.path(e));
        train_job(
            st,
            job,
            kind,
            &data.path(train),
            eval.as_deref(),
            init,
            reference,
        )
    })
}

fn train_job(
    st: &Stage,
    job: &Path,
    kind: &str,
    train: &Path,
    eval: Option<&Path>,
    init: Option<&Stage>,
    reference: Option<&Stage>,
) -> Result<()> {
    let mut spec = crate::train_cmd::read_spec(job)?;
    spec.data.train = train.to_path_buf();
    spec.data.eval = eval.map(Path::to_path_buf);
    spec.train.out_dir = st.dir.clone();
    // The upstream model is the start unless the job names its own (e.g. a
    // reward model on a pretrained encoder).
    if let (Some(init), ModelSpec::Pretrained { path }) = (init, &mut spec.model) {
        if path.as_os_str().is_empty() {
            *path = init.dir.clone();
        }
    }
    if let Some(reference) = reference {
        let mut objective = match spec.objective.take() {
            Some(o) => o,
            None => ObjectiveSpec::default_for(kind)?,
        };
        if let ObjectiveSpec::Dpo { reference: r, .. } = &mut objective {
            *r = Some(reference.dir.clone());
        }
        spec.objective = Some(objective);
    }
    crate::train_cmd::train(spec, kind, job)?;
    Ok(())
}

/// `n` completions per train prompt (the first `prompts` of them) by the base
/// model under its template (`model` None) or by a guide under `{prompt}`.
fn sampling_stage(
    r: &Runner<'_>,
    name: &str,
    data: &Stage,
    model: Option<&Stage>,
    prompts: usize,
    n: usize,
) -> Result<Stage> {
    let c = r.config;
    let g = &c.guides;
    let inputs = json!({
        "data": data.fingerprint,
        "model": model.map_or_else(|| json!({ "base": c.eval.base, "template": c.eval.template }), |m| json!(m.fingerprint)),
        "prompts": prompts, "n": n, "tokens": g.sample_tokens,
        "temperature": g.sample_temperature, "seed": c.seed,
    });
    r.stage(name, inputs, |st| {
        let all = crate::sample_cmd::read_prompts(&data.path("train_prompts.jsonl"))?;
        let mut guide = GuideArgs::defaults()?;
        let path = match model {
            Some(m) => m.dir.clone(),
            None => {
                guide.base_template = c.eval.template.clone();
                c.eval.base.clone()
            }
        };
        let config = sampling_config(c, Method::Base, g.sample_tokens, g.sample_temperature);
        let out = st.path("samples.jsonl");
        let job = SampleJob {
            model: &path,
            prompts: &all[..prompts],
            out: &out,
            n,
            batch: g.batch,
            config: &config,
            guide: &guide,
        };
        sample(&job, &format!("[stage {name}]"))?;
        // The last twentieth of the prompts is held out (at least one).
        let rows: Vec<SftRow> = read_jsonl(&out)?;
        let held = (prompts / 20).max(1).min(prompts - 1) * n;
        let split = rows.len() - held;
        write_lines(
            &st.path("train.jsonl"),
            rows[..split].iter().map(|r| json!(r)),
        )?;
        write_lines(
            &st.path("heldout.jsonl"),
            rows[split..].iter().map(|r| json!(r)),
        )
    })
}

/// A guidance config for plain sampling or a method of the matrix.
pub fn sampling_config(
    c: &ExperimentConfig,
    method: Method,
    max_new_tokens: usize,
    temperature: f64,
) -> GuidanceConfig {
    method.config(&beam_shape(c, max_new_tokens, temperature), c.eval.beta)
}

/// The experiment's W, K and L before a method expands them (Base and EFT
/// reset them to one row; BoN to one beam of W * K).
pub fn beam_shape(c: &ExperimentConfig, max_new_tokens: usize, temperature: f64) -> GuidanceConfig {
    let e = &c.eval;
    GuidanceConfig {
        token: ivg_decode::TokenPolicy::Base,
        chunk: ivg_decode::ChunkRanking::None,
        width: e.width,
        successors: e.successors,
        chunk_len: Some(e.chunk_len),
        max_new_tokens,
        sampling: SamplingConfig {
            temperature,
            top_k: None,
            top_p: None,
        },
        seed: c.seed,
        stop_strings: Vec::new(),
    }
}

/// Two pi_ref completions per prompt, scored by the gold classifier; the
/// better of each couple is chosen. The last prompts' pairs are held out.
fn pairs_stage(r: &Runner<'_>, samples: &Stage, gold: &Stage) -> Result<Stage> {
    let g = &r.config.guides;
    let inputs = json!({ "samples": samples.fingerprint, "gold": gold.fingerprint, "heldout": g.heldout_pair_prompts });
    r.stage("pairs", inputs, |st| {
        let rows: Vec<SftRow> = read_jsonl(&samples.path("samples.jsonl"))?;
        let labeler = crate::label_cmd::classifier_labeler(&gold.dir, 1, "{prompt}{response}")?;
        let rewards = labeler.score(&rows, 32)?;
        write_lines(
            &st.path("samples_gold.jsonl"),
            rows.iter().zip(&rewards).map(
                |(row, w)| json!({ "prompt": row.prompt, "response": row.response, "reward": w }),
            ),
        )?;
        let split = rows.len() - 2 * g.heldout_pair_prompts;
        for (file, range) in [
            ("train_pairs.jsonl", 0..split),
            ("heldout_pairs.jsonl", split..rows.len()),
        ] {
            let (pairs, stats) = adjacent_pairs(&rows[range.clone()], &rewards[range], 0.0)?;
            eprintln!(
                "{file}: {} pairs ({} ties dropped)",
                stats.pairs, stats.close
            );
            write_lines(&st.path(file), pairs.iter().map(|p| json!(p)))?;
        }
        Ok(())
    })
}

/// The explicit value's `{prompt, response, reward}` rows: the configured
/// texts scored by the reward model, the last `2 * heldout_pair_prompts` held
/// out (with pi_ref samples, the held-out pairs' completions).
fn value_data_stage(
    r: &Runner<'_>,
    data: &Stage,
    samples: &Stage,
    reward: &Stage,
) -> Result<Stage> {
    let c = r.config;
    let g = &c.guides;
    let heldout = 2 * g.heldout_pair_prompts;
    let texts = match g.value_texts {
        ValueTexts::RefSamples => json!({ "ref_samples": samples.fingerprint }),
        ValueTexts::Reviews => json!({
            "reviews": data.fingerprint, "rows": g.value_reviews, "tokens": g.sample_tokens,
        }),
    };
    let inputs = json!({ "texts": texts, "reward": reward.fingerprint, "heldout": heldout });
    r.stage("value_data", inputs, |st| {
        let rows: Vec<SftRow> = match g.value_texts {
            ValueTexts::RefSamples => read_jsonl(&samples.path("samples.jsonl"))?,
            ValueTexts::Reviews => value_reviews(c, &data.path("imdb_train.jsonl"))?,
        };
        let labeler = crate::label_cmd::reward_labeler(&reward.dir, None)?;
        let rewards = labeler.score(&rows, 32)?;
        let all: Vec<Value> = rows
            .iter()
            .zip(&rewards)
            .map(|(row, w)| json!({ "prompt": row.prompt, "response": row.response, "reward": w }))
            .collect();
        let split = all.len() - heldout;
        write_lines(&st.path("train.jsonl"), all[..split].iter().cloned())?;
        write_lines(&st.path("heldout.jsonl"), all[split..].iter().cloned())
    })
}

/// `guides.value_reviews` train-side reviews after the prompt ones, as
/// `{prompt, response}` openings of `sample_tokens` response tokens.
fn value_reviews(c: &ExperimentConfig, train: &Path) -> Result<Vec<SftRow>> {
    let reviews: Vec<LabelRow> = read_jsonl(train)?;
    let range = c.data.train_prompts..c.data.train_prompts + c.guides.value_reviews;
    if range.end > reviews.len() {
        bail!(
            "{} has {} reviews; guides.value_reviews needs {} after the {} data.train_prompts",
            train.display(),
            reviews.len(),
            c.guides.value_reviews,
            c.data.train_prompts
        );
    }
    let tokenizer = crate::load::load_tokenizer(&c.eval.base)?;
    range
        .map(|i| review_row(&tokenizer, &reviews[i].text, c, i, c.guides.sample_tokens))
        .collect()
}
