//! `ivg generate --method ...`: builds the value functions a method needs and
//! runs the guided engine; `--trace FILE` writes every chunk boundary as JSONL.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ivg_decode::{
    guided_generate_events, row_seed, BaseModel, Batch, ChunkRanking, ChunkTrace, Event,
    GuidanceConfig, Guides, TokenPolicy, ValueRole,
};
use ivg_runtime::{
    load_guidance_config, ExplicitSpec, GuidanceSpec, GuideSet, GuideSpec, LoadedBase, ModelRef,
    PairSpec, PromptTemplate, RuntimeError,
};
use ivg_tokenize::Tokenizer;
use ivg_value::{Feed, ValueFunction};

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
    /// Write every chunk boundary's candidates, values and survivors as JSONL
    /// (with a remote base, also each step's top-k coverage).
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Print one JSON object per prompt (prompt, completion, tokens, value,
    /// finish) instead of text.
    #[arg(long)]
    pub json: bool,
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

    /// The guide set these flags name, with only the parts a run uses (an
    /// implicit pair, an explicit value): flags of unused guides are not read.
    pub fn guide_spec(&self, implicit: bool, explicit: bool) -> Result<GuideSpec> {
        let template =
            |text: &str, flag: &str| PromptTemplate::new(text).with_context(|| flag.to_string());
        let implicit = match (implicit, &self.tuned) {
            (false, _) => Vec::new(),
            (true, None) => bail!("this method needs --tuned PATH"),
            (true, Some(tuned)) => vec![PairSpec {
                reference: self.reference.as_ref().map(ModelRef::new),
                tuned_template: template(&self.tuned_template, "--tuned-template")?,
                reference_template: template(&self.ref_template, "--ref-template")?,
                ..PairSpec::new(ModelRef::new(tuned))
            }],
        };
        let explicit = match (explicit, &self.value) {
            (false, _) => None,
            (true, None) => bail!("this method needs --value PATH"),
            (true, Some(path)) => {
                let model = ModelRef::new(path);
                Some(match self.value_kind.as_str() {
                    "q" => ExplicitSpec::Q {
                        model,
                        template: template(&self.value_template, "--value-template")?,
                    },
                    "scalar" => ExplicitSpec::Scalar {
                        model,
                        template: template(&self.value_template, "--value-template")?,
                    },
                    "classifier" => ExplicitSpec::Classifier {
                        model,
                        label: self.value_label,
                    },
                    other => bail!("--value-kind `{other}` is not one of q, scalar, classifier"),
                })
            }
        };
        Ok(GuideSpec {
            implicit,
            explicit,
            beta_v: self.beta_v,
        })
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
    /// The guidance configuration these flags and the guide flags describe:
    /// `--config FILE` as is, else the method expanded over the flags.
    pub fn config(&self, guide: &GuideArgs) -> Result<GuidanceConfig> {
        if let Some(path) = &guide.config {
            return Ok(load_guidance_config(path)?);
        }
        Ok(self.guidance_spec(guide).config()?)
    }

    /// The method and settings of the flags, as the runtime's spec.
    pub fn guidance_spec(&self, guide: &GuideArgs) -> GuidanceSpec {
        GuidanceSpec {
            method: guide.method.clone(),
            width: guide.width,
            successors: guide.successors,
            chunk_len: Some(guide.chunk_len),
            beta: guide.beta,
            max_new_tokens: self.max_new_tokens,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            seed: self.seed,
            stop: guide.stop.clone(),
        }
    }
}

/// The engine's view of a base model and the run's value functions.
pub fn guides<'a>(
    base: BaseModel<'a>,
    tokenizer: &'a Tokenizer,
    values: &'a mut ValueFunctions,
) -> Guides<'a> {
    Guides {
        base,
        base_tokenizer: Some(tokenizer),
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

/// The implicit and the explicit value function of a run, where the method uses them.
pub type ValueFunctions = (
    Option<Box<dyn ValueFunction>>,
    Option<Box<dyn ValueFunction>>,
);

/// Builds the implicit and explicit value functions the config uses: the
/// guide set of the flags, loaded by the runtime (a training-free pair loads
/// its model once), each value built for the feed the method needs.
pub fn build_values(
    args: &GuideArgs,
    config: &GuidanceConfig,
    base_tokenizer: &Arc<Tokenizer>,
) -> Result<ValueFunctions> {
    let (implicit_feed, explicit_feed) = feeds(config);
    let spec = args.guide_spec(implicit_feed.is_some(), explicit_feed.is_some())?;
    let set = GuideSet::load(&spec, base_tokenizer.clone()).map_err(flag_named)?;
    let build = |role: ValueRole, feed: Option<Feed>| -> Result<_> {
        Ok(feed.map(|f| set.build_value(role, f)).transpose()?)
    };
    Ok((
        build(ValueRole::Implicit, implicit_feed)?,
        build(ValueRole::Explicit, explicit_feed)?,
    ))
}

/// The runtime names the spec field a loading error comes from; on the
/// command line the flag that set it is the name the user knows.
fn flag_named(error: RuntimeError) -> anyhow::Error {
    let RuntimeError::InField { field, error } = error else {
        return error.into();
    };
    let flag = match field.as_str() {
        "explicit.model" => "--value",
        f if f.ends_with(".reference") => "--ref",
        _ => "--tuned",
    };
    anyhow::Error::new(*error).context(flag)
}

/// Runs the engine and prints each prompt's best candidate with its value
/// (text, or one JSON object per prompt with `--json`).
pub fn run(
    base: &LoadedBase,
    args: &GuideArgs,
    texts: &[String],
    base_prompts: &[Vec<u32>],
    config: &GuidanceConfig,
) -> Result<()> {
    let mut values = build_values(args, config, &base.tokenizer)?;
    let mut guides = guides(base.model(), &base.tokenizer, &mut values);
    let mut trace = TraceWriter::open(args.trace.as_deref(), &base.tokenizer)?;
    let seeds: Vec<u64> = (0..texts.len()).map(|p| row_seed(config.seed, p)).collect();
    let batch = Batch {
        texts,
        base_prompts,
        prompt_seeds: &seeds,
        config,
        stop_ids: &base.stop_ids(),
    };
    let mut coverage = Coverage::default();
    let started = std::time::Instant::now();
    let outputs = guided_generate_events(&mut guides, &batch, &mut |event| {
        coverage.add(event);
        trace.write(event)
    })?;
    let seconds = started.elapsed().as_secs_f64();
    trace.finish()?;
    for (i, (text, out)) in texts.iter().zip(&outputs).enumerate() {
        let completion = base.tokenizer.decode(&out.tokens, true)?;
        if args.json {
            let line = serde_json::json!({
                "prompt": text, "completion": completion, "tokens": out.tokens.len(),
                "value": out.value, "finish": out.finish,
            });
            println!("{line}");
        } else {
            println!(
                "### {i}: {text}\n{completion}\n(value {:.4}, {:?})\n",
                out.value, out.finish
            );
        }
    }
    if let Some(remote) = base.remote() {
        let s = remote.stats();
        eprintln!(
            "remote base {}: {} top-k calls, {} chunk calls; {} of {} prompt tokens from its cache; \
             {:.2} s of {seconds:.2} s waiting on HTTP{}",
            remote.engine().url(),
            s.topk_calls,
            s.chunk_calls,
            s.cached_tokens,
            s.prompt_tokens,
            s.wait_us as f64 / 1e6,
            coverage.summary()
        );
    }
    Ok(())
}

/// A remote base's top-k coverage over a run.
#[derive(Default)]
struct Coverage {
    rows: usize,
    mass: f64,
    min_mass: f64,
    max_tv: f64,
}

impl Coverage {
    fn add(&mut self, event: &Event) {
        let Event::TopK { rows, .. } = event else {
            return;
        };
        for r in rows {
            self.min_mass = if self.rows == 0 {
                r.base_mass
            } else {
                self.min_mass.min(r.base_mass)
            };
            self.rows += 1;
            self.mass += r.base_mass;
            self.max_tv = self.max_tv.max(r.tv_bound);
        }
    }

    fn summary(&self) -> String {
        if self.rows == 0 {
            return String::new();
        }
        format!(
            "; top-k base mass mean {:.4}, min {:.4}; TV bound max {:.3e} over {} row-steps",
            self.mass / self.rows as f64,
            self.min_mass,
            self.max_tv,
            self.rows
        )
    }
}

/// JSONL trace sink; the first write error is kept and reported at the end.
struct TraceWriter<'a> {
    out: Option<std::io::BufWriter<std::fs::File>>,
    tokenizer: &'a Tokenizer,
    error: Option<anyhow::Error>,
}

impl<'a> TraceWriter<'a> {
    fn open(path: Option<&Path>, tokenizer: &'a Tokenizer) -> Result<Self> {
        let out = match path {
            Some(p) => Some(std::io::BufWriter::new(
                std::fs::File::create(p)
                    .with_context(|| format!("creating trace file {}", p.display()))?,
            )),
            None => None,
        };
        Ok(Self {
            out,
            tokenizer,
            error: None,
        })
    }

    fn write(&mut self, event: &Event) {
        let Some(out) = self.out.as_mut() else { return };
        if self.error.is_some() {
            return;
        }
        let line = match event {
            Event::Chunk { trace, .. } => chunk_line(self.tokenizer, trace),
            Event::TopK { id, step, rows } => {
                serde_json::json!({ "topk": { "prompt": id, "step": step, "rows": rows } })
            }
            _ => return,
        };
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

fn chunk_line(tokenizer: &Tokenizer, t: &ChunkTrace) -> serde_json::Value {
    let texts: Vec<String> = t
        .candidates
        .iter()
        .map(|c| tokenizer.decode(&c.tokens, false).unwrap_or_default())
        .collect();
    serde_json::json!({ "trace": t, "texts": texts })
}
