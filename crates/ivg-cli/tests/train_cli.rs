//! The training loop of the `ivg` binary end to end on tiny models: sample
//! completions (resumable, reproducible), label them into preference pairs
//! with a reward model, train DPO on them, score with a classifier, and fail
//! clearly on a bad job file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

/// The tiny Llama fixture with the word tokenizer (eos `t1`).
fn tiny_model(dir: &Path) -> PathBuf {
    let src = fixture("ivg-models/tests/fixtures/tiny/llama");
    let model = dir.join("tiny-llama");
    std::fs::create_dir_all(&model).expect("mkdir");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), model.join(f)).expect("copy");
    }
    ivg_testkit::write_word_tokenizer(&model);
    std::fs::write(
        model.join("tokenizer_config.json"),
        r#"{"eos_token": "t1"}"#,
    )
    .expect("cfg");
    model
}

fn ivg(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ivg"))
        .args(args)
        .output()
        .expect("run ivg");
    out
}

fn ok(args: &[&str]) -> String {
    let out = ivg(args);
    assert!(
        out.status.success(),
        "ivg {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8")
}

fn lines(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn sample_label_and_train_dpo() {
    let tmp = tempfile::tempdir().expect("tmp");
    let m = tiny_model(tmp.path());
    let prompts = tmp.path().join("prompts.jsonl");
    let text: String = (0..6)
        .map(|i| format!("{{\"prompt\": \"t5 t{}\"}}\n", 40 + i))
        .collect();
    std::fs::write(&prompts, text).expect("prompts");
    let samples = tmp.path().join("samples.jsonl");
    let sample = [
        "--threads",
        "1",
        "sample",
        "--model",
        s(&m),
        "--prompts",
        s(&prompts),
        "--out",
        s(&samples),
        "--n",
        "3",
        "--batch",
        "4",
        "--max-new-tokens",
        "5",
        "--temperature",
        "1.0",
        "--seed",
        "9",
    ];
    ok(&sample);
    let first = std::fs::read_to_string(&samples).expect("read");
    let rows = lines(&samples);
    assert_eq!(rows.len(), 18);
    assert_eq!(
        rows[4]["prompt"], "t5 t41",
        "sample j of prompt i is row 3i+j"
    );
    // Interrupted after 7 rows (the 8th torn): the rerun completes it identically.
    let kept: String = first
        .lines()
        .take(7)
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        + "{\"prompt\": \"t5";
    std::fs::write(&samples, kept).expect("truncate");
    ok(&sample);
    assert_eq!(std::fs::read_to_string(&samples).expect("read"), first);

    let reward = fixture("ivg-train/tests/fixtures/trained/reward");
    let pairs = tmp.path().join("pairs.jsonl");
    let said = ok(&[
        "label",
        "--data",
        s(&samples),
        "--model",
        s(&reward),
        "--kind",
        "reward",
        "--pairs",
        "--out",
        s(&pairs),
    ]);
    let pair_rows = lines(&pairs);
    assert!(
        !pair_rows.is_empty() && said.contains("pairs from 6 prompts"),
        "{said}"
    );
    let scored = tmp.path().join("scored.jsonl");
    ok(&[
        "label",
        "--data",
        s(&samples),
        "--model",
        s(&reward),
        "--kind",
        "reward",
        "--out",
        s(&scored),
    ]);
    let scored = lines(&scored);
    for p in &pair_rows {
        let r = |text: &serde_json::Value| {
            scored
                .iter()
                .find(|row| row["prompt"] == p["prompt"] && row["response"] == *text)
                .expect("scored")["reward"]
                .as_f64()
                .expect("reward")
        };
        assert!(
            r(&p["chosen"]) > r(&p["rejected"]),
            "chosen is the better-scored sample"
        );
    }

    let job = tmp.path().join("dpo.toml");
    let out = tmp.path().join("dpo");
    std::fs::write(
        &job,
        format!(
            "[model]\ninit = \"pretrained\"\npath = \"{}\"\n[data]\ntrain = \"{}\"\nbatch_size = 2\nmax_tokens = 32\n[train]\nout_dir = \"{}\"\n[train.optimizer]\nlr = 0.001\ntotal_steps = 3\n",
            s(&m),
            s(&pairs),
            s(&out)
        ),
    )
    .expect("job");
    let said = ok(&["--threads", "1", "train", "dpo", "--config", s(&job)]);
    assert!(said.contains("trained 3 steps"), "{said}");
    assert!(out.join("checkpoint-3/model.safetensors").is_file());
    ok(&[
        "generate",
        "--model",
        s(&out),
        "--prompt",
        "t5 t6",
        "--max-new-tokens",
        "3",
    ]);
}

#[test]
fn classifier_evaluation_and_labelling() {
    let tmp = tempfile::tempdir().expect("tmp");
    let clf = fixture("ivg-train/tests/fixtures/trained/classifier");
    let data = fixture("ivg-train/tests/fixtures/trained/data/labels.jsonl");
    let said = ok(&["eval", "classifier", "--model", s(&clf), "--data", s(&data)]);
    let acc: f64 = said
        .split("accuracy ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("accuracy")
        .parse()
        .expect("f");
    assert!(
        acc > 0.9,
        "the trained fixture separates its own data: {said}"
    );
    let rows = tmp.path().join("rows.jsonl");
    std::fs::write(&rows, "{\"prompt\": \"t10 t13\", \"response\": \" t16\"}\n{\"prompt\": \"t20\", \"response\": \" t23 t26\"}\n").expect("rows");
    let out = tmp.path().join("r.jsonl");
    ok(&[
        "label",
        "--data",
        s(&rows),
        "--model",
        s(&clf),
        "--out",
        s(&out),
    ]);
    let r = lines(&out);
    assert!(
        r[0]["reward"].as_f64().expect("r") > r[1]["reward"].as_f64().expect("r"),
        "{r:?}"
    );
}

#[test]
fn bad_job_files_are_named() {
    let tmp = tempfile::tempdir().expect("tmp");
    let job = tmp.path().join("bad.toml");
    std::fs::write(
        &job,
        "[model]\ninit = \"pretrained\"\npath = \"x\"\n[data]\ntrain = \"t.jsonl\"\nbatch = 3\n",
    )
    .expect("w");
    let out = ivg(&["train", "sft", "--config", s(&job)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("bad.toml") && err.contains("batch"),
        "{err}"
    );
    let out = ivg(&[
        "train",
        "sft",
        "--config",
        s(&tmp.path().join("missing.toml")),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

/// A job file training the tiny Llama for `steps` steps, checkpointing every step.
fn kill_job(tmp: &Path, steps: usize, out: &Path) -> PathBuf {
    let m = tiny_model(tmp);
    let data = tmp.join("sft.jsonl");
    let rows: String = (0..16)
        .map(|i| {
            format!(
                "{{\"prompt\": \"t5 t{}\", \"response\": \"t{} t{}\"}}\n",
                40 + i % 4,
                10 + i % 7,
                20 + i % 5
            )
        })
        .collect();
    std::fs::write(&data, rows).expect("rows");
    let job = tmp.join(format!(
        "kill_{}.toml",
        out.file_name().and_then(|n| n.to_str()).expect("name")
    ));
    std::fs::write(
        &job,
        format!(
            "[model]\ninit = \"pretrained\"\npath = \"{}\"\n[data]\ntrain = \"{}\"\nbatch_size = 4\nmax_tokens = 32\n[train]\nout_dir = \"{}\"\ncheckpoint_every = 1\n[train.optimizer]\nlr = 0.01\ntotal_steps = {steps}\n",
            s(&m), s(&data), s(out)
        ),
    )
    .expect("job");
    job
}

/// Real kills (SIGKILL) at arbitrary moments, most of them inside a checkpoint
/// write since every step writes one: each time `latest` names a checkpoint
/// that loads, and the restarted run ends bit-identical to an uninterrupted one.
#[test]
fn killed_training_keeps_a_loadable_checkpoint_and_resumes_exactly() {
    let tmp = tempfile::tempdir().expect("tmp");
    let steps = 300;
    let whole = tmp.path().join("whole");
    let started = std::time::Instant::now();
    ok(&[
        "--threads",
        "1",
        "train",
        "sft",
        "--config",
        s(&kill_job(tmp.path(), steps, &whole)),
    ]);
    let run_ms = started.elapsed().as_millis() as u64;
    let killed = tmp.path().join("killed");
    let job = kill_job(tmp.path(), steps, &killed);
    let mut kills = 0;
    // Kill points spread over the run, as fractions of an uninterrupted run.
    for percent in [30u64, 15, 25, 10, 20, 12, 18, 8] {
        let delay_ms = run_ms * percent / 100;
        let mut child = Command::new(env!("CARGO_BIN_EXE_ivg"))
            .args(["--threads", "1", "train", "sft", "--config", s(&job)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        if child.try_wait().expect("poll").is_none() {
            child.kill().expect("kill");
            kills += 1;
        }
        child.wait().expect("reap");
        if killed.join("latest").exists() {
            ivg_models::load_causal_lm(&killed, &ivg_models::LoadOptions::default())
                .expect("after a kill, latest loads");
        }
    }
    assert!(kills >= 3, "the run was killed only {kills} times");
    ok(&["--threads", "1", "train", "sft", "--config", s(&job)]);
    let last = |dir: &Path| {
        std::fs::read(dir.join(format!("checkpoint-{steps}/model.safetensors"))).expect("weights")
    };
    assert!(
        last(&killed) == last(&whole),
        "resumed weights differ from the uninterrupted run"
    );
    let torn = std::fs::read_dir(&killed)
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .count();
    assert_eq!(torn, 0, "torn saves are cleaned up");
}
