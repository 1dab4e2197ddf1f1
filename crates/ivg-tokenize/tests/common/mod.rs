//! Shared helpers for the integration tests: the real tokenizers (located
//! through `ivg-assets`, loaded once per test binary) and the transformers
//! reference fixture written by `scripts/reference/tokenizer_refs.py`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::quantized::gguf_file;
use ivg_assets::Asset;
use ivg_tokenize::Tokenizer;

pub fn asset_path(asset: Asset) -> PathBuf {
    ivg_assets::ensure_default(asset)
        .unwrap_or_else(|e| panic!("asset {asset:?} is not available: {e}"))
}

pub fn load_gguf(path: &Path) -> Tokenizer {
    let mut file =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let content = gguf_file::Content::read(&mut file)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    Tokenizer::from_gguf(&content, path).unwrap()
}

pub fn smollm2() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| load_gguf(&asset_path(Asset::SmolLm2Gguf)))
}

pub fn gemma3() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| load_gguf(&asset_path(Asset::Gemma3Gguf)))
}

pub fn minilm_json() -> PathBuf {
    asset_path(Asset::MiniLm).join("tokenizer.json")
}

pub fn minilm() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| Tokenizer::from_file(&minilm_json()).unwrap())
}

/// The tokenizer the fixture calls `name`.
pub fn by_name(name: &str) -> &'static Tokenizer {
    match name {
        "smollm2" => smollm2(),
        "gemma3" => gemma3(),
        "minilm" => minilm(),
        other => panic!("no tokenizer {other}"),
    }
}

pub fn fixture() -> &'static serde_json::Value {
    static FIXTURE: OnceLock<serde_json::Value> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference_ids.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap()
    })
}

pub fn ids(value: &serde_json::Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

pub fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}
