//! The typed configuration of `ivg train` (`train.toml`): which objective,
//! which model to start from, which data, and the loop settings. Unknown
//! fields are errors; every value is validated before any work starts, and the
//! resolved spec is saved in each checkpoint.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::trainer::LoopConfig;
use crate::TrainError;

/// One training job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    /// The objective and its parameters; `ivg train KIND` fills the default of
    /// `KIND` when this is absent and refuses a different kind.
    #[serde(default)]
    pub objective: Option<ObjectiveSpec>,
    pub model: ModelSpec,
    pub data: DataSpec,
    pub train: LoopConfig,
    /// Seeds the data order and the initialisation of new parameters.
    #[serde(default)]
    pub seed: u64,
}

/// The objectives of method.md, "Training the guides".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ObjectiveSpec {
    /// Next-token NLL on response tokens; data `{prompt, response}`.
    Sft,
    /// DPO on `{prompt, chosen, rejected}`; the frozen reference is `reference`,
    /// or the initial model when absent.
    Dpo {
        #[serde(default = "default_dpo_beta")]
        beta: f64,
        #[serde(default)]
        reference: Option<PathBuf>,
    },
    /// Bradley-Terry reward model (scalar head at the last token) on pairs.
    Reward,
    /// Explicit value on `{prompt, response, reward}`: every response prefix
    /// fitted to the final reward.
    Value {
        #[serde(default)]
        head: ValueHead,
        #[serde(default)]
        loss: ValueLossKind,
    },
    /// Sequence classifier (BERT encoder + head) on `{text, label}`.
    Classifier {
        #[serde(default = "default_labels")]
        num_labels: usize,
    },
}

fn default_dpo_beta() -> f64 {
    0.1
}
fn default_labels() -> usize {
    2
}

/// The form of an explicit value model (method.md): a vocabulary-sized Q head
/// (`lm_head`, `V = Q(s_t, y_t)`) or a scalar `score` head on each prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueHead {
    #[default]
    Q,
    Scalar,
}

/// Regression to the reward (CD) or FUDGE's binary cross-entropy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueLossKind {
    #[default]
    Regression,
    Fudge,
}

impl ObjectiveSpec {
    /// The objective `ivg train KIND` names, with its defaults.
    pub fn default_for(kind: &str) -> Result<Self, TrainError> {
        Ok(match kind {
            "sft" => Self::Sft,
            "dpo" => Self::Dpo {
                beta: default_dpo_beta(),
                reference: None,
            },
            "reward" => Self::Reward,
            "value" => Self::Value {
                head: ValueHead::default(),
                loss: ValueLossKind::default(),
            },
            "classifier" => Self::Classifier {
                num_labels: default_labels(),
            },
            other => {
                return Err(TrainError::Config(format!(
                    "unknown objective `{other}` (sft, dpo, reward, value, classifier)"
                )))
            }
        })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sft => "sft",
            Self::Dpo { .. } => "dpo",
            Self::Reward => "reward",
            Self::Value { .. } => "value",
            Self::Classifier { .. } => "classifier",
        }
    }
}

/// Where the model's initial parameters come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "init", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelSpec {
    /// An HF directory or a GGUF file (dequantized to f32). Heads the
    /// checkpoint lacks (a reward `score`, a classifier) start fresh.
    /// (`path` may be left out of a job that an experiment completes.)
    Pretrained {
        #[serde(default)]
        path: PathBuf,
    },
    /// Fresh random weights from an HF `config` table, using the tokenizer of
    /// `tokenizer` (a model directory, GGUF or `tokenizer.json`), so that a
    /// small guide shares a large base's vocabulary. `vocab_size`, and the
    /// bos/eos ids when absent, come from that tokenizer.
    Fresh {
        tokenizer: PathBuf,
        config: serde_json::Value,
    },
}

impl ModelSpec {
    /// The file or directory whose tokenizer the job uses.
    pub fn tokenizer_source(&self) -> &std::path::Path {
        match self {
            Self::Pretrained { path } => path,
            Self::Fresh { tokenizer, .. } => tokenizer,
        }
    }
}

