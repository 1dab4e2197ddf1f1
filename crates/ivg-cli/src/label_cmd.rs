//! `ivg label` (score `{prompt, response}` rows with a reward model or a
//! classifier, writing rewards or preference pairs) and `ivg eval classifier`
//! (accuracy of a classifier on `{text, label}` rows).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ivg_models::{LoadOptions, ScalarLm};
use ivg_runtime::ModelRef;
use ivg_train::label::{adjacent_pairs, best_worst_pairs, Labeler};
use ivg_train::metrics::classifier_metrics;
use ivg_train::prep::Encoder;
use ivg_train::{read_jsonl, DataSpec, LabelRow, SftRow, Truncation};

use crate::data_cmd::write_lines;
use crate::load::load_tokenizer;

#[derive(clap::Args)]
pub struct LabelArgs {
    /// `{prompt, response}` JSONL rows.
    #[arg(long)]
    data: PathBuf,
    /// The scorer: a reward model (`--kind reward`) or a BERT classifier.
    #[arg(long)]
    model: PathBuf,
    #[arg(long, value_parser = ["classifier", "reward"], default_value = "classifier")]
    kind: String,
    /// Classifier label whose score is the reward (a logit margin with two labels).
    #[arg(long, default_value_t = 1)]
    label: usize,
    /// Classifier input; `{prompt}` and `{response}` are replaced.
    #[arg(long, default_value = "{prompt}{response}")]
    text: String,
    /// Reward-model prompt template (default: the one it was trained with).
    #[arg(long)]
    template: Option<String>,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Output JSONL: `{prompt, response, reward}` rows, or pairs with --pairs.
    #[arg(long)]
    out: PathBuf,
    /// Write `{prompt, chosen, rejected}`: each prompt's best against its worst response.
    #[arg(long)]
    pairs: bool,
    /// With --pairs: `prompt` pairs each prompt's best and worst response;
    /// `adjacent` pairs rows 2i and 2i+1 (same prompt), e.g. two independent texts.
    #[arg(long, value_parser = ["prompt", "adjacent"], default_value = "prompt")]
    pair_by: String,
    /// With --pairs, skip pairs whose rewards differ by less.
    #[arg(long, default_value_t = 0.0)]
    min_margin: f64,
}

#[derive(clap::Subcommand)]
pub enum EvalCommand {
    /// Accuracy and cross-entropy of a classifier on `{text, label}` rows.
    Classifier(EvalClassifierArgs),
}

#[derive(clap::Args)]
pub struct EvalClassifierArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value_t = 32)]
    batch: usize,
}

