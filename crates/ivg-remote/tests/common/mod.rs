//! Helpers shared by the tests that start a real llama.cpp server
//! (`llama_cpp.rs`, `openai.rs`): the build in the ivg cache, an F32 copy of
//! SmolLM2's GGUF, a server on a free loopback port, killed on drop.

// Each test binary uses its own subset.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};

/// A llama-server child, killed on drop.
pub struct Engine {
    child: Child,
    pub url: String,
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A program of the llama.cpp build in the ivg cache (built when missing).
pub fn llama_bin(name: &str) -> PathBuf {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-llama-server.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .expect("run build-llama-server.sh");
    assert!(out.status.success(), "build-llama-server.sh failed");
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8").trim()).join(name)
}

/// SmolLM2's Q4_1 GGUF dequantized to F32 by `llama-quantize` (exactly the
/// values ivg's `quant = "f32"` load computes), in `dir`.
pub fn f32_gguf(dir: &std::path::Path) -> PathBuf {
    let q4 = ivg_runtime::resolve_path(std::path::Path::new("asset:smollm2")).expect("asset");
    let out = dir.join("smollm2-f32.gguf");
    let status = Command::new(llama_bin("llama-quantize"))
        .arg("--allow-requantize")
        .args([q4.as_os_str(), out.as_os_str()])
        .arg("F32")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run llama-quantize");
    assert!(status.success(), "llama-quantize to F32 failed");
    out
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub fn start(gguf: &std::path::Path) -> Engine {
    start_with(gguf, &[])
}

/// As [`start`], with further llama-server arguments (`--api-key KEY`).
pub fn start_with(gguf: &std::path::Path, extra: &[&str]) -> Engine {
    let port = free_port();
    // f32 KV cache and no flash attention: the engine computes in f32 as
    // ivg does, so the comparison measures the protocol, not the kernels.
    let child = Command::new(llama_bin("llama-server"))
        .args(["-m", gguf.to_str().expect("path"), "--host", "127.0.0.1"])
        .args([
            "--port",
            &port.to_string(),
            "-t",
            "1",
            "-c",
            "4096",
            "-np",
            "4",
            "-ngl",
            "0",
        ])
        .args(["-ctk", "f32", "-ctv", "f32", "-fa", "off"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start llama-server");
    let engine = Engine {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let agent = ureq_agent();
    let start = Instant::now();
    loop {
        if let Ok(r) = agent.get(&format!("{}/health", engine.url)).call() {
            if r.status().as_u16() == 200 {
                return engine;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "llama-server not healthy after 120 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn ureq_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .new_agent()
}

pub fn log_softmax(row: &Tensor) -> Vec<f32> {
    let v: Vec<f32> = row.to_device(&Device::Cpu).unwrap().to_vec1().unwrap();
    let max = v.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + v.iter().map(|x| ((x - max) as f64).exp()).sum::<f64>().ln() as f32;
    v.iter().map(|x| x - lse).collect()
}
