//! ivg-train: training the guides (issue 4). So far: the JSONL data formats
//! ([`data`]), the SFT and DPO objectives ([`objective`]), the reward model and
//! the explicit value fits ([`reward`]) and the classifier ([`classifier`]);
//! the training loop ([`trainer`]) with AdamW ([`optim`]) and atomic
//! checkpoints ([`checkpoint`]); and whole jobs as `ivg train` runs them: a
//! typed spec ([`spec`]), tokenization ([`prep`]), model initialisation
//! ([`build`]), held-out metrics ([`metrics`]) and [`run_job`].

pub mod build;
pub mod checkpoint;
pub mod classifier;
pub mod data;
pub mod job;
pub mod jobs;
pub mod label;
pub mod metrics;
pub mod objective;
pub mod optim;
pub mod prep;
pub mod reward;
pub mod spec;
pub mod trainer;

pub use checkpoint::{
    latest_checkpoint, load_checkpoint, save_checkpoint, Checkpoint, LossRecord, Resumed,
};
pub use classifier::{classifier_logits, Classifier, ClassifierBatch};
pub use data::{read_jsonl, DataError, LabelRow, PairRow, RewardRow, SftRow};
pub use job::{read_eval_log, EvalRecord, JobEvent, JobReport, Metrics};
pub use jobs::run_job;
pub use objective::{response_log_probs, Dpo, DpoBatch, Example, Objective, Sft};
pub use optim::{AdamW, OptimConfig};
pub use reward::{
    sequence_rewards, PairBatch, QValueFit, Reward, ScalarValueFit, ValueBatch, ValueLoss,
};
pub use spec::{
    DataSpec, ModelSpec, ObjectiveSpec, TrainSpec, Truncation, ValueHead, ValueLossKind,
};
pub use trainer::{train, LoopConfig, Progress, Run};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] ivg_models::ModelError),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("invalid batch: {0}")]
    Batch(String),
    #[error("invalid training config: {0}")]
    Config(String),
    #[error("numerical failure: {0}")]
    Numerics(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}
