//! The evaluation stages: one per method (and one per ablation setting), each
//! decoding every prompt with the same per-prompt seed, scoring the output
//! with the gold classifier and the base model's NLL, and appending one JSONL
//! row per prompt as each batch finishes (a killed run loses no finished sample).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ivg_decode::{guided_generate_seeded, row_seed, GuidanceConfig, Method};
use ivg_models::{CausalLm, LogitsSpan};
use ivg_train::label::Labeler;
use ivg_train::SftRow;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::config::{EvalMethod, ExperimentConfig};
use super::pipeline::{beam_shape, sampling_config, Guides, Runner};
use super::stages::Stage;
use crate::guided::GuideArgs;
use crate::load::{load_lm, LoadedLm};
use crate::sample_cmd::{done_rows, read_prompts};

/// Mixed into the evaluation's seeds so that its random streams are not
/// those of the sampling stages (which use the plain seed and row index).
const EVAL_SEED_DOMAIN: u64 = 0xE7A1_0000_0000_0001;

/// One evaluated prompt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SampleRow {
    /// Position of the prompt in its prompt file (the pairing key across methods).
    pub index: usize,
    pub prompt: String,
    pub method: String,
    pub output: String,
    pub gold_reward: f64,
    /// Mean negative log-likelihood per output token under the base model
    /// (with its template); `None` for an empty output.
    pub nll: Option<f64>,
    /// Output tokens.
    pub tokens: usize,
    /// Decoding wall time charged to this prompt (its batch's time / batch size).
    pub seconds: f64,
}

/// What every evaluation stage shares: the base model, the gold scorer and the guides.
pub struct Evaluator<'a> {
    pub runner: &'a Runner<'a>,
    pub guides: &'a Guides,
    /// Loaded unless the runner only reports status.
    pub base: Option<&'a LoadedLm>,
    pub gold: Option<&'a Labeler>,
}

/// One evaluation: a method under a guidance config on a prompt file.
pub struct EvalRun<'a> {
    /// Stage name, e.g. `eval/ivg` or `ablation/efti_beta0.5`.
    pub stage: String,
    pub method: EvalMethod,
    pub config: GuidanceConfig,
    /// `test_prompts.jsonl` or `val_prompts.jsonl` of the data stage.
    pub prompts: &'a str,
}

/// The evaluation of `method` with the experiment's settings (beta, L, ...).
pub fn standard_run<'p>(c: &ExperimentConfig, method: EvalMethod, prompts: &'p str) -> EvalRun<'p> {
    let matrix = match method {
        EvalMethod::Matrix(m) => m,
        EvalMethod::Tuned => Method::Base,
    };
    EvalRun {
        stage: format!("eval/{}", method.name()),
        method,
        config: sampling_config(c, matrix, c.eval.max_new_tokens, c.eval.temperature),
        prompts,
    }
}

/// The ablation on the validation prompts, `(setting, run)`: Base (for win
/// rates), EFTi at each `ablation.beta`, CBSe at each `ablation.chunk_len`.
pub fn ablation_runs(c: &ExperimentConfig) -> Vec<(String, EvalRun<'static>)> {
    const VAL: &str = "val_prompts.jsonl";
    let a = &c.ablation;
    if a.beta.is_empty() && a.chunk_len.is_empty() {
        return Vec::new();
    }
    let base = EvalRun {
        stage: "ablation/base".into(),
        ..standard_run(c, EvalMethod::Matrix(Method::Base), VAL)
    };
    let mut runs = vec![("base".to_string(), base)];
    // The raw beam shape: a method's own expansion (Base's W = K = 1) must
    // not leak into another method's.
    let shape = beam_shape(c, c.eval.max_new_tokens, c.eval.temperature);
    for &beta in &a.beta {
        let run = EvalRun {
            stage: format!("ablation/efti_beta{beta}"),
            method: EvalMethod::Matrix(Method::EftI),
            config: Method::EftI.config(&shape, beta),
            prompts: VAL,
        };
        runs.push((format!("efti beta={beta}"), run));
    }
    for &len in &a.chunk_len {
        let mut config = Method::CbsE.config(&shape, c.eval.beta);
        config.chunk_len = Some(len);
        let run = EvalRun {
            stage: format!("ablation/cbse_L{len}"),
            method: EvalMethod::Matrix(Method::CbsE),
            config,
            prompts: VAL,
        };
        runs.push((format!("cbse L={len}"), run));
    }
    runs
}

