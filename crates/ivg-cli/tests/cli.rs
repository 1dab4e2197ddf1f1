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

/// The completion printed for prompt 0 (`### 0: PROMPT` then the text).
fn completion(stdout: &str) -> String {
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with("### 0:"));
    lines.next();
    lines.next().unwrap_or_default().to_string()
}

#[test]
fn base_generation_honours_stop_strings() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = tiny_model(dir.path());
    let m = m.to_str().expect("utf8");
    let args = |stop: Option<&'static str>| -> Vec<String> {
        let mut a: Vec<&str> = vec![
            "generate",
            "--model",
            m,
            "--method",
            "base",
            "--max-new-tokens",
            "12",
            "--temperature",
            "0",
            "--prompt",
            "t5 t6",
            "--prompt",
            "t7",
        ];
        if let Some(s) = stop {
            a.extend(["--stop", s]);
        }
        a.into_iter().map(String::from).collect()
    };
    let run = |a: Vec<String>| ivg(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let free = run(args(None));
    assert!(free.status.success(), "{}", stderr(&free));
    let free = String::from_utf8_lossy(&free.stdout).into_owned();
    let text = completion(&free);
    let words: Vec<&str> = text.split_whitespace().collect();
    assert!(words.len() >= 4, "{free}");
    // Stop on the third word: the completion ends with its first occurrence.
    let stop: &'static str = words[2].to_string().leak();
    let first = words.iter().position(|w| *w == stop).expect("stop word");
    let stopped = run(args(Some(stop)));
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    let got = completion(&String::from_utf8_lossy(&stopped.stdout));
    assert_eq!(
        got.split_whitespace().collect::<Vec<_>>(),
        words[..=first].to_vec(),
        "{free}"
    );
}
