//! End-to-end runs of the `ivg` binary on a tiny checkpoint: guided generation
//! with a trace, and clear errors for bad settings and unloadable guides.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The tiny llama fixture plus a word-level tokenizer over `t0 .. t95`.
fn tiny_model(dir: &Path) -> PathBuf {
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ivg-models/tests/fixtures/tiny/llama");
    let model = dir.join("tiny-llama");
    std::fs::create_dir_all(&model).expect("mkdir");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(f), model.join(f)).expect("copy");
    }
    ivg_testkit::write_word_tokenizer(&model);
    model
}

fn ivg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ivg"))
        .args(args)
        .output()
        .expect("run ivg")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn guided_generation_runs_and_traces() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = tiny_model(dir.path());
    let m = m.to_str().expect("utf8");
    let trace = dir.path().join("trace.jsonl");
    let out = ivg(&[
        "generate",
        "--model",
        m,
        "--method",
        "efti+cbsi",
        "--tuned",
        m,
        "--tuned-template",
        "t1 t2 {prompt}",
        "--width",
        "2",
        "--successors",
        "2",
        "--chunk-len",
        "2",
        "--max-new-tokens",
        "6",
        "--prompt",
        "t5 t6",
        "--prompt",
        "t7",
        "--trace",
        trace.to_str().expect("utf8"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("### 0: t5 t6") && stdout.contains("### 1: t7") && stdout.contains("value"),
        "{stdout}"
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&trace)
        .expect("trace")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    // 6 tokens in chunks of 2: 3 boundaries for each of 2 prompts, 4 candidates each.
    assert_eq!(lines.len(), 6);
    for l in &lines {
        let cands = l["trace"]["candidates"].as_array().expect("candidates");
        assert_eq!(cands.len(), 4);
        assert_eq!(cands.iter().filter(|c| c["survived"] == true).count(), 2);
    }
}

#[test]
fn bad_settings_and_guides_are_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = tiny_model(dir.path());
    let m = m.to_str().expect("utf8");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--method", "dexperts"], "unknown method `dexperts`"),
        (
            vec!["--method", "cbsi", "--tuned", m, "--width", "0"],
            "width",
        ),
        (
            vec!["--method", "cbsi", "--tuned", m, "--successors", "0"],
            "successors",
        ),
        (
            vec!["--method", "efti", "--tuned", m, "--beta", "NaN"],
            "beta",
        ),
        (
            vec!["--method", "cbse", "--value", "/no/such/value-model"],
            "/no/such/value-model",
        ),
        (
            vec!["--method", "cbse", "--value", m, "--value-kind", "scalar"],
            "score.weight",
        ),
        (vec!["--method", "cbse"], "--value"),
        (
            vec![
                "--method",
                "ivg",
                "--tuned",
                m,
                "--value",
                m,
                "--value-kind",
                "oracle",
            ],
            "oracle",
        ),
    ];
    for (extra, needle) in cases {
        let mut args = vec![
            "generate",
            "--model",
            m,
            "--prompt",
            "t5",
            "--max-new-tokens",
            "2",
        ];
        args.extend(extra.iter().copied());
        let out = ivg(&args);
        assert!(!out.status.success(), "{extra:?} should fail");
        let err = stderr(&out);
        assert!(
            err.contains(needle),
            "{extra:?}: expected `{needle}` in: {err}"
        );
    }
}
