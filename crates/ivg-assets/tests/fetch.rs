//! End-to-end tests of the fetch pipeline without network: a stub "python"
//! (a shell script) fakes `-m pip download` by copying crafted archives from
//! a fixtures folder and counting its calls; everything else (the extraction
//! one-liner) runs the real `python3`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use ivg_assets::{
    sha256_file, AssetCache, AssetError, AssetSpec, ChecksumList, Dist, Layout, PackageSpec, Part,
};

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = dir.path().join("fixtures");
        fs::create_dir_all(&fixtures).unwrap();
        let calls = dir.path().join("calls.log");
        let script = format!(
            r#"#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
  echo "$*" >> '{calls}'
  dest=""; req=""; prev=""
  for a in "$@"; do
    if [ "$prev" = "-d" ]; then dest="$a"; fi
    prev="$a"; req="$a"
  done
  if [ -f '{fx}/nopip' ]; then echo "/usr/bin/python3: No module named pip" >&2; exit 1; fi
  if [ -f '{fx}/fail' ]; then
    echo "WARNING: Retrying after connection broken by NewConnectionError" >&2
    echo "ERROR: Could not find a version that satisfies the requirement $req (from versions: none)" >&2
    exit 1
  fi
  cp '{fx}'/"$req"/* "$dest"/ || exit 1
  exit 0
fi
exec python3 "$@"
"#,
            calls = calls.display(),
            fx = fixtures.display()
        );
        let python = dir.path().join("python");
        fs::write(&python, script).unwrap();
        fs::set_permissions(&python, fs::Permissions::from_mode(0o755)).unwrap();
        Fixture { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn cache(&self) -> AssetCache {
        AssetCache::new(self.root()).with_python(self.dir.path().join("python"))
    }

    fn fixtures(&self) -> PathBuf {
        self.dir.path().join("fixtures")
    }

    /// Number of `pip` invocations so far, and their argument lines.
    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("calls.log"))
            .map(|s| s.lines().map(String::from).collect())
            .unwrap_or_default()
    }

    /// Builds a wheel (zip) or sdist (tar.gz) for `name==version` holding
    /// `entries`, puts it where the stub pip finds it, and pins its real hash.
    fn package(
        &self,
        name: &str,
        version: &str,
        dist: Dist,
        entries: &[(&str, &[u8])],
    ) -> PackageSpec {
        let stem = format!("{}-{version}", name.replace('-', "_"));
        let filename = match dist {
            Dist::Wheel => format!("{stem}-py3-none-any.whl"),
            Dist::Sdist => format!("{stem}.tar.gz"),
        };
        let src = self.dir.path().join("src").join(&filename);
        for (member, data) in entries {
            let p = src.join(member);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, data).unwrap();
        }
        let out_dir = self.fixtures().join(format!("{name}=={version}"));
        fs::create_dir_all(&out_dir).unwrap();
        let archive = out_dir.join(&filename);
        let module = if dist == Dist::Wheel {
            "zipfile"
        } else {
            "tarfile"
        };
        let mut cmd = Command::new("python3");
        // The zipfile CLI names entries after the basename of each argument,
        // so pass the top-level folders to keep full member names.
        let mut tops: Vec<&str> = entries
            .iter()
            .map(|(m, _)| m.split('/').next().unwrap())
            .collect();
        tops.sort();
        tops.dedup();
        cmd.current_dir(&src)
            .args(["-m", module, "-c"])
            .arg(&archive)
            .args(tops);
        assert!(cmd.status().unwrap().success());
        PackageSpec {
            name: leak(name.to_string()),
            version: leak(version.to_string()),
            dist,
            filename: leak(filename),
            sha256: leak(sha256_file(&archive).unwrap()),
            bytes: fs::metadata(&archive).unwrap().len(),
        }
    }

    /// A one-file asset `name` from package `name-pkg==1.0`, member `p/data/x.csv`.
    fn file_spec(&self, name: &'static str, content: &[u8]) -> &'static AssetSpec {
        let pkg = self.package(
            &format!("{name}-pkg"),
            "1.0",
            Dist::Wheel,
            &[("p/data/x.csv", content), ("p/other.py", b"#")],
        );
        Box::leak(Box::new(AssetSpec {
            name,
            description: "test file asset",
            packages: Box::leak(vec![pkg].into_boxed_slice()),
            layout: Layout::File {
                package: 0,
                member: "p/data/x.csv",
            },
        }))
    }
}

fn ensure(cache: &AssetCache, spec: &AssetSpec) -> (Result<PathBuf, AssetError>, Vec<String>) {
    let mut log = Vec::new();
    let r = cache.ensure_spec(spec, &mut |m| log.push(m.to_string()));
    (r, log)
}

/// Entries of the cache root, sorted, to check that no temporary folder is left.
fn root_entries(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn fetches_verifies_and_installs_a_file_asset() {
    let fx = Fixture::new();
    let spec = fx.file_spec("t-file", b"text,label\nok,1\n");
    let cache = fx.cache();
    assert!(!cache.is_spec_ready(spec));
    let (r, log) = ensure(&cache, spec);
    let path = r.unwrap();
    assert_eq!(path, fx.root().join("t-file/x.csv"));
    assert_eq!(fs::read(&path).unwrap(), b"text,label\nok,1\n");
    assert!(cache.is_spec_ready(spec));
    assert!(
        log[0].starts_with("fetching t-file: t-file-pkg==1.0 ("),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|m| m.contains("verified t_file_pkg-1.0-py3-none-any.whl")),
        "{log:?}"
    );
    assert_eq!(
        log.last().unwrap(),
        &format!("t-file: ready at {}", path.display())
    );
    assert_eq!(
        root_entries(&fx.root()),
        [".t-file.lock", "t-file", "t-file.ok"]
    );
    // Only the asked-for member is installed, and the archive is not kept.
    assert_eq!(root_entries(&fx.root().join("t-file")), ["x.csv"]);
    let calls = fx.calls();
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0].contains("download")
            && calls[0].contains("--no-deps")
            && calls[0].contains("--only-binary=:all:"),
        "{calls:?}"
    );
    assert!(calls[0].ends_with("t-file-pkg==1.0"), "{calls:?}");
    cache.verify_spec(spec).unwrap();
}

#[test]
fn second_ensure_does_not_call_pip() {
    let fx = Fixture::new();
    let spec = fx.file_spec("t-idem", b"a");
    ensure(&fx.cache(), spec).0.unwrap();
    let (r, log) = ensure(&fx.cache(), spec);
    assert_eq!(fs::read(r.unwrap()).unwrap(), b"a");
    assert_eq!(fx.calls().len(), 1);
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].starts_with("t-idem: ready at"), "{log:?}");
}

#[test]
fn hash_mismatch_is_rejected_and_nothing_looks_ready() {
    let fx = Fixture::new();
    let good = fx.file_spec("t-bad", b"payload");
    let wrong = "0".repeat(64);
    let pkg = PackageSpec {
        sha256: leak(wrong.clone()),
        ..good.packages[0]
    };
    let spec = AssetSpec {
        packages: Box::leak(vec![pkg].into_boxed_slice()),
        ..*good
    };
    let err = ensure(&fx.cache(), &spec).0.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, AssetError::HashMismatch { .. }), "{msg}");
    assert!(
        msg.contains("t_bad_pkg-1.0-py3-none-any.whl")
            && msg.contains(&wrong)
            && msg.contains(good.packages[0].sha256),
        "{msg}"
    );
    assert!(!fx.cache().is_spec_ready(&spec));
    assert_eq!(root_entries(&fx.root()), [".t-bad.lock"]);
}

#[test]
fn failing_pip_gives_the_registry_error() {
    let fx = Fixture::new();
    let spec = fx.file_spec("t-net", b"a");
    fs::write(fx.fixtures().join("fail"), "").unwrap();
    let (r, log) = ensure(&fx.cache(), spec);
    let err = r.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, AssetError::PipFailed { .. }), "{msg}");
    for needle in [
        "t-net-pkg==1.0",
        "registry",
        "unreachable",
        "IVG_CACHE_DIR",
        "Could not find a version",
        "NewConnectionError",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in {msg}");
    }
    // pip's stderr is also forwarded live through the progress callback.
    assert!(
        log.iter()
            .any(|m| m.starts_with("  pip: ERROR: Could not find")),
        "{log:?}"
    );
    assert!(!fx.cache().is_spec_ready(spec));
}

#[test]
fn missing_pip_module_and_missing_python_are_named() {
    let fx = Fixture::new();
    let spec = fx.file_spec("t-nopip", b"a");
    fs::write(fx.fixtures().join("nopip"), "").unwrap();
    let err = ensure(&fx.cache(), spec).0.unwrap_err();
    assert!(matches!(err, AssetError::PipMissing { .. }), "{err}");
    let err = ensure(&fx.cache().with_python("/nonexistent/bin/python3"), spec)
        .0
        .unwrap_err();
    assert!(matches!(err, AssetError::PythonNotFound { .. }), "{err}");
    assert!(
        err.to_string().contains("/nonexistent/bin/python3")
            && err.to_string().contains("IVG_PYTHON"),
        "{err}"
    );
}

#[test]
fn partial_state_without_marker_is_refetched() {
    let fx = Fixture::new();
    let spec = fx.file_spec("t-part", b"complete content");
    let cache = fx.cache();
    let path = ensure(&cache, spec).0.unwrap();
    // An interrupted fetch: files present (even half-written), no marker.
    fs::remove_file(fx.root().join("t-part.ok")).unwrap();
    fs::write(&path, b"compl").unwrap();
    fs::create_dir_all(fx.root().join(".tmp.t-part.999.1/dl")).unwrap();
    assert!(!cache.is_spec_ready(spec));
    assert_eq!(
        fs::read(ensure(&cache, spec).0.unwrap()).unwrap(),
        b"complete content"
    );
    assert_eq!(fx.calls().len(), 2);
    assert_eq!(
        root_entries(&fx.root()),
        [".t-part.lock", "t-part", "t-part.ok"]
    );
    // A truncated file under a valid marker is caught by its size.
    fs::write(&path, b"complete").unwrap();
    assert!(!cache.is_spec_ready(spec));
    assert_eq!(
        fs::read(ensure(&cache, spec).0.unwrap()).unwrap(),
        b"complete content"
    );
    assert_eq!(fx.calls().len(), 3);
    // Same size, different bytes: only `verify` (a rehash) notices.
    fs::write(&path, b"COMPLETE CONTENT").unwrap();
    assert!(cache.is_spec_ready(spec));
    let err = cache.verify_spec(spec).unwrap_err();
    assert!(
        matches!(err, AssetError::HashMismatch { .. }) && err.to_string().contains("x.csv"),
        "{err}"
    );
}

#[test]
fn directory_asset_keeps_relative_paths() {
    let fx = Fixture::new();
    let pkg = fx.package(
        "t-dir-pkg",
        "0.1.0",
        Dist::Wheel,
        &[
            ("m/model/config.json", b"{\"a\":1}"),
            ("m/model/1_Pooling/config.json", b"{}"),
            ("m/cli.py", b"#"),
        ],
    );
    let spec = AssetSpec {
        name: "t-dir",
        description: "",
        packages: Box::leak(vec![pkg].into_boxed_slice()),
        layout: Layout::Dir {
            package: 0,
            prefix: "m/model/",
        },
    };
    let path = ensure(&fx.cache(), &spec).0.unwrap();
    assert_eq!(path, fx.root().join("t-dir"));
    assert_eq!(root_entries(&path), ["1_Pooling", "config.json"]);
    assert_eq!(fs::read(path.join("1_Pooling/config.json")).unwrap(), b"{}");
    let marker = fs::read_to_string(fx.root().join("t-dir.ok")).unwrap();
    assert!(
        marker.contains(" 2 1_Pooling/config.json\n") && marker.contains(" 7 config.json\n"),
        "{marker}"
    );
}

/// Three packages: a main one with SHA256SUMS and two parts, like gemma3.
fn concat_spec(fx: &Fixture, listed: &str) -> (AssetSpec, Vec<u8>) {
    let (a, b) = (b"GGUF first half|".as_slice(), b"second half".as_slice());
    let whole = [a, b].concat();
    let sha = leak(ivg_assets_hex(&whole));
    let sums = format!(
        "{}  model.gguf\n",
        if listed.is_empty() { sha } else { listed }
    );
    let main = fx.package(
        "t-cat",
        "1.0.0",
        Dist::Wheel,
        &[("t_cat/data/SHA256SUMS", sums.as_bytes())],
    );
    let p1 = fx.package(
        "t-cat-part1",
        "1.0.0",
        Dist::Wheel,
        &[("t_cat_part1/data/model.gguf.part00", a)],
    );
    let p2 = fx.package(
        "t-cat-part2",
        "1.0.0",
        Dist::Wheel,
        &[("t_cat_part2/data/model.gguf.part01", b)],
    );
    let spec = AssetSpec {
        name: "t-cat",
        description: "",
        packages: Box::leak(vec![main, p1, p2].into_boxed_slice()),
        layout: Layout::Concat {
            parts: &[
                Part {
                    package: 1,
                    member: "t_cat_part1/data/model.gguf.part00",
                },
                Part {
                    package: 2,
                    member: "t_cat_part2/data/model.gguf.part01",
                },
            ],
            file_name: "model.gguf",
            sha256: sha,
            listed_in: Some(ChecksumList {
                package: 0,
                member: "t_cat/data/SHA256SUMS",
                entry: "model.gguf",
            }),
        },
    };
    (spec, whole)
}

fn ivg_assets_hex(data: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d");
    fs::write(&p, data).unwrap();
    sha256_file(&p).unwrap()
}

#[test]
fn split_file_is_concatenated_in_order_and_checked() {
    let fx = Fixture::new();
    let (spec, whole) = concat_spec(&fx, "");
    let (r, log) = ensure(&fx.cache(), &spec);
    let path = r.unwrap();
    assert_eq!(path, fx.root().join("t-cat/model.gguf"));
    assert_eq!(fs::read(&path).unwrap(), whole);
    assert_eq!(root_entries(&fx.root().join("t-cat")), ["model.gguf"]);
    assert_eq!(fx.calls().len(), 3);
    assert!(log.iter().any(|m| m.ends_with("[3/3]")), "{log:?}");
    assert!(
        log.iter()
            .any(|m| m.contains("verified model.gguf = 2 parts concatenated")),
        "{log:?}"
    );
}

#[test]
fn split_file_whose_checksum_list_disagrees_is_rejected() {
    let fx = Fixture::new();
    let other = "ab".repeat(32);
    let (spec, _) = concat_spec(&fx, &other);
    let err = ensure(&fx.cache(), &spec).0.unwrap_err();
    assert!(matches!(err, AssetError::ChecksumDisagrees { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("t_cat-1.0.0-py3-none-any.whl/t_cat/data/SHA256SUMS") && msg.contains(&other),
        "{msg}"
    );
    // Wrong pin for the concatenation itself (no list to catch it first).
    let fx2 = Fixture::new();
    let (spec2, _) = concat_spec(&fx2, "");
    let wrong = "cd".repeat(32);
    let Layout::Concat {
        parts,
        file_name,
        sha256: right,
        ..
    } = spec2.layout
    else {
        unreachable!()
    };
    let no_list = AssetSpec {
        layout: Layout::Concat {
            parts,
            file_name,
            listed_in: None,
            sha256: leak(wrong.clone()),
        },
        ..spec2
    };
    let err = ensure(&fx2.cache(), &no_list).0.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, AssetError::HashMismatch { .. })
            && msg.contains(right)
            && msg.contains(&wrong)
            && msg.contains("model.gguf"),
        "{msg}"
    );
    assert!(!fx2.cache().is_spec_ready(&no_list));
}

#[test]
fn sdist_is_fetched_as_source_and_untarred() {
    let fx = Fixture::new();
    let pkg = fx.package(
        "t_sd",
        "0.6.6",
        Dist::Sdist,
        &[
            (
                "t_sd-0.6.6/example/outputs.json",
                b"[{\"instruction\":\"hi\"}]",
            ),
            ("t_sd-0.6.6/setup.py", b"#"),
        ],
    );
    let spec = AssetSpec {
        name: "t-sd",
        description: "",
        packages: Box::leak(vec![pkg].into_boxed_slice()),
        layout: Layout::File {
            package: 0,
            member: "t_sd-0.6.6/example/outputs.json",
        },
    };
    let path = ensure(&fx.cache(), &spec).0.unwrap();
    assert_eq!(fs::read(path).unwrap(), b"[{\"instruction\":\"hi\"}]");
    let calls = fx.calls();
    assert!(
        calls[0].contains("--no-binary=:all:") && !calls[0].contains("--only-binary"),
        "{calls:?}"
    );
}

#[test]
fn verified_archive_in_downloads_is_used_without_pip() {
    let fx = Fixture::new();
    let spec = fx.file_spec("t-drop", b"offline");
    let cache = fx.cache();
    let wheel = fx
        .fixtures()
        .join("t-drop-pkg==1.0")
        .join(spec.packages[0].filename);
    fs::create_dir_all(cache.downloads_dir()).unwrap();
    fs::copy(
        &wheel,
        cache.downloads_dir().join(spec.packages[0].filename),
    )
    .unwrap();
    let (r, log) = ensure(&cache, spec);
    assert_eq!(fs::read(r.unwrap()).unwrap(), b"offline");
    assert!(fx.calls().is_empty());
    assert!(log[0].contains("sha256 verified"), "{log:?}");
    // The dropped archive belongs to the user and stays.
    assert!(cache
        .downloads_dir()
        .join(spec.packages[0].filename)
        .is_file());
}

#[test]
fn a_corrupt_dropped_archive_falls_back_to_pip() {
    let fx = Fixture::new();
    let spec = fx.file_spec("t-drop2", b"from pip");
    let cache = fx.cache();
    fs::create_dir_all(cache.downloads_dir()).unwrap();
    fs::write(
        cache.downloads_dir().join(spec.packages[0].filename),
        b"not a wheel",
    )
    .unwrap();
    let (r, log) = ensure(&cache, spec);
    assert_eq!(fs::read(r.unwrap()).unwrap(), b"from pip");
    assert_eq!(fx.calls().len(), 1);
    assert!(
        log[0].contains("ignoring") && log[0].contains(spec.packages[0].sha256),
        "{log:?}"
    );
}

#[test]
fn concurrent_ensures_fetch_once() {
    let fx = Arc::new(Fixture::new());
    let spec = fx.file_spec("t-race", b"shared");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let fx = Arc::clone(&fx);
            std::thread::spawn(move || {
                fx.cache()
                    .ensure_spec(spec, &mut |_| {})
                    .map(|p| fs::read(p).unwrap())
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap().unwrap(), b"shared");
    }
    assert_eq!(fx.calls().len(), 1);
}

#[test]
fn invalid_spec_is_an_error_not_a_panic() {
    let fx = Fixture::new();
    let good = fx.file_spec("t-inv", b"a");
    let spec = AssetSpec {
        layout: Layout::File {
            package: 3,
            member: "p/data/x.csv",
        },
        ..*good
    };
    let err = ensure(&fx.cache(), &spec).0.unwrap_err();
    assert!(matches!(err, AssetError::InvalidSpec { .. }), "{err}");
    assert!(fx.calls().is_empty());
}
