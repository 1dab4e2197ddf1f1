//! `ivg generate --method ...`: builds the value functions a method needs and
//! runs the guided engine; `--trace FILE` writes every chunk boundary as JSONL.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ivg_decode::{
    guided_generate, ChunkRanking, ChunkTrace, GuidanceConfig, Guides, Method, SamplingConfig,
    TokenPolicy,
};
use ivg_tokenize::Tokenizer;
use ivg_value::{
    wrap_if_needed, ClassifierValue, Feed, ImplicitPair, ImplicitValue, QValue, ScalarValue,
    ValueFunction,
};

use crate::load::{load_lm, load_tokenizer, LoadedLm};

/// Guide models and templates (`{prompt}` marks where the prompt text goes).
#[derive(clap::Args, Clone)]
pub struct GuideArgs {
    /// Method of the paper's matrix: base, boni, bone, efti, efte, cbsi, cbse, efti+cbsi, ivg.
    #[arg(long, default_value = "base")]
    pub method: String,
    /// A guidance configuration file (TOML or JSON): overrides --method and the beam flags.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Tuned small model (implicit value numerator).
    #[arg(long)]
    pub tuned: Option<PathBuf>,
    /// Reference small model (implicit value denominator); defaults to --tuned.
    #[arg(long = "ref")]
    pub reference: Option<PathBuf>,
    /// Explicit value model (see --value-kind).
    #[arg(long)]
    pub value: Option<PathBuf>,
    /// What --value is: `q` (a causal LM whose lm_head is a vocabulary-sized Q head),
    /// `scalar` (a causal backbone with a one-label `score` head read at the last
    /// token) or `classifier` (a BERT sequence classifier scoring the text).
    #[arg(long, default_value = "q")]
    pub value_kind: String,
    /// Label whose margin a `classifier` value rewards.
    #[arg(long, default_value_t = 1)]
    pub value_label: usize,
    #[arg(long, default_value = "{prompt}")]
    pub base_template: String,
    #[arg(long, default_value = "{prompt}")]
    pub tuned_template: String,
    #[arg(long, default_value = "{prompt}")]
    pub ref_template: String,
    #[arg(long, default_value = "{prompt}")]
    pub value_template: String,
    /// EFT strength beta (token level).
    #[arg(long, default_value_t = 1.0)]
    pub beta: f64,
    /// Scale of the chunk-level values.
    #[arg(long, default_value_t = 1.0)]
    pub beta_v: f64,
    /// Beam width W.
    #[arg(long, default_value_t = 4)]
    pub width: usize,
    /// Successors K per survivor.
    #[arg(long, default_value_t = 4)]
    pub successors: usize,
    /// Chunk length L (0 = infinity).
    #[arg(long, default_value_t = 5)]
    pub chunk_len: usize,
    /// End a response once its text contains this string (repeatable), e.g. a newline.
    #[arg(long)]
    pub stop: Vec<String>,
    /// Write every chunk boundary's candidates, values and survivors as JSONL.
    #[arg(long)]
    pub trace: Option<PathBuf>,
}

impl GuideArgs {
    /// The flags' defaults (`--method base`, `{prompt}` templates, ...), for
    /// callers that build a run in code.
    pub fn defaults() -> Result<Self> {
        use clap::{Args, FromArgMatches};
        let cmd = Self::augment_args(clap::Command::new("defaults"));
        let matches = cmd.try_get_matches_from(["defaults"])?;
        Ok(Self::from_arg_matches(&matches)?)
    }
}

/// Length, sampling and seed flags shared by `ivg generate` and `ivg sample`.
#[derive(clap::Args, Clone)]
pub struct DecodeArgs {
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 means greedy.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f64,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub top_p: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl DecodeArgs {
    /// The guidance configuration these flags and the guide flags describe.
    pub fn config(&self, guide: &GuideArgs) -> Result<GuidanceConfig> {
        let sampling = SamplingConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
        };
        guidance_config(guide, self.max_new_tokens, sampling, self.seed)
    }
}

/// The engine's view of a base model and the run's value functions.
pub fn guides<'a>(base: &'a LoadedLm, values: &'a mut ValueFunctions) -> Guides<'a> {
    Guides {
        base: &base.model,
        base_tokenizer: Some(&base.tokenizer),
        implicit: values
            .0
            .as_mut()
            .map(|v| v.as_mut() as &mut dyn ValueFunction),
        explicit: values
            .1
            .as_mut()
            .map(|v| v.as_mut() as &mut dyn ValueFunction),
    }
}