impl Evaluator<'_> {
    /// Runs (or finds cached) `run`; returns its stage.
    pub fn run(&self, run: &EvalRun<'_>) -> Result<Stage> {
        let c = self.runner.config;
        let g = self.guides;
        // Only the guides the method reads: retraining the explicit value
        // must not redo the implicit-only methods, nor Base.
        let (implicit, explicit) = crate::guided::feeds(&run.config);
        let tuned = run.method == EvalMethod::Tuned;
        let inputs = json!({
            "method": run.method.name(), "config": run.config, "prompts": run.prompts,
            "base": c.eval.base, "template": c.eval.template,
            "data": g.data.fingerprint, "gold": g.gold.fingerprint,
            "sft": implicit.map(|_| &g.sft.fingerprint),
            "dpo": (implicit.is_some() || tuned).then_some(&g.dpo.fingerprint),
            "value": explicit.map(|_| &g.value.fingerprint),
        });
        self.runner
            .stage(&run.stage, inputs, |st| self.decode_all(st, run))
    }

    fn guide_args(&self) -> Result<GuideArgs> {
        let mut a = GuideArgs::defaults()?;
        a.tuned = Some(self.guides.dpo.dir.clone());
        a.reference = Some(self.guides.sft.dir.clone());
        a.value = Some(self.guides.value.dir.clone());
        a.value_kind = "q".into();
        a.base_template = self.runner.config.eval.template.clone();
        Ok(a)
    }

    fn decode_all(&self, st: &Stage, run: &EvalRun<'_>) -> Result<()> {
        let c: &ExperimentConfig = self.runner.config;
        let base = self.base.context("the base model is not loaded")?;
        let prompts = read_prompts(&self.guides.data.path(run.prompts))?;
        let out = st.path("samples.jsonl");
        let mut next = done_rows(&out)?;
        if next > prompts.len() {
            bail!(
                "{} has {next} rows but there are {} prompts",
                out.display(),
                prompts.len()
            );
        }
        let tuned;
        let (lm, template) = match run.method {
            EvalMethod::Tuned => {
                tuned = load_lm(&self.guides.dpo.dir, false)?;
                (&tuned, "{prompt}".to_string())
            }
            EvalMethod::Matrix(_) => (base, c.eval.template.clone()),
        };
        let args = self.guide_args()?;
        let base_tokenizer = lm.tokenizer.clone();
        let mut values = crate::guided::build_values(&args, &run.config, &base_tokenizer)?;
        let mut models = crate::guided::guides(
            ivg_decode::BaseModel::Local(&lm.model),
            &lm.tokenizer,
            &mut values,
        );
        let stop_ids = lm.stop_ids();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out)
            .with_context(|| format!("opening {}", out.display()))?;
        let started = Instant::now();
        let resumed_at = next;
        let per_batch = (c.eval.batch_rows / run.config.rows_per_prompt()).max(1);
        while next < prompts.len() {
            let idx: Vec<usize> = (next..(next + per_batch).min(prompts.len())).collect();
            let texts: Vec<String> = idx.iter().map(|&i| prompts[i].clone()).collect();
            let ids = texts
                .iter()
                .map(|t| {
                    Ok(lm
                        .tokenizer
                        .encode(&template.replace("{prompt}", t), true)?)
                })
                .collect::<Result<Vec<_>>>()?;
            let seeds: Vec<u64> = idx
                .iter()
                .map(|&i| row_seed(c.seed ^ EVAL_SEED_DOMAIN, i))
                .collect();
            let t0 = Instant::now();
            let outputs = guided_generate_seeded(
                &mut models,
                &texts,
                &ids,
                &seeds,
                &run.config,
                &stop_ids,
                &mut |_| {},
            )?;
            let seconds = t0.elapsed().as_secs_f64() / idx.len() as f64;
            let responses = outputs
                .iter()
                .map(|o| Ok(lm.tokenizer.decode(&o.tokens, true)?))
                .collect::<Result<Vec<String>>>()?;
            let batch = Decoded {
                idx: &idx,
                texts: &texts,
                responses: &responses,
                outputs: &outputs,
                seconds,
            };
            let rows = self.score(run, &batch, &stop_ids)?;
            let mut chunk = String::new();
            for row in &rows {
                chunk.push_str(&serde_json::to_string(row)?);
                chunk.push('\n');
            }
            file.write_all(chunk.as_bytes())
                .and_then(|()| file.flush())
                .with_context(|| format!("writing {}", out.display()))?;
            next += idx.len();
            let per = started.elapsed().as_secs_f64() / (next - resumed_at) as f64;
            eprint!(
                "\r[{}] {next}/{} prompts, {per:.1} s/prompt, eta {}   ",
                run.stage,
                prompts.len(),
                super::eta(per * (prompts.len() - next) as f64)
            );
        }
        eprintln!();
        Ok(())
    }

    /// Gold reward and base NLL of each output.
    fn score(
        &self,
        run: &EvalRun<'_>,
        batch: &Decoded<'_>,
        stop_ids: &[u32],
    ) -> Result<Vec<SampleRow>> {
        let Decoded {
            idx,
            texts,
            responses,
            outputs,
            seconds,
        } = *batch;
        let c = self.runner.config;
        let rows: Vec<SftRow> = texts
            .iter()
            .zip(responses)
            .map(|(p, r)| SftRow {
                prompt: p.clone(),
                response: r.clone(),
            })
            .collect();
        let base = self.base.context("the base model is not loaded")?;
        let gold_model = self.gold.context("the gold classifier is not loaded")?;
        let gold = gold_model.score(&rows, rows.len())?;
        let tok = &base.tokenizer;
        let mut out = Vec::with_capacity(rows.len());
        for (k, row) in rows.into_iter().enumerate() {
            let prompt_ids = tok.encode(&c.eval.template.replace("{prompt}", &row.prompt), true)?;
            // The NLL is of the response text: the base's own tokens as drawn
            // without a final stop token (pi_tuned's text is re-encoded, which
            // has none either), so every method is scored alike.
            let response_ids = match run.method {
                EvalMethod::Tuned => tok.encode(&row.response, false)?,
                EvalMethod::Matrix(_) => {
                    let t = &outputs[k].tokens;
                    let end = t.len() - usize::from(t.last().is_some_and(|x| stop_ids.contains(x)));
                    t[..end].to_vec()
                }
            };
            let nll = mean_nll(&base.model, &prompt_ids, &response_ids)
                .with_context(|| format!("{}: base NLL of prompt {}", run.stage, idx[k]))?;
            out.push(SampleRow {
                index: idx[k],
                method: run.method.name().to_string(),
                nll,
                tokens: outputs[k].tokens.len(),
                gold_reward: gold[k],
                output: row.response,
                prompt: row.prompt,
                seconds,
            });
        }
        Ok(out)
    }
}

