//! A real llama.cpp server for tests: the build in the ivg cache (made by
//! `scripts/build-llama-server.sh` when missing, as `.ci/run` does), a GGUF
//! re-typed by `llama-quantize`, and a `llama-server` child on a loopback
//! port that can be killed and restarted on the same port (fault tests).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A program of the llama.cpp build in the ivg cache (built when missing).
pub fn bin(name: &str) -> PathBuf {
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

/// `src` re-typed to `ty` (`F32`, `Q8_0`, ...) by `llama-quantize`, at `dst`.
pub fn quantize(src: &Path, dst: &Path, ty: &str) -> PathBuf {
    let status = Command::new(bin("llama-quantize"))
        .arg("--allow-requantize")
        .args([src.as_os_str(), dst.as_os_str()])
        .arg(ty)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run llama-quantize");
    assert!(status.success(), "llama-quantize to {ty} failed");
    dst.to_path_buf()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A llama-server child, killed on drop.
pub struct Server {
    child: Option<Child>,
    gguf: PathBuf,
    args: Vec<String>,
    pub port: u16,
    pub url: String,
}

impl Server {
    /// Serves `gguf` on a free port with an f32 KV cache and no flash
    /// attention (the engine computes in f32 as ivg does), one thread,
    /// `slots` parallel sequences of `ctx / slots` positions, plus `extra`.
    pub fn start(gguf: &Path, ctx: usize, slots: usize, extra: &[&str]) -> Self {
        let port = free_port();
        let mut args: Vec<String> = [
            "--host",
            "127.0.0.1",
            "-t",
            "1",
            "-ngl",
            "0",
            "-ctk",
            "f32",
            "-ctv",
            "f32",
            "-fa",
            "off",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend([
            "-c".into(),
            ctx.to_string(),
            "-np".into(),
            slots.to_string(),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut server = Self {
            child: None,
            gguf: gguf.to_path_buf(),
            args,
            port,
            url: format!("http://127.0.0.1:{port}"),
        };
        server.restart();
        server
    }

    /// Kills the server (its port refuses connections until [`Self::restart`]).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and waits until it is healthy.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(bin("llama-server"))
            .arg("-m")
            .arg(&self.gguf)
            .args(["--port", &self.port.to_string()])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start llama-server");
        self.child = Some(child);
        let start = Instant::now();
        while !self.healthy() {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "llama-server not healthy after 120 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether `GET /health` answers 200.
    pub fn healthy(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let request = format!(
            "GET /health HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n",
            self.port
        );
        if s.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