/// The guidance configuration from a file or from the flags.
pub fn guidance_config(
    args: &GuideArgs,
    max_new_tokens: usize,
    sampling: SamplingConfig,
    seed: u64,
) -> Result<GuidanceConfig> {
    if let Some(path) = &args.config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: GuidanceConfig = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text)
                .with_context(|| format!("{}: invalid guidance config", path.display()))?
        } else {
            toml::from_str(&text)
                .with_context(|| format!("{}: invalid guidance config", path.display()))?
        };
        config
            .validate()
            .with_context(|| format!("{}", path.display()))?;
        return Ok(config);
    }
    let method = Method::from_name(&args.method)?;
    let shape = GuidanceConfig {
        token: TokenPolicy::Base,
        chunk: ChunkRanking::None,
        width: args.width,
        successors: args.successors,
        chunk_len: (args.chunk_len > 0).then_some(args.chunk_len),
        max_new_tokens,
        sampling,
        seed,
        stop_strings: args.stop.clone(),
    };
    let config = method.config(&shape, args.beta);
    config.validate()?;
    Ok(config)
}

/// How the implicit and explicit value functions must be fed for `config`
/// (stepped when they guide token-wise, chunked when they only rank).
pub fn feeds(config: &GuidanceConfig) -> (Option<Feed>, Option<Feed>) {
    let implicit_token = matches!(config.token, TokenPolicy::Implicit { .. });
    let explicit_token = matches!(config.token, TokenPolicy::Explicit { .. });
    let feed = |token: bool, chunk: bool| match (token, chunk) {
        (true, _) => Some(Feed::Stepped),
        (false, true) => Some(Feed::Chunked),
        _ => None,
    };
    (
        feed(implicit_token, config.chunk == ChunkRanking::Implicit),
        feed(explicit_token, config.chunk == ChunkRanking::Explicit),
    )
}

fn load_guide(path: &Option<PathBuf>, flag: &str) -> Result<LoadedLm> {
    match path {
        Some(p) => load_lm(p, false),
        None => bail!("this method needs {flag} PATH"),
    }
}

/// The implicit and the explicit value function of a run, where the method uses them.
pub type ValueFunctions = (
    Option<Box<dyn ValueFunction>>,
    Option<Box<dyn ValueFunction>>,
);

/// Builds the implicit and explicit value functions the config uses.
pub fn build_values(
    args: &GuideArgs,
    config: &GuidanceConfig,
    base_tokenizer: &Arc<Tokenizer>,
) -> Result<ValueFunctions> {
    let (implicit_feed, explicit_feed) = feeds(config);
    let implicit = match implicit_feed {
        None => None,
        Some(feed) => {
            let tuned = load_guide(&args.tuned, "--tuned")?;
            let tuned_model = Arc::new(tuned.model);
            // One model under two templates (a training-free pair) is loaded once.
            let reference = match &args.reference {
                Some(p) if Some(p) != args.tuned.as_ref() => Arc::new(load_lm(p, false)?.model),
                _ => tuned_model.clone(),
            };
            let pair = ImplicitPair {
                tuned: tuned_model,
                tuned_template: args.tuned_template.clone(),
                reference,
                reference_template: args.ref_template.clone(),
                tokenizer: Arc::new(tuned.tokenizer),
                weight: 1.0,
            };
            let value: Box<dyn ValueFunction> = Box::new(ImplicitValue::new(
                "implicit",
                vec![pair],
                args.beta_v,
                feed,
            )?);
            Some(text_level_if_ranking_only(value, feed, base_tokenizer))
        }
    };
    let explicit = match explicit_feed {
        None => None,
        Some(feed) => Some(text_level_if_ranking_only(
            explicit_value(args, feed, base_tokenizer)?,
            feed,
            base_tokenizer,
        )),
    };
    Ok((implicit, explicit))
}

/// A value function that only ranks chunks and has another vocabulary than the
/// base scores at text level (decode, re-tokenize); one that guides token-wise
/// is left as is so that the engine refuses the mismatch with a clear error.
fn text_level_if_ranking_only(
    value: Box<dyn ValueFunction>,
    feed: Feed,
    base_tokenizer: &Arc<Tokenizer>,
) -> Box<dyn ValueFunction> {
    match feed {
        Feed::Chunked => wrap_if_needed(value, base_tokenizer.clone()),
        Feed::Stepped => value,
    }
}

