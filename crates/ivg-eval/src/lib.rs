//! ivg-eval: evaluation tasks and their data. The IMDB sentiment task's
//! data (method.md, sentiment setting): train/test reviews and the truncated
//! test-side reviews used as prompts; and the report's statistics and
//! renderings (mean gold reward with a 95% CI, paired win rate against Base,
//! markdown table, SVG plot).

pub mod imdb;
pub mod report;
