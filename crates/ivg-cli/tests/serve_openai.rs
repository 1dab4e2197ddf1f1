//! The official `openai` Python client (tests/openai_client.py) against
//! `ivg serve`: completions on the tiny fixtures, chat on SmolLM2, streamed
//! and not, `extra_body={"ivg": ...}`, and errors raised as the client's
//! exception types. The client runs in a venv of pinned versions
//! (tests/openai-constraints.txt) under the ivg cache, `venv/openai-<version>`,
//! made by .ci/run or, when missing, here (under a file lock, so parallel
//! test processes build it once): nothing depends on what happens to be
//! installed in the machine's python.

mod serve_common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use serve_common::*;

fn constraints() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai-constraints.txt")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `<cache>/venv/openai-<version>/bin/python`, the venv built when its
/// marker (a copy of the constraints file, written last) is missing or stale.
fn openai_python() -> PathBuf {
    let pins = std::fs::read_to_string(constraints()).expect("openai-constraints.txt");
    let version = pins
        .lines()
        .find_map(|l| l.trim().strip_prefix("openai=="))
        .expect("openai==VERSION in openai-constraints.txt")
        .trim()
        .to_string();
    let env = ivg_assets::CacheEnv::from_process();
    let root = env.cache_root().expect("ivg cache root").join("venv");
    let venv = root.join(format!("openai-{version}"));
    let marker = venv.join(".ivg-ready");
    let python = venv.join("bin/python");
    let ready = || std::fs::read_to_string(&marker).is_ok_and(|m| m == pins) && python.exists();
    if ready() {
        return python;
    }
    std::fs::create_dir_all(&root).expect("mkdir venv root");
    // The same lock file .ci/run takes with flock(1).
    let lock = File::create(root.join(format!("openai-{version}.lock"))).expect("lock file");
    lock.lock().expect("lock the venv");
    if ready() {
        return python;
    }
    if venv.exists() {
        std::fs::remove_dir_all(&venv).expect("remove the stale venv");
    }
    run(Command::new(env.python()).args(["-m", "venv"]).arg(&venv));
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-c",
        ])
        .arg(constraints())
        .arg(format!("openai=={version}")));
    std::fs::write(&marker, &pins).expect("write the venv marker");
    python
}

#[test]
fn the_openai_python_client_works() {
    let python = openai_python();
    let (_fx, tiny) = tiny_server(Limits::default());
    let smol = Server::start_args(&[], SMOLLM2_READY);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .arg("--tiny-url")
        .arg(tiny.url("/v1"))
        .arg("--chat-url")
        .arg(smol.url("/v1"))
        // Loopback only: no proxy may see these requests.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("run openai_client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "openai_client.py failed ({}):\n{stdout}\n{stderr}\n--- tiny server stderr:\n{}\n--- smollm2 server stderr:\n{}",
        out.status,
        tiny.stderr_tail(),
        smol.stderr_tail()
    );
    eprintln!("{stdout}");
}