/// The explicit value function named by `--value` and `--value-kind`.
fn explicit_value(
    args: &GuideArgs,
    feed: Feed,
    base_tokenizer: &Arc<Tokenizer>,
) -> Result<Box<dyn ValueFunction>> {
    let Some(path) = &args.value else {
        bail!("this method needs --value PATH")
    };
    let context = || format!("loading the explicit value model {}", path.display());
    let value: Box<dyn ValueFunction> = match args.value_kind.as_str() {
        "q" => {
            let v = load_lm(path, false).with_context(context)?;
            Box::new(QValue::new(
                "explicit",
                Arc::new(v.model),
                args.value_template.clone(),
                Arc::new(v.tokenizer),
                args.beta_v,
                feed,
            )?)
        }
        "scalar" => {
            let (config, weights) = ivg_models::open(path, &ivg_models::LoadOptions::default())
                .with_context(context)?;
            let model =
                ivg_models::ScalarLm::load(&weights, &config, "explicit").with_context(context)?;
            let tokenizer = load_tokenizer(path).with_context(context)?;
            Box::new(ScalarValue::new(
                "explicit",
                Arc::new(model),
                args.value_template.clone(),
                Arc::new(tokenizer),
                args.beta_v,
            )?)
        }
        "classifier" => {
            let model = ivg_models::load_bert(path, &ivg_models::LoadOptions::default())
                .with_context(context)?;
            let tokenizer = load_tokenizer(path).with_context(context)?;
            Box::new(ClassifierValue::new(
                "explicit",
                Arc::new(model),
                Arc::new(tokenizer),
                base_tokenizer.clone(),
                args.value_label,
                args.beta_v,
            )?)
        }
        other => bail!("--value-kind `{other}` is not one of q, scalar, classifier"),
    };
    Ok(value)
}

/// Runs the engine and prints each prompt's best candidate with its value.
pub fn run(
    base: &LoadedLm,
    args: &GuideArgs,
    texts: &[String],
    base_prompts: &[Vec<u32>],
    config: &GuidanceConfig,
) -> Result<()> {
    let base_tokenizer = Arc::new(base.tokenizer.clone());
    let mut values = build_values(args, config, &base_tokenizer)?;
    let mut guides = guides(base, &mut values);
    let mut trace = TraceWriter::open(args.trace.as_deref(), base)?;
    let outputs = guided_generate(
        &mut guides,
        texts,
        base_prompts,
        config,
        &base.stop_ids(),
        &mut |t| trace.write(t),
    )?;
    trace.finish()?;
    for (i, (text, out)) in texts.iter().zip(&outputs).enumerate() {
        let completion = base.tokenizer.decode(&out.tokens, true)?;
        println!(
            "### {i}: {text}\n{completion}\n(value {:.4}, {:?})\n",
            out.value, out.finish
        );
    }
    Ok(())
}

/// JSONL trace sink; the first write error is kept and reported at the end.
struct TraceWriter<'a> {
    out: Option<std::io::BufWriter<std::fs::File>>,
    lm: &'a LoadedLm,
    error: Option<anyhow::Error>,
}

impl<'a> TraceWriter<'a> {
    fn open(path: Option<&Path>, lm: &'a LoadedLm) -> Result<Self> {
        let out = match path {
            Some(p) => Some(std::io::BufWriter::new(
                std::fs::File::create(p)
                    .with_context(|| format!("creating trace file {}", p.display()))?,
            )),
            None => None,
        };
        Ok(Self {
            out,
            lm,
            error: None,
        })
    }

    fn write(&mut self, t: &ChunkTrace) {
        let Some(out) = self.out.as_mut() else { return };
        if self.error.is_some() {
            return;
        }
        let texts: Vec<String> = t
            .candidates
            .iter()
            .map(|c| {
                self.lm
                    .tokenizer
                    .decode(&c.tokens, false)
                    .unwrap_or_default()
            })
            .collect();
        let line = serde_json::json!({ "trace": t, "texts": texts });
        if let Err(e) = writeln!(out, "{line}") {
            self.error = Some(e.into());
        }
    }

    fn finish(self) -> Result<()> {
        if let Some(e) = self.error {
            return Err(e.context("writing the trace"));
        }
        if let Some(mut out) = self.out {
            out.flush()?;
        }
        Ok(())
    }
}
