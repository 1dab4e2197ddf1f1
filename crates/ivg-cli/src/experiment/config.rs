//! The experiment file (`experiments/sentiment.toml`): every stage's settings,
//! typed and validated before any work starts, so a typo fails in the first
//! second and not after an hour of training.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ivg_decode::Method;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Where the stages cache their outputs (a stage reruns only when its
    /// inputs change).
    pub work_dir: PathBuf,
    /// Where the report, the exact config and the git revision are written.
    pub results_dir: PathBuf,
    #[serde(default)]
    pub seed: u64,
    pub data: DataConfig,
    pub gold: GoldConfig,
    pub guides: GuidesConfig,
    pub eval: EvalConfig,
    #[serde(default)]
    pub ablation: AblationConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Train-side reviews exported (a seeded subset; all by default).
    #[serde(default)]
    pub train_rows: Option<usize>,
    /// Test-side reviews exported; test and validation prompts come from them.
    #[serde(default = "default_test_rows")]
    pub test_rows: usize,
    /// Prompts for the evaluation (the first test-side reviews).
    pub test_prompts: usize,
    /// Prompts for hyperparameters and the ablation (the last test-side
    /// reviews, disjoint from the test prompts).
    pub val_prompts: usize,
    /// Train-side prompts available to the guide stages.
    pub train_prompts: usize,
    /// A prompt is the first `k` base tokens of a review, `k` drawn per review
    /// (seeded) from this inclusive range.
    #[serde(default = "default_prompt_tokens")]
    pub prompt_tokens: [usize; 2],
}

fn default_test_rows() -> usize {
    2000
}
fn default_prompt_tokens() -> [usize; 2] {
    [8, 16]
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldConfig {
    /// The classifier training job (`ivg train classifier`); data paths and
    /// the output directory are set by the experiment.
    pub job: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuidesConfig {
    /// Small Llama LM on train-side review text (`sft`, fresh model).
    pub lm_job: PathBuf,
    /// pi_ref: the LM fine-tuned on base-model completions (`sft`).
    pub sft_job: PathBuf,
    /// pi_tuned: DPO from pi_ref on the gold-ranked pairs.
    pub dpo_job: PathBuf,
    /// A reward model on the same pairs.
    pub reward_job: PathBuf,
    /// The explicit value (Q head) on texts labelled by the reward model.
    pub value_job: PathBuf,
    /// The explicit value's training texts (method.md: responses sampled
    /// from pi_ref, or taken from the data), labelled by the reward model.
    #[serde(default)]
    pub value_texts: ValueTexts,
    /// With `value_texts = "reviews"`: how many train-side reviews, taken
    /// after the `data.train_prompts` ones; the last `2 *
    /// heldout_pair_prompts` are held out.
    #[serde(default = "default_value_reviews")]
    pub value_reviews: usize,
    /// Base-model completions (one per prompt) that pi_ref is fine-tuned on.
    pub sft_prompts: usize,
    /// Prompts with two pi_ref completions each, ranked by the gold reward.
    pub pair_prompts: usize,
    /// Of those, the last ones are held out to measure the reward model.
    pub heldout_pair_prompts: usize,
    #[serde(default = "default_sample_tokens")]
    pub sample_tokens: usize,
    #[serde(default = "default_sample_temperature")]
    pub sample_temperature: f64,
    /// Prompts decoded together when sampling.
    #[serde(default = "default_batch")]
    pub batch: usize,
}

/// Where the explicit value's `{prompt, response}` texts come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueTexts {
    /// The pi_ref completions of the preference pairs (the CD / FUDGE recipe).
    #[default]
    RefSamples,
    /// Train-side reviews: a prompt cut as the evaluation prompts are, and
    /// the review's next `sample_tokens` tokens as the response. Coherent
    /// text, unlike a small pi_ref's samples, and as many rows as wanted.
    Reviews,
}

fn default_value_reviews() -> usize {
    6000
}
fn default_sample_tokens() -> usize {
    50
}
fn default_sample_temperature() -> f64 {
    1.0
}
fn default_batch() -> usize {
    16
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// The large base model (a GGUF file, an HF directory or `asset:NAME`).
    pub base: PathBuf,
    /// The base model's prompt; `{prompt}` is the truncated review.
    pub template: String,
    pub max_new_tokens: usize,
    pub temperature: f64,
    pub width: usize,
    pub successors: usize,
    pub chunk_len: usize,
    pub beta: f64,
    /// Best-of-N's N; the method matrix draws W * K candidates, so it must equal that.
    pub bon_n: usize,
    /// Methods of the matrix, plus `tuned` (pi_tuned sampled alone).
    pub methods: Vec<String>,
    /// Rows decoded together: a method with W * K rows per prompt takes
    /// `batch_rows / (W * K)` prompts at a time (at least one), so single-row
    /// methods (Base, EFT) batch as well as beam searches.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
}

fn default_batch_rows() -> usize {
    64
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AblationConfig {
    /// EFTi's beta values, on the validation prompts.
    #[serde(default)]
    pub beta: Vec<f64>,
    /// CBSe's chunk lengths, on the validation prompts.
    #[serde(default)]
    pub chunk_len: Vec<usize>,
}

/// A method of the evaluation: a row of the matrix or pi_tuned alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalMethod {
    Matrix(Method),
    Tuned,
}

impl EvalMethod {
    pub fn parse(name: &str) -> Result<Self> {
        if name.eq_ignore_ascii_case("tuned") {
            return Ok(Self::Tuned);
        }
        Ok(Self::Matrix(Method::from_name(name).with_context(
            || format!("eval.methods: `{name}` (a method of the matrix or `tuned`)"),
        )?))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Matrix(m) => m.name(),
            Self::Tuned => "tuned",
        }
    }
}

