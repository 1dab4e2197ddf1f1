//! ivg-train: training the guides (issue 4). So far: the JSONL data formats
//! ([`data`]) and the SFT and DPO objectives ([`objective`]); the training
//! loop, the reward, value and classifier objectives and checkpoints follow.

pub mod data;
pub mod objective;

pub use data::{read_jsonl, DataError, LabelRow, PairRow, RewardRow, SftRow};
pub use objective::{response_log_probs, Dpo, DpoBatch, Example, Objective, Sft};

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
}
