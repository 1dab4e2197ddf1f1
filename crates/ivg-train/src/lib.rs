//! ivg-train: training the guides (issue 4). So far: the JSONL data formats
//! ([`data`]), the SFT and DPO objectives ([`objective`]), the reward model and
//! the explicit value fits ([`reward`]) and the classifier ([`classifier`]);
//! the training loop ([`trainer`]) with AdamW ([`optim`]) and atomic
//! checkpoints ([`checkpoint`]). The `ivg train` command follows.

pub mod checkpoint;
pub mod classifier;
pub mod data;
pub mod objective;
pub mod optim;
pub mod reward;
pub mod trainer;

pub use checkpoint::{
    latest_checkpoint, load_checkpoint, save_checkpoint, Checkpoint, LossRecord, Resumed,
};
pub use classifier::{classifier_logits, Classifier, ClassifierBatch};
pub use data::{read_jsonl, DataError, LabelRow, PairRow, RewardRow, SftRow};
pub use objective::{response_log_probs, Dpo, DpoBatch, Example, Objective, Sft};
pub use optim::{AdamW, OptimConfig};
pub use reward::{
    sequence_rewards, PairBatch, QValueFit, Reward, ScalarValueFit, ValueBatch, ValueLoss,
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
