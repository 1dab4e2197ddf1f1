//! `ivg data imdb`: the IMDB reviews of the offline assets as training JSONL.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ivg_assets::Asset;
use ivg_eval::imdb::{load_imdb, prompt_prefix, seeded_subset, Review};

#[derive(clap::Subcommand)]
pub enum DataCommand {
    /// Write IMDB train/test reviews as `{text, label}` (label 1 = positive)
    /// and `{prompt: "", response}` for language modelling, and their first
    /// words as `{prompt}` rows for sampling.
    Imdb(ImdbArgs),
}

#[derive(clap::Args)]
pub struct ImdbArgs {
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Train-side reviews to write (a seeded subset; all 25,000 by default).
    #[arg(long)]
    train_rows: Option<usize>,
    /// Test-side reviews to write (a seeded subset).
    #[arg(long, default_value_t = 2000)]
    test_rows: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Words of each review kept as its prompt in `imdb_{train,test}_prompts.jsonl`
    /// (the paper prompts with truncated reviews).
    #[arg(long, default_value_t = 8)]
    prompt_words: usize,
}

pub fn run(cmd: DataCommand) -> Result<()> {
    let DataCommand::Imdb(args) = cmd;
    let (train, test) = export_imdb(
        &args.out,
        args.train_rows,
        args.test_rows,
        args.seed,
        args.prompt_words,
    )?;
    println!(
        "{}: {train} train and {test} test reviews",
        args.out.display()
    );
    Ok(())
}

/// The IMDB export of `ivg data imdb` into `out`; returns the train-side and
/// test-side review counts.
pub fn export_imdb(
    out: &Path,
    train_rows: Option<usize>,
    test_rows: usize,
    seed: u64,
    prompt_words: usize,
) -> Result<(usize, usize)> {
    let paths = crate::assets_cmd::ensure(&[Asset::MovieReviews, Asset::ImdbFull])?;
    let splits = load_imdb(&paths[0], &paths[1])?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let train = seeded_subset(&splits.train, train_rows.unwrap_or(usize::MAX), seed);
    let test = seeded_subset(&splits.test, test_rows, seed);
    write_labelled(&out.join("imdb_train.jsonl"), &train)?;
    write_labelled(&out.join("imdb_test.jsonl"), &test)?;
    for (name, reviews) in [
        ("imdb_train_text.jsonl", &train),
        ("imdb_test_text.jsonl", &test),
    ] {
        write_lines(
            &out.join(name),
            reviews
                .iter()
                .map(|r| serde_json::json!({ "prompt": "", "response": r.text })),
        )?;
    }
    for (name, reviews) in [
        ("imdb_train_prompts.jsonl", &train),
        ("imdb_test_prompts.jsonl", &test),
    ] {
        write_lines(
            &out.join(name),
            reviews
                .iter()
                .map(|r| serde_json::json!({ "prompt": prompt_prefix(&r.text, prompt_words) })),
        )?;
    }
    Ok((train.len(), test.len()))
}

fn write_labelled(path: &Path, reviews: &[&Review]) -> Result<()> {
    write_lines(
        path,
        reviews
            .iter()
            .map(|r| serde_json::json!({ "text": r.text, "label": u32::from(r.positive) })),
    )
}

/// Writes one JSON value per line.
pub fn write_lines(path: &Path, rows: impl Iterator<Item = serde_json::Value>) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    for row in rows {
        writeln!(w, "{row}").with_context(|| format!("writing {}", path.display()))?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))
}
