//! Bad input gives an error that names the file, tensor or field at fault.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use common::fixture;
use ivg_models::{load_causal_lm, LoadOptions, ModelError};

/// A copy of the tiny llama fixture whose files the test may edit.
fn llama_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("tiny/llama").join(f), dir.path().join(f)).expect("copy");
    }
    dir
}

fn load_err(path: &Path) -> (ModelError, String) {
    match load_causal_lm(path, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded but should not", path.display()),
        Err(e) => {
            let msg = e.to_string();
            (e, msg)
        }
    }
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    f(&mut v);
    std::fs::write(&path, serde_json::to_string(&v).expect("ser")).expect("write");
}

fn rewrite_weights(dir: &Path, f: impl FnOnce(&mut HashMap<String, Tensor>)) {
    let path = dir.join("model.safetensors");
    let mut map = candle_core::safetensors::load(&path, &Device::Cpu).expect("load");
    f(&mut map);
    candle_core::safetensors::save(&map, &path).expect("save");
}

#[test]
fn missing_config_names_the_file() {
    let dir = llama_copy();
    std::fs::remove_file(dir.path().join("config.json")).expect("rm");
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, ModelError::Io { .. }), "{msg}");
    assert!(msg.contains("config.json"), "{msg}");
}

#[test]
fn malformed_config_names_the_file() {
    let dir = llama_copy();
    std::fs::write(
        dir.path().join("config.json"),
        "{ \"model_type\": \"llama\", ",
    )
    .expect("write");
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, ModelError::Json { .. }), "{msg}");
    assert!(msg.contains("config.json"), "{msg}");
}

#[test]
fn missing_config_field_is_named() {
    let dir = llama_copy();
    edit_config(dir.path(), |v| {
        v.as_object_mut().expect("obj").remove("hidden_size");
    });
    let (e, msg) = load_err(dir.path());
    assert!(
        matches!(&e, ModelError::ConfigField { field, .. } if field == "hidden_size"),
        "{msg}"
    );
}

#[test]
fn invalid_config_value_is_named() {
    let dir = llama_copy();
    edit_config(dir.path(), |v| v["num_key_value_heads"] = 3.into());
    let (_, msg) = load_err(dir.path());
    assert!(
        msg.contains("num_key_value_heads") && msg.contains('3'),
        "{msg}"
    );
}

#[test]
fn unknown_architecture_is_named() {
    let dir = llama_copy();
    edit_config(dir.path(), |v| v["model_type"] = "mamba".into());
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, ModelError::UnknownArchitecture { .. }), "{msg}");
    assert!(
        msg.contains("mamba") && msg.contains("config.json"),
        "{msg}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let dir = llama_copy();
    rewrite_weights(dir.path(), |m| {
        m.remove("model.layers.1.mlp.up_proj.weight");
    });
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, ModelError::MissingTensor { .. }), "{msg}");
    assert!(
        msg.contains("model.layers.1.mlp.up_proj.weight") && msg.contains("model.safetensors"),
        "{msg}"
    );
}

#[test]
fn wrong_shape_is_named() {
    let dir = llama_copy();
    rewrite_weights(dir.path(), |m| {
        let t = Tensor::zeros((64, 31), candle_core::DType::F32, &Device::Cpu).expect("zeros");
        m.insert("model.layers.0.mlp.gate_proj.weight".into(), t);
    });
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, ModelError::TensorShape { .. }), "{msg}");
    assert!(
        msg.contains("gate_proj") && msg.contains("[64, 31]") && msg.contains("[64, 32]"),
        "{msg}"
    );
}

#[test]
fn corrupt_safetensors_is_named() {
    let dir = llama_copy();
    std::fs::write(
        dir.path().join("model.safetensors"),
        b"not a safetensors file",
    )
    .expect("write");
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, ModelError::Safetensors { .. }), "{msg}");
    assert!(msg.contains("model.safetensors"), "{msg}");
}

#[test]
fn truncated_gguf_is_named() {
    let src = ivg_assets::ensure_default(ivg_assets::Asset::SmolLm2Gguf).expect("asset");
    let bytes = std::fs::read(&src).expect("read");
    let dir = tempfile::tempdir().expect("tmp");
    // Cut inside the tensor data (header intact) and inside the header.
    for (name, len) in [("cut-data.gguf", 8_000_000usize), ("cut-header.gguf", 4096)] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes[..len]).expect("write");
        let (e, msg) = load_err(&path);
        assert!(matches!(e, ModelError::Gguf { .. }), "{msg}");
        assert!(msg.contains(name), "{msg}");
    }
}

#[test]
fn prompt_longer_than_context_is_refused() {
    let model = load_causal_lm(&fixture("tiny/llama"), &LoadOptions::default()).expect("load");
    let mut state = model.new_state();
    let prompt: Vec<u32> = (0..65).map(|i| i % 96).collect();
    let err = model
        .prefill(&[prompt], &mut state, ivg_models::LogitsSpan::Last)
        .expect_err("must fail");
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            ModelError::ContextOverflow {
                len: 65,
                max: 64,
                ..
            }
        ),
        "{msg}"
    );
}

#[test]
fn token_outside_vocabulary_is_refused() {
    let model = load_causal_lm(&fixture("tiny/llama"), &LoadOptions::default()).expect("load");
    let mut state = model.new_state();
    let err = model
        .prefill(&[vec![1, 96]], &mut state, ivg_models::LogitsSpan::Last)
        .expect_err("must fail");
    assert!(
        matches!(
            err,
            ModelError::TokenOutOfRange {
                id: 96,
                vocab: 96,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn missing_path_is_named() {
    let (_, msg) = load_err(Path::new("/nonexistent/model-dir"));
    assert!(msg.contains("/nonexistent/model-dir"), "{msg}");
}