impl ExperimentConfig {
    /// Reads and validates `path`; relative paths inside it are taken from
    /// the current directory (the repository root in the README's commands).
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: Self = toml::from_str(&text)
            .with_context(|| format!("{}: invalid experiment config", path.display()))?;
        config
            .validate()
            .with_context(|| format!("in {}", path.display()))?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let d = &self.data;
        let g = &self.guides;
        let e = &self.eval;
        positive("data.test_prompts", d.test_prompts)?;
        positive("data.val_prompts", d.val_prompts)?;
        positive("data.train_prompts", d.train_prompts)?;
        if d.test_prompts + d.val_prompts > d.test_rows {
            bail!(
                "data.test_prompts + data.val_prompts = {} exceed data.test_rows = {}",
                d.test_prompts + d.val_prompts,
                d.test_rows
            );
        }
        let [lo, hi] = d.prompt_tokens;
        if lo == 0 || lo > hi {
            bail!("data.prompt_tokens must be [low, high] with 1 <= low <= high, got [{lo}, {hi}]");
        }
        positive("guides.sft_prompts", g.sft_prompts)?;
        positive("guides.pair_prompts", g.pair_prompts)?;
        positive("guides.batch", g.batch)?;
        positive("guides.sample_tokens", g.sample_tokens)?;
        if g.heldout_pair_prompts == 0 || g.heldout_pair_prompts >= g.pair_prompts {
            bail!(
                "guides.heldout_pair_prompts must be in 1..{} (guides.pair_prompts), got {}",
                g.pair_prompts,
                g.heldout_pair_prompts
            );
        }
        for (field, n) in [
            ("guides.sft_prompts", g.sft_prompts),
            ("guides.pair_prompts", g.pair_prompts),
        ] {
            if n > d.train_prompts {
                bail!(
                    "{field} = {n} exceeds data.train_prompts = {}",
                    d.train_prompts
                );
            }
        }
        if g.value_texts == ValueTexts::Reviews && g.value_reviews <= 2 * g.heldout_pair_prompts {
            bail!(
                "guides.value_reviews = {} must exceed the {} held-out rows (2 * guides.heldout_pair_prompts)",
                g.value_reviews,
                2 * g.heldout_pair_prompts
            );
        }
        if !(g.sample_temperature.is_finite() && g.sample_temperature >= 0.0) {
            bail!(
                "guides.sample_temperature must be >= 0, got {}",
                g.sample_temperature
            );
        }
        positive("eval.max_new_tokens", e.max_new_tokens)?;
        positive("eval.width", e.width)?;
        positive("eval.successors", e.successors)?;
        positive("eval.chunk_len", e.chunk_len)?;
        positive("eval.batch_rows", e.batch_rows)?;
        if e.bon_n != e.width * e.successors {
            bail!(
                "eval.bon_n = {} but best-of-N draws W * K = {} candidates (method.md): set them equal",
                e.bon_n,
                e.width * e.successors
            );
        }
        if !e.beta.is_finite() || !e.temperature.is_finite() || e.temperature < 0.0 {
            bail!("eval.beta and eval.temperature must be finite, temperature >= 0");
        }
        if !e.template.contains("{prompt}") {
            bail!(
                "eval.template must contain {{prompt}}, got `{}`",
                e.template
            );
        }
        if e.methods.is_empty() {
            bail!("eval.methods is empty");
        }
        let methods = self.methods()?;
        for (i, m) in methods.iter().enumerate() {
            if methods[..i].contains(m) {
                bail!("eval.methods lists `{}` twice", m.name());
            }
        }
        if !methods.contains(&EvalMethod::Matrix(Method::Base)) {
            bail!("eval.methods must include `base`: win rates are against it");
        }
        for &b in &self.ablation.beta {
            if !b.is_finite() {
                bail!("ablation.beta: {b} is not finite");
            }
        }
        if self.ablation.chunk_len.contains(&0) {
            bail!("ablation.chunk_len: a chunk length must be at least 1");
        }
        Ok(())
    }

    pub fn methods(&self) -> Result<Vec<EvalMethod>> {
        self.eval
            .methods
            .iter()
            .map(|m| EvalMethod::parse(m))
            .collect()
    }
}

fn positive(field: &str, n: usize) -> Result<()> {
    if n == 0 {
        bail!("{field} must be at least 1");
    }
    Ok(())
}
