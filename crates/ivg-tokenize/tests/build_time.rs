//! Building Gemma 3's 262k-token vocabulary (merges derived from the
//! vocabulary, ~515k of them) stays fast: about 0.7 s in a release build on
//! a 2-core machine. The bound here is loose enough for debug builds and
//! catches a quadratic regression, not small slowdowns.

mod common;

use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file;
use ivg_tokenize::Tokenizer;

#[test]
fn gemma3_builds_quickly() {
    let path = common::asset_path(ivg_assets::Asset::Gemma3Gguf);
    let mut file = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let start = Instant::now();
    let tok = Tokenizer::from_gguf(&content, &path).unwrap();
    let elapsed = start.elapsed();
    eprintln!("Gemma 3 tokenizer built in {elapsed:?}");
    assert_eq!(tok.vocab_size(), 262_144);
    assert!(
        elapsed < Duration::from_secs(5),
        "building took {elapsed:?}"
    );
}