/// Training and evaluation data and how it is tokenized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// JSONL in the objective's format (README, "Training data"); may be
    /// left out of a job that an experiment completes.
    #[serde(default)]
    pub train: PathBuf,
    /// Held-out JSONL in the same format, evaluated every `train.eval_every` steps.
    #[serde(default)]
    pub eval: Option<PathBuf>,
    /// Evaluate on at most this many rows of `eval` (the first ones).
    #[serde(default)]
    pub eval_rows: Option<usize>,
    /// How a prompt becomes model input; `{prompt}` is replaced by the prompt.
    #[serde(default = "default_template")]
    pub template: String,
    /// Longest tokenized example; longer ones are truncated (and counted).
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// Examples per micro-batch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// End responses with the tokenizer's end-of-sequence token.
    #[serde(default = "yes")]
    pub append_eos: bool,
    /// Which tokens of a too-long classifier text are kept.
    #[serde(default)]
    pub truncation: Truncation,
}

fn default_template() -> String {
    "{prompt}".into()
}
fn default_max_tokens() -> usize {
    512
}
fn default_batch() -> usize {
    8
}
fn yes() -> bool {
    true
}

/// Keep the first tokens, or the first and last halves (better for reviews,
/// whose verdict is often at the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Truncation {
    #[default]
    Head,
    HeadTail,
}

impl TrainSpec {
    /// Fills the objective from `ivg train KIND` and validates every field.
    pub fn resolve(mut self, kind: &str) -> Result<Self, TrainError> {
        let objective = match self.objective.take() {
            None => ObjectiveSpec::default_for(kind)?,
            Some(o) if o.kind() == kind => o,
            Some(o) => {
                return Err(TrainError::Config(format!(
                    "objective.kind is `{}` but the command is `ivg train {kind}`",
                    o.kind()
                )))
            }
        };
        self.objective = Some(objective);
        self.validate()?;
        Ok(self)
    }

    pub fn objective(&self) -> Result<&ObjectiveSpec, TrainError> {
        self.objective
            .as_ref()
            .ok_or_else(|| TrainError::Config("objective is not set".into()))
    }

    fn validate(&self) -> Result<(), TrainError> {
        let bad =
            |field: &str, problem: String| Err(TrainError::Config(format!("{field}: {problem}")));
        let d = &self.data;
        if d.train.as_os_str().is_empty() {
            return bad("data.train", "is required (a JSONL file)".into());
        }
        if self.train.out_dir.as_os_str().is_empty() {
            return bad(
                "train.out_dir",
                "is required (the checkpoint directory)".into(),
            );
        }
        if let ModelSpec::Pretrained { path } = &self.model {
            if path.as_os_str().is_empty() {
                return bad(
                    "model.path",
                    "is required with init = \"pretrained\"".into(),
                );
            }
        }
        if d.batch_size == 0 {
            return bad("data.batch_size", "must be at least 1".into());
        }
        if d.max_tokens < 2 {
            return bad(
                "data.max_tokens",
                format!("must be at least 2, got {}", d.max_tokens),
            );
        }
        if !d.template.contains("{prompt}") {
            return bad(
                "data.template",
                format!("must contain `{{prompt}}`, got {:?}", d.template),
            );
        }
        if d.eval_rows == Some(0) {
            return bad("data.eval_rows", "must be at least 1".into());
        }
        if self.train.grad_accum == 0 {
            return bad("train.grad_accum", "must be at least 1".into());
        }
        self.train.optimizer.validate()?;
        match self.objective()? {
            ObjectiveSpec::Dpo { beta, .. } if !(beta.is_finite() && *beta > 0.0) => bad(
                "objective.beta",
                format!("must be positive and finite, got {beta}"),
            ),
            ObjectiveSpec::Classifier { num_labels } if *num_labels < 2 => bad(
                "objective.num_labels",
                format!("must be at least 2, got {num_labels}"),
            ),
            _ => Ok(()),
        }
    }
}
