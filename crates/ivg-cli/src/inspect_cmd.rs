//! `ivg inspect PATH`.

use std::path::PathBuf;

use anyhow::Result;

#[derive(clap::Args)]
pub struct InspectArgs {
    /// A model directory (config.json + safetensors) or a .gguf file.
    path: PathBuf,
}

pub fn run(args: InspectArgs) -> Result<()> {
    let info = ivg_models::info::inspect(&args.path)?;
    println!("{info}");
    match crate::load::load_tokenizer(&args.path) {
        Ok(tok) => {
            println!(
                "tokenizer       {} tokens, eos {:?}, bos {:?}",
                tok.vocab_size(),
                tok.eos_ids(),
                tok.bos_id()
            );
            println!(
                "chat template   {}",
                if tok.has_chat_template() { "yes" } else { "no" }
            );
        }
        Err(e) => println!("tokenizer       none ({e:#})"),
    }
    Ok(())
}
