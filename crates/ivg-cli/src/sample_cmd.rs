//! `ivg sample`: completions for a JSONL file of prompts with any model and
//! any method of the matrix, written as `{prompt, response}` rows (the SFT and
//! labelling format). Prompts run in batches through the guided engine; each
//! finished batch is appended at once, so an interrupted run resumes where it
//! stopped, and every sample's seed depends only on its position.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use ivg_decode::{guided_generate_seeded, row_seed};
use serde::Deserialize;

use crate::load::load_lm;

#[derive(clap::Args)]
pub struct SampleArgs {
    /// The base model: an HF directory or a .gguf file.
    #[arg(long, alias = "base")]
    model: PathBuf,
    /// JSONL rows with a `prompt` field (other fields are ignored).
    #[arg(long)]
    prompts: PathBuf,
    /// Where the `{prompt, response}` rows go (appended to on resume).
    #[arg(long)]
    out: PathBuf,
    /// Completions per prompt.
    #[arg(long, default_value_t = 1)]
    n: usize,
    /// Samples decoded together.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    #[command(flatten)]
    decode: crate::guided::DecodeArgs,
    #[command(flatten)]
    guide: crate::guided::GuideArgs,
}

#[derive(Deserialize)]
struct PromptRow {
    prompt: String,
}

pub fn read_prompts(path: &std::path::Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut prompts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: PromptRow = serde_json::from_str(line).with_context(|| {
            format!(
                "{}:{}: expected an object with a `prompt` string",
                path.display(),
                i + 1
            )
        })?;
        prompts.push(row.prompt);
    }
    if prompts.is_empty() {
        bail!("{}: no prompts", path.display());
    }
    Ok(prompts)
}

/// Rows already in `out` (a resumed run skips them); a torn last line is cut.
pub fn done_rows(out: &std::path::Path) -> Result<usize> {
    if !out.exists() {
        return Ok(0);
    }
    // Bytes, not a string: a kill can cut a multi-byte character in half.
    let bytes = std::fs::read(out).with_context(|| format!("reading {}", out.display()))?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if complete < bytes.len() {
        // Truncated in place: the finished rows are never rewritten.
        std::fs::OpenOptions::new()
            .write(true)
            .open(out)
            .and_then(|f| f.set_len(complete as u64))
            .with_context(|| format!("cutting the torn last line of {}", out.display()))?;
    }
    let text = std::str::from_utf8(&bytes[..complete])
        .with_context(|| format!("{}: not UTF-8", out.display()))?;
    Ok(text.lines().filter(|l| !l.trim().is_empty()).count())
}

pub fn run(args: SampleArgs) -> Result<()> {
    if args.n == 0 || args.batch == 0 {
        bail!("--n and --batch must be at least 1");
    }
    let prompts = read_prompts(&args.prompts)?;
    let config = args.decode.config(&args.guide)?;
    let job = SampleJob {
        model: &args.model,
        prompts: &prompts,
        out: &args.out,
        n: args.n,
        batch: args.batch,
        config: &config,
        guide: &args.guide,
    };
    let total = sample(&job, "samples")?;
    println!("{}: {total} samples", args.out.display());
    Ok(())
}

/// `n` completions of each prompt by `model` under `config`, appended to
/// `out` batch by batch (a rerun resumes after the last complete row).
pub struct SampleJob<'a> {
    pub model: &'a std::path::Path,
    pub prompts: &'a [String],
    pub out: &'a std::path::Path,
    pub n: usize,
    pub batch: usize,
    pub config: &'a ivg_decode::GuidanceConfig,
    pub guide: &'a crate::guided::GuideArgs,
}

/// Runs `job`; progress lines start with `label`. Returns the row count.
pub fn sample(job: &SampleJob<'_>, label: &str) -> Result<usize> {
    let lm = load_lm(job.model, false)?;
    let base_tokenizer = lm.tokenizer.clone();
    let mut values = crate::guided::build_values(job.guide, job.config, &base_tokenizer)?;
    let mut guides = crate::guided::guides(
        ivg_decode::BaseModel::Local(&lm.model),
        &lm.tokenizer,
        &mut values,
    );
    // Sample j of prompt i is row i*n + j of the output.
    let total = job.prompts.len() * job.n;
    let mut next = done_rows(job.out)?;
    if next > total {
        bail!(
            "{} already has {next} rows, more than the {total} asked for",
            job.out.display()
        );
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(job.out)
        .with_context(|| format!("opening {}", job.out.display()))?;
    let stop_ids = lm.stop_ids();
    let started = std::time::Instant::now();
    let resumed_at = next;
    while next < total {
        let rows: Vec<usize> = (next..(next + job.batch).min(total)).collect();
        let texts: Vec<String> = rows
            .iter()
            .map(|r| job.prompts[r / job.n].clone())
            .collect();
        let ids = texts
            .iter()
            .map(|t| {
                Ok(lm
                    .tokenizer
                    .encode(&job.guide.base_template.replace("{prompt}", t), true)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let seeds: Vec<u64> = rows.iter().map(|&r| row_seed(job.config.seed, r)).collect();
        let outputs = guided_generate_seeded(
            &mut guides,
            &texts,
            &ids,
            &seeds,
            job.config,
            &stop_ids,
            &mut |_| {},
        )?;
        let mut chunk = String::new();
        for (text, out) in texts.iter().zip(&outputs) {
            let response = lm.tokenizer.decode(&out.tokens, true)?;
            chunk
                .push_str(&serde_json::json!({ "prompt": text, "response": response }).to_string());
            chunk.push('\n');
        }
        file.write_all(chunk.as_bytes())
            .and_then(|()| file.flush())
            .with_context(|| format!("writing {}", job.out.display()))?;
        next += rows.len();
        let rate = (next - resumed_at) as f64 / started.elapsed().as_secs_f64().max(1e-9);
        eprint!(
            "\r{label}: {next}/{total} samples, {rate:.2}/s, eta {}   ",
            crate::experiment::eta((total - next) as f64 / rate.max(1e-9))
        );
    }
    eprintln!();
    Ok(total)
}
