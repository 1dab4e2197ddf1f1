//! ivg-eval: evaluation tasks and their data. For now the IMDB sentiment task's
//! data (method.md, sentiment setting): train/test reviews and the truncated
//! test-side reviews used as prompts.

pub mod imdb;
