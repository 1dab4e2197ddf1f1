//! `ivg generate`: base sampling streams (one prompt) or runs as one left-padded
//! batch; any guided method (`--method`, `--config`) runs the guided engine.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ivg_decode::{generate, GenerateConfig};
use ivg_tokenize::ChatMessage;

use ivg_runtime::{BaseRef, LoadedBase, ModelRef, Quant};
use ivg_tokenize::Tokenizer;

use crate::load::LoadedLm;

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// The base model: a directory (config.json + safetensors + tokenizer.json),
    /// a .gguf file, `asset:NAME`, or an inference engine's `http://HOST:PORT`
    /// (see --base-protocol; the guides stay local).
    #[arg(long, alias = "base")]
    model: PathBuf,
    /// The wire protocol of a remote base: `llama.cpp` (its server's
    /// /completion) or `openai` (/v1/completions as vLLM and SGLang serve it).
    #[arg(long, default_value = "llama.cpp")]
    base_protocol: String,
    /// The model name a remote `openai` base is asked for (default: its first).
    #[arg(long)]
    base_model_name: Option<String>,
    /// Candidates of a remote base's top-k for token-level guidance (EFT).
    #[arg(long, default_value_t = ivg_runtime::DEFAULT_TOP_K)]
    base_top_k: usize,
    /// A local tokenizer of a remote base's vocabulary (default: the guides').
    #[arg(long)]
    base_tokenizer: Option<PathBuf>,
    /// A prompt (repeat for a batch).
    #[arg(long)]
    prompt: Vec<String>,
    /// A file with one prompt per line (empty lines skipped), run as one batch.
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Wrap each prompt as a user message in the model's chat template.
    #[arg(long)]
    chat: bool,
    /// System message for --chat.
    #[arg(long)]
    system: Option<String>,
    #[command(flatten)]
    decode: crate::guided::DecodeArgs,
    /// Dequantize GGUF weights to f32 (slower; matches the reference implementation).
    #[arg(long)]
    f32: bool,
    #[command(flatten)]
    guide: crate::guided::GuideArgs,
}

fn read_prompts(args: &GenerateArgs) -> Result<Vec<String>> {
    let mut prompts = args.prompt.clone();
    if let Some(file) = &args.prompts {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading prompts from {}", file.display()))?;
        prompts.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string),
        );
    }
    if prompts.is_empty() {
        bail!("no prompt: give --prompt TEXT or --prompts FILE");
    }
    Ok(prompts)
}

/// Token ids of `text`, through the chat template when asked.
pub fn encode_prompt(
    tokenizer: &Tokenizer,
    text: &str,
    chat: bool,
    system: Option<&str>,
) -> Result<Vec<u32>> {
    if !chat {
        return Ok(tokenizer.encode(text, true)?);
    }
    let mut messages = Vec::new();
    if let Some(s) = system {
        messages.push(ChatMessage {
            role: "system".into(),
            content: s.into(),
        });
    }
    messages.push(ChatMessage {
        role: "user".into(),
        content: text.into(),
    });
    let rendered = tokenizer.apply_chat_template(&messages, true)?;
    Ok(tokenizer.encode(&rendered, false)?)
}

/// The base the flags name: local, or remote when `--base` is a URL.
fn base_ref(args: &GenerateArgs) -> Result<BaseRef> {
    let path = args.model.to_string_lossy();
    if !path.starts_with("http://") && !path.starts_with("https://") {
        let quant = if args.f32 { Quant::F32 } else { Quant::Keep };
        return Ok(BaseRef::Local(ModelRef::new(&args.model).with_quant(quant)));
    }
    let mut table = serde_json::json!({
        "url": path, "protocol": args.base_protocol, "top_k": args.base_top_k,
    });
    if let Some(t) = &args.base_tokenizer {
        table["tokenizer"] = t.to_string_lossy().into();
    }
    if let Some(m) = &args.base_model_name {
        table["model"] = m.as_str().into();
    }
    serde_json::from_value(table).context("--base / --base-protocol")
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let texts = read_prompts(&args)?;
    let guidance = args.decode.config(&args.guide)?;
    let (implicit, explicit) = crate::guided::feeds(&guidance);
    let spec = args
        .guide
        .guide_spec(implicit.is_some(), explicit.is_some())?;
    let base = base_ref(&args)?
        .load(spec.first_model())
        .context("--base")?;
    let prompts = texts
        .iter()
        .map(|t| {
            let templated = args.guide.base_template.replace("{prompt}", t);
            encode_prompt(
                &base.tokenizer,
                &templated,
                args.chat,
                args.system.as_deref(),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    // Stop strings need the engine's text check (the plain loop knows ids
    // only), and a remote base runs on the engine.
    let plain = guidance.rows_per_prompt() == 1
        && guidance.token == ivg_decode::TokenPolicy::Base
        && guidance.stop_strings.is_empty()
        && !args.guide.json;
    let lm = match (&base, plain) {
        (
            LoadedBase {
                handle: ivg_runtime::BaseHandle::Local(model),
                ..
            },
            true,
        ) => LoadedLm {
            model: model.clone(),
            tokenizer: base.tokenizer.clone(),
        },
        _ => return crate::guided::run(&base, &args.guide, &texts, &prompts, &guidance),
    };
    let config = GenerateConfig {
        max_new_tokens: guidance.max_new_tokens,
        sampling: guidance.sampling.clone(),
        seed: guidance.seed,
        stop_ids: lm.stop_ids(),
    };
    if prompts.len() == 1 {
        return stream_one(&lm, &prompts, &config);
    }
    let outputs = generate(&lm.model, &prompts, &config, &mut |_, _| {})?;
    for (i, (text, out)) in texts.iter().zip(&outputs).enumerate() {
        let completion = lm.tokenizer.decode(&out.tokens, true)?;
        println!("### {i}: {text}\n{completion}\n");
    }
    Ok(())
}

fn stream_one(lm: &LoadedLm, prompts: &[Vec<u32>], config: &GenerateConfig) -> Result<()> {
    let mut detok = lm.tokenizer.detokenizer(true);
    let mut stdout = std::io::stdout();
    let mut failure = None;
    generate(
        &lm.model,
        prompts,
        config,
        &mut |_, token| match detok.push(token) {
            Ok(Some(piece)) => {
                let _ = write!(stdout, "{piece}");
                let _ = stdout.flush();
            }
            Ok(None) => {}
            Err(e) => failure = Some(e),
        },
    )?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    if let Some(rest) = detok.flush()? {
        print!("{rest}");
    }
    println!();
    Ok(())
}

/// Used by the demo: the path's file name for display.
pub fn model_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