/// The data settings a checkpoint was trained with (`train_config.json`).
fn trained_data(model: &Path) -> Option<DataSpec> {
    let dir = ivg_models::loader::checkpoint_dir(model);
    let text = std::fs::read_to_string(dir.join("train_config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    serde_json::from_value(v.get("spec")?.get("data")?.clone()).ok()
}

pub fn classifier_labeler(model: &Path, label: usize, text: &str) -> Result<Labeler> {
    let bert = ModelRef::new(model).load_classifier()?;
    let trained = trained_data(model);
    Ok(Labeler::Classifier {
        max_tokens: trained
            .as_ref()
            .map_or(bert.encoder.config().max_position_embeddings, |d| {
                d.max_tokens
            }),
        truncation: trained.map_or(Truncation::Head, |d| d.truncation),
        model: bert,
        tokenizer: load_tokenizer(model)?,
        label,
        text: text.to_string(),
    })
}

pub fn reward_labeler(model: &Path, template: Option<&str>) -> Result<Labeler> {
    let spec = ivg_train::ModelSpec::Pretrained {
        path: ivg_models::loader::checkpoint_dir(model),
    };
    if ivg_train::build::is_bert(&spec)? {
        // A one-label sequence classifier reads the templated prompt and the response.
        let trained = trained_data(model).map(|d| d.template);
        let prompt = template
            .map(str::to_string)
            .or(trained)
            .unwrap_or("{prompt}".into());
        return classifier_labeler(model, 0, &format!("{prompt}{{response}}"));
    }
    let (config, weights) = ivg_models::open(model, &LoadOptions::default())?;
    let scalar = ScalarLm::load(&weights, &config, crate::generate_cmd::model_name(model))
        .with_context(|| format!("loading the reward model {}", model.display()))?;
    let mut data = trained_data(model).unwrap_or_else(|| DataSpec {
        train: PathBuf::new(),
        eval: None,
        eval_rows: None,
        template: "{prompt}".into(),
        max_tokens: config.context_length(),
        batch_size: 1,
        append_eos: true,
        truncation: Truncation::Head,
    });
    if let Some(t) = template {
        data.template = t.to_string();
    }
    Ok(Labeler::Reward {
        model: scalar,
        tokenizer: load_tokenizer(model)?,
        data,
    })
}

pub fn run(args: LabelArgs) -> Result<()> {
    let rows: Vec<SftRow> = read_jsonl(&args.data)?;
    let labeler = match args.kind.as_str() {
        "reward" => reward_labeler(&args.model, args.template.as_deref())?,
        _ => classifier_labeler(&args.model, args.label, &args.text)?,
    };
    let rewards = labeler.score(&rows, args.batch)?;
    if !args.pairs {
        write_lines(
            &args.out,
            rows.iter().zip(&rewards).map(|(r, w)| {
                serde_json::json!({ "prompt": r.prompt, "response": r.response, "reward": w })
            }),
        )?;
        let mean = rewards.iter().sum::<f64>() / rewards.len() as f64;
        println!(
            "{}: {} rows scored, mean reward {mean:.4}",
            args.out.display(),
            rows.len()
        );
        return Ok(());
    }
    let (pairs, stats) = match args.pair_by.as_str() {
        "adjacent" => adjacent_pairs(&rows, &rewards, args.min_margin)?,
        _ => best_worst_pairs(&rows, &rewards, args.min_margin),
    };
    let groups = match args.pair_by.as_str() {
        "adjacent" => "row couples",
        _ => "prompts",
    };
    let summary = format!(
        "{} pairs from {} {groups} ({} with one response, {} with rewards closer than {})",
        stats.pairs, stats.prompts, stats.single, stats.close, args.min_margin
    );
    if pairs.is_empty() {
        bail!("no pairs: {summary}");
    }
    write_lines(&args.out, pairs.iter().map(|p| serde_json::json!(p)))?;
    println!("{}: {summary}", args.out.display());
    Ok(())
}

pub fn run_eval(cmd: EvalCommand) -> Result<()> {
    let EvalCommand::Classifier(args) = cmd;
    let (m, rows) = classifier_eval(&args.model, &args.data, args.batch)?;
    println!(
        "{} on {}: accuracy {:.4} ({rows} rows), loss {:.4}",
        args.model.display(),
        args.data.display(),
        m["accuracy"],
        m["loss"]
    );
    Ok(())
}

/// Accuracy and cross-entropy of the classifier `model` on the `{text, label}`
/// rows of `data`, fed with its training truncation; also the row count.
pub fn classifier_eval(
    model: &Path,
    data_path: &Path,
    batch: usize,
) -> Result<(ivg_train::Metrics, usize)> {
    let rows: Vec<LabelRow> = read_jsonl(data_path)?;
    let bert = ModelRef::new(model).load_classifier()?;
    let tokenizer = load_tokenizer(model)?;
    let data = trained_data(model).unwrap_or_else(|| DataSpec {
        train: PathBuf::new(),
        eval: None,
        eval_rows: None,
        template: "{prompt}".into(),
        max_tokens: bert.encoder.config().max_position_embeddings,
        batch_size: batch,
        append_eos: false,
        truncation: Truncation::Head,
    });
    let ids = Encoder::new(&tokenizer, &data, data_path.display().to_string()).texts(&rows)?;
    let mut logits = Vec::with_capacity(rows.len());
    for (k, chunk) in ids.chunks(batch.max(1)).enumerate() {
        logits.extend(
            bert.classify(chunk)?
                .to_dtype(candle_core::DType::F64)?
                .to_vec2::<f64>()?,
        );
        eprint!(
            "\r{}/{} rows",
            (k * batch + chunk.len()).min(rows.len()),
            rows.len()
        );
    }
    eprintln!();
    let labels: Vec<u32> = rows.iter().map(|r| r.label).collect();
    Ok((classifier_metrics(&logits, &labels), rows.len()))
}