/// One decoded batch: prompt indices and texts, decoded responses, the
/// engine's outputs, and the decoding seconds charged to each prompt.
struct Decoded<'b> {
    idx: &'b [usize],
    texts: &'b [String],
    responses: &'b [String],
    outputs: &'b [ivg_decode::GuidedOutput],
    seconds: f64,
}

/// Mean `-log p(response_t | prompt, response_<t)` under `model`, `None` for
/// an empty response.
pub fn mean_nll(model: &CausalLm, prompt: &[u32], response: &[u32]) -> Result<Option<f64>> {
    if response.is_empty() || prompt.is_empty() {
        return Ok(None);
    }
    let ids: Vec<u32> = prompt.iter().chain(response).copied().collect();
    let mut state = model.new_state();
    let logits = model.prefill(&[ids], &mut state, LogitsSpan::All)?;
    // Position p predicts token p + 1: the response is predicted from
    // positions prompt.len() - 1 .. prompt.len() + response.len() - 1.
    let rows = logits
        .get(0)?
        .narrow(0, prompt.len() - 1, response.len())?
        .to_vec2::<f32>()?;
    let total: f64 = rows
        .iter()
        .zip(response)
        .map(|(row, &t)| {
            let logit = row.get(t as usize).copied().with_context(|| {
                format!("token {t} outside the base vocabulary of {}", row.len())
            })?;
            Ok(f64::from(ivg_models::numerics::log_sum_exp(row) - logit))
        })
        .sum::<Result<f64>>()?;
    Ok(Some(total / response.len() as f64))
}

/// Reads an evaluation stage's samples.
pub fn read_samples(stage: &Stage) -> Result<Vec<SampleRow>> {
    let path: PathBuf = stage.path("samples.jsonl");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: not a sample row", path.display(), i + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ablation_runs_keep_the_beam_shape() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/toy.toml");
        let c = ExperimentConfig::read(&path).expect("toy config");
        let runs = ablation_runs(&c);
        let names: Vec<&str> = runs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["base", "efti beta=0.5", "efti beta=2", "cbse L=2"]);
        let (_, cbse) = &runs[3];
        assert_eq!(
            (
                cbse.config.width,
                cbse.config.successors,
                cbse.config.chunk_len
            ),
            (c.eval.width, c.eval.successors, Some(2))
        );
        assert_eq!(cbse.config.chunk, ivg_decode::ChunkRanking::Explicit);
        let (_, efti) = &runs[2];
        assert_eq!(
            efti.config.token,
            ivg_decode::TokenPolicy::Implicit { beta: 2.0 }
        );
        assert_eq!(efti.config.rows_per_prompt(), 1);
        assert_eq!(runs[0].1.config.rows_per_prompt(), 1);
    }

    /// The one-pass NLL equals the one from decoding token by token.
    #[test]
    fn mean_nll_matches_incremental_decoding() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../ivg-models/tests/fixtures/tiny/llama");
        let model = ivg_models::load_causal_lm(&dir, &ivg_models::LoadOptions::default())
            .expect("tiny llama");
        let (prompt, response) = (vec![3u32, 5, 7], vec![9u32, 2, 4, 11]);
        let mut state = model.new_state();
        let mut logits = model
            .prefill(std::slice::from_ref(&prompt), &mut state, LogitsSpan::Last)
            .expect("prefill");
        let mut total = 0.0;
        for &t in &response {
            let row = logits.get(0).expect("row").to_vec1::<f32>().expect("host");
            total += f64::from(ivg_models::numerics::log_sum_exp(&row) - row[t as usize]);
            logits = model.step(&[t], &mut state).expect("step");
        }
        let want = total / response.len() as f64;
        let got = mean_nll(&model, &prompt, &response)
            .expect("nll")
            .expect("some");
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
        assert_eq!(mean_nll(&model, &prompt, &[]).expect("empty"), None);
    }
}
